// Strict proto3 JSON decoding against the compiled contract (gen/ultracloud.binpb). Documents
// written by people or generated from Nix may name only fields the proto has: a typo is an
// error naming the field, never a setting silently dropped.
import { readFileSync } from 'node:fs';
import { createFileRegistry, type DescMessage, type FileRegistry, fromBinary, fromJson, type JsonValue, toBinary, toJson } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { REFLECTION_IMAGE_PATH } from './grpc/image.js';

/** A document that is not valid proto3 JSON of its message; the message names the field. */
export class ProtoJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoJsonError';
  }
}

let registry: FileRegistry | undefined;

function contractRegistry(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(REFLECTION_IMAGE_PATH)));
  return registry;
}

/**
 * Loads the compiled contract now (tens of milliseconds) rather than on first use: a daemon calls
 * it at start so its first request (say, the first rollout's Apply) does not pay for it.
 */
export function loadContract(): void {
  contractRegistry();
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Every key of `value` (recursively) that `message` has no field for, as `path: problem`. */
function unknownFields(message: DescMessage, value: unknown, path: string): string[] {
  // Well-known types have JSON forms of their own (a Timestamp is a string); fromJson checks them.
  if (message.typeName.startsWith('google.protobuf.') || !isObject(value)) return [];
  const problems: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    const field = message.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field) {
      problems.push(`${at}: unknown field (${message.typeName} has no field "${key}")`);
      continue;
    }
    if (field.fieldKind === 'message') {
      problems.push(...unknownFields(field.message, child, at));
    } else if (field.fieldKind === 'list' && field.listKind === 'message' && Array.isArray(child)) {
      child.forEach((item, i) => problems.push(...unknownFields(field.message, item, `${at}[${i}]`)));
    } else if (field.fieldKind === 'map' && field.mapKind === 'message' && isObject(child)) {
      for (const [k, item] of Object.entries(child)) problems.push(...unknownFields(field.message, item, `${at}.${k}`));
    }
  }
  return problems;
}

/**
 * Decodes `value` as the proto3 JSON of `typeName` (e.g. `ultracloud.deployer.v1.ClusterState`),
 * rejecting unknown fields, wrong types and unknown enum names, and returns its canonical proto3
 * JSON, which the generated types' `fromJSON` read. `path` prefixes every error message.
 */
export function decodeProtoJson(typeName: string, value: unknown, path = ''): JsonValue {
  const { types, schema, message } = parseProtoJson(typeName, value, path);
  return toJson(schema, message, { registry: types });
}

/**
 * As decodeProtoJson, but returns the message's binary encoding. The generated types' `decode`
 * reads it with well-known types intact; their `fromJSON` does not parse a Duration's JSON form
 * ("30s"), so documents with durations must come this way.
 */
export function encodeProtoJson(typeName: string, value: unknown, path = ''): Uint8Array {
  const { schema, message } = parseProtoJson(typeName, value, path);
  return toBinary(schema, message);
}

/** The canonical proto3 JSON of a message given in its binary encoding (e.g. `T.encode(m).finish()`). */
export function protoJsonOf(typeName: string, bytes: Uint8Array): JsonValue {
  const types = contractRegistry();
  const schema = types.getMessage(typeName);
  if (!schema) throw new Error(`${typeName} is not in the compiled contract ${REFLECTION_IMAGE_PATH}`);
  return toJson(schema, fromBinary(schema, bytes), { registry: types });
}

function parseProtoJson(typeName: string, value: unknown, path: string) {
  const types = contractRegistry();
  const schema = types.getMessage(typeName);
  if (!schema) throw new Error(`${typeName} is not in the compiled contract ${REFLECTION_IMAGE_PATH}`);
  if (!isObject(value)) throw new ProtoJsonError(`${path || typeName}: expected a JSON object (${typeName})`);
  const unknown = unknownFields(schema, value, path);
  if (unknown.length > 0) throw new ProtoJsonError(unknown.join('\n'));
  try {
    return { types, schema, message: fromJson(schema, value as JsonValue, { registry: types }) };
  } catch (err) {
    throw new ProtoJsonError(`${path || typeName}: ${(err as Error).message}`);
  }
}
