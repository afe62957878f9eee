// How to reach the server a state dir belongs to: the server writes `endpoint.json` (address it
// listens on, and whether it speaks TLS) when it is ready; `deployer-ctl` run next to the state dir
// reads it, with `ca.pem` and `admin.token`, the way kubectl reads a kubeconfig. Not secret.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatHostPort, type HostPort } from './config/settings.js';

export const ENDPOINT_FILE = 'endpoint.json';

export interface EndpointRecord {
  /** `host:port` a client on this machine dials. */
  readonly address: string;
  /** True when the server speaks TLS (verify it with the state dir's `ca.pem`), false for plaintext. */
  readonly tls: boolean;
}

/** The address a local client dials: a wildcard listen host becomes the loopback address. */
export function localDialAddress(listen: HostPort, port: number): string {
  const host = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
  return formatHostPort({ host, port });
}

export function writeEndpointRecord(stateDir: string, record: EndpointRecord): void {
  writeFileSync(join(stateDir, ENDPOINT_FILE), `${JSON.stringify(record)}\n`, { mode: 0o644 });
}

/** The record in `stateDir`, or undefined when there is none or it is not one. */
export function readEndpointRecord(stateDir: string): EndpointRecord | undefined {
  const path = join(stateDir, ENDPOINT_FILE);
  if (!existsSync(path)) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<EndpointRecord>;
    if (typeof parsed.address === 'string' && typeof parsed.tls === 'boolean') return { address: parsed.address, tls: parsed.tls };
  } catch {
    // unreadable: as if absent
  }
  return undefined;
}
