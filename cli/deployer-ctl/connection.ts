// How deployer-ctl reaches the control plane: the address, credential and CA come from flags,
// then ULTRACLOUD_* variables, then the state dir of a local `ultracloud up` (like a kubeconfig:
// endpoint.json says where the server listens and whether it speaks TLS, ca.pem verifies it,
// admin.token authenticates), so a newcomer needs no flags at all.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Channel } from 'nice-grpc';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import { readEndpointRecord } from '../../lib/endpoint.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';

export interface GlobalOptions {
  readonly server?: string;
  readonly token?: string;
  readonly ca?: string;
  readonly json?: boolean;
}

export interface Connection {
  readonly server: string;
  readonly json: boolean;
  client<S extends CompatServiceDefinition>(definition: S, address?: string): ServiceClient<S>;
  close(): void;
}

export const DEFAULT_SERVER = '127.0.0.1:7000';

function stateDir(env: NodeJS.ProcessEnv): string {
  return resolve(env.ULTRACLOUD_STATE_DIR ?? '.ultracloud');
}

export function resolveToken(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (options.token) return options.token;
  if (env.ULTRACLOUD_TOKEN) return env.ULTRACLOUD_TOKEN;
  const file = join(stateDir(env), 'admin.token');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

export interface Target {
  readonly server: string;
  /** CA bundle the server's certificate is verified with; undefined: plaintext (loopback only). */
  readonly caFile: string | undefined;
}

/**
 * The server and how to reach it. Without `--ca` / ULTRACLOUD_CA the state dir decides: its
 * endpoint.json says whether the server at that address speaks TLS (then its ca.pem verifies it);
 * any other server is reached over TLS when a ca.pem is at hand.
 */
export function resolveTarget(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Target {
  const dir = stateDir(env);
  const endpoint = readEndpointRecord(dir);
  const server = options.server || env.ULTRACLOUD_SERVER || endpoint?.address || DEFAULT_SERVER;
  const explicitCa = options.ca || env.ULTRACLOUD_CA;
  if (explicitCa) return { server, caFile: resolve(explicitCa) };
  const localCa = join(dir, 'ca.pem');
  if (!existsSync(localCa)) return { server, caFile: undefined };
  const tls = endpoint && endpoint.address === server ? endpoint.tls : true;
  return { server, caFile: tls ? localCa : undefined };
}

/**
 * grpc-js passes the dialled host to TLS as the server name even when it is an IP literal, and
 * Node then prints a deprecation warning (DEP0123) on every run. The certificate is still checked
 * against the address (its IP SANs); only that one warning is dropped from the CLI's stderr.
 */
let quieted = false;
function quietIpServerNameWarning(): void {
  if (quieted) return;
  quieted = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const code = typeof args[1] === 'object' && args[1] !== null ? (args[1] as { code?: unknown }).code : args[2];
    if (code !== 'DEP0123') emit(...args);
  }) as typeof process.emitWarning;
}

export function openConnection(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const { server, caFile } = resolveTarget(options, env);
  if (caFile) quietIpServerNameWarning();
  const token = resolveToken(options, env);
  const channels = new Map<string, Channel>();
  const channelFor = (address: string) => {
    let channel = channels.get(address);
    if (!channel) {
      channel = openChannel(address, caFile ? { tls: { caFile } } : {});
      channels.set(address, channel);
    }
    return channel;
  };
  return {
    server,
    json: options.json ?? false,
    client: (definition, address = server) =>
      createServiceClient(definition, channelFor(address), { ...(token ? { token } : {}), defaultDeadlineMs: 15_000 }),
    close: () => {
      for (const channel of channels.values()) channel.close();
    },
  };
}
