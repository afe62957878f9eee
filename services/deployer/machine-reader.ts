// Operator read paths over the deployer's store: listings, one machine with its history, the
// audit log. Reads need no transaction: each answer is one consistent snapshot of a row set.
import type { Kysely } from 'kysely';
import type {
  GetMachineResponse,
  ListAuditEventsRequest,
  ListAuditEventsResponse,
  ListMachinesRequest,
  ListMachinesResponse,
} from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { InvalidArgumentError } from '../../lib/errors.js';
import { listAudit } from './store/audit.js';
import { machineFilterOf } from './domain/machine-filter.js';
import { currentResourceVersion, decodeCursor, encodeCursor, listMachineRows, machineIdByName } from './store/machine-queries.js';
import { getMachineRow, machineMessage, machineMessages } from './store/machines.js';
import type { DeployerDatabase } from './store/tables.js';

export type MachineKey = { $case: 'machineId' | 'nodeId' | 'hostname'; value: string };

export class MachineReader {
  constructor(private readonly db: Kysely<DeployerDatabase>) {}

  async list(req: ListMachinesRequest, pageSize: number): Promise<ListMachinesResponse> {
    const resourceVersion = await currentResourceVersion(this.db);
    const filter = machineFilterOf(req);
    const page = await listMachineRows(this.db, filter, pageSize, req.pageToken ? decodeCursor(req.pageToken, filter) : undefined);
    const machines = await machineMessages(this.db, page.rows);
    return { machines, nextPageToken: page.next ? encodeCursor(page.next) : '', resourceVersion };
  }

  async get(key: MachineKey): Promise<GetMachineResponse | undefined> {
    if (!key.value) throw new InvalidArgumentError({ field: key.$case === 'machineId' ? 'machine_id' : key.$case === 'nodeId' ? 'node_id' : 'hostname', description: 'must not be empty' });
    const machineId = key.$case === 'machineId' ? key.value : await machineIdByName(this.db, key.$case === 'nodeId' ? { nodeId: key.value } : { hostname: key.value });
    const row = machineId ? await getMachineRow(this.db, machineId) : undefined;
    if (!row) return undefined;
    const [machine, recentEvents] = await Promise.all([machineMessage(this.db, row), listAudit(this.db, { machineId: row.machineId, limit: 50 })]);
    return { machine, recentEvents };
  }

  async audit(req: ListAuditEventsRequest, pageSize: number): Promise<ListAuditEventsResponse> {
    let beforeId: bigint | undefined;
    if (req.pageToken) {
      if (!/^\d+$/.test(req.pageToken)) throw new InvalidArgumentError({ field: 'page_token', description: 'not a token returned by ListAuditEvents' });
      beforeId = BigInt(req.pageToken);
    }
    const events = await listAudit(this.db, {
      ...(req.machineId ? { machineId: req.machineId } : {}),
      ...(req.nodeId ? { nodeId: req.nodeId } : {}),
      ...(req.actor ? { actor: req.actor } : {}),
      ...(req.since ? { since: req.since } : {}),
      outcome: req.outcome,
      ...(beforeId !== undefined ? { beforeId } : {}),
      limit: pageSize + 1,
    });
    const more = events.length > pageSize;
    const page = events.slice(0, pageSize);
    return { events: page, nextPageToken: more && page.length > 0 ? (page[page.length - 1] as { id: string }).id : '' };
  }
}
