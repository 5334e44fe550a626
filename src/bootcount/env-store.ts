/**
 * Bootloader environments on disk: the U-Boot env an fw_env.config points at (regular files and
 * block devices; MTD read-only) and GRUB's grubenv file, behind one EnvStore interface.
 *
 * Every access holds an flock: for U-Boot the one libubootenv's fw_printenv/fw_setenv take
 * (/var/lock/fw_printenv.lock), so larch and those tools never interleave. Every change is one
 * read-modify-write of all variables, verified by reading back before it counts:
 * - redundant U-Boot env: the inactive copy is written in place with the next flags value and
 *   fsynced; the active copy is not touched, so a torn write leaves it winning;
 * - single-copy U-Boot env in a regular file, and grubenv: temp file, fsync, rename, fsync the
 *   directory (a file bigger than 16 MiB, e.g. a whole disk image, is written in place);
 * - block devices: in place, fsync (a torn single copy is lost: use the redundant layout).
 * Blank or damaged storage is never initialised with a partial env (U-Boot would drop every
 * variable not stored): reading it fails with ENV_CORRUPT and only `init` writes a whole env.
 */
import { constants as fsConstants } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { LarchError, fromSystemError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { writeFileAtomic } from '../_durable.ts';
import { acquireLock, type Lock } from '../store/lock.ts';
import { type FwEnvConfig, type FwEnvDevice, parseFwEnvConfig } from './fw-env-config.ts';
import { GRUBENV_DEFAULT_SIZE_BYTES, decodeGrubenv, encodeGrubenv } from './grubenv.ts';
import { type ByteOrder, type FlagScheme, type UbootEnvLayout, decodeEnv, encodeCopy, nextFlags } from './uboot-env.ts';

export interface EnvStore {
  /** All variables. @throws ENV_CORRUPT (no valid copy), NOT_FOUND (no such file), LOCKED, IO */
  read(): Promise<Map<string, string>>;
  /** Replaces the whole env with vars. Refuses blank or damaged storage (ENV_CORRUPT): use init. @throws ENV_CORRUPT, ENV_FULL, INVALID_INPUT, LOCKED, IO */
  write(vars: Map<string, string>): Promise<void>;
  /**
   * Reads, lets change() edit the map, and writes the result in one locked update (nothing is
   * written when nothing changed). Resolves to the variables now stored.
   * @throws as read and write
   */
  update(change: (vars: Map<string, string>) => unknown): Promise<{ vars: Map<string, string>; changed: boolean }>;
  /**
   * Writes vars as the whole env on blank or damaged storage (every copy of a redundant env).
   * Storage that already holds a valid env is refused with EXISTS unless force, which then
   * replaces it through the normal write.
   * @throws EXISTS, ENV_FULL, INVALID_INPUT, LOCKED, IO
   */
  init(vars: Map<string, string>, options?: { force?: boolean }): Promise<void>;
  /** One line naming the storage, for messages and --json. */
  describe(): string;
}

/** File access, replaceable so tests can inject torn writes. */
export interface EnvFileIo {
  /** Reads length bytes at offset; fewer when the file ends. */
  readAt(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** Writes bytes at offset in place (creating the file when create) and fsyncs. */
  writeAt(path: string, offset: number, bytes: Uint8Array, options?: { create?: boolean }): Promise<void>;
  /** Replaces the file atomically: temp file, fsync, rename, fsync the directory. */
  replaceFile(path: string, bytes: Uint8Array, mode: number): Promise<void>;
}

export interface EnvStoreOptions {
  /** The flock file; null takes no lock (the caller holds one). */
  lockPath?: string | null;
  lockTimeoutMs?: number;
  io?: EnvFileIo;
}

export interface UbootEnvStoreOptions extends EnvStoreOptions {
  /** Byte order of the CRC (default little); big for big-endian boards. */
  byteOrder?: ByteOrder;
}

/** The lock libubootenv's fw_printenv/fw_setenv take (and U-Boot's tools/env). */
export const UBOOT_LOCK_PATH = '/var/lock/fw_printenv.lock';
/** grub-editenv takes no lock; larch writers serialise on this one. */
export const GRUB_LOCK_PATH = '/var/lock/larch-grubenv.lock';
/** Regular files up to this size are rewritten atomically; bigger ones (disk images) in place. */
export const ATOMIC_REWRITE_MAX_BYTES = 16 * 1024 * 1024;
const GRUBENV_MAX_BYTES = 1024 * 1024;

export const nodeEnvFileIo: EnvFileIo = {
  async readAt(path, offset, length) {
    const fh = await open(path, 'r');
    try {
      const buf = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  },
  async writeAt(path, offset, bytes, options = {}) {
    const fh = await open(path, options.create ? fsConstants.O_RDWR | fsConstants.O_CREAT : fsConstants.O_RDWR, 0o644);
    try {
      let done = 0;
      while (done < bytes.length) done += (await fh.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  replaceFile: (path, bytes, mode) => writeFileAtomic(path, bytes, mode),
};

async function withLock<T>(options: EnvStoreOptions, defaultPath: string, fn: () => Promise<T>): Promise<T> {
  const path = options.lockPath === undefined ? defaultPath : options.lockPath;
  let lock: Lock | undefined;
  if (path !== null) {
    try {
      lock = await acquireLock(path, options.lockTimeoutMs ?? 30_000);
    } catch (err) {
      if (err instanceof LarchError && err.code === 'LOCKED') {
        throw new LarchError('LOCKED', `the bootloader env lock '${path}' is held by another process (fw_setenv, grub-editenv's caller or larch)`, {
          data: { path },
          hint: 'wait for the other writer; the kernel drops the lock when its holder exits',
        });
      }
      throw err;
    }
  }
  try {
    return await fn();
  } finally {
    await lock?.release();
  }
}

function sameVars(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>, ordered: boolean): boolean {
  if (a.size !== b.size) return false;
  if (ordered) {
    const bs = [...b];
    return [...a].every(([k, v], i) => bs[i][0] === k && bs[i][1] === v);
  }
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function withoutEmptyValues(vars: ReadonlyMap<string, string>): Map<string, string> {
  return new Map([...vars].filter(([, v]) => v !== ''));
}

const hex = (n: number) => `0x${n.toString(16)}`;

type DeviceKind = 'file' | 'block' | 'missing';

/** What kind of storage path is; MTD and other character devices are refused here. */
async function deviceKind(device: FwEnvDevice, source: string, forWrite: boolean): Promise<{ kind: DeviceKind; sizeBytes: number; mode: number; scheme: FlagScheme }> {
  let st;
  try {
    st = await stat(device.path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing', sizeBytes: 0, mode: 0o644, scheme: 'incremental' };
    throw fromSystemError(err, 'stat', device.path);
  }
  if (st.isFile()) return { kind: 'file', sizeBytes: st.size, mode: st.mode & 0o7777, scheme: 'incremental' };
  if (st.isBlockDevice()) return { kind: 'block', sizeBytes: Number.MAX_SAFE_INTEGER, mode: 0, scheme: 'incremental' };
  const mtd = /^\/dev\/mtd(\d+)$/.exec(device.path);
  if (st.isCharacterDevice() && mtd) {
    const type = await readFile(`/sys/class/mtd/mtd${mtd[1]}/type`, 'utf8').then((t) => t.trim(), () => 'unknown');
    // Reading NOR is plain reads; NAND needs bad-block skipping, and every MTD write an erase
    // (an ioctl Node lacks): fw_setenv does those.
    if (!forWrite && type === 'nor') return { kind: 'block', sizeBytes: Number.MAX_SAFE_INTEGER, mode: 0, scheme: 'boolean' };
    throw new LarchError('INVALID_INPUT', `${source} line ${device.line}: ${forWrite ? 'writing' : 'reading'} the U-Boot env on MTD ${type} device '${device.path}' is not supported by larch`, {
      data: { path: device.path, mtd_type: type, unsupported: true },
      hint: forWrite ? "flash needs an erase before each write; use 'fw_setenv' (libubootenv) for MTD storage" : "use 'fw_printenv' (libubootenv) for MTD NAND storage",
    });
  }
  throw new LarchError('INVALID_INPUT', `${source} line ${device.line}: '${device.path}' is not a regular file, block device or MTD device`, { data: { path: device.path } });
}

/** A U-Boot env store for the fw_env.config at configPath. @throws NOT_FOUND, INVALID_INPUT, IO */
export async function openUbootEnvStore(configPath: string, options: UbootEnvStoreOptions = {}): Promise<EnvStore> {
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (err) {
    throw fromSystemError(err, 'read fw_env.config', configPath);
  }
  return ubootEnvStore(parseFwEnvConfig(text, `'${configPath}'`), options);
}

/** A U-Boot env store for a parsed fw_env.config. */
export function ubootEnvStore(config: FwEnvConfig, options: UbootEnvStoreOptions = {}): EnvStore {
  const io = options.io ?? nodeEnvFileIo;
  const layout: UbootEnvLayout = { sizeBytes: config.envSizeBytes, redundant: config.redundant, byteOrder: options.byteOrder ?? 'little' };
  const where = config.devices.map((d) => `'${d.path}' at offset ${hex(d.offset)}`);
  const source = `U-Boot env ${where.join(' and ')} (${hex(config.envSizeBytes)} bytes${config.redundant ? ' each, redundant' : ', single copy'})`;

  /** Reads every copy; a missing file, or one too short for its copy, reads as a blank copy. */
  async function readCopies(): Promise<{ copies: Uint8Array[]; absent: string[]; scheme: FlagScheme }> {
    const copies: Uint8Array[] = [];
    const absent: string[] = [];
    let scheme: FlagScheme = 'incremental';
    for (const device of config.devices) {
      const kind = await deviceKind(device, 'fw_env.config', false);
      scheme = kind.scheme;
      let bytes: Uint8Array = new Uint8Array(0);
      if (kind.kind !== 'missing') {
        try {
          bytes = await io.readAt(device.path, device.offset, config.envSizeBytes);
        } catch (err) {
          throw fromSystemError(err, 'read U-Boot env', device.path);
        }
      }
      if (bytes.length < config.envSizeBytes) {
        absent.push(kind.kind === 'missing' ? `'${device.path}' does not exist` : `'${device.path}' ends before ${hex(device.offset + config.envSizeBytes)}`);
        const padded = new Uint8Array(config.envSizeBytes);
        padded.set(bytes);
        bytes = padded;
      }
      copies.push(bytes);
    }
    return { copies, absent, scheme };
  }

  async function readState() {
    const { copies, absent, scheme } = await readCopies();
    try {
      return { ...decodeEnv(copies, layout, { where, scheme }), copies };
    } catch (err) {
      if (err instanceof LarchError && err.code === 'ENV_CORRUPT' && absent.length > 0) {
        throw new LarchError('ENV_CORRUPT', `${err.message} (${absent.join('; ')})`, { data: { ...err.data, absent }, hint: err.hint });
      }
      throw err;
    }
  }

  async function writeCopy(index: number, bytes: Uint8Array, create: boolean): Promise<void> {
    const device = config.devices[index];
    const kind = await deviceKind(device, 'fw_env.config', true);
    try {
      if (kind.kind === 'missing' && !create) throw new LarchError('NOT_FOUND', `'${device.path}' does not exist`, { data: { path: device.path } });
      const whole = kind.kind === 'missing' || (kind.kind === 'file' && kind.sizeBytes <= ATOMIC_REWRITE_MAX_BYTES);
      if (!config.redundant && whole) {
        const size = Math.max(kind.sizeBytes, device.offset + bytes.length);
        const file = new Uint8Array(size);
        if (kind.kind === 'file') file.set(await io.readAt(device.path, 0, kind.sizeBytes));
        file.set(bytes, device.offset);
        await io.replaceFile(device.path, file, kind.mode);
      } else {
        await io.writeAt(device.path, device.offset, bytes, { create });
      }
    } catch (err) {
      throw fromSystemError(err, 'write U-Boot env', device.path);
    }
    failpoint('bootenv::after-env-write');
  }

  /** Reads every copy back: the written copy must be the one selected, byte for byte. */
  async function verify(index: number, bytes: Uint8Array): Promise<void> {
    let state;
    try {
      state = await readState();
    } catch (err) {
      throw new LarchError('IO', `${where[index]}: the U-Boot env read back after writing is not valid: ${(err as Error).message}`, { data: { path: config.devices[index].path }, cause: err });
    }
    const readBack = state.copies[index];
    if (state.active !== index || readBack.length !== bytes.length || readBack.some((b, i) => b !== bytes[i])) {
      throw new LarchError('IO', `${where[index]}: the U-Boot env read back after writing differs from what was written`, {
        data: { path: config.devices[index].path },
        hint: 'the storage does not keep what is written (read-only, failing, or written by another tool meanwhile); the previous env is still selected',
      });
    }
  }

  async function writeOver(state: Awaited<ReturnType<typeof readState>>, vars: Map<string, string>): Promise<void> {
    if (!config.redundant) {
      const bytes = encodeCopy(vars, layout);
      await writeCopy(0, bytes, false);
      return verify(0, bytes);
    }
    // The inactive copy gets the next flags value; the active one stays as it is until the
    // new copy reads back valid, so a power cut at any point leaves one valid copy.
    const target = state.active === 0 ? 1 : 0;
    const bytes = encodeCopy(vars, layout, { flags: nextFlags(state.flags ?? 0) });
    await writeCopy(target, bytes, true);
    return verify(target, bytes);
  }

  return {
    describe: () => source,
    // Optimistic: every copy carries a CRC, so a read that overlaps a writer (larch or
    // fw_setenv) finds a torn copy invalid and the other copy, or nothing valid. Only then is the
    // read repeated under the lock, after the writer. This keeps status reads from spawning a
    // flock process each (the daemon reads the env for every status report).
    read: () => readState().then(
      (state) => state.vars,
      () => withLock(options, UBOOT_LOCK_PATH, async () => (await readState()).vars),
    ),
    write: (vars) => withLock(options, UBOOT_LOCK_PATH, async () => writeOver(await readState(), vars)),
    update: (change) =>
      withLock(options, UBOOT_LOCK_PATH, async () => {
        const state = await readState();
        // `name=` is never stored (U-Boot's import reads it as a delete): drop it on both sides,
        // so an env fw_setenv left with `name=` entries is not rewritten for nothing.
        const stored = withoutEmptyValues(state.vars);
        const vars = new Map(stored);
        await change(vars);
        const changed = !sameVars(stored, withoutEmptyValues(vars), false);
        if (changed) await writeOver(state, vars);
        return { vars: withoutEmptyValues(vars), changed };
      }),
    init: (vars, initOptions = {}) =>
      withLock(options, UBOOT_LOCK_PATH, async () => {
        let state: Awaited<ReturnType<typeof readState>> | undefined;
        try {
          state = await readState();
        } catch (err) {
          if (!(err instanceof LarchError && err.code === 'ENV_CORRUPT')) throw err;
        }
        if (state) {
          if (!initOptions.force) {
            throw new LarchError('EXISTS', `${source} already holds a valid env (${state.vars.size} variables)`, {
              data: { variables: state.vars.size },
              hint: "change it with 'larch bootenv set'; --force replaces it with the defaults",
            });
          }
          return writeOver(state, vars);
        }
        if (!config.redundant) {
          const bytes = encodeCopy(vars, layout);
          await writeCopy(0, bytes, true);
          return verify(0, bytes);
        }
        // Both copies, so a later damaged copy still leaves a whole env: copy 0 with flags 1
        // (as mkenvimage -r) is selected over copy 1 with flags 0; the next write goes to copy 1.
        const copies = [encodeCopy(vars, layout, { flags: 1 }), encodeCopy(vars, layout, { flags: 0 })];
        await writeCopy(0, copies[0], true);
        await writeCopy(1, copies[1], true);
        return verify(0, copies[0]);
      }),
  };
}

/** A store for GRUB's grubenv at path. A missing file reads as NOT_FOUND; set and init create it (1024 bytes), as grub-editenv does. */
export function grubEnvStore(path: string, options: EnvStoreOptions = {}): EnvStore {
  const io = options.io ?? nodeEnvFileIo;
  const source = `GRUB env block '${path}'`;

  async function readFileState(): Promise<{ vars: Map<string, string>; sizeBytes: number; mode: number } | null> {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fromSystemError(err, 'stat', path);
    }
    if (!st.isFile()) throw new LarchError('INVALID_INPUT', `grubenv '${path}' is not a regular file`, { data: { path } });
    if (st.size > GRUBENV_MAX_BYTES) throw new LarchError('ENV_CORRUPT', `grubenv '${path}' is ${st.size} bytes, over the ${GRUBENV_MAX_BYTES}-byte limit of a GRUB env block`, { data: { path, size: st.size } });
    let bytes: Uint8Array;
    try {
      bytes = await io.readAt(path, 0, st.size);
    } catch (err) {
      throw fromSystemError(err, 'read grubenv', path);
    }
    return { vars: decodeGrubenv(bytes, `grubenv '${path}'`), sizeBytes: st.size, mode: st.mode & 0o7777 };
  }

  async function mustExist() {
    const state = await readFileState();
    if (!state) throw new LarchError('NOT_FOUND', `grubenv '${path}' does not exist`, { data: { path }, hint: "'larch bootenv set --grub FILE NAME=VALUE' or 'larch bootenv init --grub FILE' creates it" });
    return state;
  }

  async function writeBlock(vars: Map<string, string>, sizeBytes: number, mode: number): Promise<void> {
    const bytes = encodeGrubenv(vars, sizeBytes);
    try {
      await io.replaceFile(path, bytes, mode);
    } catch (err) {
      throw fromSystemError(err, 'write grubenv', path);
    }
    failpoint('bootenv::after-env-write');
    const back = await io.readAt(path, 0, bytes.length + 1).catch((err) => {
      throw fromSystemError(err, 'read back grubenv', path);
    });
    if (back.length !== bytes.length || back.some((b, i) => b !== bytes[i])) {
      throw new LarchError('IO', `grubenv '${path}': the block read back after writing differs from what was written`, { data: { path } });
    }
  }

  const fresh = { vars: new Map<string, string>(), sizeBytes: GRUBENV_DEFAULT_SIZE_BYTES, mode: 0o644 };

  return {
    describe: () => source,
    read: () => withLock(options, GRUB_LOCK_PATH, async () => (await mustExist()).vars),
    write: (vars) =>
      withLock(options, GRUB_LOCK_PATH, async () => {
        const state = (await readFileState()) ?? fresh;
        await writeBlock(vars, state.sizeBytes, state.mode);
      }),
    update: (change) =>
      withLock(options, GRUB_LOCK_PATH, async () => {
        const existing = await readFileState();
        const state = existing ?? fresh;
        const vars = new Map(state.vars);
        await change(vars);
        const changed = !existing || !sameVars(state.vars, vars, true);
        if (changed) await writeBlock(vars, state.sizeBytes, state.mode);
        return { vars, changed };
      }),
    init: (vars, initOptions = {}) =>
      withLock(options, GRUB_LOCK_PATH, async () => {
        let existing: Awaited<ReturnType<typeof readFileState>> = null;
        let damaged = false;
        try {
          existing = await readFileState();
        } catch (err) {
          if (!(err instanceof LarchError && err.code === 'ENV_CORRUPT')) throw err;
          damaged = true;
        }
        if ((existing || damaged) && !initOptions.force) {
          throw new LarchError('EXISTS', `grubenv '${path}' already exists${damaged ? ' (and is damaged)' : ''}`, {
            data: { path, damaged },
            hint: damaged ? '--force replaces it with a new block' : "change it with 'larch bootenv set'; --force replaces it",
          });
        }
        await writeBlock(vars, existing?.sizeBytes ?? GRUBENV_DEFAULT_SIZE_BYTES, existing?.mode ?? 0o644);
      }),
  };
}
