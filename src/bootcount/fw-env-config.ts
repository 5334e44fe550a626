/**
 * Parses `fw_env.config`, the file that tells fw_printenv/fw_setenv (libubootenv and U-Boot's
 * tools/env) where the U-Boot env lives, so larch and those tools read the same bytes. Pure.
 *
 * ```
 * # device/file     offset     env size   [sector size   [number of sectors]]
 * /boot/uboot.env   0x0        0x4000
 * /dev/mmcblk0      0x3f8000   0x4000                    <- a second entry: redundant copy
 * ```
 * Numbers are read as the tools' sscanf("%s %lli %zx %zx %lx") reads them: the offset is C
 * integer syntax (0x hex, leading 0 octal, else decimal); sizes and the sector count are
 * ALWAYS hexadecimal, with or without 0x (so "16384" is 0x16384 there, as for the tools).
 */
import { LarchError, quash } from '../errors.ts';

export interface FwEnvDevice {
  /** Path as written (relative paths are relative to the working directory, as for the tools). */
  path: string;
  offset: number;
  envSizeBytes: number;
  /** Erase-block size (MTD); defaults to the env size. */
  sectorSizeBytes: number;
  /** Erase blocks the copy spans; defaults to enough to hold the env. */
  sectors: number;
  /** 1-based line in the config file, for messages. */
  line: number;
}

export interface FwEnvConfig {
  /** One device: single copy. Two: redundant, copy 0 then copy 1. */
  devices: FwEnvDevice[];
  redundant: boolean;
  envSizeBytes: number;
}

const MAX_ENV_BYTES = 16 * 1024 * 1024;

function fail(source: string, line: number, message: string): never {
  throw new LarchError('INVALID_INPUT', `${source} line ${line}: ${message}`, {
    data: { path: source, line },
    hint: 'each line is: DEVICE OFFSET ENVSIZE [SECTORSIZE [SECTORS]]; sizes are hexadecimal; one line = single copy, two lines = redundant',
  });
}

/** C strtoll(s, 0): optional sign, then 0x hex, 0 octal or decimal. */
function parseCInteger(text: string): number | null {
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return null;
  const digits = m[2];
  const value = /^0[xX]/.test(digits) ? parseInt(digits.slice(2), 16) : digits.length > 1 && digits.startsWith('0') ? parseInt(digits.slice(1), 8) : parseInt(digits, 10);
  return m[1] === '-' ? -value : value;
}

/** sscanf %x: hexadecimal, 0x optional. */
function parseHex(text: string): number | null {
  const m = /^(?:0[xX])?([0-9a-fA-F]+)$/.exec(text);
  return m ? parseInt(m[1], 16) : null;
}

/**
 * Parses the text of an fw_env.config. `source` names the file in messages.
 * Stricter than the tools, which skip lines they cannot read and ignore lines after the
 * second: here those are errors naming the line.
 * @throws INVALID_INPUT naming the line
 * @example parseFwEnvConfig('/boot/uboot.env 0x0 0x4000\n').devices[0].envSizeBytes // 16384
 */
export function parseFwEnvConfig(text: string, source = 'fw_env.config'): FwEnvConfig {
  const devices: FwEnvDevice[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const fields = raw.trim().split(/\s+/).filter((f) => f !== '');
    const comment = fields.findIndex((f) => f.startsWith('#'));
    if (comment >= 0) fields.length = comment;
    if (fields.length === 0) return;
    if (fields.length < 3) fail(source, line, `expected DEVICE OFFSET ENVSIZE, got '${quash(raw.trim())}'`);
    if (fields.length > 6) fail(source, line, `too many fields (${fields.length}); expected at most DEVICE OFFSET ENVSIZE SECTORSIZE SECTORS [DISABLE_LOCK]`);
    if (devices.length === 2) fail(source, line, 'a third environment; fw_env.config holds one (single copy) or two (redundant) lines');
    const [path, offsetText, sizeText, sectorText, sectorsText] = fields;
    if (/^\/dev\/ubi/.test(path)) fail(source, line, `UBI volume '${quash(path)}' is not supported by larch; use fw_setenv`);
    const offset = parseCInteger(offsetText);
    if (offset === null || !Number.isSafeInteger(offset)) fail(source, line, `offset '${quash(offsetText)}' is not an integer (0x hex, 0 octal or decimal)`);
    if (offset < 0) fail(source, line, `negative offset ${offsetText} is not supported`);
    const envSizeBytes = parseHex(sizeText);
    if (envSizeBytes === null) fail(source, line, `env size '${quash(sizeText)}' is not hexadecimal`);
    if (envSizeBytes < 16 || envSizeBytes > MAX_ENV_BYTES) fail(source, line, `env size 0x${envSizeBytes.toString(16)} is out of range (0x10..0x${MAX_ENV_BYTES.toString(16)})`);
    // A missing or zero sector size means the env size (one erase block per copy).
    const sectorSizeBytes = sectorText === undefined || parseHex(sectorText) === 0 ? envSizeBytes : parseHex(sectorText);
    if (sectorSizeBytes === null) fail(source, line, `sector size '${quash(sectorText ?? '')}' is not hexadecimal`);
    const sectors = sectorsText === undefined || parseHex(sectorsText) === 0 ? Math.ceil(envSizeBytes / sectorSizeBytes) : parseHex(sectorsText);
    if (sectors === null) fail(source, line, `number of sectors '${quash(sectorsText ?? '')}' is not hexadecimal`);
    if (sectors * sectorSizeBytes < envSizeBytes) fail(source, line, `${sectors} sector(s) of 0x${sectorSizeBytes.toString(16)} bytes cannot hold an env of 0x${envSizeBytes.toString(16)} bytes`);
    devices.push({ path, offset, envSizeBytes, sectorSizeBytes, sectors, line });
  });
  if (devices.length === 0) {
    throw new LarchError('INVALID_INPUT', `${source}: no environment line (expected DEVICE OFFSET ENVSIZE)`, { data: { path: source } });
  }
  if (devices.length === 2) {
    const [a, b] = devices;
    if (a.envSizeBytes !== b.envSizeBytes) fail(source, b.line, `the redundant copy's size 0x${b.envSizeBytes.toString(16)} differs from the first copy's 0x${a.envSizeBytes.toString(16)}`);
    if (a.path === b.path && a.offset < b.offset + b.envSizeBytes && b.offset < a.offset + a.envSizeBytes) {
      fail(source, b.line, `the redundant copy at 0x${b.offset.toString(16)} overlaps the first copy at 0x${a.offset.toString(16)} in '${quash(a.path)}'`);
    }
  }
  return { devices, redundant: devices.length === 2, envSizeBytes: devices[0].envSizeBytes };
}

/** Formats a config back to text, one device per line with hex numbers (what parseFwEnvConfig reads back). */
export function formatFwEnvConfig(config: Pick<FwEnvConfig, 'devices'>): string {
  const hex = (n: number) => `0x${n.toString(16)}`;
  return config.devices.map((d) => `${d.path} ${hex(d.offset)} ${hex(d.envSizeBytes)} ${hex(d.sectorSizeBytes)} ${hex(d.sectors)}\n`).join('');
}
