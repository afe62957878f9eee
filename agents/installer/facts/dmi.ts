// DMI/SMBIOS identity facts, from the kernel's sysfs export (/sys/class/dmi/id) and/or
// `dmidecode` output. Pure parsers: the caller reads the files or runs the command.
//
// Firmware fills unset SMBIOS strings with vendor placeholders ("To Be Filled By O.E.M.",
// "Default string", all-zero UUIDs). Thousands of machines share them, so reporting one as an
// identity would merge different machines into one deployer record: they become empty here.

/** The identity-related DMI strings, placeholders already removed. */
export interface DmiFacts {
  readonly systemUuid: string;
  readonly serialNumber: string;
  readonly vendor: string;
  readonly productName: string;
  readonly boardSerial: string;
  readonly boardVendor: string;
  readonly boardProduct: string;
  readonly biosVendor: string;
  readonly biosVersion: string;
}

/** Files of /sys/class/dmi/id read by the installer, keyed by their DmiFacts field. */
export const DMI_SYSFS_FILES = {
  systemUuid: 'product_uuid',
  serialNumber: 'product_serial',
  vendor: 'sys_vendor',
  productName: 'product_name',
  boardSerial: 'board_serial',
  boardVendor: 'board_vendor',
  boardProduct: 'board_name',
  biosVendor: 'bios_vendor',
  biosVersion: 'bios_version',
} as const satisfies Record<keyof DmiFacts, string>;

export const EMPTY_DMI: DmiFacts = {
  systemUuid: '',
  serialNumber: '',
  vendor: '',
  productName: '',
  boardSerial: '',
  boardVendor: '',
  boardProduct: '',
  biosVendor: '',
  biosVersion: '',
};

// Compared lowercased after trimming. Collected from AMI/Insyde/Phoenix defaults, ASUS and
// Gigabyte boards, and dmidecode's own words for absent strings.
const PLACEHOLDER_STRINGS = new Set([
  'to be filled by o.e.m.',
  'to be filled by o.e.m',
  'default string',
  'system serial number',
  'system product name',
  'system manufacturer',
  'system name',
  'base board serial number',
  'chassis serial number',
  'not specified',
  'not applicable',
  'not available',
  'not present',
  'not settable',
  'none',
  'n/a',
  'na',
  'oem',
  'o.e.m.',
  'unknown',
  'invalid',
  'x.x',
  '0',
  '00000000',
  '0000000000',
  '0123456789',
  '123456789',
  '1234567890',
  'type1productconfigid',
  'type2 - board serial number',
  'type2 - board vendor name1',
]);

// Same list as the deployer's validator: AMI's 03000200-… default is on many desktop boards.
const PLACEHOLDER_UUIDS = new Set([
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '03000200-0400-0500-0006-000700080009',
]);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A DMI string trimmed, or empty when it is a firmware placeholder. */
export function normaliseDmiString(value: string | undefined): string {
  const trimmed = (value ?? '').replace(/\0/g, '').trim();
  if (trimmed === '' || PLACEHOLDER_STRINGS.has(trimmed.toLowerCase())) return '';
  // Strings made only of one repeated filler character ("........", "        ", "0000").
  if (/^(.)\1*$/.test(trimmed) && /^[0. xXfF-]$/.test(trimmed[0] ?? '')) return '';
  return trimmed;
}

/** The system UUID in lowercase canonical form, or empty when absent, malformed or a placeholder. */
export function normaliseSystemUuid(value: string | undefined): string {
  const uuid = (value ?? '').trim().toLowerCase();
  if (!UUID.test(uuid) || PLACEHOLDER_UUIDS.has(uuid)) return '';
  return uuid;
}

function normaliseFacts(raw: Partial<Record<keyof DmiFacts, string>>): DmiFacts {
  const facts: Record<keyof DmiFacts, string> = { ...EMPTY_DMI };
  for (const key of Object.keys(DMI_SYSFS_FILES) as (keyof DmiFacts)[]) {
    facts[key] = key === 'systemUuid' ? normaliseSystemUuid(raw[key]) : normaliseDmiString(raw[key]);
  }
  return facts;
}

/**
 * Facts from the contents of /sys/class/dmi/id files, keyed by file name (`product_uuid`, …).
 * A missing file (no DMI, or product_uuid unreadable without root) gives an empty field.
 */
export function dmiFromSysfs(files: Readonly<Record<string, string | undefined>>): DmiFacts {
  const raw: Partial<Record<keyof DmiFacts, string>> = {};
  for (const [key, file] of Object.entries(DMI_SYSFS_FILES) as [keyof DmiFacts, string][]) raw[key] = files[file];
  return normaliseFacts(raw);
}

/**
 * Sections of dmidecode output: title line ("System Information") → key → value. Works for any
 * `-t` selection or the full dump; repeated sections (several memory devices) are all kept.
 */
export function parseDmidecodeSections(text: string): { readonly title: string; readonly fields: ReadonlyMap<string, string> }[] {
  const sections: { title: string; fields: Map<string, string> }[] = [];
  let current: { title: string; fields: Map<string, string> } | undefined;
  let expectTitle = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('Handle ')) {
      expectTitle = true;
      current = undefined;
      continue;
    }
    if (expectTitle && line.trim() !== '') {
      current = { title: line.trim(), fields: new Map() };
      sections.push(current);
      expectTitle = false;
      continue;
    }
    // Fields are one tab deep; list items under a field ("Characteristics:") are two tabs deep.
    const field = /^\t([^\t:][^:]*):\s?(.*)$/.exec(line);
    if (current && field?.[1] !== undefined) current.fields.set(field[1].trim(), (field[2] ?? '').trim());
  }
  return sections;
}

/** Facts from `dmidecode -t system` (and, when included, `-t baseboard` / `-t bios`) output. */
export function dmiFromDmidecode(text: string): DmiFacts {
  const raw: Partial<Record<keyof DmiFacts, string>> = {};
  for (const { title, fields } of parseDmidecodeSections(text)) {
    if (title === 'System Information') {
      raw.systemUuid ??= fields.get('UUID');
      raw.serialNumber ??= fields.get('Serial Number');
      raw.vendor ??= fields.get('Manufacturer');
      raw.productName ??= fields.get('Product Name');
    } else if (title === 'Base Board Information') {
      raw.boardSerial ??= fields.get('Serial Number');
      raw.boardVendor ??= fields.get('Manufacturer');
      raw.boardProduct ??= fields.get('Product Name');
    } else if (title === 'BIOS Information') {
      raw.biosVendor ??= fields.get('Vendor');
      raw.biosVersion ??= fields.get('Version');
    }
  }
  return normaliseFacts(raw);
}

/** Field by field: the first source with a non-empty value wins (sysfs first, then dmidecode). */
export function mergeDmi(...sources: readonly DmiFacts[]): DmiFacts {
  const merged: Record<keyof DmiFacts, string> = { ...EMPTY_DMI };
  for (const key of Object.keys(EMPTY_DMI) as (keyof DmiFacts)[]) {
    merged[key] = sources.find((s) => s[key] !== '')?.[key] ?? '';
  }
  return merged;
}
