/**
 * Writing a commit into a slot: a hardlink checkout of the commit, its vendor /etc kept as
 * usr/etc (the base of the next three-way merge, as OSTree does), the merged /etc, an empty
 * var/ (the shared S/var is mounted there), and the kernel/initramfs/device tree copied to the
 * slot's boot directory. The slot is written under a temporary name and renamed into place, and
 * its record (S/larch/deploy/X.json) is written last: a slot without a record is not a deployment.
 */
import { spawnSync } from 'node:child_process';
import { copyFile, lstat, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import type { Slot } from '../bootcount/state.ts';
import { fsyncPath, syncFilesystem, writeFileAtomic } from '../store/_durable.ts';
import { checkout } from '../store/checkout.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import type { Sysroot } from './sysroot.ts';

/** S/larch/deploy/X.json */
export interface DeploymentRecord {
  slot: Slot;
  commit: ObjectId;
  version: string;
  /** Commit timestamp, ISO 8601. */
  timestamp: string;
  subject: string;
  origin: { remote: string; ref: string };
  /** Ids of the trusted keys whose signatures on the commit verified. */
  signedBy: string[];
  deployedAt: string;
  /** Kernel, initramfs and device tree files copied to S/boot/X/. */
  bootFiles: string[];
  /** What the /etc merge did (null for a first deployment, whose /etc is the vendor's). */
  etcMerge: EtcMergeSummary | null;
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
  origin: { remote: string; ref: string };
  signedBy: string[];
  /** Merge /etc against the booted slot; absent for a first deployment. */
  merge?: { bootedSlot: Slot; merger: EtcMerger };
}

/** The vendor /etc of a deployment (moved out of /etc at deploy time). */
export const VENDOR_ETC = join('usr', 'etc');

/**
 * Writes commitId into slot, replacing what the slot held. The caller must first make the
 * bootloader stop booting the slot (its state marked bad), so a power cut mid-write never boots a
 * half-written slot; and the slot must not be the booted one.
 * @throws NOT_FOUND, OBJECT_MISSING, NO_SPACE, IO
 */
export async function writeDeployment(sysroot: Sysroot, repo: Repo, slot: Slot, commitId: ObjectId, opts: WriteDeploymentOptions): Promise<DeploymentRecord> {
  const commit = await repo.readCommit(commitId);
  const dir = sysroot.deployDir(slot);
  const tmp = `${dir}.tmp`;
  const bootTmp = `${sysroot.slotBootDir(slot)}.tmp`;
  await rm(sysroot.deployRecordPath(slot), { force: true });
  await fsyncPath(join(sysroot.larchDir, 'deploy')).catch(() => {});
  for (const p of [tmp, dir, bootTmp]) await rm(p, { recursive: true, force: true });
  await mkdir(join(sysroot.larchDir, 'deploy'), { recursive: true });

  await checkout(repo, commitId, tmp);
  try {
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
    // var/ is a mount point for the shared S/var: the commit's /var seeds S/var once (first
    // deployment), and is never written again by larch.
    const commitVar = join(tmp, 'var');
    if (await isDir(commitVar)) {
      if (!(await exists(sysroot.varDir))) await rename(commitVar, sysroot.varDir);
      else await rm(commitVar, { recursive: true, force: true });
    }
    await mkdir(commitVar, { recursive: true });
    if (!(await exists(sysroot.varDir))) await mkdir(sysroot.varDir, { recursive: true });

    const bootFiles = await copyBootFiles(join(tmp, 'boot'), bootTmp);
    // S/boot is usually its own (FAT) partition: syncfs of the root does not reach it.
    await syncFilesystem(sysroot.path, [tmp]);
    await syncFilesystem(sysroot.bootDir, [bootTmp]);
    await rm(sysroot.slotBootDir(slot), { recursive: true, force: true });
    await rename(bootTmp, sysroot.slotBootDir(slot));
    await rename(tmp, dir);
    await fsyncPath(sysroot.bootDir);
    await fsyncPath(join(sysroot.larchDir, 'deploy'));
    // ...and on vfat the renamed directories' entries are only durable once the partition is.
    await syncFilesystem(sysroot.bootDir);

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
      etcMerge,
    };
    await writeFileAtomic(sysroot.deployRecordPath(slot), JSON.stringify(record, null, 2) + '\n');
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
  await rename(fresh, join(dir, 'etc'));
  await fsyncPath(dir);
  await rm(old, { recursive: true, force: true });
  return summary;
}

/**
 * Completes an /etc swap that a power cut interrupted between its two renames: a slot with no
 * etc/ takes the new merge when it is there, else the old one. Run before a slot is booted or merged.
 */
export async function recoverEtcSwap(sysroot: Sysroot, slot: Slot): Promise<void> {
  const dir = sysroot.deployDir(slot);
  if ((await exists(join(dir, 'etc'))) || !(await isDir(dir))) return;
  for (const candidate of ['.etc.new', '.etc.old']) {
    if (await isDir(join(dir, candidate))) {
      await rename(join(dir, candidate), join(dir, 'etc'));
      await fsyncPath(dir);
      return;
    }
  }
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
    const record = JSON.parse(text) as DeploymentRecord;
    if (record.slot !== slot || typeof record.commit !== 'string') throw new Error('wrong slot or no commit');
    if (!(await isDir(sysroot.deployDir(slot)))) return null;
    return record;
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${sysroot.deployRecordPath(slot)}: not a deployment record: ${(err as Error).message}`, { hint: 'deploy to the slot again (larch upgrade or deploy)' });
  }
}

/** Removes a slot's deployment (record first, so a half-removed slot is never taken for one). */
export async function removeDeployment(sysroot: Sysroot, slot: Slot): Promise<void> {
  await rm(sysroot.deployRecordPath(slot), { force: true });
  await fsyncPath(join(sysroot.larchDir, 'deploy')).catch(() => {});
  await rm(sysroot.deployDir(slot), { recursive: true, force: true });
  await rm(sysroot.slotBootDir(slot), { recursive: true, force: true });
}

/**
 * Kernel, initramfs and device trees from the commit's /boot, copied (boot partitions are often
 * FAT: no hardlinks, no symlinks). The newest vmlinuz-* / initrd.img-* are also copied as
 * `vmlinuz` / `initrd.img`, the names board/ scripts load by default.
 */
async function copyBootFiles(commitBoot: string, dest: string): Promise<string[]> {
  await mkdir(dest, { recursive: true });
  const names = (await isDir(commitBoot)) ? (await readdir(commitBoot)).sort() : [];
  const copied: string[] = [];
  for (const name of names) {
    const st = await lstat(join(commitBoot, name));
    if (!st.isFile() && !(st.isDirectory() && name === 'dtbs')) continue;
    if (st.isDirectory()) await copyTree(join(commitBoot, name), join(dest, name));
    else await copyFile(join(commitBoot, name), join(dest, name));
    copied.push(name);
  }
  const newest = (prefix: string) => names.filter((n) => n.startsWith(prefix)).sort(compareVersions).at(-1);
  for (const [prefix, alias] of [['vmlinuz-', 'vmlinuz'], ['initrd.img-', 'initrd.img']] as const) {
    const file = newest(prefix);
    if (file && !names.includes(alias)) {
      await copyFile(join(commitBoot, file), join(dest, alias));
      copied.push(alias);
    }
  }
  return copied;
}

/** Kernel versions compare by their numeric fields: 6.1.0-9 < 6.1.0-10. */
function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** A real copy (owners, modes, times, symlinks kept): `cp -a`, which coreutils and busybox both have. */
async function copyTree(src: string, dest: string): Promise<void> {
  const r = spawnSync('cp', ['-a', '--', src, dest], { encoding: 'utf8' });
  if (r.error) throw new LarchError('TOOL_MISSING', `cannot run 'cp': ${r.error.message}`);
  if (r.status !== 0) {
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
