// A HostAgentService for nix-agent tests: a real gRPC server (lib/grpc/server.ts) serving TLS
// from a test cluster CA and admitting agents by their node certificate (hello.node_id must be
// the CN), whose controller behaviour the test scripts: it records every agent message per
// stream, acknowledges them (or holds the acknowledgements back), sends the node's desired
// system after each hello, grants reboots when told, and pushes machine commands. A TCP relay in
// front of it can refuse new connections, as a host whose new system broke its network would.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer, connect as tcpConnect, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  type ConnectRequest,
  type ConnectResponse,
  HostAgentServiceDefinition,
  type MachineCommand,
  type RebootRequest,
} from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { AsyncQueue } from '../../lib/async-queue.js';
import { sameNode } from '../../lib/grpc/auth.js';
import { bindService, type RunningServer, startGrpcServer } from '../../lib/grpc/server.js';
import { ServerTlsCredentials } from '../../lib/grpc/server-tls.js';
import { createLogger } from '../../lib/log.js';
import { createClusterCa, issueControlPlaneCertificate, issueNodeCredentials } from '../../lib/pki/index.js';

export interface AgentCredentials {
  readonly dir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface RecordedMessage {
  readonly stream: number;
  readonly request: ConnectRequest;
}

export class ScriptedHostController {
  readonly messages: RecordedMessage[] = [];
  /** The system sent after every hello. */
  desired: DesiredSystem | undefined;
  /** Grant reboot requests as they arrive. */
  grantReboots = true;
  /** Acknowledge nothing while true (acks are sent when it is cleared). */
  holdAcks = false;
  private streams = 0;
  private current: { number: number; out: AsyncQueue<ConnectResponse> } | undefined;
  private held: { out: AsyncQueue<ConnectResponse>; sequence: bigint }[] = [];

  private constructor(
    readonly server: RunningServer,
    readonly credentials: AgentCredentials,
    readonly nodeId: string,
  ) {}

  static async start(nodeId: string): Promise<ScriptedHostController> {
    const dir = mkdtempSync(join(tmpdir(), 'ultracloud-host-controller-'));
    const ca = await createClusterCa();
    const serverCert = await issueControlPlaneCertificate(ca);
    const node = await issueNodeCredentials(ca, { nodeId, hostname: nodeId });
    const credentials = { dir, caFile: join(dir, 'ca.pem'), certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
    writeFileSync(credentials.caFile, ca.certificatePem);
    writeFileSync(credentials.certFile, node.tlsCertificatePem);
    writeFileSync(credentials.keyFile, node.tlsPrivateKeyPem, { mode: 0o600 });
    // The handler needs the controller, which needs the started server.
    const ref: { controller?: ScriptedHostController } = {};
    const server = await startGrpcServer({
      logger: createLogger({ level: 'silent', destination: new PassThrough() }),
      listen: { host: '127.0.0.1', port: 0 },
      credentials: new ServerTlsCredentials(serverCert, ca.certificatePem),
      services: [
        bindService(HostAgentServiceDefinition, {
          connect: (requests: AsyncIterable<ConnectRequest>) => (ref.controller as ScriptedHostController).serve(requests),
        }),
      ],
      policy: {
        '/ultracloud.host.v1.HostAgentService/Connect': { agent: sameNode((m: ConnectRequest) => (m.payload?.$case === 'hello' ? m.payload.value.nodeId : undefined)) },
      },
      shutdownGraceMs: 100,
    });
    ref.controller = new ScriptedHostController(server, credentials, nodeId);
    return ref.controller;
  }

  /** Streams opened so far. */
  get streamCount(): number {
    return this.streams;
  }

  private async *serve(requests: AsyncIterable<ConnectRequest>): AsyncGenerator<ConnectResponse> {
    const number = ++this.streams;
    const out = new AsyncQueue<ConnectResponse>();
    this.current = { number, out };
    void (async () => {
      for await (const request of requests) {
        this.messages.push({ stream: number, request });
        this.answer(out, request);
      }
      out.end();
    })().catch((err: unknown) => out.end(err));
    yield* out;
  }

  private answer(out: AsyncQueue<ConnectResponse>, request: ConnectRequest): void {
    const payload = request.payload;
    if (payload?.$case === 'hello') {
      out.push({ payload: { $case: 'ack', value: { sequence: request.sequence, heartbeatInterval: { seconds: 1n, nanos: 0 }, serverTime: new Date() } } });
      if (this.desired) out.push({ payload: { $case: 'desiredSystem', value: this.desired } });
      return;
    }
    if (this.holdAcks) this.held.push({ out, sequence: request.sequence });
    else out.push({ payload: { $case: 'ack', value: { sequence: request.sequence } } });
    if (payload?.$case === 'rebootRequest' && this.grantReboots) this.grant(payload.value);
  }

  grant(request: Pick<RebootRequest, 'deployment' | 'revision'>, deadline = new Date(Date.now() + 60_000)): void {
    this.current?.out.push({ payload: { $case: 'rebootGrant', value: { deployment: request.deployment, revision: request.revision, deadline } } });
  }

  /** Sends the desired system now on the current stream (and after every later hello). */
  apply(desired: DesiredSystem): void {
    this.desired = desired;
    this.current?.out.push({ payload: { $case: 'desiredSystem', value: desired } });
  }

  sendMachineCommand(command: MachineCommand): void {
    this.current?.out.push({ payload: { $case: 'machineCommand', value: command } });
  }

  releaseAcks(): void {
    this.holdAcks = false;
    for (const { out, sequence } of this.held.splice(0)) out.push({ payload: { $case: 'ack', value: { sequence } } });
  }

  /** Messages of one kind, in arrival order. */
  of<K extends NonNullable<ConnectRequest['payload']>['$case']>(kind: K): Extract<NonNullable<ConnectRequest['payload']>, { $case: K }>['value'][] {
    return this.messages.filter((m) => m.request.payload?.$case === kind).map((m) => (m.request.payload as unknown as { value: never }).value);
  }

  async stop(): Promise<void> {
    await this.server.stop();
    rmSync(this.credentials.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP relay to `target`: passes connections through until `blockedFile` exists, then refuses
 * new ones (established ones live on, as with a firewall that keeps tracked connections).
 */
export interface Relay {
  readonly address: string;
  /** Connections refused so far. */
  refused(): number;
  /** Cuts every open connection (the controller "goes away" for the agent). */
  cut(): void;
  close(): Promise<void>;
}

export async function startRelay(target: string, blockedFile: string): Promise<Relay> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let refused = 0;
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((client) => {
    if (existsSync(blockedFile)) {
      refused++;
      client.destroy();
      return;
    }
    const upstream = tcpConnect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: relayPort } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${relayPort}`,
    refused: () => refused,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
