// The agent-streams benchmark's yardstick, in a process of its own so its RSS is its own: a bare
// @grpc/grpc-js bidi server on the Connect method's path, mTLS with the nodes' certificates
// (verified with the cluster CA), holding every stream and, on `push`, writing one message of the
// given size to each. Like the controller, it answers an agent's first message (the hello) with a
// short acknowledgement, so the agents know their stream is up without waiting out a grace. IPC: `start` → `listening` (port, CA); `measure` → `rss`; `push` → `pushed`
// (the wall-clock time the pushes began); `close`.
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { createClusterCa, issueTlsCertificate } from '../lib/pki/index.js';
import { collectedMemory } from './collected-memory.js';


const identity = (b: Buffer): Buffer => b;
const HELLO_ACK = Buffer.alloc(16);
const calls: grpc.ServerDuplexStream<Buffer, Buffer>[] = [];
let server: grpc.Server | undefined;

async function start(clusterCaPem: string): Promise<{ port: number; caPem: string }> {
  const ca = await createClusterCa({ commonName: 'agent-streams baseline CA' });
  const cert = await issueTlsCertificate(ca, { commonName: 'baseline', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], extendedKeyUsages: ['serverAuth'] });
  server = new grpc.Server();
  server.addService(
    { connect: { path: '/ultracloud.host.v1.HostAgentService/Connect', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    {
      connect: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        calls.push(call);
        call.once('data', () => call.write(HELLO_ACK));
        call.on('data', () => undefined);
        call.on('error', () => undefined);
      },
    },
  );
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(clusterCaPem), [{ cert_chain: Buffer.from(cert.certificatePem), private_key: Buffer.from(cert.privateKeyPem) }], true);
  const running = server;
  const port = await new Promise<number>((resolve, reject) => running.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return { port, caPem: ca.certificatePem };
}

process.on('message', (m: { kind: string; clusterCaPem?: string; bytes?: number }) => {
  void (async () => {
    try {
      if (m.kind === 'start') process.send?.({ kind: 'listening', ...(await start(m.clusterCaPem ?? '')) });
      else if (m.kind === 'measure') process.send?.({ kind: 'rss', memory: await collectedMemory(), streams: calls.length });
      else if (m.kind === 'push') {
        const payload = randomBytes(m.bytes ?? 0);
        const at = performance.timeOrigin + performance.now();
        for (const call of calls) call.write(payload);
        process.send?.({ kind: 'pushed', at });
      } else {
        server?.forceShutdown();
        process.exit(0);
      }
    } catch (err) {
      process.send?.({ kind: 'error', error: (err as Error).stack ?? String(err) });
    }
  })();
});
process.send?.({ kind: 'started' });
