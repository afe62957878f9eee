// Installed memory from /proc/meminfo and `dmidecode -t memory`. Pure parsers.

import { parseDmidecodeSections } from './dmi.js';

const UNITS: Record<string, bigint> = {
  bytes: 1n,
  kb: 1n << 10n,
  mb: 1n << 20n,
  gb: 1n << 30n,
  tb: 1n << 40n,
};

/** MemTotal of /proc/meminfo in bytes (the kernel prints kB meaning KiB); 0 when absent. */
export function parseMeminfoTotal(text: string): bigint {
  const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(text);
  return m?.[1] ? BigInt(m[1]) * 1024n : 0n;
}

/**
 * Sum of the "Size" of every populated "Memory Device" in dmidecode output, in bytes; 0 when
 * there is none. dmidecode's MB/GB are binary units. Preferred over MemTotal, which lacks the
 * memory the kernel and firmware reserve, so the same machine would report less than installed.
 */
export function parseDmidecodeMemoryTotal(text: string): bigint {
  let total = 0n;
  for (const { title, fields } of parseDmidecodeSections(text)) {
    if (title !== 'Memory Device') continue;
    const m = /^(\d+)\s*(bytes|kB|MB|GB|TB)$/i.exec(fields.get('Size') ?? '');
    const unit = m?.[2] ? UNITS[m[2].toLowerCase()] : undefined;
    if (m?.[1] && unit) total += BigInt(m[1]) * unit;
  }
  return total;
}

/** Installed memory: DMI memory devices when dmidecode reported any, else MemTotal. */
export function memoryBytes(meminfo: string | undefined, dmidecodeMemory: string | undefined): bigint {
  const dmi = dmidecodeMemory ? parseDmidecodeMemoryTotal(dmidecodeMemory) : 0n;
  return dmi > 0n ? dmi : parseMeminfoTotal(meminfo ?? '');
}
