/**
 * Writing a commit into a slot: a hardlink checkout of the commit, its vendor /etc kept as
 * usr/etc (the base of the next three-way merge, as OSTree does), the merged /etc, an empty
 * var/ (the shared S/var is mounted there), and the kernel/initramfs/device tree copied to the
 * slot's boot directory. The slot is written under a temporary name and renamed into place, and
 * its record (S/larch/deploy/X.json) is written last: a slot without a record is not a deployment.
 *
 * A signed tree is still checked before anything is written (planDeployment): /usr, /etc, /boot
 * and /var must be real directories (a symlink there would make the /etc move or the boot copy
 * act outside the deployment), and every boot file must resolve to a file inside the tree's
 * /boot. Node has no openat2(RESOLVE_BENEATH), so paths in the checkout are used only after an
 * lstat of each component says they are what the plan expects.
 */
import { copyFile, lstat, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { fromSnakeKeys, snakeKeysDeep, toSnakeKeys } from '../_keys.ts';
import { failpoint } from '../failpoint.ts';
import type { Slot } from '../bootcount/state.ts';
import { fsyncPath, syncFilesystem, writeFileAtomic } from '../_durable.ts';
import { runTool } from '../_run.ts';
import { checkout } from '../store/checkout.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import type { Sysroot } from './sysroot.ts';
import { type RecordedAgent, keepLegacyAgent, recordAgent } from './agent-binary.ts';
import { type CheckedKargs, writeSlotKargs } from './deployment-kargs.ts';

/** S/larch/deploy/X.json */
export interface DeploymentRecord {
  slot: Slot;
  commit: ObjectId;
  version: string;
  /** Commit timestamp, ISO 8601. */
  timestamp: string;
  subject: string;
  origin: { remote: string; ref: string; name?: string | null };
  /** Ids of the trusted keys whose signatures on the commit verified. */
  signedBy: string[];
  deployedAt: string;
  /** Kernel, initramfs and device tree files copied to S/boot/X/. */
  bootFiles: string[];
  /**
   * The tree's file behind each name the boards load, when they differ: {"vmlinuz":
   * "vmlinuz-6.1.0-9", "initrd.img": "initrd.img-6.1.0-9"}. The kernel is stored once, under the
   * loaded name (absent in records written before this field).
   */
  bootAliases?: Record<string, string>;
  /** What the /etc merge did (null for a first deployment, whose /etc is the vendor's). */
  etcMerge: EtcMergeSummary | null;
  /**
   * Set at the boot of this deployment when its finalize (the /etc merge again at shutdown)
   * started and did not complete: /etc edits made after the upgrade may be missing from it.
   */
  finalizeInterrupted?: { started: string; detected: string; from_slot: Slot };
  /**
   * The agent the tree carries at /usr/bin/larch (null: none, the legacy S/larch/bin/larch runs
   * this deployment). Absent in records written before agents were recorded.
   */
  agent?: RecordedAgent | null;
  /**
   * Its kernel arguments as the bootloader passes them (larch.slot= aside), also in its per-slot
   * file S/boot/X/larch.env or kargs.grubenv; absent where larch manages none (deployment-kargs.ts).
   */
  kargs?: string[];
  /** The vendor's list `kargs` was made from: the next upgrade applies the vendor's change to it (kargs.ts computeKargs). */
  kargsVendor?: string[];
}

/** S/larch/deploy/X.finalizing: written when finalize starts on slot X, removed when it completes. */
export function finalizeMarkerPath(sysroot: Sysroot, slot: Slot): string {
  return join(sysroot.larchDir, 'deploy', `${slot}.finalizing`);
}

export interface EtcMergeSummary {
  merged: number;
  conflicts: string[];
  /** Files written as FILE.larchnew beside the admin's version. */
  larchnew: string[];
  plan?: unknown;
}

/** Builds the new deployment's etc/ from (old vendor /etc, local /etc, new vendor /etc). */
export type EtcMerger = (dirs: { base: string; local: string; theirs: string; out: string }) => Promise<EtcMergeSummary>;

export interface WriteDeploymentOptions {
  origin: { remote: string; ref: string; name?: string | null };
  signedBy: string[];
  /** Merge /etc against the booted slot; absent for a first deployment. */
  merge?: { bootedSlot: Slot; merger: EtcMerger };
  /** The deployment's kernel arguments (deploymentKargs, made before anything is written); absent where the device manages none. */
  kargs?: CheckedKargs;
  /** Run at the point of no return, before the slot's old deployment is touched: stage() marks the slot unbootable. */
  replace?: () => Promise<void>;
}

/** The vendor /etc of a deployment (moved out of /etc at deploy time). */
export const VENDOR_ETC = join('usr', 'etc');

/**
 * Writes commitId into slot, replacing what the slot held, in two halves:
 *   1. the tree is checked out to deploy/X.tmp and its /etc merged there, while the slot's old
 *      deployment stays whole and bootable (hardlinks: the cost is the new /etc);
 *   2. the point of no return: opts.replace runs (the caller makes the bootloader stop booting
 *      the slot, so a power cut mid-write never boots a half-written slot), then the old tree
 *      and boot files go and the new ones are renamed into place.
 * A cancel (the cancel points of the first half) or an error before the second half leaves the
 * slot as it was. The slot must not be the booted one.
 * @throws NOT_FOUND, OBJECT_MISSING, NO_SPACE, IO; the cancel error (cancellation.ts)
 */
export async function writeDeployment(sysroot: Sysroot, repo: Repo, slot: Slot, commitId: ObjectId, opts: WriteDeploymentOptions): Promise<DeploymentRecord> {
  const commit = await repo.readCommit(commitId);
  const plan = await planDeployment(repo, commitId);
  const dir = sysroot.deployDir(slot);
  const tmp = `${dir}.tmp`;
  const bootTmp = `${sysroot.slotBootDir(slot)}.tmp`;
  // What a cut write left (a kill before its point of no return).
  for (const p of [tmp, bootTmp]) await rm(p, { recursive: true, force: true });
  await mkdir(join(sysroot.larchDir, 'deploy'), { recursive: true });
  try {
    await checkout(repo, commitId, tmp, { verify: true });
    failpoint('deploy::after-checkout');
    await checkRealDirs(tmp);
    // Vendor /etc -> usr/etc (hardlinks, never edited); /etc becomes a real copy or a merge.
    const checkedOutEtc = join(tmp, 'etc');
    const vendorEtc = join(tmp, VENDOR_ETC);
    const hasEtc = await isDir(checkedOutEtc);
    if (hasEtc && !(await exists(vendorEtc))) {
      await mkdir(join(tmp, 'usr'), { recursive: true });
      await rename(checkedOutEtc, vendorEtc);
    }
    let etcMerge: EtcMergeSummary | null = null;
    if (await isDir(vendorEtc)) {
      const bootedEtc = opts.merge ? join(sysroot.deployDir(opts.merge.bootedSlot), 'etc') : null;
      const bootedVendorEtc = opts.merge ? join(sysroot.deployDir(opts.merge.bootedSlot), VENDOR_ETC) : null;
      if (opts.merge && bootedEtc && bootedVendorEtc && (await isDir(bootedEtc))) {
        etcMerge = await opts.merge.merger({ base: bootedVendorEtc, local: bootedEtc, theirs: vendorEtc, out: join(tmp, 'etc') });
      } else {
        await copyTree(vendorEtc, join(tmp, 'etc'));
      }
    }
    failpoint('deploy::after-etc-merge');
    // var/ is a mount point for the shared S/var: the commit's /var seeds S/var once (first
    // deployment), and is never written again by larch.
    const commitVar = join(tmp, 'var');
    if (await isDir(commitVar)) {
      if (!(await exists(sysroot.varDir))) await rename(commitVar, sysroot.varDir);
      else await rm(commitVar, { recursive: true, force: true });
    }
    await mkdir(commitVar, { recursive: true });
    if (!(await exists(sysroot.varDir))) await mkdir(sysroot.varDir, { recursive: true });

    // The point of no return: from here the slot's old deployment is being replaced.
    await opts.replace?.();
    await rm(sysroot.deployRecordPath(slot), { force: true });
    await fsyncPath(join(sysroot.larchDir, 'deploy')).catch(() => {});
    failpoint('deploy::after-record-unlink');
    // Its old boot files go first, so /boot needs room for one slot's files beside the booted
    // slot's, never for three.
    for (const p of [dir, sysroot.slotBootDir(slot)]) await rm(p, { recursive: true, force: true });
    await syncFilesystem(sysroot.bootDir).catch(() => {});
    failpoint('deploy::after-old-slot-unlink');

    const bootFiles = await copyBootFiles(plan, join(tmp, 'boot'), bootTmp);
    // The arguments go with the kernel they belong to, in the same rename.
    if (opts.kargs) await writeSlotKargs(bootTmp, opts.kargs.bootloader, slot, opts.kargs.kargs);
    // S/boot is usually its own (FAT) partition: syncfs of the root does not reach it.
    await syncFilesystem(sysroot.path, [tmp]);
    await syncFilesystem(sysroot.bootDir, [bootTmp]);
    failpoint('deploy::after-boot-files');
    await rename(bootTmp, sysroot.slotBootDir(slot));
    failpoint('deploy::after-boot-rename');
    await rename(tmp, dir);
    await fsyncPath(sysroot.bootDir);
    await fsyncPath(join(sysroot.larchDir, 'deploy'));
    // ...and on vfat the renamed directories' entries are only durable once the partition is.
    await syncFilesystem(sysroot.bootDir);
    failpoint('deploy::after-slot-rename');
    // The agent that will run this deployment: its own, read now; else the device keeps the one it runs.
    const agent = await recordAgent(dir);
    if (!agent && opts.merge) await keepLegacyAgent(sysroot, sysroot.deployDir(opts.merge.bootedSlot));

    const record: DeploymentRecord = {
      slot,
      commit: commitId,
      version: commit.version,
      timestamp: new Date(commit.timestamp * 1000).toISOString(),
      subject: commit.subject,
      origin: opts.origin,
      signedBy: opts.signedBy,
      deployedAt: new Date().toISOString(),
      bootFiles,
      ...(Object.keys(plan.aliases).length > 0 ? { bootAliases: plan.aliases } : {}),
      etcMerge,
      agent,
      ...(opts.kargs ? { kargs: opts.kargs.kargs, kargsVendor: opts.kargs.kargsVendor } : {}),
    };
    await writeFileAtomic(sysroot.deployRecordPath(slot), encodeDeploymentRecord(record));
    failpoint('deploy::after-record-write');
    return record;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    await rm(bootTmp, { recursive: true, force: true }).catch(() => {});
    throw fromSystemError(err, 'deploy to slot', dir);
  }
}

/**
 * Merges /etc of a staged slot again against the booted slot's current /etc (finalize): the new
 * etc is built beside the old one and swapped in with two renames, so a power cut leaves one of
 * the two complete merges in place.
 */
export async function redoEtcMerge(sysroot: Sysroot, bootedSlot: Slot, slot: Slot, merger: EtcMerger): Promise<EtcMergeSummary> {
  const dir = sysroot.deployDir(slot);
  const fresh = join(dir, '.etc.new');
  const old = join(dir, '.etc.old');
  await recoverEtcSwap(sysroot, slot);
  await rm(fresh, { recursive: true, force: true });
  await rm(old, { recursive: true, force: true });
  const booted = sysroot.deployDir(bootedSlot);
  const summary = await merger({ base: join(booted, VENDOR_ETC), local: join(booted, 'etc'), theirs: join(dir, VENDOR_ETC), out: fresh });
  await syncFilesystem(sysroot.path, [fresh]);
  await rename(join(dir, 'etc'), old);
  failpoint('finalize::after-etc-aside');
  await rename(fresh, join(dir, 'etc'));
  await fsyncPath(dir);
  failpoint('finalize::after-etc-swap');
  await rm(old, { recursive: true, force: true });
  return summary;
}

/**
 * Completes an /etc swap that a power cut interrupted between its two renames: a slot with no
 * etc/ takes the new merge when it is there, else the old one. Run before a slot is booted or
 * merged. Says which one it took ('new': the interrupted merge is complete after all).
 */
export async function recoverEtcSwap(sysroot: Sysroot, slot: Slot): Promise<'new' | 'old' | null> {
  const dir = sysroot.deployDir(slot);
  if ((await exists(join(dir, 'etc'))) || !(await isDir(dir))) return null;
  for (const candidate of ['.etc.new', '.etc.old'] as const) {
    if (await isDir(join(dir, candidate))) {
      await rename(join(dir, candidate), join(dir, 'etc'));
      await fsyncPath(dir);
      return candidate === '.etc.new' ? 'new' : 'old';
    }
  }
  return null;
}

/** The record's fields stored under snake_case keys (records before 0.2 used these names; they are still read). */
const RECORD_KEYS = ['signedBy', 'deployedAt', 'bootFiles', 'bootAliases', 'etcMerge', 'finalizeInterrupted', 'kargsVendor'] as const;

/** The text of S/larch/deploy/X.json. */
export function encodeDeploymentRecord(record: DeploymentRecord): string {
  return JSON.stringify(toSnakeKeys(record, RECORD_KEYS), null, 2) + '\n';
}

/** The slot's record, or null when the slot holds no complete deployment. */
export async function readDeployment(sysroot: Sysroot, slot: Slot): Promise<DeploymentRecord | null> {
  let text: string;
  try {
    text = await readFile(sysroot.deployRecordPath(slot), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, 'read', sysroot.deployRecordPath(slot));
  }
  try {
    const record = fromSnakeKeys(JSON.parse(text), RECORD_KEYS) as unknown as DeploymentRecord;
    if (record.slot !== slot || typeof record.commit !== 'string') throw new Error('wrong slot or no commit');
    if (record.etcMerge?.plan) record.etcMerge.plan = snakeKeysDeep(record.etcMerge.plan);
    if (!(await isDir(sysroot.deployDir(slot)))) return null;
    return record;
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${sysroot.deployRecordPath(slot)}: not a deployment record: ${(err as Error).message}`, { hint: 'deploy to the slot again (larch upgrade or deploy)', data: { path: sysroot.deployRecordPath(slot), slot } });
  }
}

/** Removes a slot's deployment (record first, so a half-removed slot is never taken for one). */
export async function removeDeployment(sysroot: Sysroot, slot: Slot): Promise<void> {
  await rm(sysroot.deployRecordPath(slot), { force: true });
  await fsyncPath(join(sysroot.larchDir, 'deploy')).catch(() => {});
  failpoint('cleanup::after-record-unlink');
  await rm(sysroot.deployDir(slot), { recursive: true, force: true });
  await rm(sysroot.slotBootDir(slot), { recursive: true, force: true });
  failpoint('cleanup::after-deployment-unlink');
}

/** What a deployment of a commit writes to its slot's boot directory (planDeployment). */
export interface DeploymentPlan {
  /** name in S/boot/X/ <- the tree's /boot/SOURCE (a file, or the dtbs/ directory). */
  bootFiles: { name: string; source: string; bytes: number; dir: boolean }[];
  /** Loaded name -> the versioned file it stands for (DeploymentRecord.bootAliases). */
  aliases: Record<string, string>;
  /** Bytes of all boot files (what the slot takes on /boot). */
  bootBytes: number;
  /** The slot file the boards load as the kernel, or null when the tree has no kernel. */
  kernel: string | null;
}

/** The names board/ scripts load (larch_kernel, larch_initrd) and the versioned files they stand for. */
const ALIASES = [
  ['vmlinuz', 'vmlinuz-'],
  ['initrd.img', 'initrd.img-'],
] as const;
/** Where a symlink chain in /boot may lead before it counts as a loop. */
const MAX_LINK_HOPS = 8;
/** Top-level entries of a deployment that must be real directories when present. */
export const REAL_DIRS = ['usr', 'etc', 'boot', 'var'] as const;

/**
 * Reads a commit's top level and /boot from the repo (nothing is written) and decides what its
 * deployment writes to the slot's boot directory: every file of /boot once (a symlink resolved to
 * the file it names inside /boot), the newest vmlinuz-* / initrd.img-* stored under the names the
 * boards load (vmlinuz, initrd.img) instead of twice, and dtbs/.
 * @throws HOSTILE_TREE (/usr, /etc, /boot or /var not a directory; a boot symlink leading out of
 *   /boot, to a non-file or in a loop), OBJECT_MISSING, OBJECT_CORRUPT
 */
export async function planDeployment(repo: Repo, commitId: ObjectId): Promise<DeploymentPlan> {
  const commit = await repo.readCommit(commitId);
  const root = await repo.readDirTree(commit.root.tree);
  const nameOf = (n: Uint8Array) => Buffer.from(n).toString('utf8');
  const refuse = (what: string) =>
    new LarchError('HOSTILE_TREE', `commit ${commitId} (version ${commit.version}): ${what}`, {
      hint: "do not deploy this commit: a deployment's /usr, /etc, /boot and /var must be real directories and its boot files files inside its /boot; rebuild the tree",
      data: { commit: commitId },
    });
  const describe = async (id: ObjectId) => {
    const h = (await repo.readFile(id)).header;
    return h.type === 'lnk' ? `a symlink to '${quash(Buffer.from(h.target).toString('utf8'))}'` : `a ${h.type === 'reg' ? 'regular file' : h.type}`;
  };
  for (const f of root.files) {
    if ((REAL_DIRS as readonly string[]).includes(nameOf(f.name))) throw refuse(`/${nameOf(f.name)} is ${await describe(f.file)}, not a directory`);
  }
  const usr = root.dirs.find((d) => nameOf(d.name) === 'usr');
  if (usr) {
    const etc = (await repo.readDirTree(usr.tree)).files.find((f) => nameOf(f.name) === 'etc');
    if (etc) throw refuse(`/usr/etc is ${await describe(etc.file)}, not a directory`);
  }
  const plan: DeploymentPlan = { bootFiles: [], aliases: {}, bootBytes: 0, kernel: null };
  const bootDir = root.dirs.find((d) => nameOf(d.name) === 'boot');
  if (!bootDir) return plan;
  const boot = await repo.readDirTree(bootDir.tree);
  const files = new Map(boot.files.map((f) => [nameOf(f.name), f.file]));

  // Each name of /boot -> the regular file it is or (through symlinks) names inside /boot.
  const resolved = new Map<string, { source: string; bytes: number }>();
  for (const name of [...files.keys()].sort()) {
    let at = name;
    for (let hop = 0; ; hop++) {
      const h = (await repo.readFile(files.get(at)!)).header;
      if (h.type === 'reg') {
        resolved.set(name, { source: at, bytes: h.size });
        break;
      }
      if (h.type !== 'lnk') break; // a FIFO is no boot file
      const target = Buffer.from(h.target).toString('utf8');
      const inBoot = posix.normalize(target.startsWith('/') ? target : posix.join('/boot', target));
      const next = inBoot.startsWith('/boot/') ? inBoot.slice('/boot/'.length) : null;
      if (next === null || next.includes('/') || !files.has(next)) throw refuse(`/boot/${quash(name)} is a symlink to '${quash(target)}', which is not a file in the tree's /boot`);
      if (hop >= MAX_LINK_HOPS) throw refuse(`/boot/${quash(name)}: more than ${MAX_LINK_HOPS} symlinks in a row (a loop?)`);
      at = next;
    }
  }
  // The loaded names: the tree's own vmlinuz when it has one, else its newest vmlinuz-*; the
  // versioned file behind it is not stored a second time.
  const taken = new Set<string>();
  for (const [alias, prefix] of ALIASES) {
    const from = resolved.has(alias) ? alias : [...resolved.keys()].filter((n) => n.startsWith(prefix)).sort(compareVersions).at(-1);
    if (!from) continue;
    const r = resolved.get(from)!;
    plan.bootFiles.push({ name: alias, source: r.source, bytes: r.bytes, dir: false });
    if (r.source !== alias) plan.aliases[alias] = r.source;
    if (alias === 'vmlinuz') plan.kernel = alias;
    taken.add(alias);
    for (const [n, other] of resolved) if (n.startsWith(prefix) && other.source === r.source) taken.add(n);
  }
  for (const [name, r] of resolved) {
    if (!taken.has(name)) plan.bootFiles.push({ name, source: r.source, bytes: r.bytes, dir: false });
  }
  const dtbs = boot.dirs.find((d) => nameOf(d.name) === 'dtbs');
  if (dtbs) plan.bootFiles.push({ name: 'dtbs', source: 'dtbs', bytes: await treeBytes(repo, dtbs.tree), dir: true });
  plan.bootFiles.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  plan.bootBytes = plan.bootFiles.reduce((n, f) => n + f.bytes, 0);
  return plan;
}

async function treeBytes(repo: Repo, tree: ObjectId): Promise<number> {
  const dt = await repo.readDirTree(tree);
  let total = 0;
  for (const f of dt.files) {
    const h = (await repo.readFile(f.file)).header;
    if (h.type === 'reg') total += h.size;
  }
  for (const d of dt.dirs) total += await treeBytes(repo, d.tree);
  return total;
}

/** The checkout's top-level /usr, /etc, /boot, /var (and /usr/etc) are directories, not links out of it. */
async function checkRealDirs(tmp: string): Promise<void> {
  for (const p of [...REAL_DIRS, VENDOR_ETC]) {
    const st = await lstat(join(tmp, p)).catch(() => null);
    if (st && !st.isDirectory()) throw new LarchError('HOSTILE_TREE', `deployment '${tmp}': /${p} is not a directory`, { data: { path: join(tmp, p) } });
  }
}

/**
 * Copies the planned boot files from the checkout's boot/ (boot partitions are often FAT: no
 * hardlinks, no symlinks). Each source is lstat'ed first: a plain file (or the dtbs/ directory)
 * inside the checkout, never a symlink followed out of it.
 */
async function copyBootFiles(plan: DeploymentPlan, commitBoot: string, dest: string): Promise<string[]> {
  await mkdir(dest, { recursive: true });
  const copied: string[] = [];
  for (const f of plan.bootFiles) {
    const src = join(commitBoot, f.source);
    const st = await lstat(src);
    if (f.dir ? !st.isDirectory() : !st.isFile()) throw new LarchError('HOSTILE_TREE', `boot file '${src}' is not the ${f.dir ? 'directory' : 'file'} its commit names`, { data: { path: src } });
    if (f.dir) await copyTree(src, join(dest, f.name));
    else await copyFile(src, join(dest, f.name));
    copied.push(f.name);
  }
  return copied;
}

/** Kernel versions compare by their numeric fields: 6.1.0-9 < 6.1.0-10. */
function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** A real copy (owners, modes, times, symlinks kept): `cp -a`, which coreutils and busybox both have. */
async function copyTree(src: string, dest: string): Promise<void> {
  const r = await runTool('cp', ['-a', '--', src, dest], { purpose: 'to copy a directory tree', hint: "busybox's cp works too" });
  if (r.code !== 0) {
    if (/No space left/.test(r.stderr)) throw new LarchError('NO_SPACE', `copy '${src}' to '${dest}': no space left on device`, { data: { path: dest } });
    throw new LarchError('IO', `copy '${src}' to '${dest}' failed: ${r.stderr.trim()}`, { data: { path: dest } });
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function isDir(path: string): Promise<boolean> {
  return lstat(path).then(
    (st) => st.isDirectory(),
    () => false,
  );
}
