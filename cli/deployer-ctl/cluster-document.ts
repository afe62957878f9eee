// Reads what `deployer-ctl apply -f` is given: a Nix cluster (a .nix file, or a directory with
// default.nix, evaluated by nix-instantiate) or JSON (a ClusterState document, or an object with
// clusterState / hostDeployments / servicePolicies, which covers the generated
// ApplyHostDeploymentsRequest body; `serviceSpecs`, as in ApplyServiceSpecsRequest, is read as
// servicePolicies). Every part is decoded strictly against the
// compiled contract, so a field the proto does not have is an error naming it.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { ServiceSpec } from '../../gen/ts/ultracloud/service/v1/service.js';
import { HostDeployment } from '../../gen/ts/ultracloud/system/v1/system.js';
import { decodeProtoJson, encodeProtoJson, ProtoJsonError } from '../../lib/proto-json.js';

export interface ClusterDocument {
  /** The file or directory it came from, as given. */
  readonly source: string;
  /** Absent parts are not in the document and are not sent. */
  readonly clusterState?: ClusterState;
  readonly hostDeployments?: HostDeployment[];
  readonly servicePolicies?: ServiceSpec[];
}

/** The document cannot be used: bad JSON, unknown fields, a Nix evaluation error. */
export class DocumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DocumentError';
  }
}

/** nix-instantiate is not installed: nothing is wrong with the document itself. */
export class NixMissingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NixMissingError';
  }
}

const SCHEMA_PATH = fileURLToPath(new URL('../../nix/lib/cluster-schema.nix', import.meta.url));

/** Keys of evalCluster's result that are not sent to any service. */
const IGNORED_KEYS = new Set(['config', 'nodeConfigs', 'installPlans', 'testTopology', 'applyHostDeploymentsRequest', 'applyServiceSpecsRequest']);
const PART_KEYS = ['clusterState', 'hostDeployments', 'servicePolicies', 'serviceSpecs'] as const;

// A file that already is evalCluster's result (nix/examples/lab6/default.nix) is used as it is;
// a bare cluster (cluster.nix) goes through the schema first. Only the parts sent are forced.
const NIX_EXPRESSION = `{ file, schema }:
let
  value = import (/. + file);
  isResult = builtins.isAttrs value && (value ? clusterState || value ? hostDeployments || value ? servicePolicies);
  result = if isResult then value else (import (/. + schema)).evalCluster value;
  part = name: if builtins.hasAttr name result then builtins.getAttr name result else null;
in { clusterState = part "clusterState"; hostDeployments = part "hostDeployments"; servicePolicies = part "servicePolicies"; }`;

function evaluateNix(path: string, source: string): Promise<unknown> {
  const args = ['--eval', '--strict', '--json', '--argstr', 'file', path, '--argstr', 'schema', SCHEMA_PATH, '--expr', NIX_EXPRESSION];
  return new Promise((resolvePromise, reject) => {
    execFile('nix-instantiate', args, { maxBuffer: 256 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        const generated = join(path.endsWith('.nix') ? resolve(path, '..') : path, 'generated', 'cluster-state.json');
        const hint = existsSync(generated) ? ` (e.g. ${generated})` : '';
        reject(new NixMissingError(`nix-instantiate not found: install Nix or pass the generated JSON${hint}`));
      } else if (err) {
        reject(new DocumentError(`${source}: Nix evaluation failed:\n${stderr.trim() || err.message}`));
      } else {
        try {
          resolvePromise(JSON.parse(stdout));
        } catch (parseErr) {
          reject(new DocumentError(`${source}: nix-instantiate printed no JSON: ${(parseErr as Error).message}`));
        }
      }
    });
  });
}

// Through the binary encoding: the generated fromJSON would read a Duration such as "300s" as 0.
function decodeList<T>(value: unknown, path: string, typeName: string, decode: (bytes: Uint8Array) => T): T[] {
  if (!Array.isArray(value)) throw new DocumentError(`${path}: expected a list of ${typeName}`);
  return value.map((item, i) => decode(encodeProtoJson(typeName, item, `${path}[${i}]`)));
}

/** Splits and strictly decodes an already parsed document. Exported for tests. */
export function decodeClusterDocument(value: unknown, source: string): ClusterDocument {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DocumentError(`${source}: expected a ClusterState object or an object with clusterState, hostDeployments, servicePolicies`);
  }
  const doc = value as Record<string, unknown>;
  try {
    if (!PART_KEYS.some((k) => k in doc)) {
      return { source, clusterState: ClusterState.fromJSON(decodeProtoJson('ultracloud.deployer.v1.ClusterState', doc)) };
    }
    const unknown = Object.keys(doc).filter((k) => !(PART_KEYS as readonly string[]).includes(k) && !IGNORED_KEYS.has(k));
    if (unknown.length > 0) {
      throw new DocumentError(unknown.map((k) => `${k}: unknown part (expected clusterState, hostDeployments, servicePolicies or serviceSpecs)`).join('\n'));
    }
    if ('servicePolicies' in doc && 'serviceSpecs' in doc) throw new DocumentError('serviceSpecs: give servicePolicies or serviceSpecs, not both');
    const present = (k: string) => doc[k] !== undefined && doc[k] !== null;
    const policiesKey = 'serviceSpecs' in doc ? 'serviceSpecs' : 'servicePolicies';
    return {
      source,
      ...(present('clusterState') ? { clusterState: ClusterState.fromJSON(decodeProtoJson('ultracloud.deployer.v1.ClusterState', doc.clusterState, 'clusterState')) } : {}),
      ...(present('hostDeployments') ? { hostDeployments: decodeList(doc.hostDeployments, 'hostDeployments', 'ultracloud.system.v1.HostDeployment', (b) => HostDeployment.decode(b)) } : {}),
      ...(present(policiesKey) ? { servicePolicies: decodeList(doc[policiesKey], policiesKey, 'ultracloud.service.v1.ServiceSpec', (b) => ServiceSpec.decode(b)) } : {}),
    };
  } catch (err) {
    if (err instanceof ProtoJsonError || err instanceof DocumentError) throw new DocumentError(`${source}:\n${err.message.split('\n').map((l) => `  ${l}`).join('\n')}`);
    throw err;
  }
}

/** Reads `file`: `.json`, `.nix`, or a directory with default.nix. */
export async function readClusterDocument(file: string): Promise<ClusterDocument> {
  const path = resolve(file);
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    throw new DocumentError(`${file}: no such file or directory`);
  }
  if (isDirectory && !existsSync(join(path, 'default.nix'))) throw new DocumentError(`${file}: a directory must contain default.nix`);
  if (isDirectory || path.endsWith('.nix')) return decodeClusterDocument(await evaluateNix(path, file), file);
  if (!path.endsWith('.json')) throw new DocumentError(`${file}: expected a .nix file, a directory with default.nix, or a .json file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new DocumentError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  return decodeClusterDocument(parsed, file);
}
