/**
 * Pure: whether a staged deployment can be applied live (`larch apply-live`), from the tree diff
 * of the booted and the staged commits and their records. A kernel, an initramfs, kernel modules
 * or kernel arguments that change need a reboot: the running kernel stays the booted one, and
 * a live tree whose modules are not the running kernel's breaks the next module load
 * (rpm-ostree#2415). /etc conflicts need the admin first.
 */
import type { TreeDiff } from '../../store/diff.ts';
import type { DeploymentRecord } from '../deploy.ts';

export type LiveRefusal = 'nothing-staged' | 'kernel-changed' | 'initramfs-changed' | 'modules-changed' | 'kargs-changed' | 'etc-conflicts' | 'live-applied' | 'mount-namespace';

export interface LiveBlock {
  reason: LiveRefusal;
  message: string;
  /** The changed paths (or conflicts) behind it. */
  paths: string[];
}

const isInitramfs = (p: string) => /^\/boot\/initrd\.img(-[^/]*)?$/.test(p) || /^\/boot\/initramfs[^/]*$/.test(p);
const isModules = (p: string) => /^\/usr\/lib\/modules\//.test(p) || /^\/lib\/modules\//.test(p);

/** Every reason the change from booted to staged cannot go live, in the order they are told (empty: it can). */
export function liveBlocks(diff: TreeDiff, booted: DeploymentRecord, staged: DeploymentRecord): LiveBlock[] {
  const changed = [...diff.added, ...diff.removed, ...diff.modified].sort();
  const boot = changed.filter((p) => p.startsWith('/boot/') && !p.endsWith('/'));
  const blocks: LiveBlock[] = [];
  const kernel = boot.filter((p) => !isInitramfs(p));
  if (kernel.length > 0) blocks.push({ reason: 'kernel-changed', message: `the kernel or boot files change (${kernel.join(', ')}): the running kernel cannot be replaced without a reboot`, paths: kernel });
  const initramfs = boot.filter(isInitramfs);
  if (initramfs.length > 0) blocks.push({ reason: 'initramfs-changed', message: `the initramfs changes (${initramfs.join(', ')}): it runs only at boot`, paths: initramfs });
  const modules = changed.filter(isModules);
  if (modules.length > 0) blocks.push({ reason: 'modules-changed', message: `kernel modules change (${modules.length} paths under /usr/lib/modules): the running kernel would load modules of another build`, paths: modules });
  if (JSON.stringify(booted.kargs ?? null) !== JSON.stringify(staged.kargs ?? null)) {
    blocks.push({ reason: 'kargs-changed', message: `the kernel arguments change ('${(booted.kargs ?? []).join(' ')}' -> '${(staged.kargs ?? []).join(' ')}'): they take effect at boot`, paths: [] });
  }
  const conflicts = staged.etcMerge?.conflicts ?? [];
  if (conflicts.length > 0) blocks.push({ reason: 'etc-conflicts', message: `the /etc merge of the staged deployment has conflicts (${conflicts.join(', ')})`, paths: conflicts });
  return blocks;
}

/** The files a live switch changes for running programs: the diff's /usr entries (directories marked with a trailing '/'). */
export function usrChanges(diff: TreeDiff): TreeDiff {
  const usr = (ps: string[]) => ps.filter((p) => p.startsWith('/usr/') && !p.startsWith('/usr/etc/'));
  return { added: usr(diff.added), removed: usr(diff.removed), modified: usr(diff.modified) };
}

/** The vendor /etc changes (the commit's /etc, kept in the deployment as /usr/etc), as /etc paths. */
export function etcChanges(diff: TreeDiff): string[] {
  const etc = (p: string) => (p.startsWith('/etc/') ? p : p.startsWith('/usr/etc/') ? p.slice(4) : null);
  return [...new Set([...diff.added, ...diff.removed, ...diff.modified].map(etc).filter((p): p is string => p !== null))].sort();
}
