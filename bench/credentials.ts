// Credential issuance throughput: full node bundles (ed25519 SSH host key + ECDSA P-256 TLS cert
// signed by the cluster CA) against the common JavaScript baseline, node-forge generating an
// RSA-2048 key and a self-signed certificate. Both run one at a time in the same process for about the
// same wall time, so the ratio compares per-request cost. Goal (issue 3): ratio >= 50.
import forge from 'node-forge';
import { pathToFileURL } from 'node:url';
import { createClusterCa, issueNodeCredentials } from '../lib/pki/index.js';

export interface CredentialsBenchResult {
  readonly bundlesPerSecond: number;
  readonly forgePerSecond: number;
  readonly ratio: number;
}

export async function runCredentialsBench(options: { seconds?: number } = {}): Promise<CredentialsBenchResult> {
  const seconds = options.seconds ?? 5;
  const ca = await createClusterCa();
  // Warm up JIT and lazy module state so neither side pays it inside the timed window.
  await issueNodeCredentials(ca, { nodeId: 'warmup', hostname: 'warmup' });
  forgeSelfSigned();

  // Alternate short slices of each side, so both see the same machine load when the host is shared.
  const bundles = { count: 0, ms: 0 };
  const baseline = { count: 0, ms: 0 };
  while (bundles.ms < seconds * 1000 || baseline.ms < seconds * 1000) {
    await runSlice(bundles, async () => {
      const i = bundles.count;
      await issueNodeCredentials(ca, { nodeId: `node-${i}`, hostname: `host-${i}`, domain: 'bench.ultracloud.test' });
    });
    await runSlice(baseline, async () => forgeSelfSigned());
  }
  const bundlesPerSecond = (bundles.count * 1000) / bundles.ms;
  const forgePerSecond = (baseline.count * 1000) / baseline.ms;
  return { bundlesPerSecond, forgePerSecond, ratio: bundlesPerSecond / forgePerSecond };
}

const SLICE_MS = 500;

/** Runs `once` back to back for one slice (at least once, so a slow baseline still counts). */
async function runSlice(tally: { count: number; ms: number }, once: () => Promise<void>): Promise<void> {
  const started = performance.now();
  do {
    await once();
    tally.count += 1;
  } while (performance.now() - started < SLICE_MS);
  tally.ms += performance.now() - started;
}

function forgeSelfSigned(): void {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date();
  cert.validity.notAfter = new Date(Date.now() + 365 * 86_400_000);
  const name = [{ name: 'commonName', value: 'node-forge-baseline' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: 'node-forge-baseline' }] }]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  forge.pki.certificateToPem(cert);
}

export function formatCredentialsBench(r: CredentialsBenchResult): string {
  return `credentials: ${r.bundlesPerSecond.toFixed(1)} bundles/s, node-forge RSA-2048: ${r.forgePerSecond.toFixed(2)}/s, ratio: ${r.ratio.toFixed(1)}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  console.log(formatCredentialsBench(await runCredentialsBench({ seconds })));
}
