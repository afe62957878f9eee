// Root-device hint resolution: turns a disk policy's RootDeviceHints and a machine's reported
// disks into exactly one stable /dev/disk/by-id path, or a reason the plan cannot be rendered.
//
// Hint semantics follow OpenStack Ironic (ironic_python_agent/device_hints.py and ironic-lib
// utils.py: parse_root_device_hints / find_devices_by_hints, on top of
// oslo_utils/specs_matcher.py), checked against their source and unit tests:
//  1. Every set hint must match (AND); an empty string field or an unset `rotational` is ignored.
//  2. The whole expression is trimmed and lowercased, and so is the disk's value: string
//     comparison is case-insensitive for every operator, `<in>` included.
//  3. An expression may start with an operator. Strings: `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=`
//     (string comparison), `<in>` (substring) and `<or>` alternatives (`<or> a <or> b`). Size:
//     `==`, `!=`, `<`, `<=`, `>`, `>=` and `<or>` (numeric). The operator may be glued to the
//     value (`s==foo`, `>=100`), as pyparsing allows. A bare value means `s==` for strings and
//     `==` for size. Everything after the operator is one value, spaces included.
//  4. A disk whose attribute is empty never matches a string hint, whatever the operator
//     (Ironic skips such a device), so `serial="s!= x"` does not select a disk without a serial.
//  5. `size` is in GiB (2^30 bytes) and its values must be positive integers. The disk's size is
//     rounded down to whole GiB, as the contract says. (Ironic computes `size / units.Gi`: whole
//     GiB under Python 2 integer division, a float under Python 3, where a 223.6 GiB disk
//     matches `>= 223` but never `== 223`.)
//  6. `rotational` is a plain boolean; `hctl`, `wwn*`, `serial`, `model`, `vendor` are strings.
// Deliberate differences, because a wrong match here wipes a disk:
//  - `name` also matches the disk's by-path links (contract; Metal3 does the same), and a bare
//    name such as `sda` means `/dev/sda` (a bare `by_path` value means /dev/disk/by-path/<value>).
//    With several values, `s!=` must hold for all of them, every other operator for one.
//  - Rejected as invalid instead of silently misbehaving: specs_matcher's legacy `=` (which means
//    `>=`), `<all-in>`, numeric operators on string fields, string operators and `<in>` on size
//    (Ironic accepts `<in>`/`<or>` on size but then compares a float with a string and never
//    matches). `<range-in> [low high]` (brackets `[`/`(` and `]`/`)`) is accepted on size because
//    the contract lists it.
//  - Ironic percent-encodes values before comparing; we compare the raw lowercased strings, which
//    is identical for equality and substrings and differs only in the ordering of punctuation.
// Eligibility: boot medium, removable media, read-only and zero-sized disks are never candidates.
// Multipath: paths of one LUN are one disk. Matching disks that report the same WWN (with
// extension when known) and the same size are merged into one candidate; a WWN is globally unique
// per logical unit, and requiring equal sizes keeps firmware that reports a bogus shared WWN from
// hiding a second real disk.

import type { Disk } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';
import type { ResolvedDisk, RootDeviceHints } from '../../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { FailedPreconditionError, InvalidArgumentError, type FieldViolation } from '../../../lib/errors.js';

/** Hint field names as in the proto (and Ironic), in RootDeviceHints field order. */
export const ROOT_DEVICE_HINT_FIELDS = [
  'name',
  'by_path',
  'wwn',
  'wwn_with_extension',
  'wwn_vendor_extension',
  'serial',
  'model',
  'vendor',
  'size',
  'rotational',
  'hctl',
] as const;
export type RootDeviceHintField = (typeof ROOT_DEVICE_HINT_FIELDS)[number];

/** What the resolver decides; the plan renderer adds layout and wipe policy. */
export type RootDeviceResolution = Omit<ResolvedDisk, 'layout' | 'wipePolicy'> & { hints: RootDeviceHints };

/** One disk that satisfies the hints; several when they are paths of one multipath LUN. */
export interface RootDeviceCandidate {
  /** Kernel names of the merged paths, sorted (one entry unless multipath). */
  readonly names: readonly string[];
  /** The first path, with the by-id and by-path links of all paths. */
  readonly disk: Disk;
  /** Preferred /dev/disk/by-id link, undefined when the disk has none. */
  readonly byIdPath: string | undefined;
}

export type RootDeviceFailure = 'no-eligible-disk' | 'no-match' | 'ambiguous' | 'no-by-id-link';

/**
 * The hints are valid but this machine's disks do not yield exactly one addressable disk.
 * FAILED_PRECONDITION rather than INVALID_ARGUMENT: nothing in the request is malformed (bad hint
 * syntax is an InvalidArgumentError naming the field); the machine's hardware does not fit the
 * policy, and only changing the policy or the hardware helps. The caller moves the machine to
 * `failed` with this message as the reason.
 */
export class RootDeviceResolutionError extends FailedPreconditionError {
  constructor(
    readonly failure: RootDeviceFailure,
    readonly candidates: readonly RootDeviceCandidate[],
    message: string,
  ) {
    super(message);
    this.name = 'RootDeviceResolutionError';
  }
}

const GIB_SHIFT = 30n;

type StringOperator = 's==' | 's!=' | 's<' | 's<=' | 's>' | 's>=' | '<in>' | '<or>';
type SizeOperator = '==' | '!=' | '<' | '<=' | '>' | '>=' | '<or>' | '<range-in>';

interface StringHint {
  readonly kind: 'string';
  readonly field: RootDeviceHintField;
  readonly source: string;
  readonly op: StringOperator;
  readonly values: readonly string[];
}
interface SizeHint {
  readonly kind: 'size';
  readonly field: 'size';
  readonly source: string;
  readonly op: SizeOperator;
  readonly values: readonly bigint[];
  readonly range?: { readonly low: bigint; readonly lowInclusive: boolean; readonly high: bigint; readonly highInclusive: boolean };
}
interface BooleanHint {
  readonly kind: 'boolean';
  readonly field: 'rotational';
  readonly source: string;
  readonly value: boolean;
}
type ParsedHint = StringHint | SizeHint | BooleanHint;

// Longest first, so `s==` is not read as `s` + `==` and `<=` not as `<` + `=`.
const OPERATORS = [
  '<range-in>', '<all-in>', '<or>', '<in>',
  's==', 's!=', 's<=', 's>=', 's<', 's>',
  '==', '!=', '<=', '>=', '<', '>', '=',
] as const;
type Operator = (typeof OPERATORS)[number];

const STRING_OPERATORS: ReadonlySet<string> = new Set<StringOperator>(['s==', 's!=', 's<', 's<=', 's>', 's>=', '<in>', '<or>']);
const SIZE_OPERATORS: ReadonlySet<string> = new Set<SizeOperator>(['==', '!=', '<', '<=', '>', '>=', '<or>', '<range-in>']);

type StringHintKey = Exclude<keyof RootDeviceHints, 'size' | 'rotational'>;
const STRING_FIELD_VALUE: Record<Exclude<RootDeviceHintField, 'size' | 'rotational'>, StringHintKey> = {
  name: 'name',
  by_path: 'byPath',
  wwn: 'wwn',
  wwn_with_extension: 'wwnWithExtension',
  wwn_vendor_extension: 'wwnVendorExtension',
  serial: 'serial',
  model: 'model',
  vendor: 'vendor',
  hctl: 'hctl',
};

const DISK_FIELD: Record<Exclude<RootDeviceHintField, 'name' | 'by_path' | 'size' | 'rotational'>, 'wwn' | 'wwnWithExtension' | 'wwnVendorExtension' | 'serial' | 'model' | 'vendor' | 'hctl'> = {
  wwn: 'wwn',
  wwn_with_extension: 'wwnWithExtension',
  wwn_vendor_extension: 'wwnVendorExtension',
  serial: 'serial',
  model: 'model',
  vendor: 'vendor',
  hctl: 'hctl',
};

function splitOperator(expression: string): { op: Operator | undefined; rest: string } {
  for (const op of OPERATORS) {
    if (expression.startsWith(op)) return { op, rest: expression.slice(op.length) };
  }
  return { op: undefined, rest: expression };
}

function parseStringHint(field: RootDeviceHintField, source: string, path: string, violations: FieldViolation[]): StringHint | undefined {
  const expression = source.trim().toLowerCase();
  const { op, rest } = splitOperator(expression);
  const fail = (description: string): undefined => {
    violations.push({ field: `${path}.${field}`, description });
    return undefined;
  };
  if (op === undefined) return { kind: 'string', field, source: source.trim(), op: 's==', values: [qualifyPath(field, 's==', expression)] };
  if (op === '=') return fail(`operator "=" is ambiguous (oslo specs_matcher reads it as ">="); use s== for strings`);
  if (!STRING_OPERATORS.has(op)) return fail(`operator "${op}" is not valid for a string hint; use one of s==, s!=, s<, s<=, s>, s>=, <in>, <or>`);
  const values = op === '<or>' ? rest.split('<or>').map((v) => v.trim()).filter((v) => v !== '') : [rest.trim()];
  if (values.length === 0 || values[0] === '') return fail(`operator "${op}" needs a value`);
  return { kind: 'string', field, source: source.trim(), op: op as StringOperator, values: values.map((v) => qualifyPath(field, op, v)) };
}

// Equality-style name/by_path values may omit their directory (`sda`, `pci-0000:00:17.0-ata-1`).
function qualifyPath(field: RootDeviceHintField, op: Operator, value: string): string {
  if (value.startsWith('/') || !(op === 's==' || op === 's!=' || op === '<or>')) return value;
  if (field === 'name') return `/dev/${value}`;
  if (field === 'by_path') return `/dev/disk/by-path/${value}`;
  return value;
}

const RANGE = /^([[(])\s*(\d+)\s+(\d+)\s*([\])])$/;

function parseSizeHint(source: string, path: string, violations: FieldViolation[]): SizeHint | undefined {
  const expression = source.trim().toLowerCase();
  const { op, rest } = splitOperator(expression);
  const fail = (description: string): undefined => {
    violations.push({ field: `${path}.size`, description });
    return undefined;
  };
  const positive = (text: string): bigint | undefined => (/^\d+$/.test(text) && BigInt(text) > 0n ? BigInt(text) : undefined);
  const effective = op ?? '==';
  if (effective === '=') return fail(`operator "=" is ambiguous (oslo specs_matcher reads it as ">="); use == or >=`);
  if (!SIZE_OPERATORS.has(effective)) {
    return fail(`operator "${effective}" is not valid for size; use one of ==, !=, <, <=, >, >=, <or>, <range-in>`);
  }
  if (effective === '<range-in>') {
    const m = RANGE.exec(rest.trim());
    const low = m?.[2] === undefined ? undefined : BigInt(m[2]);
    const high = m?.[3] === undefined ? undefined : BigInt(m[3]);
    if (!m || low === undefined || high === undefined) return fail(`"<range-in>" expects "[low high]" with ( or [ and ) or ], e.g. "<range-in> [100 500)"`);
    if (low > high) return fail(`"<range-in>" lower bound ${low} is above upper bound ${high}`);
    return {
      kind: 'size', field: 'size', source: source.trim(), op: '<range-in>', values: [],
      range: { low, lowInclusive: m[1] === '[', high, highInclusive: m[4] === ']' },
    };
  }
  const texts = effective === '<or>' ? rest.split('<or>').map((v) => v.trim()).filter((v) => v !== '') : [rest.trim()];
  if (texts.length === 0) return fail(`operator "${effective}" needs a value`);
  const values: bigint[] = [];
  for (const text of texts) {
    const n = positive(text);
    if (n === undefined) return fail(`"${text}" is not a positive whole number of GiB`);
    values.push(n);
  }
  return { kind: 'size', field: 'size', source: source.trim(), op: effective as SizeOperator, values };
}

function parseHints(hints: RootDeviceHints, path: string): { parsed: ParsedHint[]; violations: FieldViolation[] } {
  const parsed: ParsedHint[] = [];
  const violations: FieldViolation[] = [];
  for (const field of ROOT_DEVICE_HINT_FIELDS) {
    if (field === 'rotational') {
      if (hints.rotational !== undefined) parsed.push({ kind: 'boolean', field, source: String(hints.rotational), value: hints.rotational });
      continue;
    }
    const raw = field === 'size' ? hints.size : hints[STRING_FIELD_VALUE[field]];
    if (raw.trim() === '') continue;
    const hint = field === 'size' ? parseSizeHint(raw, path, violations) : parseStringHint(field, raw, path, violations);
    if (hint) parsed.push(hint);
  }
  return { parsed, violations };
}

/**
 * Checks hint syntax without any disks, so a disk policy can be rejected when it is applied
 * rather than when a machine is installed. Fields are named `<path>.<hint field>`.
 */
export function validateRootDeviceHints(hints: RootDeviceHints, path = 'root_device_hints'): FieldViolation[] {
  return parseHints(hints, path).violations;
}

function diskStringValues(disk: Disk, field: RootDeviceHintField): string[] {
  const one = (v: string): string[] => (v.trim() === '' ? [] : [v.trim().toLowerCase()]);
  if (field === 'name') return [...one(disk.name === '' ? '' : `/dev/${disk.name}`), ...disk.byPathLinks.flatMap(one)];
  if (field === 'by_path') return disk.byPathLinks.flatMap(one);
  if (field === 'size' || field === 'rotational') return [];
  return one(disk[DISK_FIELD[field]]);
}

function compareStrings(op: StringOperator, actual: string, wanted: readonly string[]): boolean {
  const w = wanted[0] ?? '';
  switch (op) {
    case 's==':
      return actual === w;
    case 's!=':
      return actual !== w;
    case 's<':
      return actual < w;
    case 's<=':
      return actual <= w;
    case 's>':
      return actual > w;
    case 's>=':
      return actual >= w;
    case '<in>':
      return actual.includes(w);
    case '<or>':
      return wanted.includes(actual);
  }
}

function sizeGib(disk: Disk): bigint {
  return disk.sizeBytes >> GIB_SHIFT;
}

function matchesHint(disk: Disk, hint: ParsedHint): boolean {
  if (hint.kind === 'boolean') return disk.rotational === hint.value;
  if (hint.kind === 'size') {
    const gib = sizeGib(disk);
    const w = hint.values[0] ?? 0n;
    switch (hint.op) {
      case '==':
        return gib === w;
      case '!=':
        return gib !== w;
      case '<':
        return gib < w;
      case '<=':
        return gib <= w;
      case '>':
        return gib > w;
      case '>=':
        return gib >= w;
      case '<or>':
        return hint.values.includes(gib);
      case '<range-in>': {
        const r = hint.range;
        if (!r) return false;
        return (r.lowInclusive ? gib >= r.low : gib > r.low) && (r.highInclusive ? gib <= r.high : gib < r.high);
      }
    }
  }
  const actual = diskStringValues(disk, hint.field);
  if (actual.length === 0) return false;
  if (hint.op === 's!=') return actual.every((a) => compareStrings('s!=', a, hint.values));
  return actual.some((a) => compareStrings(hint.op, a, hint.values));
}

function ineligibility(disk: Disk): string | undefined {
  if (disk.isBootMedium) return 'boot medium';
  if (disk.removable) return 'removable media';
  if (disk.readOnly) return 'read-only';
  if (disk.sizeBytes <= 0n) return 'no capacity';
  return undefined;
}

// Why wwn- first: the WWN is assigned by the manufacturer, unique per logical unit, and udev
// builds the same wwn- link whatever controller, port or HBA the disk hangs off, and for every
// path of a multipath LUN. Model_serial links are next: stable too, but their prefix depends on
// the transport (a SATA disk moved behind a SAS HBA turns ata-X into scsi-SATA_X). nvme-eui. is
// the NVMe namespace's own unique id, so it ranks above nvme-<model>_<serial>. dm-name- links
// are operator-chosen multipath aliases and rank last.
function byIdRank(link: string): number {
  const base = link.slice(link.lastIndexOf('/') + 1);
  if (base.startsWith('wwn-')) return 0;
  if (base.startsWith('nvme-eui.')) return 1;
  if (base.startsWith('nvme-')) return 2;
  if (base.startsWith('ata-') || base.startsWith('scsi-')) return 3;
  if (base.startsWith('dm-name-')) return 5;
  return 4;
}

/** The by-id link the plan uses for a disk: best rank, then plain code-point order; undefined if none. */
export function preferredByIdLink(disk: Pick<Disk, 'byIdLinks'>): string | undefined {
  const usable = disk.byIdLinks.filter((l) => l.startsWith('/dev/disk/by-id/') && !/-part\d+$/.test(l));
  usable.sort((a, b) => byIdRank(a) - byIdRank(b) || (a < b ? -1 : a > b ? 1 : 0));
  return usable[0];
}

function multipathKey(disk: Disk): string | undefined {
  const wwn = (disk.wwnWithExtension.trim() || disk.wwn.trim()).toLowerCase();
  if (wwn === '' || /^(0x)?0+$/.test(wwn)) return undefined;
  return `${wwn}/${disk.sizeBytes}`;
}

function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

function byName(a: Disk, b: Disk): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function toCandidates(disks: readonly Disk[]): RootDeviceCandidate[] {
  const groups = new Map<string, Disk[]>();
  for (const disk of [...disks].sort(byName)) {
    const key = multipathKey(disk) ?? `name:${disk.name}`;
    const group = groups.get(key);
    if (group) group.push(disk);
    else groups.set(key, [disk]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0] as Disk;
    const disk: Disk = {
      ...first,
      byIdLinks: sortedUnique(group.flatMap((d) => d.byIdLinks)),
      byPathLinks: sortedUnique(group.flatMap((d) => d.byPathLinks)),
    };
    return { names: group.map((d) => d.name), disk, byIdPath: preferredByIdLink(disk) };
  });
}

/**
 * The disks that satisfy every hint, multipath paths merged, in kernel-name order. Throws
 * InvalidArgumentError for malformed hints. Exposed for tests and for operator previews.
 */
export function matchRootDeviceCandidates(disks: readonly Disk[], hints: RootDeviceHints): RootDeviceCandidate[] {
  return evaluate(disks, hints).candidates;
}

interface Evaluation {
  readonly parsed: readonly ParsedHint[];
  readonly candidates: RootDeviceCandidate[];
  readonly ineligible: ReadonlyArray<{ disk: Disk; reason: string }>;
  readonly eliminated: ReadonlyMap<ParsedHint, Disk[]>;
  readonly eligibleCount: number;
}

function evaluate(disks: readonly Disk[], hints: RootDeviceHints): Evaluation {
  const { parsed, violations } = parseHints(hints, 'root_device_hints');
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  const ineligible: { disk: Disk; reason: string }[] = [];
  const eliminated = new Map<ParsedHint, Disk[]>(parsed.map((h) => [h, []]));
  const matching: Disk[] = [];
  let eligibleCount = 0;
  for (const disk of [...disks].sort(byName)) {
    const reason = ineligibility(disk);
    if (reason) {
      ineligible.push({ disk, reason });
      continue;
    }
    eligibleCount++;
    let ok = true;
    for (const hint of parsed) {
      if (!matchesHint(disk, hint)) {
        eliminated.get(hint)?.push(disk);
        ok = false;
      }
    }
    if (ok) matching.push(disk);
  }
  return { parsed, candidates: toCandidates(matching), ineligible, eliminated, eligibleCount };
}

function describeHints(parsed: readonly ParsedHint[]): string {
  if (parsed.length === 0) return 'no hints';
  return parsed.map(describeHint).join(', ');
}

function describeHint(hint: ParsedHint): string {
  return hint.kind === 'boolean' ? `${hint.field}=${hint.source}` : `${hint.field}=${JSON.stringify(hint.source)}`;
}

function describeCandidate(c: RootDeviceCandidate): string {
  const where = c.byIdPath ?? `/dev/${c.disk.name} (no by-id link)`;
  return `${where} (${c.names.join(', ')}, ${sizeGib(c.disk)} GiB)`;
}

function describeDiskValue(disk: Disk, field: RootDeviceHintField): string {
  switch (field) {
    case 'size':
      return `${disk.name} (${sizeGib(disk)} GiB)`;
    case 'rotational':
      return `${disk.name} (${disk.rotational ? 'rotational' : 'non-rotational'})`;
    case 'name':
      return disk.name;
    case 'by_path':
      return disk.byPathLinks.length === 0 ? `${disk.name} (no by-path link)` : disk.name;
    default: {
      const value = disk[DISK_FIELD[field]].trim();
      return value === '' ? `${disk.name} (no ${field})` : `${disk.name} (${field} ${JSON.stringify(value)})`;
    }
  }
}


function describeIneligible(list: ReadonlyArray<{ disk: Disk; reason: string }>): string {
  return list.map(({ disk, reason }) => `${disk.name} (${reason})`).join(', ');
}

/**
 * Resolves the hints against the reported disks to exactly one disk addressed by a
 * /dev/disk/by-id link. Throws InvalidArgumentError (field `root_device_hints.<field>`) for
 * malformed hints and RootDeviceResolutionError (FAILED_PRECONDITION) when no disk, several disks,
 * or a disk without any by-id link would be chosen.
 */
export function resolveRootDevice(disks: readonly Disk[], hints: RootDeviceHints): RootDeviceResolution {
  const ev = evaluate(disks, hints);
  const hintText = describeHints(ev.parsed);

  if (ev.eligibleCount === 0) {
    const detail = ev.ineligible.length === 0 ? 'the inventory reports no disks' : describeIneligible(ev.ineligible);
    throw new RootDeviceResolutionError('no-eligible-disk', [], `no disk is eligible as root device: ${detail}`);
  }

  if (ev.candidates.length === 0) {
    const parts = ev.parsed
      .map((hint) => ({ hint, disks: ev.eliminated.get(hint) ?? [] }))
      .filter((e) => e.disks.length > 0)
      .map((e) => `${describeHint(e.hint)} eliminated ${e.disks.map((d) => describeDiskValue(d, e.hint.field)).join(', ')}`);
    if (ev.ineligible.length > 0) parts.push(`not eligible: ${describeIneligible(ev.ineligible)}`);
    throw new RootDeviceResolutionError('no-match', [], `root device hints matched no disk (${hintText}): ${parts.join('; ')}`);
  }

  if (ev.candidates.length > 1) {
    const subject = ev.parsed.length === 0 ? `no root device hints are set and ${ev.candidates.length} disks are eligible` : `root device hints matched ${ev.candidates.length} disks (${hintText})`;
    throw new RootDeviceResolutionError(
      'ambiguous',
      ev.candidates,
      `${subject}: ${ev.candidates.map(describeCandidate).join(', ')}; add a hint that tells them apart, e.g. wwn or serial`,
    );
  }

  const chosen = ev.candidates[0] as RootDeviceCandidate;
  if (chosen.byIdPath === undefined) {
    const subject = ev.parsed.length === 0 ? `the only eligible disk is ${chosen.names.join(', ')}` : `root device hints (${hintText}) matched ${chosen.names.join(', ')}`;
    throw new RootDeviceResolutionError(
      'no-by-id-link',
      ev.candidates,
      `${subject} (${sizeGib(chosen.disk)} GiB), but it has no /dev/disk/by-id link, so the installer cannot address it stably; give the disk a serial number or WWN (e.g. a virtio serial)`,
    );
  }

  return {
    byIdPath: chosen.byIdPath,
    sizeBytes: chosen.disk.sizeBytes,
    serial: chosen.disk.serial.trim(),
    wwn: chosen.disk.wwn.trim(),
    name: chosen.disk.name,
    hints,
    matchedHints: ev.parsed.map((h) => h.field),
  };
}
