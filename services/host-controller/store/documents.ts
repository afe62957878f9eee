// Messages kept as jsonb are stored in their canonical proto3 JSON (durations as "30s"), the form
// operators see and the form the Nix generator writes, and read back through the binary
// encoding, which keeps every well-known type intact.
import { ActivationReport, ActivationJournal } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { DesiredSystem, HostDeployment } from '../../../gen/ts/ultracloud/system/v1/system.js';
import { encodeProtoJson, protoJsonOf } from '../../../lib/proto-json.js';
import type { JsonDocument } from './tables.js';

interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

function codec<T>(typeName: string, type: MessageType<T>) {
  return {
    toJson: (message: T): JsonDocument => protoJsonOf(typeName, type.encode(message).finish()) as JsonDocument,
    fromJson: (json: JsonDocument): T => type.decode(encodeProtoJson(typeName, json)),
  };
}

export const hostDeploymentJson = codec('ultracloud.system.v1.HostDeployment', HostDeployment);
export const desiredSystemJson = codec('ultracloud.system.v1.DesiredSystem', DesiredSystem);
export const activationReportJson = codec('ultracloud.host.v1.ActivationReport', ActivationReport);
export const activationJournalJson = codec('ultracloud.host.v1.ActivationJournal', ActivationJournal);

/** The JSON a decision's desired systems share: the message without the node's id and target. */
export function desiredTemplateJson(d: DesiredSystem): JsonDocument {
  return desiredSystemJson.toJson({ ...d, nodeId: '', systemPath: '', flakeAttr: '' });
}
