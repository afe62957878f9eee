// `ultracloud`: the one binary of the control plane and its agents. This file is the
// composition root: it alone knows every component.
import { Command } from 'commander';
import { checkTransport, ConfigError, daemonConfigSpec, DEFAULT_PORTS, loadConfig } from '../lib/config/index.js';
import type { Component } from '../lib/component.js';
import { createLogger } from '../lib/log.js';
import { stopOnSignals } from '../lib/process.js';
import { serveComponents } from '../lib/serve.js';
import { deployerComponent } from '../services/deployer/component.js';

/** Every control-plane component `up` runs together. */
function components(flags: Record<string, string | undefined>): readonly Component[] {
  return [deployerComponent(flags)];
}

const DAEMON_FLAGS: [string, string][] = [
  ['--listen <host:port>', 'gRPC listen address (ULTRACLOUD_LISTEN)'],
  ['--state-dir <dir>', 'state directory (ULTRACLOUD_STATE_DIR, default ./.ultracloud)'],
  ['--database-url <url>', 'PostgreSQL URL; unset uses embedded PGlite (ULTRACLOUD_DATABASE_URL)'],
  ['--log-level <level>', 'trace|debug|info|warn|error (ULTRACLOUD_LOG_LEVEL)'],
  ['--tls-cert <file>', 'server certificate (ULTRACLOUD_TLS_CERT)'],
  ['--tls-key <file>', 'server key (ULTRACLOUD_TLS_KEY)'],
  ['--tls-ca <file>', 'CA bundle for client certificates (ULTRACLOUD_TLS_CA)'],
  ['--join-token-file <file>', 'installer join token (ULTRACLOUD_JOIN_TOKEN_FILE, default <state-dir>/join.token)'],
  ['--secrets-key-file <file>', 'key sealing private keys (ULTRACLOUD_SECRETS_KEY_FILE, default <state-dir>/secrets.key)'],
  ['--install-timeout <duration>', 'fail installs silent this long (ULTRACLOUD_INSTALL_TIMEOUT, default 60m)'],
];

function withDaemonFlags(command: Command): Command {
  for (const [flag, help] of DAEMON_FLAGS) command.option(flag, help);
  return command;
}

/** commander gives camelCase keys; the config spec names flags as typed on the command line. */
function flagValues(opts: Record<string, unknown>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(opts)) {
    if (typeof value === 'string') out[key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)] = value;
  }
  return out;
}

async function runServer(select: (flags: Record<string, string | undefined>) => readonly Component[], defaultPort: number, opts: Record<string, unknown>): Promise<void> {
  const flags = flagValues(opts);
  const config = loadConfig(daemonConfigSpec(defaultPort), { flags });
  checkTransport(config);
  const logger = createLogger({ level: config.logLevel, name: 'ultracloud' });
  const running = await serveComponents({ components: select(flags), config, logger });
  logger.info({ event: 'ready', address: running.server.address, admin_token_file: running.adminTokenPath, state_dir: config.stateDir });
  stopOnSignals(running.stop, logger);
}

const program = new Command('ultracloud').description('UltraCloud bare-metal provisioning').showHelpAfterError();

withDaemonFlags(
  program.command('up').description(`run every control-plane service in one process (default 127.0.0.1:${DEFAULT_PORTS.up})`),
).action((opts: Record<string, unknown>) => runServer(components, DEFAULT_PORTS.up, opts));

withDaemonFlags(
  program.command('deployer').description(`run the deployer alone (default 127.0.0.1:${DEFAULT_PORTS.deployer})`),
).action((opts: Record<string, unknown>) => runServer((flags) => [deployerComponent(flags)], DEFAULT_PORTS.deployer, opts));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`ultracloud: ${err.message}`);
    process.exit(2);
  }
  console.error('ultracloud:', err);
  process.exit(1);
}
