// The deployer's Prometheus metrics, registered on the process's registry: machines by lifecycle
// state (counted from the database when Prometheus scrapes, so every replica reports the same
// cluster-wide numbers) and how long installs take (fed by the Deployer through its observer).
import { Gauge, Histogram } from 'prom-client';
import type { Logger } from '../../lib/log.js';
import type { MetricsRegistry } from '../../lib/metrics.js';
import { MACHINE_STATES, stateName } from './domain/lifecycle.js';
import type { DeployerObserver } from './observer.js';
import { countMachinesByState } from './store/machine-counts.js';
import type { DeployerDb } from './store/machines.js';

/** Seconds: a cached-closure install takes minutes, a full one from a slow mirror can take hours. */
const INSTALL_DURATION_BUCKETS = [60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800];

/** Registers the deployer's metrics and returns the observer that feeds install durations. */
export function registerDeployerMetrics(registry: MetricsRegistry, db: DeployerDb, log: Logger): DeployerObserver {
  new Gauge({
    name: 'ultracloud_machines',
    help: 'Machines known to the deployer, by lifecycle state (counted at scrape time).',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      let counts: Map<string, number>;
      try {
        counts = await countMachinesByState(db);
      } catch (err) {
        // Keep the rest of the scrape (process and RPC metrics) when the database is away.
        log.warn({ event: 'metrics.machines_count_failed', err });
        this.reset();
        return;
      }
      // Every state gets a series, zero included, so a state emptying shows as 0, not as a gap.
      for (const state of MACHINE_STATES) this.set({ state: stateName(state) }, counts.get(stateName(state)) ?? 0);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  const durations = new Histogram({
    name: 'ultracloud_install_duration_seconds',
    help: 'Installs from plan fetch to the final report or the timeout, by how they ended (succeeded, failed, timed_out).',
    labelNames: ['ending'] as const,
    buckets: INSTALL_DURATION_BUCKETS,
    registers: [registry],
  });
  return {
    installFinished(ending, seconds) {
      durations.observe({ ending }, seconds);
    },
  };
}
