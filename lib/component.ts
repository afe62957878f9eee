// What a control-plane service contributes to a server process. `ultracloud up` runs every
// component in one process on one port; `ultracloud deployer` (etc.) runs one. Each component
// owns its Postgres schema and migrations; it never reads another component's tables.
import type { Kysely } from 'kysely';
import type { ServiceMigrations } from './db/index.js';
import type { DatabaseNotifications } from './db/notifications.js';
import type { AccessDenial, AccessPolicy, Authenticator } from './grpc/auth.js';
import type { ServiceBinding } from './grpc/server.js';
import type { Logger } from './log.js';
import type { MetricsRegistry } from './metrics.js';
import type { ClusterCa } from './pki/index.js';

export interface ComponentContext {
  /** The shared database handle; the component scopes it to its own schema. */
  readonly db: Kysely<unknown>;
  readonly logger: Logger;
  readonly stateDir: string;
  /** Aborted when the process begins to stop. */
  readonly stopping: AbortSignal;
  /**
   * The PostgreSQL URL when the database is a server (absent: embedded PGlite, this process
   * only), for a component that needs a connection of its own (a session advisory lock).
   */
  readonly databaseUrl?: string;
  /** Wake-ups between the processes sharing the database (LISTEN/NOTIFY); absent: this process only. */
  readonly notifications?: DatabaseNotifications;
  /** The process's metrics registry when metrics are served; components add their own metrics. */
  readonly metrics?: MetricsRegistry;
}

export interface StartedComponent {
  readonly services: readonly ServiceBinding[];
  readonly policy: AccessPolicy;
  /** Credentials this component can verify (e.g. installer tokens for the deployer). */
  readonly authenticators?: readonly Authenticator[];
  /** Told about every denied call of the server (after it is logged); must return at once. */
  readonly onDenied?: (denial: AccessDenial) => void;
  /** Background loops (timeouts, watchers) started after the server listens. */
  readonly run?: () => void;
  /** The cluster CA, from the component that owns it: `ultracloud up` issues its server certificate with it. */
  readonly clusterCa?: ClusterCa;
  stop(): Promise<void>;
}

export interface Component {
  readonly name: string;
  /** Postgres schema holding this component's tables. */
  readonly schema: string;
  readonly migrations: ServiceMigrations;
  start(context: ComponentContext): Promise<StartedComponent>;
}
