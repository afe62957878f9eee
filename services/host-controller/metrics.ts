// The host-controller's Prometheus metrics, on the process's registry. Rollout and agent counts
// are read from the database at scrape time, so every replica reports the same numbers; the
// leader flag, reconcile timings, messages and streams are this replica's.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Logger } from '../../lib/log.js';
import type { MetricsRegistry } from '../../lib/metrics.js';
import type { AgentStreamsObserver } from './agent-streams.js';
import type { RolloutControllerObserver } from './rollout-controller.js';
import type { HostsDb } from './store/tables.js';

const RECONCILE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface HostControllerMetrics {
  readonly controller: RolloutControllerObserver;
  readonly streams: AgentStreamsObserver;
}

export function registerHostControllerMetrics(registry: MetricsRegistry, db: HostsDb, log: Logger, streamsHeld: () => number, staleAfterMs: number): HostControllerMetrics {
  const leader = new Gauge({ name: 'ultracloud_host_controller_leader', help: '1 while this replica is the host-controller leader.', registers: [registry] });
  leader.set(0);
  const reconcile = new Histogram({
    name: 'ultracloud_host_reconcile_seconds',
    help: "The leader's reconcile ticks (inbox, plan, store), by outcome (ok, failed, deposed).",
    labelNames: ['outcome'] as const,
    buckets: RECONCILE_BUCKETS,
    registers: [registry],
  });
  const messages = new Counter({ name: 'ultracloud_host_agent_messages_total', help: 'Messages received on agent streams by this replica, by kind.', labelNames: ['kind'] as const, registers: [registry] });
  new Gauge({
    name: 'ultracloud_host_agent_streams',
    help: 'Agent streams held by this replica.',
    registers: [registry],
    collect() {
      this.set(streamsHeld());
    },
  });
  new Gauge({
    name: 'ultracloud_host_agents',
    help: 'nix-agents known to the controller, by liveness (connected, stale), counted at scrape time.',
    labelNames: ['liveness'] as const,
    registers: [registry],
    async collect() {
      try {
        const staleBefore = new Date(Date.now() - staleAfterMs);
        const rows = await db.selectFrom('agents').select(['connected', 'last_seen_at']).execute();
        const connected = rows.filter((r) => r.connected && r.last_seen_at.getTime() >= staleBefore.getTime()).length;
        this.set({ liveness: 'connected' }, connected);
        this.set({ liveness: 'stale' }, rows.length - connected);
      } catch (err) {
        log.warn({ event: 'metrics.agents_count_failed', err });
        this.reset();
      }
    },
  });
  new Gauge({
    name: 'ultracloud_host_rollout_nodes',
    help: 'Node entries of host rollouts, by deployment and phase, counted at scrape time.',
    labelNames: ['deployment', 'phase'] as const,
    registers: [registry],
    async collect() {
      try {
        const rows = await db.selectFrom('node_rollouts').select(['deployment', 'phase']).select((eb) => eb.fn.countAll<bigint>().as('n')).groupBy(['deployment', 'phase']).execute();
        this.reset();
        for (const r of rows) this.set({ deployment: r.deployment, phase: r.phase.toLowerCase() }, Number(r.n));
      } catch (err) {
        log.warn({ event: 'metrics.rollout_count_failed', err });
        this.reset();
      }
    },
  });
  return {
    controller: {
      tick: (seconds, outcome) => reconcile.observe({ outcome }, seconds),
      leader: (isLeader) => leader.set(isLeader ? 1 : 0),
    },
    streams: { message: (kind) => messages.inc({ kind }) },
  };
}
