/**
 * U-Boot's binary environment, pure: encode and decode one copy, pick the winner among
 * redundant copies, the next flags value. Layout measured against mkenvimage, libubootenv 0.3.2
 * and U-Boot 2023.01 (docs/formats.md §9.1).
 *
 * ```
 * single copy (S = CONFIG_ENV_SIZE):  [crc32 u32][data: S-4 bytes]
 * redundant, each of the two copies:  [crc32 u32][flags u8][data: S-5 bytes]
 * data = "name=value\0" ... "name=value\0" "\0" padding
 * ```
 * The CRC covers the whole data area, padding included, never the flags byte; it is stored in
 * the target's byte order (little-endian unless the board is big-endian, `mkenvimage -b`).
 */
import { LarchError, quash } from '../errors.ts';
import { crc32 } from './_crc32.ts';

export type ByteOrder = 'little' | 'big';

/**
 * How redundant copies are told apart. `incremental` (files, block devices, NAND, UBI, and
 * U-Boot's own env_check_redund): the greater flags value wins, 255 -> 0 wraps. `boolean`
 * (libubootenv on MTD NOR flash, U-Boot env/flash.c): 1 active, 0 obsolete, 0xFF erased.
 */
export type FlagScheme = 'incremental' | 'boolean';

export interface UbootEnvLayout {
  /** CONFIG_ENV_SIZE: the bytes of one copy, header included. */
  sizeBytes: number;
  /** Two copies, each with a flags byte after the CRC. */
  redundant: boolean;
  /** Byte order of the stored CRC (default little). */
  byteOrder?: ByteOrder;
}

export interface EncodeOptions {
  /** The flags byte of a redundant copy (0..255); required when layout.redundant. */
  flags?: number;
  /**
   * Byte after the terminator up to the end (default 0x00, as U-Boot's own saveenv; mkenvimage
   * uses 0xFF). Readers must not care: the list ends at the first empty string.
   */
  padByte?: number;
}

/** What one copy's header says about it. */
export interface CopyState {
  crcValid: boolean;
  /** The flags byte of a redundant copy, null for a single copy. */
  flags: number | null;
  storedCrc: number;
  computedCrc: number;
  /** The CRC matches when read in the other byte order: the env is for a board of the other endianness. */
  otherByteOrderValid: boolean;
}

export interface DecodedEnv {
  /** The variables of the winning copy, in stored order. */
  vars: Map<string, string>;
  /** Index of the winning copy (always 0 for a single copy). */
  active: 0 | 1;
  /** The winning copy's flags byte (null for a single copy). */
  flags: number | null;
  copies: CopyState[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Bytes before the data area: the CRC, plus the flags byte of a redundant copy. */
export function headerBytes(redundant: boolean): 4 | 5 {
  return redundant ? 5 : 4;
}

/** Bytes of the data area of one copy (what the CRC covers). */
export function dataAreaBytes(layout: UbootEnvLayout): number {
  return layout.sizeBytes - headerBytes(layout.redundant);
}

function checkLayout(layout: UbootEnvLayout): void {
  // The smallest data area that holds one entry ("a=1\0") and the terminator.
  if (!Number.isSafeInteger(layout.sizeBytes) || layout.sizeBytes < headerBytes(layout.redundant) + 6) {
    throw new RangeError(`U-Boot env size must be an integer >= ${headerBytes(layout.redundant) + 6}, got ${layout.sizeBytes}`);
  }
}

/**
 * Checks a variable name as U-Boot's setenv does: not empty, no '=' (it ends the name) and no
 * NUL (it ends the entry). @throws INVALID_INPUT
 */
export function checkVarName(name: string): void {
  if (name === '' || name.includes('=') || name.includes('\0')) {
    throw new LarchError('INVALID_INPUT', `invalid U-Boot variable name '${quash(name)}': a name must be non-empty and hold no '=' or NUL`, {
      data: { name },
      hint: "name variables with letters, digits and '_' (BOOT_ORDER, BOOT_A_LEFT)",
    });
  }
}

/** A value may hold anything but NUL, which ends the entry. @throws INVALID_INPUT */
export function checkVarValue(name: string, value: string): void {
  if (value.includes('\0')) {
    throw new LarchError('INVALID_INPUT', `invalid value of U-Boot variable '${quash(name)}': it holds a NUL byte`, { data: { name } });
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** The entries as they will be stored: empty values dropped, sorted by name bytes (strcmp), as U-Boot and libubootenv write them. */
function storedEntries(vars: ReadonlyMap<string, string>): { name: Uint8Array; value: Uint8Array }[] {
  const out: { name: Uint8Array; value: Uint8Array }[] = [];
  for (const [name, value] of vars) {
    checkVarName(name);
    checkVarValue(name, value);
    // U-Boot's import treats `name=` as a delete, so an empty value is never written.
    if (value !== '') out.push({ name: enc.encode(name), value: enc.encode(value) });
  }
  return out.sort((a, b) => compareBytes(a.name, b.name));
}

/**
 * Bytes the variables take in the data area: each `name=value\0`, plus the final empty string.
 * U-Boot's own tools require this to fit; libubootenv 0.3.2 accepts one byte more (measured).
 */
export function envBytesNeeded(vars: ReadonlyMap<string, string>): number {
  return storedEntries(vars).reduce((n, e) => n + e.name.length + 1 + e.value.length + 1, 0) + 1;
}

function writeCrc(view: DataView, crc: number, byteOrder: ByteOrder): void {
  view.setUint32(0, crc, byteOrder === 'little');
}

/**
 * Encodes one copy of exactly layout.sizeBytes bytes.
 * @throws ENV_FULL when the variables do not fit; INVALID_INPUT for a bad name or value
 * @example encodeCopy(new Map([['a', '1']]), { sizeBytes: 0x40, redundant: false }, { padByte: 0xff }) // starts e5 b9 f4 62
 */
export function encodeCopy(vars: ReadonlyMap<string, string>, layout: UbootEnvLayout, options: EncodeOptions = {}): Uint8Array {
  checkLayout(layout);
  const header = headerBytes(layout.redundant);
  const entries = storedEntries(vars);
  const needed = entries.reduce((n, e) => n + e.name.length + 1 + e.value.length + 1, 0) + 1;
  const available = layout.sizeBytes - header;
  if (needed > available) {
    throw new LarchError('ENV_FULL', `the variables need ${needed} bytes, the U-Boot env holds ${available} (env size ${layout.sizeBytes} bytes minus a ${header}-byte header)`, {
      data: { needed_bytes: needed, available_bytes: available, env_size_bytes: layout.sizeBytes },
    });
  }
  const out = new Uint8Array(layout.sizeBytes).fill(options.padByte ?? 0);
  let at = header;
  for (const e of entries) {
    out.set(e.name, at);
    at += e.name.length;
    out[at++] = 0x3d; // '='
    out.set(e.value, at);
    at += e.value.length;
    out[at++] = 0;
  }
  out[at] = 0; // the empty string that ends the list
  if (layout.redundant) {
    const flags = options.flags;
    if (flags === undefined || !Number.isInteger(flags) || flags < 0 || flags > 255) throw new RangeError(`a redundant copy needs flags 0..255, got ${flags}`);
    out[4] = flags;
  }
  writeCrc(new DataView(out.buffer), crc32(out.subarray(header)), layout.byteOrder ?? 'little');
  return out;
}

/** Reads one copy's header and checks its CRC; never throws on bad content. */
export function inspectCopy(bytes: Uint8Array, layout: UbootEnvLayout): CopyState {
  checkLayout(layout);
  if (bytes.length !== layout.sizeBytes) throw new RangeError(`a U-Boot env copy is ${layout.sizeBytes} bytes, got ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = (layout.byteOrder ?? 'little') === 'little';
  const storedCrc = view.getUint32(0, little);
  const computedCrc = crc32(bytes.subarray(headerBytes(layout.redundant)));
  return {
    crcValid: storedCrc === computedCrc,
    flags: layout.redundant ? bytes[4] : null,
    storedCrc,
    computedCrc,
    otherByteOrderValid: storedCrc !== computedCrc && view.getUint32(0, !little) === computedCrc,
  };
}

/**
 * Parses the entries of a data area (CRC already checked). The list ends at the first empty
 * string; an area filled to its last byte without one is accepted (libubootenv writes those).
 * Entries without '=' are skipped, as libubootenv does (U-Boot's import deletes them); for a
 * name stored twice the last value wins, as in U-Boot's import.
 * @throws ENV_CORRUPT when an entry runs past the end of the area
 */
export function decodeEntries(data: Uint8Array, where = 'U-Boot env'): Map<string, string> {
  const vars = new Map<string, string>();
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const end = data.indexOf(0, at);
    if (end < 0) {
      throw new LarchError('ENV_CORRUPT', `${where}: the entry at data byte ${at} runs to the end of the data area without a NUL`, { data: { offset: at } });
    }
    const entry = data.subarray(at, end);
    const eq = entry.indexOf(0x3d);
    if (eq > 0) vars.set(dec.decode(entry.subarray(0, eq)), dec.decode(entry.subarray(eq + 1)));
    at = end + 1;
  }
  return vars;
}

/**
 * Picks the copy the bootloader and the tools use, or null when neither is valid.
 * A valid CRC always beats an invalid one. Between two valid copies (incremental scheme) the
 * greater flags value wins, except that 0 beats 255 (the counter wrapped); equal flags pick
 * copy 0 (measured with libubootenv, U-Boot's tools/env and U-Boot's env_check_redund).
 * Boolean scheme (libubootenv on NOR): greater wins, equal picks copy 0, then a copy whose
 * flags are 0xFF wins.
 * @example selectCopy([{ crcValid: true, flags: 255 }, { crcValid: true, flags: 0 }]) // 1
 */
export function selectCopy(copies: readonly [Pick<CopyState, 'crcValid' | 'flags'>, Pick<CopyState, 'crcValid' | 'flags'>], scheme: FlagScheme = 'incremental'): 0 | 1 | null {
  const [a, b] = copies;
  if (!a.crcValid && !b.crcValid) return null;
  if (a.crcValid !== b.crcValid) return a.crcValid ? 0 : 1;
  const fa = a.flags ?? 0;
  const fb = b.flags ?? 0;
  if (scheme === 'boolean') {
    if (fb === 0xff) return 1;
    if (fa === 0xff) return 0;
    return fb > fa ? 1 : 0;
  }
  if (fa === 0xff && fb === 0) return 1;
  if (fb === 0xff && fa === 0) return 0;
  return fb > fa ? 1 : 0;
}

/** The flags of the next copy written after one with `flags`: +1, wrapping 255 -> 0. */
export function nextFlags(flags: number): number {
  return (flags + 1) & 0xff;
}

function describeBad(state: CopyState, where: string): string {
  return `${where}: bad CRC (stored 0x${state.storedCrc.toString(16).padStart(8, '0')}, computed 0x${state.computedCrc.toString(16).padStart(8, '0')})`;
}

/**
 * Decodes a single-copy env (one buffer) or a redundant one (two buffers), picking the winner.
 * `where` names each copy in messages (e.g. "'/boot/uboot.env' at offset 0x0").
 * @throws ENV_CORRUPT when no copy has a valid CRC (blank or damaged storage), or the winner's entries are malformed
 */
export function decodeEnv(copies: readonly Uint8Array[], layout: UbootEnvLayout, options: { where?: readonly string[]; scheme?: FlagScheme } = {}): DecodedEnv {
  const expected = layout.redundant ? 2 : 1;
  if (copies.length !== expected) throw new RangeError(`a ${layout.redundant ? 'redundant' : 'single-copy'} env has ${expected} copies, got ${copies.length}`);
  const where = copies.map((_, i) => options.where?.[i] ?? `copy ${i}`);
  const states = copies.map((c) => inspectCopy(c, layout));
  const active = layout.redundant ? selectCopy([states[0], states[1]], options.scheme) : states[0].crcValid ? 0 : null;
  if (active === null) {
    const otherOrder = states.some((s) => s.otherByteOrderValid);
    const blank = copies.every((c) => c.every((b) => b === c[0]));
    throw new LarchError('ENV_CORRUPT', `no valid U-Boot env${blank ? ' (the storage is blank)' : ''}: ${states.map((s, i) => describeBad(s, where[i])).join('; ')}`, {
      data: { copies: states.map((s, i) => ({ where: where[i], stored_crc: s.storedCrc, computed_crc: s.computedCrc, flags: s.flags })), blank },
      hint: otherOrder
        ? `the CRC is valid in ${layout.byteOrder === 'big' ? 'little' : 'big'}-endian byte order: the env is for a board of the other endianness (--big-endian)`
        : "U-Boot boots this storage with its built-in default env; write a complete env with 'larch bootenv init --defaults FILE' (e.g. /etc/u-boot-initial-env), never a partial one",
    });
  }
  const vars = decodeEntries(copies[active].subarray(headerBytes(layout.redundant)), where[active]);
  return { vars, active, flags: states[active].flags, copies: states };
}

/**
 * Parses a defaults file in the text form mkenvimage and `fw_setenv -f` read: one
 * `name=value` per line (split at the first '='), '#' lines and empty lines skipped. An empty
 * value means "not set", as for libubootenv.
 * @throws INVALID_INPUT naming the line
 */
export function parseEnvText(text: string, source = 'env text'): Map<string, string> {
  const vars = new Map<string, string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq < 0) throw new LarchError('INVALID_INPUT', `${source} line ${i + 1}: expected NAME=VALUE, got '${quash(line)}'`, { data: { line: i + 1 } });
    const name = line.slice(0, eq);
    const value = line.slice(eq + 1);
    try {
      checkVarName(name);
      checkVarValue(name, value);
    } catch (err) {
      throw new LarchError('INVALID_INPUT', `${source} line ${i + 1}: ${(err as LarchError).message}`, { data: { line: i + 1, name } });
    }
    if (value === '') vars.delete(name);
    else vars.set(name, value);
  });
  return vars;
}
