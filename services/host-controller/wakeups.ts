// Notification channels between host-controller replicas (LISTEN/NOTIFY on PostgreSQL, in-process
// on PGlite). Notifications are hints: whoever receives one re-reads the database.
export const WAKEUP_CHANNELS = {
  /** Something the leader acts on changed: an operator write, an agent message, a stream. */
  leader: 'hosts_leader',
  /** Desired systems or reboot grants changed; payload: comma-separated node ids, or "*". */
  deliver: 'hosts_deliver',
  /** A new stream took a node over; payload: node id. Older streams of the node end. */
  streams: 'hosts_streams',
} as const;

/** NOTIFY payloads are limited to 8000 bytes; a longer list becomes "everyone". */
export function nodeListPayload(nodeIds: readonly string[]): string {
  const joined = nodeIds.join(',');
  return joined.length > 7000 ? '*' : joined;
}
