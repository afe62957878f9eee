// Notification channels between host-controller replicas (LISTEN/NOTIFY on PostgreSQL, in-process
// on PGlite). Notifications are hints: whoever receives one re-reads the database.
export const WAKEUP_CHANNELS = {
  /** Something the leader acts on changed: an operator write, an agent message, a stream. */
  leader: 'hosts_leader',
  /** Desired systems or reboot grants changed; the body lists node ids (comma-separated) or is "*". */
  deliver: 'hosts_deliver',
  /** A new stream took a node over; the body is the node id. Older streams of the node end. */
  streams: 'hosts_streams',
} as const;

/**
 * Every payload is `<replica> <body>`: the sending replica has acted on it in its own process
 * already (woken its leader, delivered to its streams), so it skips its own notifications.
 * NOTIFY payloads are limited to 8000 bytes.
 */
export function wakeupPayload(replica: string, body = ''): string {
  return `${replica} ${body}`;
}

export function parseWakeup(payload: string): { replica: string; body: string } {
  const space = payload.indexOf(' ');
  return space < 0 ? { replica: '', body: payload } : { replica: payload.slice(0, space), body: payload.slice(space + 1) };
}

/** The deliver channel's body: the nodes, or "*" (everyone) for a list too long for one payload. */
export function nodeListBody(nodeIds: readonly string[]): string {
  const joined = nodeIds.join(',');
  return joined.length > 7000 ? '*' : joined;
}

export function parseNodeListBody(body: string): readonly string[] | '*' {
  return body === '*' || body === '' ? '*' : body.split(',');
}
