// Reinstall and rescue without a BMC: when an operator's deployer transition puts a node's machine
// into `reprovisioning` or `rescue`, the replica holding the node's stream relays it as a
// MachineCommand, and the nix-agent boots the generic installer by kexec. The command follows from
// the machine as the deployer reports it, so every replica computes the same one: its id names
// the machine, the state and when the machine entered it, and the agent carries out each id once.
import { type KexecImage, type MachineCommand, MachineCommandKind } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { NodeFacts } from './selection.js';

const KINDS: ReadonlyMap<string, MachineCommandKind> = new Map([
  ['reprovisioning', MachineCommandKind.MACHINE_COMMAND_KIND_REINSTALL],
  ['rescue', MachineCommandKind.MACHINE_COMMAND_KIND_RESCUE],
]);

/** Whether the node's machine is in a state the agent must act on (whatever the installer image). */
export function wantsMachineCommand(node: Pick<NodeFacts, 'machineState'>): boolean {
  return KINDS.has(node.machineState);
}

/**
 * The command for a node whose machine is in `reprovisioning` or `rescue`, else undefined (without
 * an installer image it cannot be sent, but its id still names the request). The id is safe as a
 * file name (the agent keeps its downloads under it).
 */
export function machineCommandFor(node: NodeFacts, installer: KexecImage | undefined): MachineCommand | undefined {
  const kind = KINDS.get(node.machineState);
  if (kind === undefined) return undefined;
  const since = node.stateChangedAt;
  return {
    commandId: `${node.machineState}-${node.machineId}-${since ? since.getTime() : Number(node.resourceVersion)}`,
    kind,
    reason: node.statusMessage || (kind === MachineCommandKind.MACHINE_COMMAND_KIND_REINSTALL ? 'reinstall requested in the deployer' : 'rescue requested in the deployer'),
    installer,
    issuedAt: since,
  };
}

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The installer image file (`--installer-image`): KexecImage as JSON, e.g. what
 * `nix build .#installer-kexec` describes, with the URLs the hosts fetch it from. Throws a message
 * naming every bad field.
 */
export function parseInstallerImage(json: unknown): KexecImage {
  const problems: string[] = [];
  const doc = (typeof json === 'object' && json !== null && !Array.isArray(json) ? json : {}) as Record<string, unknown>;
  if (doc !== json) problems.push('expected a JSON object with kernelUrl, kernelSha256, initrdUrl, initrdSha256, cmdline');
  const text = (field: string): string => {
    const v = doc[field];
    if (typeof v !== 'string' || v === '') {
      problems.push(`${field}: required (a string)`);
      return '';
    }
    return v;
  };
  const url = (field: string): string => {
    const v = text(field);
    if (v === '') return v;
    let parsed: URL | undefined;
    try {
      parsed = new URL(v);
    } catch {
      problems.push(`${field}: not a URL`);
      return v;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') problems.push(`${field}: only http and https URLs can be fetched by the agents`);
    return v;
  };
  const sha = (field: string): string => {
    const v = text(field);
    if (v !== '' && !SHA256.test(v)) problems.push(`${field}: expected 64 lowercase hex digits (SHA-256)`);
    return v;
  };
  const image: KexecImage = { kernelUrl: url('kernelUrl'), kernelSha256: sha('kernelSha256'), initrdUrl: url('initrdUrl'), initrdSha256: sha('initrdSha256'), cmdline: text('cmdline') };
  if (image.cmdline !== '' && !/(^|\s)ultracloud\.deployer=\S+/.test(image.cmdline)) problems.push('cmdline: must name the deployer the installer reports to (ultracloud.deployer=<host:port>)');
  for (const key of Object.keys(doc)) if (!['kernelUrl', 'kernelSha256', 'initrdUrl', 'initrdSha256', 'cmdline'].includes(key)) problems.push(`${key}: unknown field`);
  if (problems.length > 0) throw new Error(problems.join('; '));
  return image;
}
