// The agent-streams benchmark's host-controller, in a process of its own as `ultracloud
// host-controller` runs it (the deployer it watches stays in the benchmark's process), so that
// its RSS is the host-controller's alone, as the bare server's is its own. It is served by the
// same serveComponents as the daemon, with TLS from certificate files and the nodes'
// certificates verified against the cluster CA. IPC: `start` → `listening` (address, admin
// token file); `measure` → `rss` (after a full collection); `close`.
import { join } from 'node:path';
import { pino } from 'pino';
import { createLogger } from '../lib/log.js';
import { serveComponents, type ServingProcess } from '../lib/serve.js';
import { hostControllerComponent } from '../services/host-controller/component.js';
import { benchDaemonConfig } from './daemon-config.js';
import { collectedMemory } from './collected-memory.js';


export interface ControllerStart {
  readonly kind: 'start';
  readonly databaseUrl: string;
  readonly stateDir: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The cluster CA bundle: agents' node certificates verify against it. */
  readonly clientCaFile: string;
  /** Host-controller flags, as on its command line (deployer address, CA, token file, intervals). */
  readonly flags: Readonly<Record<string, string>>;
}

let serving: ServingProcess | undefined;

async function start(m: ControllerStart): Promise<{ address: string; adminTokenPath: string }> {
  const destination = pino.destination({ dest: join(m.stateDir, 'server.log'), sync: false, mkdir: true });
  const logger = createLogger({ level: 'info', destination: destination as unknown as NodeJS.WritableStream });
  const config = benchDaemonConfig({ stateDir: m.stateDir, databaseUrl: m.databaseUrl, tls: { certFile: m.certFile, keyFile: m.keyFile, caFile: m.clientCaFile } });
  serving = await serveComponents({
    components: [hostControllerComponent(m.flags)],
    config,
    logger,
    transport: { kind: 'tls-files', certFile: m.certFile, keyFile: m.keyFile, clientCaFile: m.clientCaFile },
  });
  return { address: serving.server.address, adminTokenPath: serving.adminTokenPath };
}

process.on('message', (m: { kind: string }) => {
  void (async () => {
    try {
      if (m.kind === 'start') process.send?.({ kind: 'listening', ...(await start(m as ControllerStart)) });
      else if (m.kind === 'measure') process.send?.({ kind: 'rss', memory: await collectedMemory() });
      else {
        await serving?.stop();
        process.exit(0);
      }
    } catch (err) {
      process.send?.({ kind: 'error', error: (err as Error).stack ?? String(err) });
    }
  })();
});
process.send?.({ kind: 'started' });
