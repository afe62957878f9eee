// How deployer-ctl reaches the control plane: the address, credential and CA come from flags,
// then ULTRACLOUD_* variables, then the state dir of a local `ultracloud up` (like a kubeconfig),
// so a newcomer needs no flags at all.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Channel } from 'nice-grpc';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
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

export function openConnection(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const server = options.server ?? env.ULTRACLOUD_SERVER ?? DEFAULT_SERVER;
  const token = resolveToken(options, env);
  const caFile = options.ca ?? env.ULTRACLOUD_CA;
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
