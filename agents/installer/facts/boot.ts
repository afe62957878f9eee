// Firmware facts: UEFI or BIOS, Secure Boot, network-boot entries. Pure functions.

import { BootFirmware, type BootInfo } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';

/** The SecureBoot variable of the EFI global-variable GUID, under /sys/firmware/efi/efivars. */
export const SECURE_BOOT_EFIVAR = '/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c';

/**
 * Secure Boot state from the efivarfs file: 4 bytes of attributes, then one data byte (1 = on).
 * Unreadable or short content counts as off: the contract's field is "enabled", not "unknown".
 */
export function parseSecureBootEfivar(content: Uint8Array | undefined): boolean {
  return content !== undefined && content.length >= 5 && content[4] === 1;
}

/** Whether `efibootmgr` lists a network-boot entry (PXE or UEFI HTTP boot). */
export function efibootmgrHasNetworkBoot(text: string): boolean {
  return text.split('\n').some((line) => /^Boot[0-9A-F]{4}/i.test(line) && /\b(PXE|HTTP|IPv4|IPv6|Network)\b/i.test(line));
}

export function bootInfo(input: {
  /** /sys/firmware/efi exists (the kernel was started by UEFI firmware). */
  readonly efi: boolean;
  readonly secureBootEfivar?: Uint8Array;
  readonly efibootmgr?: string;
  readonly firmwareVendor?: string;
  readonly firmwareVersion?: string;
}): BootInfo {
  return {
    firmware: input.efi ? BootFirmware.BOOT_FIRMWARE_UEFI : BootFirmware.BOOT_FIRMWARE_BIOS,
    secureBoot: input.efi && parseSecureBootEfivar(input.secureBootEfivar),
    pxeCapable: input.efi && input.efibootmgr !== undefined && efibootmgrHasNetworkBoot(input.efibootmgr),
    firmwareVendor: input.firmwareVendor ?? '',
    firmwareVersion: input.firmwareVersion ?? '',
  };
}
