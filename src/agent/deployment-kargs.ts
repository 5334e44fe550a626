/**
 * The kernel arguments of deployments on a device (issue 19; docs/boot.md "Kernel arguments per slot").
 * The rules are kargs.ts's (pure); this module reads and writes them: the vendor's list of a
 * commit (the board's defaults from config.json, then the commit's /usr/lib/larch/kargs.d/*.conf),
 * a deployment's list (its record), and the per-slot file the bootloader reads
 * (bootcount/slot-kargs.ts). A device provisioned without --kargs has no board defaults: larch
 * then leaves the command line to the boot script (larch_bootargs) and manages none.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import { decodeSlotKargs, encodeSlotKargs, slotKargsFileName } from '../bootcount/slot-kargs.ts';
import type { Slot } from '../bootcount/state.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import { readTreeDir } from '../store/tree-file.ts';
import { splitCommandLine, vendorKargs } from './kargs.ts';
import type { BootloaderKind, DeviceConfig, Sysroot } from './sysroot.ts';

/** Where a commit's vendor arguments are, in its tree. */
export const KARGS_D = 'usr/lib/larch/kargs.d';

/** How a deployment's arguments are made (deploymentKargs). */
export interface DeploymentKargs {
  bootloader: BootloaderKind;
  /** The board's defaults (config.json `kargs`). */
  defaults: readonly string[];
  /** The deployment's list from the commit's vendor list (computeKargs, editKargs, or the vendor list itself). */
  derive: (vendor: string[]) => string[];
}

/** A deployment's two lists (its record's `kargs` and `kargs_vendor`). */
export interface KargsPair {
  kargs: string[];
  kargsVendor: string[];
}

/** A deployment's lists, checked for its bootloader: what writeDeployment writes (record and per-slot file). */
export type CheckedKargs = KargsPair & { bootloader: BootloaderKind };

/**
 * The vendor's arguments of a commit: `defaults`, then each regular KARGS_D/*.conf of its tree
 * in byte order of name. @throws INVALID_INPUT (a bad line, naming file and line; a .conf that is
 * not a regular file), OBJECT_MISSING, OBJECT_CORRUPT
 */
export async function commitVendorKargs(repo: Repo, commitId: ObjectId, defaults: readonly string[]): Promise<string[]> {
  const commit = await repo.readCommit(commitId);
  const { files, skipped } = await readTreeDir(repo, commit.root, KARGS_D);
  const odd = skipped.filter((n) => n.endsWith('.conf'));
  if (odd.length > 0) throw new LarchError('INVALID_INPUT', `commit ${commitId} (version ${commit.version}): /${KARGS_D}/${odd[0]} is not a regular file`, { hint: `ship kernel arguments as regular files /${KARGS_D}/NAME.conf, and rebuild the tree`, data: { commit: commitId, path: `/${KARGS_D}/${odd[0]}` } });
  const conf = files.filter((f) => f.name.endsWith('.conf')).map((f) => ({ name: `/${KARGS_D}/${f.name}`, text: f.content.toString('utf8') }));
  return vendorKargs(defaults, conf);
}

/**
 * A deployment's lists as its record has them; a record written before kargs existed (or by an
 * older agent) has the board's defaults, which its boot script passes. Null: not managed here.
 */
export function recordKargs(config: DeviceConfig, record: { kargs?: string[]; kargsVendor?: string[] }): KargsPair | null {
  if (record.kargs) return { kargs: record.kargs, kargsVendor: record.kargsVendor ?? config.kargs ?? [] };
  return config.kargs ? { kargs: [...config.kargs], kargsVendor: [...config.kargs] } : null;
}

/**
 * Why the bootloader cannot pass `kargs` as they are, or null. GRUB's `linux` command rebuilds
 * the command line from words and puts a backslash before every `"`, `'` and `\` (GRUB's
 * grub_create_loader_cmdline), so `opt="a b"` would reach the kernel as `opt=\"a b\"`. U-Boot
 * passes `bootargs` as stored.
 */
export function bootloaderKargsProblem(kind: BootloaderKind, kargs: readonly string[]): string | null {
  if (kind !== 'grub') return null;
  const bad = kargs.find((a) => /["'\\]/.test(a));
  return bad === undefined ? null : `'${bad}' has a quote or a backslash, which GRUB escapes with a backslash when it passes the command line, so the kernel would not get it as written`;
}

/**
 * The deployment's lists for `k`, checked against its bootloader, before anything is written.
 * @throws INVALID_INPUT (a bad kargs.d file; arguments the bootloader cannot pass)
 */
export async function deploymentKargs(repo: Repo, commitId: ObjectId, k: DeploymentKargs): Promise<CheckedKargs> {
  const kargsVendor = await commitVendorKargs(repo, commitId, k.defaults);
  const kargs = k.derive(kargsVendor);
  const problem = bootloaderKargsProblem(k.bootloader, kargs);
  if (problem) throw new LarchError('INVALID_INPUT', `commit ${commitId}: kernel argument ${problem}`, { hint: `remove it from /${KARGS_D} (or the board's defaults)`, data: { commit: commitId, kargs } });
  return { kargs, kargsVendor, bootloader: k.bootloader };
}

/** S/boot/X/larch.env, S/boot/X/kargs.grubenv or S/boot/X/entry.conf (systemd-boot). */
export function slotKargsPath(sysroot: Sysroot, kind: BootloaderKind, slot: Slot): string {
  return join(sysroot.slotBootDir(slot), slotKargsFileName(kind));
}

/** Writes slot's file (into `dir`, the slot's boot directory or its temporary twin). */
export async function writeSlotKargs(dir: string, kind: BootloaderKind, slot: Slot, kargs: readonly string[]): Promise<void> {
  const names = new Set(kind === 'systemd-boot' ? await readdir(dir) : []);
  await writeFileAtomic(join(dir, slotKargsFileName(kind)), encodeSlotKargs(kind, slot, kargs, (f) => names.has(f)));
}

/**
 * The arguments slot's bootloader passes from its file; null when the slot has none (the boot
 * script's larch_bootargs then). @throws ENV_CORRUPT (a torn file: the slot does not boot)
 */
export async function readSlotKargs(sysroot: Sysroot, kind: BootloaderKind, slot: Slot): Promise<string[] | null> {
  const path = slotKargsPath(sysroot, kind, slot);
  const bytes = await readFile(path).catch((err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  });
  return bytes ? splitCommandLine(decodeSlotKargs(kind, slot, bytes, path), path) : null;
}
