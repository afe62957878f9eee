// The activation journal is written atomically with mode 0600 and read back exactly; an
// unreadable file is moved aside instead of stopping the agent for good.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ActivationPhase } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationFailureReason, ActivationStrategy, DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { CorruptJournalError, isTerminalPhase, JOURNAL_FILE, JournalFile, type JournalRecord } from '../../agents/nix-agent/journal.js';

function tempDir(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const RECORD: JournalRecord = {
  journal: {
    deployment: 'workers-os',
    revision: 7n,
    phase: ActivationPhase.ACTIVATION_PHASE_ROLLING_BACK,
    systemPath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-next',
    generation: 12n,
    previousSystemPath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-base',
    previousGeneration: 11n,
    bootId: 'b7f1',
    failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED,
    message: 'health check failed: exit 1',
    startedAt: new Date('2025-01-02T03:04:05.000Z'),
    updatedAt: new Date('2025-01-02T03:04:35.000Z'),
  },
  // fromPartial: the shape a read gives back, absent fields included.
  desiredSystem: DesiredSystem.fromPartial({
    nodeId: 'node-1',
    deployment: 'workers-os',
    revision: 7n,
    systemPath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-next',
    flakeRef: '',
    flakeAttr: '',
    activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT,
    healthCheck: { probe: { $case: 'command', value: { argv: ['true'], env: { A: 'b' }, timeout: { seconds: 3n, nanos: 0 } } }, retries: 0 },
    rollbackPolicy: { confirmTimeout: { seconds: 45n, nanos: 0 }, autoRollback: false },
    substituters: ['https://cache.example'],
  }),
  switchProcessGroup: 4242,
  rollbackAction: 'boot',
  rebootStarted: true,
};

test('a record is written with mode 0600, leaves no temporary file, and reads back equal', (t) => {
  const dir = tempDir(t);
  const file = new JournalFile(join(dir, 'state', JOURNAL_FILE));
  t.is(file.read(), undefined);
  file.write(RECORD);
  t.is(statSync(file.path).mode & 0o777, 0o600);
  t.deepEqual(readdirSync(join(dir, 'state')), [JOURNAL_FILE]);
  t.deepEqual(file.read(), RECORD);
  file.write({ journal: { ...RECORD.journal, phase: ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK }, desiredSystem: RECORD.desiredSystem });
  t.deepEqual(file.read(), { journal: { ...RECORD.journal, phase: ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK }, desiredSystem: RECORD.desiredSystem });
});

test('an unreadable journal is moved aside and reported', (t) => {
  const dir = tempDir(t);
  const path = join(dir, JOURNAL_FILE);
  writeFileSync(path, '{"version":1,"journal":');
  const file = new JournalFile(path);
  const err = t.throws(() => file.read(), { instanceOf: CorruptJournalError });
  t.false(existsSync(path));
  t.true(existsSync(err.movedTo));
  t.is(file.read(), undefined);
});

test('only CONFIRMED, ROLLED_BACK and FAILED end an activation', (t) => {
  const terminal = Object.values(ActivationPhase)
    .filter((p): p is ActivationPhase => typeof p === 'number' && p >= 0)
    .filter(isTerminalPhase)
    .map((p) => ActivationPhase[p]);
  t.deepEqual(terminal, ['ACTIVATION_PHASE_CONFIRMED', 'ACTIVATION_PHASE_ROLLED_BACK', 'ACTIVATION_PHASE_FAILED']);
});
