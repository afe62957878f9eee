// Renders an install plan's disk layout as a disko configuration (github.com/nix-community/disko)
// for `disko --mode destroy,format,mount`. The shape follows nix/lib/schema/generators/disko.nix
// exactly - the disk is named `root`, partitions keep their names, order, GPT types, labels and
// mount options - because the generic class systems mount by GPT partition label
// (/dev/disk/by-partlabel/disk-root-<name>): a different name here would not boot.
import { type DiskLayout, type Partition, PartitionTableType, PartitionType } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';

/** A plan the installer cannot carry out as written; nothing destructive has run. */
export class InvalidPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidPlanError';
  }
}

const MIB = 1024n * 1024n;

const GPT_TYPES: Record<PartitionType, string> = {
  [PartitionType.PARTITION_TYPE_UNSPECIFIED]: '8300',
  [PartitionType.PARTITION_TYPE_ESP]: 'EF00',
  [PartitionType.PARTITION_TYPE_BIOS_BOOT]: 'EF02',
  [PartitionType.PARTITION_TYPE_SWAP]: '8200',
  [PartitionType.PARTITION_TYPE_ROOT]: '8300',
  [PartitionType.PARTITION_TYPE_LINUX]: '8300',
  [PartitionType.UNRECOGNIZED]: '8300',
};

/** mkfs flag that sets the filesystem label. */
const LABEL_FLAGS: Readonly<Record<string, string>> = { vfat: '-n', ext4: '-L', xfs: '-L', btrfs: '-L', swap: '-L' };

/** A Nix string literal: escapes `"`, `\` and the interpolation opener `${`. */
export function nixString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$\{/g, '\\${').replace(/\n/g, '\\n')}"`;
}

function nixList(values: readonly string[]): string {
  return `[ ${values.map(nixString).join(' ')} ]`;
}

type Field = readonly [string, string];

function attrs(fields: readonly Field[], indent: string): string {
  const inner = `${indent}  `;
  return `{\n${fields.map(([k, v]) => `${inner}${k} = ${v};\n`).join('')}${indent}}`;
}

function validate(layout: DiskLayout): void {
  const parts = layout.partitions;
  if (parts.length === 0) throw new InvalidPlanError('plan.disk.layout.partitions: the layout has no partitions');
  const seen = new Set<string>();
  parts.forEach((p, i) => {
    const at = `plan.disk.layout.partitions[${i}]`;
    if (!/^[A-Za-z0-9_-]+$/.test(p.name)) throw new InvalidPlanError(`${at}.name: "${p.name}" must be letters, digits, "_" or "-"`);
    if (seen.has(p.name)) throw new InvalidPlanError(`${at}.name: "${p.name}" is used twice`);
    seen.add(p.name);
    if (p.sizeBytes === 0n && i !== parts.length - 1) throw new InvalidPlanError(`${at}.size_bytes: 0 (the rest of the disk) is allowed only on the last partition`);
    if (p.sizeBytes !== 0n && p.sizeBytes < MIB) throw new InvalidPlanError(`${at}.size_bytes: ${p.sizeBytes} is below 1 MiB`);
    if (p.filesystem !== '' && !(p.filesystem in LABEL_FLAGS)) throw new InvalidPlanError(`${at}.filesystem: unsupported "${p.filesystem}" (vfat, ext4, xfs, btrfs or swap)`);
    if (p.mountpoint !== '' && (p.filesystem === '' || p.filesystem === 'swap')) throw new InvalidPlanError(`${at}.mountpoint: "${p.mountpoint}" needs a mountable filesystem`);
    if (p.mountpoint !== '' && !p.mountpoint.startsWith('/')) throw new InvalidPlanError(`${at}.mountpoint: "${p.mountpoint}" must be absolute`);
  });
}

function content(p: Partition, indent: string): string | undefined {
  if (p.filesystem === '') return undefined;
  const extraArgs = [...p.formatOptions, ...(p.label ? [LABEL_FLAGS[p.filesystem] as string, p.label] : [])];
  const extra: Field[] = extraArgs.length > 0 ? [['extraArgs', nixList(extraArgs)]] : [];
  if (p.filesystem === 'swap') return attrs([['type', nixString('swap')], ...extra], indent);
  return attrs(
    [
      ['type', nixString('filesystem')],
      ['format', nixString(p.filesystem)],
      ...(p.mountpoint ? [['mountpoint', nixString(p.mountpoint)] as Field] : []),
      ...(p.mountOptions.length > 0 ? [['mountOptions', nixList(p.mountOptions)] as Field] : []),
      ...extra,
    ],
    indent,
  );
}

function withContent(p: Partition, fields: Field[], indent: string): Field[] {
  const c = content(p, `${indent}  `);
  return c === undefined ? fields : [...fields, ['content', c]];
}

function gpt(parts: readonly Partition[], indent: string): string {
  const partIndent = `${indent}    `;
  const entries = parts.map((p, i) => {
    const fields: Field[] = [
      // disko creates partitions in priority order; this keeps the plan's on-disk order.
      ['priority', String(i + 1)],
      ['size', nixString(p.sizeBytes === 0n ? '100%' : `${p.sizeBytes / MIB}M`)],
      ['type', nixString(GPT_TYPES[p.type])],
    ];
    return `${partIndent}${nixString(p.name)} = ${attrs(withContent(p, fields, partIndent), partIndent)};\n`;
  });
  return `{\n${indent}  type = "gpt";\n${indent}  partitions = {\n${entries.join('')}${indent}  };\n${indent}}`;
}

// MSDOS tables use disko's `table` type, which wants explicit offsets; the first partition
// starts at 1 MiB like parted's default alignment.
function msdos(parts: readonly Partition[], indent: string): string {
  const itemIndent = `${indent}    `;
  const bootMount = parts.some((p) => p.mountpoint === '/boot') ? '/boot' : '/';
  let start = 1n;
  const entries = parts.map((p) => {
    const end = p.sizeBytes === 0n ? '100%' : `${start + p.sizeBytes / MIB}MiB`;
    const fields: Field[] = [
      ['name', nixString(p.name)],
      ['part-type', nixString('primary')],
      ['start', nixString(`${start}MiB`)],
      ['end', nixString(end)],
      ['bootable', p.mountpoint === bootMount ? 'true' : 'false'],
    ];
    start += p.sizeBytes / MIB;
    return `${itemIndent}${attrs(withContent(p, fields, itemIndent), itemIndent)}\n`;
  });
  return `{\n${indent}  type = "table";\n${indent}  format = "msdos";\n${indent}  partitions = [\n${entries.join('')}${indent}  ];\n${indent}}`;
}

/** The disko.nix text for `layout` on `device` (the plan's /dev/disk/by-id path). */
export function renderDiskoConfig(device: string, layout: DiskLayout): string {
  if (!device.startsWith('/dev/disk/by-id/')) throw new InvalidPlanError(`plan.disk.by_id_path: "${device}" is not a /dev/disk/by-id path`);
  validate(layout);
  const table = layout.partitionTable === PartitionTableType.PARTITION_TABLE_TYPE_MSDOS ? msdos(layout.partitions, '    ') : gpt(layout.partitions, '    ');
  return [
    '# Written by the UltraCloud installer from the install plan; disko --mode destroy,format,mount.',
    '{',
    '  disko.devices.disk.root = {',
    '    type = "disk";',
    `    device = ${nixString(device)};`,
    `    content = ${table};`,
    '  };',
    '}',
    '',
  ].join('\n');
}
