// deployer-ctl: the operator CLI. It talks to the control plane over gRPC only.
import { Command, Option } from 'commander';
import { type GlobalOptions, openConnection } from './connection.js';
import { EXIT_CODES_HELP, reportError } from './output.js';
import { applyCommand, type ApplyOptions } from './commands/apply.js';
import { listMachinesCommand, showMachineCommand, type ListOptions } from './commands/machines.js';
import { statusCommand } from './commands/status.js';
import { registerTokensCommands } from './commands/tokens.js';
import { registerRolloutsCommands } from './commands/rollouts.js';
import { watchMachinesCommand, type WatchOptions } from './commands/watch.js';
import { addTransitionCommands } from './commands/transitions.js';
import { eventsCommand, type EventsOptions } from './commands/events.js';

const program = new Command('deployer-ctl')
  .description('Operate an UltraCloud cluster')
  .option('--server <host:port>', 'control-plane address (ULTRACLOUD_SERVER, default: the one in ./.ultracloud/endpoint.json, else 127.0.0.1:7000)')
  .option('--token <token>', 'bearer token (ULTRACLOUD_TOKEN, default: admin.token in ./.ultracloud)')
  .option('--ca <file>', 'CA bundle verifying the server over TLS (ULTRACLOUD_CA, default: ./.ultracloud/ca.pem when that server speaks TLS)')
  .option('--json', 'machine-readable output')
  .showHelpAfterError()
  .addHelpText('after', `\n${EXIT_CODES_HELP}`)
  .configureHelp({ showGlobalOptions: true })
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

program
  .command('apply')
  .description('apply a cluster: cluster state to the deployer, host deployments and service policies to their services')
  .requiredOption('-f, --file <path>', 'a .nix cluster, a directory with default.nix, or a .json document')
  .option('--dry-run', 'show what would change, write nothing')
  .option('--strict', 'exit 1 when a part could not be applied because its service is not running')
  .option('--deployer <host:port>', 'deployer address when it runs as its own daemon')
  .option('--host-controller <host:port>', 'host-controller address when it runs as its own daemon')
  .option('--fleet-scheduler <host:port>', 'fleet-scheduler address when it runs as its own daemon')
  .action((opts: ApplyOptions) => withConnection((c) => applyCommand(c, opts)));

const collect = (value: string, previous: string[] = []) => [...previous, value];

const machines = program.command('machines').description('the machine inventory');
machines
  .command('list')
  .description('list machines (table: hostname, node id, state, class, pool, ip, disk, age)')
  .option('--state <state>', 'only machines in this state (repeatable, or comma-separated)', collect)
  .option('-l, --label <key=value>', 'only machines with this label (repeatable)', collect)
  .option('--class <name>', 'only machines of this node class')
  .option('--pool <name>', 'only machines of this pool')
  .option('-q, --query <text>', 'free text over hostname, node id, serial, MAC and machine id')
  .addOption(new Option('--page-size <n>', 'machines per ListMachines call (default 500)').hideHelp())
  .action((opts: ListOptions) => withConnection((c) => listMachinesCommand(c, opts)));
machines
  .command('show')
  .argument('<machine>', 'machine id, hostname or node id')
  .description('everything known about one machine, with its recent events')
  .action((name: string) => withConnection((c) => showMachineCommand(c, name)));
machines
  .command('watch')
  .description('one line per machine change as it happens; reconnects and resumes when the server goes away')
  .option('--state <state>', 'only machines in this state (repeatable, or comma-separated)', collect)
  .option('-l, --label <key=value>', 'only machines with this label (repeatable)', collect)
  .option('--class <name>', 'only machines of this node class')
  .option('--pool <name>', 'only machines of this pool')
  .option('-q, --query <text>', 'free text over hostname, node id, serial, MAC and machine id')
  .option('--since <resource-version>', 'the changes after this resource_version instead of the current machines first')
  .action((opts: WatchOptions) => withConnection((c) => watchMachinesCommand(c, opts)));
addTransitionCommands(machines, withConnection);

program
  .command('events')
  .description('the audit log: state changes and denied calls, oldest first (JSON: newest first)')
  .option('--machine <name>', 'only this machine (machine id, hostname or node id)')
  .option('--limit <n>', 'the latest n events (default 50)')
  .option('--actor <name>', 'only events by this actor (token name, installer:<machine id>, system)')
  .option('--since <when>', 'only events since a duration ago (30m, 2h, 7d) or an ISO time')
  .option('--denied', 'only denied calls')
  .action((opts: EventsOptions) => withConnection((c) => eventsCommand(c, opts)));

registerTokensCommands(program, withConnection);
registerRolloutsCommands(program, withConnection);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err);
}
