// Contract: the committed gen/ is exactly what `npm run generate` produces from proto/, the
// contracts pass buf lint, and they do not break the committed baseline.
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import test from 'ava';
import { describeResult, REPO_ROOT, runBuf } from '../helpers/buf.js';

const COMMITTED_GEN = join(REPO_ROOT, 'gen');
const BASELINE = join(REPO_ROOT, 'proto', 'baseline.binpb');

/** Every file below `root`, as paths relative to it, sorted. */
async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

test('gen/ equals a fresh buf generate and buf build, file for file and byte for byte', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'ultracloud-gen-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  // The same two steps as `npm run generate`, written below a temporary root.
  const generate = await runBuf(['generate', '-o', out], { timeoutMs: 60_000 });
  t.is(generate.code, 0, describeResult(`generate -o ${out}`, generate));
  const build = await runBuf(['build', '-o', join(out, 'gen', 'ultracloud.binpb')]);
  t.is(build.code, 0, describeResult('build', build));

  const freshGen = join(out, 'gen');
  const fresh = await listFiles(freshGen);
  const committed = await listFiles(COMMITTED_GEN);
  t.true(fresh.includes('ultracloud.binpb') && fresh.some((f) => f.endsWith('.ts')), `buf wrote nothing usable: ${fresh.join(', ')}`);

  const missing = fresh.filter((f) => !committed.includes(f));
  const extra = committed.filter((f) => !fresh.includes(f));
  const differing: string[] = [];
  for (const f of fresh.filter((p) => committed.includes(p))) {
    const [a, b] = await Promise.all([readFile(join(freshGen, f)), readFile(join(COMMITTED_GEN, f))]);
    if (!a.equals(b)) differing.push(`gen/${f}`);
  }
  t.deepEqual(
    { missing: missing.map((f) => `gen/${f}`), extra: extra.map((f) => `gen/${f}`), differing },
    { missing: [], extra: [], differing: [] },
    'gen/ is stale: run `npm run generate` and commit the result',
  );
});

test('buf lint passes on the contracts', async (t) => {
  const lint = await runBuf(['lint']);
  t.is(lint.code, 0, describeResult('lint', lint));
  t.is(lint.stdout.trim(), '');
});

test('the contracts do not break proto/baseline.binpb', async (t) => {
  const baseline = createFileRegistry(fromBinary(FileDescriptorSetSchema, await readFile(BASELINE)));
  const baselineServices = [...baseline.files].flatMap((f) => f.services).filter((s) => s.typeName.startsWith('ultracloud.'));
  t.true(baselineServices.length >= 7, 'the baseline holds no UltraCloud services, so a breaking check against it proves nothing');

  // Exactly as `npm run lint` and docs/contracts.md run it.
  const breaking = await runBuf(['breaking', '--against', BASELINE]);
  t.is(breaking.code, 0, describeResult('breaking --against proto/baseline.binpb', breaking));
  t.is(breaking.stdout.trim(), '');
});
