/**
 * The config file of a real board, a lab's (TOML; every field commented in
 * hil-tests/lab.example.toml, described in hil-tests/README.md). Pure: parse and check, every
 * error naming the file and the field.
 */
import { parse } from 'smol-toml';
import type { Bootloader } from './board.ts';

export interface SerialBoardConfig {
  name: string;
  /** What the config says the board boots with (checked against the profile's), if it says. */
  bootloader?: Bootloader;
  /** The board profile (board/profiles/NAME.toml) the image is built for: `larch image build --board`. */
  profile: string;
  /** The image definition (default images/PROFILE.toml of the larch tree); relative to the config file's directory. */
  definition?: string;
  /** The board's boot firmware for the profile's `firmware` boot files (`image build --firmware-dir`); relative to the config file's directory. */
  firmwareDir?: string;
  /** The host address the board reaches `larch serve` at, and the interface to listen on. */
  serverHost: string;
  listenHost: string;
  setup: string[];
  serial: { device: string; baud: number };
  power: { on: string; off: string; settleMs: number };
  /** Writes {image} onto the board's storage while it is off. */
  flash: string;
}

export class ConfigError extends Error {}

const BOOTLOADERS: Bootloader[] = ['grub', 'uboot', 'systemd-boot'];

export function parseBoardConfig(text: string, file: string): SerialBoardConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`${file}: not valid TOML: ${(e as Error).message}`);
  }
  const err = (field: string, what: string) => new ConfigError(`${file}: field '${field}' ${what} (see hil-tests/lab.example.toml)`);
  const table = (name: string): Record<string, unknown> => {
    const v = doc[name];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw err(name, 'must be a table');
    return v as Record<string, unknown>;
  };
  const str = (obj: Record<string, unknown>, key: string, field: string, def?: string): string => {
    const v = obj[key] ?? def;
    if (typeof v !== 'string' || v === '') throw err(field, def === undefined ? 'is required (a non-empty string)' : 'must be a non-empty string');
    return v;
  };
  const int = (obj: Record<string, unknown>, key: string, field: string, def: number): number => {
    const v = obj[key] ?? def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw err(field, 'must be a non-negative integer');
    return v;
  };
  const known = new Set(['name', 'profile', 'image_board', 'definition', 'firmware_dir', 'bootloader', 'server_host', 'listen_host', 'setup', 'serial', 'power', 'flash']);
  for (const k of Object.keys(doc)) if (!known.has(k)) throw err(k, `is unknown (known: ${[...known].join(', ')})`);
  const bootloader = doc.bootloader === undefined ? undefined : str(doc, 'bootloader', 'bootloader');
  if (bootloader !== undefined && !BOOTLOADERS.includes(bootloader as Bootloader)) throw err('bootloader', `must be one of ${BOOTLOADERS.join(', ')}`);
  // image_board: this field's name before board profiles (issue 19); the same thing.
  if (doc.profile !== undefined && doc.image_board !== undefined) throw err('image_board', "is the older name of 'profile': give one of them");
  const profile = doc.profile !== undefined ? str(doc, 'profile', 'profile') : str(doc, 'image_board', 'profile');
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(profile)) throw err('profile', `'${profile}' is not a board profile name (board/profiles/NAME.toml)`);
  const definition = doc.definition === undefined ? undefined : str(doc, 'definition', 'definition');
  const firmwareDir = doc.firmware_dir === undefined ? undefined : str(doc, 'firmware_dir', 'firmware_dir');
  const setup = doc.setup ?? [];
  if (!Array.isArray(setup) || setup.some((s) => typeof s !== 'string')) throw err('setup', 'must be an array of strings');
  const serial = table('serial');
  const power = table('power');
  const flash = table('flash');
  const command = str(flash, 'command', 'flash.command');
  if (!command.includes('{image}')) throw err('flash.command', 'must contain {image} (the disk image path)');
  return {
    name: str(doc, 'name', 'name'),
    ...(bootloader === undefined ? {} : { bootloader: bootloader as Bootloader }),
    profile,
    ...(definition === undefined ? {} : { definition }),
    ...(firmwareDir === undefined ? {} : { firmwareDir }),
    serverHost: str(doc, 'server_host', 'server_host'),
    listenHost: str(doc, 'listen_host', 'listen_host', '0.0.0.0'),
    setup: setup as string[],
    serial: { device: str(serial, 'device', 'serial.device'), baud: int(serial, 'baud', 'serial.baud', 115200) },
    power: { on: str(power, 'on', 'power.on'), off: str(power, 'off', 'power.off'), settleMs: int(power, 'settle_ms', 'power.settle_ms', 2000) },
    flash: command,
  };
}
