// deployer-ctl: the operator CLI. It talks to the control plane over gRPC only.
import { Command, CommanderError } from 'commander';
import { type GlobalOptions, openConnection } from './connection.js';
import { EXIT } from './output.js';
import { statusCommand } from './commands/status.js';

const program = new Command('deployer-ctl')
  .description('Operate an UltraCloud cluster')
  .option('--server <host:port>', 'control-plane address (ULTRACLOUD_SERVER, default 127.0.0.1:7000)')
  .option('--token <token>', 'bearer token (ULTRACLOUD_TOKEN, default: admin.token in ./.ultracloud)')
  .option('--ca <file>', 'CA bundle; enables TLS (ULTRACLOUD_CA)')
  .option('--json', 'machine-readable output')
  .showHelpAfterError()
  .exitOverride();

async function withConnection(run: (connection: ReturnType<typeof openConnection>) => Promise<number>): Promise<void> {
  const connection = openConnection(program.opts<GlobalOptions>());
  try {
    process.exitCode = await run(connection);
  } finally {
    connection.close();
  }
}

program
  .command('status')
  .description('health of every control-plane service')
  .option('--deployer <host:port>', 'deployer address when it runs as its own daemon')
  .option('--host-controller <host:port>', 'host-controller address when it runs as its own daemon')
  .option('--fleet-scheduler <host:port>', 'fleet-scheduler address when it runs as its own daemon')
  .action((opts: { deployer?: string; hostController?: string; fleetScheduler?: string }) =>
    withConnection((c) =>
      statusCommand(c, {
        ...(opts.deployer ? { deployer: opts.deployer } : {}),
        ...(opts.hostController ? { 'host-controller': opts.hostController } : {}),
        ...(opts.fleetScheduler ? { 'fleet-scheduler': opts.fleetScheduler } : {}),
      }),
    ),
  );

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    console.error(`deployer-ctl: ${(err as Error).message}`);
    process.exitCode = EXIT.rejected;
  }
}
