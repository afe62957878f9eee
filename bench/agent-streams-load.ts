// The load side of the agent-streams benchmark: N simulated nix-agents, each with its own node
// certificate, so each holds its own mTLS HTTP/2 connection with one Connect stream (a connection's
// client certificate is one node's identity; streams of several nodes cannot share it). It runs
// in a child process of its own (agent-streams-load.mjs), so the server's RSS is the server's only.
// Protocol with the parent over IPC: `connect` → `connected`; `mark` → every agent's receive time
// of its first message matching the mode (`desired`: a DesiredSystem; `any`: any message) → `received`.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ConnectRequest, ConnectResponse } from '../gen/ts/ultracloud/host/v1/host_agent_service.js';

export interface AgentCredentials {
  readonly nodeId: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface ConnectCommand {
  readonly kind: 'connect';
  readonly address: string;
  readonly caPem: string;
  /** The server name the certificate is checked against. */
  readonly serverName?: string;
  readonly agents: readonly AgentCredentials[];
  /** Connections opened at once. */
  readonly concurrency: number;
  readonly heartbeatMs: number;
  readonly currentSystemPath: string;
}

export interface MarkCommand {
  readonly kind: 'mark';
  /** `desired`: wait for a DesiredSystem; `any`: the first message after the mark. */
  readonly mode: 'desired' | 'any';
  readonly timeoutMs: number;
}

export interface ReceivedReport {
  readonly kind: 'received';
  /** Wall-clock ms (performance.timeOrigin + now) per agent that received; missing ones omitted. */
  readonly times: number[];
  readonly missing: number;
  /** Byte size of one received message (for the baseline's payload). */
  readonly sampleBytes: string;
}

const METHOD = '/ultracloud.host.v1.HostAgentService/Connect';
const identity = (b: Buffer): Buffer => b;

interface Agent {
  readonly nodeId: string;
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  sequence: bigint;
  onMessage: ((msg: Buffer, at: number) => void) | undefined;
  ready: Promise<void>;
}

const agents: Agent[] = [];
let heartbeat: NodeJS.Timeout | undefined;

function send(message: unknown): void {
  process.send?.(message);
}

function openAgent(cmd: ConnectCommand, creds: AgentCredentials): Agent {
  const channelCreds = grpc.credentials.createSsl(Buffer.from(cmd.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem));
  const client = new grpc.Client(cmd.address, channelCreds, {
    // A connection of its own per agent, as on real hosts.
    'grpc.use_local_subchannel_pool': 1,
    'grpc.keepalive_time_ms': 60_000,
    ...(cmd.serverName ? { 'grpc.ssl_target_name_override': cmd.serverName } : {}),
  });
  const call = client.makeBidiStreamRequest(METHOD, identity, identity);
  let resolveReady: () => void = () => undefined;
  let rejectReady: (e: Error) => void = () => undefined;
  const ready = new Promise<void>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  const agent: Agent = { nodeId: creds.nodeId, client, call, sequence: 1n, onMessage: undefined, ready };
  call.on('data', (msg: Buffer) => {
    const at = performance.timeOrigin + performance.now();
    resolveReady();
    agent.onMessage?.(msg, at);
  });
  call.on('error', (err: Error) => rejectReady(new Error(`${creds.nodeId}: ${err.message}`)));
  call.write(
    Buffer.from(
      ConnectRequest.encode({
        sequence: 0n,
        payload: {
          $case: 'hello',
          value: {
            nodeId: creds.nodeId,
            bootId: randomUUID(),
            currentSystemPath: cmd.currentSystemPath,
            bootedSystemPath: cmd.currentSystemPath,
            profileSystemPath: cmd.currentSystemPath,
            profileGeneration: 1n,
            agentVersion: 'agent-streams bench',
            journal: undefined,
            hostname: creds.nodeId,
            systemState: 'running',
          },
        },
      }).finish(),
    ),
  );
  return agent;
}

async function connectAll(cmd: ConnectCommand): Promise<void> {
  startHeartbeats(cmd);
  let next = 0;
  const worker = async () => {
    while (next < cmd.agents.length) {
      const creds = cmd.agents[next++] as AgentCredentials;
      const agent = openAgent(cmd, creds);
      agents.push(agent);
      // The first answer (the controller's ack, or nothing for the baseline until pushed) or a
      // short grace: the handshake and the hello have then been through, and the agent's
      // heartbeats start.
      await Promise.race([agent.ready, new Promise((r) => setTimeout(r, 2_000).unref())]);
      beatFromNow(agent);
    }
  };
  await Promise.all(Array.from({ length: cmd.concurrency }, worker));
}

// Each agent heartbeats every interval from its own start, as the nix-agent does from its
// stream's acknowledgement: while a large fleet connects (minutes at 10,000), the first agents
// keep heartbeating, as real ones do, instead of going stale before the last one is connected;
// and the fleet's heartbeats are spread over the interval rather than sent by all agents in the
// same instant (a burst of N messages each way that no real fleet makes).
let beatSlots: Agent[][] = [];
let beatSlot = 0;

function startHeartbeats(cmd: ConnectCommand): void {
  const slots = Math.max(1, Math.round(cmd.heartbeatMs / HEARTBEAT_SLOT_MS));
  beatSlots = Array.from({ length: slots }, () => []);
  heartbeat = setInterval(() => {
    beatSlot = (beatSlot + 1) % slots;
    for (const a of beatSlots[beatSlot] as Agent[]) {
      a.call.write(Buffer.from(ConnectRequest.encode({ sequence: a.sequence++, payload: { $case: 'heartbeat', value: { sentAt: new Date(), systemState: 'running' } } }).finish()));
    }
  }, cmd.heartbeatMs / slots);
  heartbeat.unref();
}

/** Puts `agent` in the slot that comes round again one interval from now. */
function beatFromNow(agent: Agent): void {
  (beatSlots[beatSlot] as Agent[]).push(agent);
}

/** The heartbeats of agents whose turn falls within this many milliseconds are sent together. */
const HEARTBEAT_SLOT_MS = 100;

function mark(cmd: MarkCommand): Promise<ReceivedReport> {
  return new Promise((resolve) => {
    const times: number[] = [];
    let pending = agents.length;
    let sample = 0;
    const finish = () => {
      for (const a of agents) a.onMessage = undefined;
      resolve({ kind: 'received', times, missing: pending, sampleBytes: String(sample) });
    };
    const timer = setTimeout(finish, cmd.timeoutMs);
    for (const a of agents) {
      a.onMessage = (msg, at) => {
        if (cmd.mode === 'desired' && ConnectResponse.decode(msg).payload?.$case !== 'desiredSystem') return;
        a.onMessage = undefined;
        times.push(at);
        sample = msg.length;
        if (--pending === 0) {
          clearTimeout(timer);
          finish();
        }
      };
    }
    if (pending === 0) finish();
  });
}

process.on('message', (raw: ConnectCommand | MarkCommand | { kind: 'close' }) => {
  void (async () => {
    try {
      if (raw.kind === 'connect') {
        await connectAll(raw);
        send({ kind: 'connected', agents: agents.length });
      } else if (raw.kind === 'mark') {
        send(await mark(raw));
      } else {
        if (heartbeat) clearInterval(heartbeat);
        for (const a of agents) {
          a.call.cancel();
          a.client.close();
        }
        send({ kind: 'closed' });
        process.exit(0);
      }
    } catch (err) {
      send({ kind: 'error', error: (err as Error).stack ?? String(err) });
    }
  })();
});
send({ kind: 'started' });
