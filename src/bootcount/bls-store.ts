/**
 * The systemd-boot backend's EnvStore (issue 19; docs/boot.md "systemd-boot"): larch's boot state
 * kept in the names of Boot Loader Specification entries on the ESP, where systemd-boot counts
 * tries itself, instead of in an env block. read() returns the same BOOT_* variables the U-Boot
 * and GRUB stores return (bls.ts readBls), so state.ts, changeBootState and boot-check work
 * unchanged; write() turns the wanted variables into bls.ts's ordered file operations and runs
 * them one at a time, each durable before the next (a failpoint after each), so a power cut
 * between any two leaves a state systemd-boot boots safely (test/unit/bootcount/bls.test.ts).
 *
 * Files, under the ESP (S/boot on a device: larch's boot partition is the ESP):
 *   loader/entries/larch-a[+L[-D]].conf, larch-b…, larch-rescue.conf   the entries (bls.ts)
 *   loader/larch.env     the variables names cannot hold (BOOT_RELEASES), a grubenv block
 *                        systemd-boot never reads
 *   loader/loader.conf   written by init when absent: no default, no menu (larch never sets a
 *                        default: systemd-boot's `default` ignores tries, §4.2 run 6)
 *   X/entry.conf         slot X's body (kernel files, options), written by the deployment
 * Reads never write and never fail on garbage: a damaged entry reads as the safe default and is
 * replaced by the next write. Writes hold the lock file given (many simulated devices per host).
 */
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { fsyncPath, writeFileAtomic } from '../_durable.ts';
import { acquireLock, type Lock } from '../store/lock.ts';
import { type BlsBody, type BlsChoice, BODY_FILE, NAMED_VARIABLES, applyBlsOps, blsChoose, isParkedVariable, parkedVars, parseBody, parseEntry, planBlsWrite, readBls, rescueSlot, slotBody } from './bls.ts';
import { decodeGate } from './release-gate.ts';
import type { EnvStore } from './env-store.ts';
import { decodeGrubenv, encodeGrubenv, GRUBENV_DEFAULT_SIZE_BYTES } from './grubenv.ts';
import { type Slot, decode } from './state.ts';

export const BLS_LOCK_PATH = '/var/lock/larch-bls.lock';
/** loader.conf as larch writes it: boot the first entry at once; the rest is systemd-boot's default. */
export const LOADER_CONF = 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n';

export interface BlsPaths {
  esp: string;
  entries: string;
  larchEnv: string;
  loaderConf: string;
}

export function blsPaths(esp: string): BlsPaths {
  return { esp, entries: join(esp, 'loader', 'entries'), larchEnv: join(esp, 'loader', 'larch.env'), loaderConf: join(esp, 'loader', 'loader.conf') };
}

export interface BlsEnvStore extends EnvStore {
  /** The entries as they are now (larch's only), and what larch reads from them. */
  snapshot(): Promise<{ files: Map<string, string>; problems: string[] }>;
  /**
   * What systemd-boot does at power-on (bls.ts blsChoose), done on the files: the rename of a
   * counted entry. Entries whose kernel file is missing are passed over. Null: nothing to boot.
   */
  firmwareBoot(): Promise<BlsChoice | null>;
}

const exists = (path: string) => stat(path).then(() => true, () => false);

async function readEntries(dir: string): Promise<Map<string, string>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw fromSystemError(err, 'read', dir);
  }
  const files = new Map<string, string>();
  for (const name of names.filter((n) => n.startsWith('larch-')).sort()) {
    try {
      files.set(name, await readFile(join(dir, name), 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, 'read', join(dir, name));
    }
  }
  return files;
}

/** A slot's body: S/boot/X/entry.conf; without one, the kernel files its directory has and no arguments. Null: the slot has no boot files, or a damaged body. */
export async function readSlotBody(esp: string, slot: Slot): Promise<BlsBody | null> {
  const dir = join(esp, slot);
  const text = await readFile(join(dir, BODY_FILE), 'utf8').catch((err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, 'read', join(dir, BODY_FILE));
  });
  if (text !== null) return parseBody(text, slot);
  if (!(await exists(join(dir, 'vmlinuz')))) return null;
  const names = new Set(await readdir(dir));
  return slotBody(slot, [], (f) => names.has(f));
}

export function blsEnvStore(esp: string, options: { lockPath?: string | null; lockTimeoutMs?: number } = {}): BlsEnvStore {
  const paths = blsPaths(esp);
  const source = `systemd-boot entries '${paths.entries}'`;

  async function locked<T>(fn: () => Promise<T>): Promise<T> {
    const path = options.lockPath === undefined ? BLS_LOCK_PATH : options.lockPath;
    let lock: Lock | undefined;
    if (path !== null) lock = await acquireLock(path, options.lockTimeoutMs ?? 30_000);
    try {
      return await fn();
    } finally {
      await lock?.release();
    }
  }

  /** loader/larch.env; missing or damaged (it holds only the release floor) reads as empty. */
  async function readLarchEnv(): Promise<{ vars: Map<string, string>; problem: string | null }> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(paths.larchEnv);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { vars: new Map(), problem: null };
      throw fromSystemError(err, 'read', paths.larchEnv);
    }
    try {
      return { vars: decodeGrubenv(bytes, paths.larchEnv), problem: null };
    } catch (err) {
      return { vars: new Map(), problem: `${(err as Error).message}: read as empty` };
    }
  }

  async function current() {
    const files = await readEntries(paths.entries);
    const env = await readLarchEnv();
    const read = readBls(files, env.vars);
    return { files, env: env.vars, vars: read.vars, problems: env.problem ? [...read.problems, env.problem] : read.problems };
  }

  async function run(op: ReturnType<typeof planBlsWrite>[number]): Promise<void> {
    try {
      if (op.op === 'write') {
        await writeFileAtomic(join(paths.entries, op.name), op.text);
        failpoint('bootenv::after-bls-entry-write');
      } else if (op.op === 'rename') {
        await rename(join(paths.entries, op.from), join(paths.entries, op.to));
        await fsyncPath(paths.entries);
        // vfat: the renamed entry is durable only with its file's own fsync (writeFileAtomic's note).
        await fsyncPath(join(paths.entries, op.to));
        failpoint('bootenv::after-bls-rename');
      } else {
        await rm(join(paths.entries, op.name), { force: true });
        await fsyncPath(paths.entries);
        failpoint('bootenv::after-bls-remove');
      }
    } catch (err) {
      throw fromSystemError(err, `${op.op} a boot entry in`, paths.entries);
    }
  }

  async function writeLarchEnv(before: ReadonlyMap<string, string>, after: Map<string, string>): Promise<void> {
    if (JSON.stringify([...after].sort()) === JSON.stringify([...before].sort())) return;
    if (after.size === 0) {
      await rm(paths.larchEnv, { force: true });
      await fsyncPath(join(esp, 'loader'));
    } else await writeFileAtomic(paths.larchEnv, encodeGrubenv(after, GRUBENV_DEFAULT_SIZE_BYTES));
    failpoint('bootenv::after-bls-larch-env');
  }

  async function writeVars(vars: Map<string, string>): Promise<void> {
    const now = await current();
    await mkdir(paths.entries, { recursive: true });
    const target = decode(vars, { lkgMarker: rescueSlot(now.files) ?? 'A' });
    const gate = decodeGate(vars);
    const bodies = { A: await readSlotBody(esp, 'A'), B: await readSlotBody(esp, 'B') };
    const ops = planBlsWrite(now.files, target, bodies, gate);
    // What names cannot hold (the release floor, parked slots) goes first, so a slot is parked
    // in larch.env before its entry is renamed `+0`; a parked state no longer wanted is dropped
    // only after the entries (a slot made bootable again keeps it until its entry is).
    const final = new Map([...vars].filter(([k]) => !NAMED_VARIABLES.includes(k) && !isParkedVariable(k)));
    for (const [k, v] of parkedVars(target, gate)) final.set(k, v);
    const first = new Map(final);
    for (const [k, v] of now.env) if (isParkedVariable(k) && !first.has(k)) first.set(k, v);
    await writeLarchEnv(now.env, first);
    for (const op of ops) await run(op);
    await writeLarchEnv(first, final);
    // Leftovers of a write cut before its rename (writeFileAtomic's temp files) go last.
    for (const name of await readdir(paths.entries)) if (name.startsWith('.tmp-')) await rm(join(paths.entries, name), { force: true });
    const expected = applyBlsOps(now.files, ops);
    const back = await readEntries(paths.entries);
    if (JSON.stringify([...back].sort()) !== JSON.stringify([...expected].sort())) {
      throw new LarchError('IO', `${source}: the entries read back after writing differ from what was written`, { data: { path: paths.entries, expected: [...expected.keys()], found: [...back.keys()] }, hint: 'another writer (systemd-bless-boot, bootctl) changed them meanwhile, or the ESP does not keep what is written' });
    }
  }

  const store: BlsEnvStore = {
    describe: () => source,
    read: async () => (await current()).vars,
    snapshot: async () => {
      const c = await current();
      return { files: c.files, problems: c.problems };
    },
    write: (vars) => locked(() => writeVars(vars)),
    update: (change) =>
      locked(async () => {
        const { vars: stored } = await current();
        const vars = new Map(stored);
        await change(vars);
        const changed = vars.size !== stored.size || [...vars].some(([k, v]) => stored.get(k) !== v);
        if (changed) await writeVars(vars);
        return { vars: changed ? (await current()).vars : vars, changed };
      }),
    init: (vars, initOptions = {}) =>
      locked(async () => {
        const now = await current();
        if (now.files.size > 0 && !initOptions.force) {
          throw new LarchError('EXISTS', `${source} already holds larch's entries (${[...now.files.keys()].join(', ')})`, { data: { entries: [...now.files.keys()] }, hint: '--force replaces them' });
        }
        await mkdir(paths.entries, { recursive: true });
        if (!(await exists(paths.loaderConf))) await writeFileAtomic(paths.loaderConf, LOADER_CONF);
        await writeVars(vars);
      }),
    firmwareBoot: () =>
      locked(async () => {
        const files = await readEntries(paths.entries);
        // systemd-boot passes over an entry whose kernel file is missing, spending no try (§4.2 run 7).
        const kernels = new Set<string>();
        for (const text of files.values()) {
          const linux = parseEntry(text)?.linux;
          if (linux && (await exists(join(esp, linux)))) kernels.add(linux);
        }
        const choice = blsChoose(files, { kernelExists: (p) => kernels.has(p) });
        if (choice?.wrote) {
          const to = [...choice.files.keys()].find((n) => !files.has(n))!;
          await run({ op: 'rename', from: choice.name, to });
        }
        return choice;
      }),
  };
  return store;
}
