/**
 * A slot's kernel arguments as its bootloader reads them (issue 19; docs/formats.md "Per-slot
 * kernel arguments"). Pure: bytes in and out. The file sits in the slot's boot directory
 * (S/boot/X/), written with the kernel it belongs to, so the bootloader never pairs one slot's
 * kernel with the other's arguments and no shared env variable grows with the command line:
 * - U-Boot: `X/larch.env`, a single-copy U-Boot env of 4096 bytes (CRC32, then NUL-separated
 *   `name=value`) holding `bootargs` = the arguments and `larch.slot=X`. boot.cmd loads it with
 *   `env import -c`, which sets the variable without hush's expansion, so quotes and `$` in an
 *   argument stay data; a torn file fails the CRC and the slot does not boot.
 * - GRUB: `X/kargs.grubenv`, a GRUB environment block of 4096 bytes holding `larch_kargs` = the
 *   arguments; grub.cfg appends `larch.slot=X`. A block without `larch_kargs` (torn, lost its
 *   signature) does not boot.
 * - systemd-boot: `X/entry.conf`, the slot's BLS entry body (bls.ts: `linux`, `initrd`,
 *   `devicetree`, `options` = the arguments and `larch.slot=X`). systemd-boot never reads it: the
 *   store makes the slot's loader entry from it when the slot is staged (bls-store.ts), so the
 *   entry's `options` line is the deployment's arguments. A damaged body stages no entry.
 */
import { LarchError } from '../errors.ts';
import { BODY_FILE, entryKargs, formatBody, parseBody, slotBody } from './bls.ts';
import { decodeGrubenv, encodeGrubenv } from './grubenv.ts';
import type { Slot } from './state.ts';
import { decodeEntries, encodeCopy, inspectCopy } from './uboot-env.ts';

export type SlotKargsBootloader = 'uboot' | 'grub' | 'systemd-boot';

/** The size of either file: room for the longest command line x86 takes (2048) and more. */
export const SLOT_KARGS_FILE_BYTES = 4096;

/** The file's name under S/boot/X/. */
export function slotKargsFileName(kind: SlotKargsBootloader): string {
  return kind === 'uboot' ? 'larch.env' : kind === 'grub' ? 'kargs.grubenv' : BODY_FILE;
}

/**
 * The file's bytes for slot's arguments (one command line, arguments joined by spaces). `has`:
 * which boot files the slot's directory holds (systemd-boot's body names its initrd and device
 * tree only when present). @throws ENV_FULL, INVALID_INPUT
 */
export function encodeSlotKargs(kind: SlotKargsBootloader, slot: Slot, kargs: readonly string[], has: (file: string) => boolean = () => false): Uint8Array {
  const line = kargs.join(' ');
  if (kind === 'systemd-boot') return new TextEncoder().encode(formatBody(slotBody(slot, kargs, has)));
  if (kind === 'grub') return encodeGrubenv(new Map([['larch_kargs', line]]), SLOT_KARGS_FILE_BYTES);
  const bootargs = line === '' ? `larch.slot=${slot}` : `${line} larch.slot=${slot}`;
  return encodeCopy(new Map([['bootargs', bootargs]]), { sizeBytes: SLOT_KARGS_FILE_BYTES, redundant: false });
}

/**
 * The command line the bootloader would pass from this file, larch.slot= excluded (agent/kargs.ts
 * splits it). @throws ENV_CORRUPT naming `where` when the bootloader would refuse the file
 */
export function decodeSlotKargs(kind: SlotKargsBootloader, slot: Slot, bytes: Uint8Array, where: string): string {
  if (kind === 'systemd-boot') return blsLine(slot, bytes, where);
  return kind === 'grub' ? grubLine(bytes, where) : ubootLine(slot, bytes, where);
}

function blsLine(slot: Slot, bytes: Uint8Array, where: string): string {
  const body = parseBody(new TextDecoder().decode(bytes), slot);
  if (!body) throw corrupt(where, `it is not an entry body larch wrote for slot ${slot}`);
  const line = entryKargs(body.options, slot);
  if (line === null) throw corrupt(where, `its options do not end with larch.slot=${slot}`);
  return line;
}

function grubLine(bytes: Uint8Array, where: string): string {
  const line = decodeGrubenv(bytes, where).get('larch_kargs');
  if (line === undefined) throw corrupt(where, 'it has no larch_kargs');
  return line;
}

function ubootLine(slot: Slot, bytes: Uint8Array, where: string): string {
  const layout = { sizeBytes: SLOT_KARGS_FILE_BYTES, redundant: false };
  if (bytes.length !== SLOT_KARGS_FILE_BYTES) throw corrupt(where, `it is ${bytes.length} bytes, not ${SLOT_KARGS_FILE_BYTES}`);
  if (!inspectCopy(bytes, layout).crcValid) throw corrupt(where, 'its CRC does not match (a torn write)');
  const bootargs = decodeEntries(bytes.subarray(4), where).get('bootargs');
  const suffix = ` larch.slot=${slot}`;
  if (bootargs === undefined) throw corrupt(where, 'it has no bootargs');
  if (bootargs === suffix.slice(1)) return '';
  if (!bootargs.endsWith(suffix)) throw corrupt(where, `its bootargs do not end with larch.slot=${slot}`);
  return bootargs.slice(0, -suffix.length);
}

function corrupt(where: string, why: string): LarchError {
  return new LarchError('ENV_CORRUPT', `${where}: ${why}; the bootloader will not boot this slot`, { hint: "set the slot's kernel arguments again with 'larch kargs', or deploy to the slot again", data: { path: where } });
}
