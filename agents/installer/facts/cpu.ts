// Processor facts from /proc/cpuinfo and `uname -m`. Pure parsers.

import type { CpuInfo } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';

/** One "processor" block of /proc/cpuinfo as key → value (keys as the kernel prints them). */
export function parseCpuinfoBlocks(text: string): ReadonlyMap<string, string>[] {
  const blocks: Map<string, string>[] = [];
  let current = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (current.size > 0) blocks.push(current);
      current = new Map();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    current.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (current.size > 0) blocks.push(current);
  return blocks;
}

// ARM "CPU implementer" codes (arm64 cpuinfo has no vendor_id), from the Arm ARM MIDR table.
const ARM_IMPLEMENTERS: Record<string, string> = {
  '0x41': 'ARM',
  '0x42': 'Broadcom',
  '0x43': 'Cavium',
  '0x48': 'HiSilicon',
  '0x4e': 'NVIDIA',
  '0x50': 'APM',
  '0x51': 'Qualcomm',
  '0x61': 'Apple',
  '0xc0': 'Ampere',
};

/** The machine architecture from `uname -m` output, empty when there is none. */
export function parseUnameMachine(text: string | undefined): string {
  return (text ?? '').trim().split(/\s+/)[0] ?? '';
}

/**
 * CpuInfo from /proc/cpuinfo. Threads are the logical CPUs listed; sockets the distinct
 * `physical id`s; cores the distinct (physical id, core id) pairs. Kernels that print no topology
 * (arm64, some VMs) count every logical CPU as a core on one socket: the best available answer,
 * and never 0, which the deployer rejects. `architecture` comes from `uname -m`, or when that is
 * missing from cpuinfo's own hints.
 */
export function parseCpuinfo(text: string, unameMachine?: string): CpuInfo {
  const blocks = parseCpuinfoBlocks(text).filter((b) => b.has('processor'));
  const first = blocks[0] ?? new Map<string, string>();
  const sockets = new Set<string>();
  const cores = new Set<string>();
  let topologyKnown = blocks.length > 0;
  for (const b of blocks) {
    const socket = b.get('physical id');
    const core = b.get('core id');
    if (socket === undefined || core === undefined) topologyKnown = false;
    sockets.add(socket ?? '0');
    cores.add(`${socket ?? '0'}:${core ?? b.get('processor') ?? ''}`);
  }
  const threads = blocks.length;
  const implementer = first.get('CPU implementer')?.toLowerCase();
  return {
    model: first.get('model name') ?? first.get('Model Name') ?? first.get('cpu model') ?? first.get('cpu') ?? '',
    vendor: first.get('vendor_id') ?? (implementer ? ARM_IMPLEMENTERS[implementer] ?? implementer : ''),
    sockets: threads === 0 ? 0 : topologyKnown ? sockets.size : 1,
    cores: topologyKnown ? cores.size : threads,
    threads,
    architecture: parseUnameMachine(unameMachine) || guessArchitecture(first),
  };
}

function guessArchitecture(block: ReadonlyMap<string, string>): string {
  const flags = ` ${block.get('flags') ?? ''} `;
  if (block.has('vendor_id') && flags.includes(' lm ')) return 'x86_64';
  if (block.get('CPU architecture') === '8') return 'aarch64';
  return '';
}
