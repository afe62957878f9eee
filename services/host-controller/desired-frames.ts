// The ConnectResponse carrying a node's DesiredSystem, encoded for its stream. A rollout hands
// thousands of nodes desired systems that differ only in the node's id (and, for some
// deployments, its store path or flake attribute): the rest — deployment, revision, strategy,
// health check, rollback policy, substituters, creation time — is encoded once and each node's
// message is its own fields followed by those bytes. Protobuf readers take fields in any order,
// so the result decodes to exactly the message the generated encoder would have produced.
import { DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { EncodedMessage } from '../../lib/grpc/direct-stream.js';
import { sameTemplate } from './domain/desired-system.js';

/** Field tags (number << 3 | wire type 2, one byte each) of the per-node fields and of ConnectResponse.desired_system. */
const NODE_ID = (1 << 3) | 2;
const SYSTEM_PATH = (4 << 3) | 2;
const FLAKE_ATTR = (6 << 3) | 2;
const CONNECT_RESPONSE_DESIRED_SYSTEM = (1 << 3) | 2;

/** The encoding shared by the desired systems of one decision, with the first of them. */
interface Template {
  readonly first: DesiredSystem;
  readonly bytes: Uint8Array;
  /** `deployment/revision`. */
  readonly key: string;
}

/**
 * Encodes desired systems for streams, reusing the shared part while consecutive messages share
 * it: the nested messages must be the same objects (as `desiredSystems` builds them for one
 * decision), so messages read back from the database are encoded in full, which is always right.
 */
export class DesiredSystemFrames {
  private template: Template | undefined;

  /** `deployment/revision` of a desired system, as the stream records what it was sent (shared with the template). */
  key(d: DesiredSystem): string {
    return this.templateOf(d).key;
  }

  frame(d: DesiredSystem): EncodedMessage {
    const t = this.templateOf(d);
    // Written by hand into one buffer of the exact size: a general writer per message costs more
    // than the message.
    const idLength = Buffer.byteLength(d.nodeId);
    const pathLength = Buffer.byteLength(d.systemPath);
    const attrLength = Buffer.byteLength(d.flakeAttr);
    const inner = fieldSize(idLength) + fieldSize(pathLength) + fieldSize(attrLength) + t.bytes.length;
    const out = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
    out[0] = CONNECT_RESPONSE_DESIRED_SYSTEM;
    let at = writeVarint(out, 1, inner);
    at = writeField(out, at, NODE_ID, d.nodeId, idLength);
    at = writeField(out, at, SYSTEM_PATH, d.systemPath, pathLength);
    at = writeField(out, at, FLAKE_ATTR, d.flakeAttr, attrLength);
    out.set(t.bytes, at);
    return new EncodedMessage(out);
  }

  private templateOf(d: DesiredSystem): Template {
    let t = this.template;
    if (!t || !sameTemplate(t.first, d)) {
      const shared: DesiredSystem = { ...d, nodeId: '', systemPath: '', flakeAttr: '' };
      t = { first: d, bytes: DesiredSystem.encode(shared).finish(), key: `${d.deployment}/${d.revision}` };
      this.template = t;
    }
    return t;
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n >>>= 7;
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/** Bytes of a string field of this UTF-8 length; an empty string is left out, as proto3 does. */
function fieldSize(length: number): number {
  return length === 0 ? 0 : 1 + varintSize(length) + length;
}

function writeField(out: Buffer, at: number, tag: number, value: string, length: number): number {
  if (length === 0) return at;
  out[at] = tag;
  at = writeVarint(out, at + 1, length);
  return at + out.write(value, at, length, 'utf8');
}
