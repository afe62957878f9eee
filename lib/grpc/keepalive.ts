// Keepalive settings for long-lived agent streams. Clients ping every 30 s (also while no call
// is active) so a dead peer or a silently dropped NAT entry is noticed within ~40 s; servers
// ping idle connections every 60 s and accept the clients' pings (grpc-js servers do not
// enforce a minimum ping interval; C-core servers would need
// grpc.http2.min_ping_interval_without_data_ms lowered to accept these).
import type { ChannelOptions } from '@grpc/grpc-js';

export const CLIENT_KEEPALIVE_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
};

export const SERVER_KEEPALIVE_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
};
