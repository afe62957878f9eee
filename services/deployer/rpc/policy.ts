// Who may call each deployer RPC. Deny by default: an RPC missing here is refused, and a test
// (test/contract/access-policy.test.ts) fails when an RPC of a served service has no rule.
// No deployer RPC admits agents: they talk to the host-controller and fleet-scheduler.
import type { AccessPolicy } from '../../../lib/grpc/auth.js';

const bootstrap = '/ultracloud.bootstrap.v1.BootstrapService';
const cluster = '/ultracloud.deployer.v1.ClusterService';
const machines = '/ultracloud.deployer.v1.MachineService';
const access = '/ultracloud.deployer.v1.AccessService';

const viewer = { operator: 'viewer' } as const;
const operator = { operator: 'operator' } as const;
const admin = { operator: 'admin' } as const;

export const DEPLOYER_POLICY: AccessPolicy = {
  [`${bootstrap}/Discover`]: { installer: ['join-token'] },
  [`${bootstrap}/FetchPlan`]: { installer: ['session-secret'] },
  [`${bootstrap}/ReportInstallProgress`]: { installer: ['install-token'] },
  [`${cluster}/ApplyClusterState`]: admin,
  [`${cluster}/GetClusterState`]: viewer,
  [`${machines}/ListMachines`]: viewer,
  [`${machines}/GetMachine`]: viewer,
  [`${machines}/WatchMachines`]: viewer,
  [`${machines}/ListAuditEvents`]: viewer,
  [`${machines}/Commission`]: operator,
  [`${machines}/Release`]: operator,
  [`${machines}/Deploy`]: operator,
  [`${machines}/Reinstall`]: operator,
  [`${machines}/Rescue`]: operator,
  [`${machines}/ExitRescue`]: operator,
  [`${machines}/Drain`]: operator,
  [`${machines}/Undrain`]: operator,
  [`${machines}/Activate`]: operator,
  [`${machines}/MarkFailed`]: operator,
  [`${machines}/Retry`]: operator,
  [`${machines}/Delete`]: admin,
  [`${access}/CreateToken`]: admin,
  [`${access}/ListTokens`]: admin,
  [`${access}/RevokeToken`]: admin,
  [`${access}/WhoAmI`]: viewer,
};
