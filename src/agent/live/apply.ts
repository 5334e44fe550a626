/**
 * `larch apply-live`: the staged deployment, live without a reboot, for a change of userspace
 * only (rpm-ostree's apply-live, docs/design/issue-20-device-verbs.md §6). The staged slot X is a
 * complete, verified checkout, so nothing is copied: X/usr is bound read-only over the running
 * /usr and X/etc (the /etc X boots with) over the running /etc, one mount each, so new lookups
 * see the new tree at once; then the services whose files changed are restarted. The boot state
 * is not touched: X stays staged for the next boot with its tries, boot-check confirms it as
 * usual, and the booted slot's /etc stays as it was for a fallback.
 * The report comes first (and alone with --dry-run): the changed files, packages, the processes
 * that hold a changed file and the services to restart.
 */
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool, stderrTail } from '../../_run.ts';
import { type Slot, isBootable, other } from '../../bootcount/state.ts';
import { LarchError } from '../../errors.ts';
import { type PackageDiff, diffCommitPackages } from '../../packages/package-diff.ts';
import { diffCommits } from '../../store/diff.ts';
import { bootedSlot, readBootState } from '../boot.ts';
import { readDeployment } from '../deploy.ts';
import { appendJournal } from '../journal.ts';
import { bootId } from '../lock-owner.ts';
import type { Sysroot } from '../sysroot.ts';
import { requireBootedGood } from '../update.ts';
import { type LiveBlock, etcChanges, liveBlocks, usrChanges } from './plan.ts';
import { type ProcessUse, type WatchedFile, processesUsing, watch } from './procs.ts';
import { readLive, writeLive } from './state.ts';
import { type InitSystem, type UnitToRestart, initSystemOf, restartUnits, sysvinitServicesOf, unitsToRestart } from './units.ts';

export interface LiveOptions {
  dryRun?: boolean;
  /** Where the running system's root is (default '/'); tests give a directory in a mount namespace of their own. */
  liveRoot?: string;
  /** Where its processes are (default '/proc'). */
  procRoot?: string;
}

export interface LiveReport {
  result: 'dry-run' | 'applied';
  slot: Slot;
  from: { commit: string; version: string };
  to: { commit: string; version: string };
  files: { added: string[]; modified: string[]; removed: string[]; total: number };
  etc: { changed: string[] };
  packages: PackageDiff | null;
  init: InitSystem;
  units: UnitToRestart[];
  processes: ProcessUse[];
  /** Why it cannot go live (dry-run reports them; a real run refuses with the first). */
  refused: LiveBlock[];
  restarted: { name: string; exit_code: number; stderr: string }[];
}

/** @throws REFUSED (nothing-staged, booted-unconfirmed, live-applied, kernel-changed, initramfs-changed, modules-changed, kargs-changed, etc-conflicts, mount-namespace), IO */
export async function applyLive(sysroot: Sysroot, opts: LiveOptions = {}): Promise<LiveReport> {
  const root = opts.liveRoot ?? '/';
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const bootedName = (await bootedSlot(sysroot)) ?? state.order[0];
  const booted = await readDeployment(sysroot, bootedName);
  const slot = other(bootedName);
  const staged = await readDeployment(sysroot, slot);
  if (!booted) throw new LarchError('NOT_FOUND', `the booted slot ${bootedName} holds no deployment`, { hint: 'provision the device first', data: { slot: bootedName } });
  if (!staged || state.order[0] !== slot || state.slots[slot].good || !isBootable(state, slot)) {
    throw refusal('nothing-staged', `no update is staged in slot ${slot}: apply-live makes a staged update live`, "run 'larch upgrade' (or deploy, rebase) first, then apply-live", { slot });
  }
  requireBootedGood(state, { slot: bootedName, record: booted });
  const live = await readLive(sysroot);
  if (!opts.dryRun && live?.state === 'live' && live.slot === slot && live.commit === staged.commit) {
    throw refusal('live-applied', `version ${staged.version} in slot ${slot} is live already (since ${live.since})`, 'reboot to boot it; larch status shows it', { slot, commit: staged.commit });
  }

  // The report.
  const repo = await sysroot.openRepo();
  const diff = await diffCommits(repo, booted.commit, staged.commit);
  const usr = usrChanges(diff);
  const blocks = liveBlocks(diff, booted, staged);
  const [metaFrom, metaTo] = await Promise.all([repo.readCommit(booted.commit), repo.readCommit(staged.commit)]).then((c) => c.map((x) => x.metadata));
  // The running files that change or go, by device and inode: what a process may hold.
  const watched: WatchedFile[] = [];
  for (const p of [...usr.modified, ...usr.removed].filter((p) => !p.endsWith('/'))) {
    const w = await watch(join(root, p), p);
    if (w) watched.push(w);
  }
  const processes = await processesUsing(watched, { procRoot: opts.procRoot });
  const init = initSystemOf(root);
  // Without systemd a process's service is the script whose pid file names it.
  if (init === 'sysvinit') {
    const services = await sysvinitServicesOf(processes.map((p) => p.pid), root);
    for (const p of processes) p.unit ??= services.get(p.pid) ?? null;
  }
  const etc = etcChanges(diff);
  const changedPaths = [...usr.added, ...usr.modified, ...usr.removed, ...etc].filter((p) => !p.endsWith('/'));
  const units = await unitsToRestart(changedPaths, processes, { root, init });
  const report: LiveReport = {
    result: 'dry-run',
    slot,
    from: { commit: booted.commit, version: booted.version },
    to: { commit: staged.commit, version: staged.version },
    files: { added: usr.added, modified: usr.modified, removed: usr.removed, total: usr.added.length + usr.modified.length + usr.removed.length },
    etc: { changed: etc },
    packages: diffCommitPackages(metaFrom, metaTo),
    init,
    units,
    processes,
    refused: blocks,
    restarted: [],
  };
  if (opts.dryRun) return report;
  if (blocks.length > 0) {
    const b = blocks[0];
    throw refusal(b.reason, `cannot apply version ${staged.version} live: ${b.message}`, 'reboot into it instead (larch status shows it staged)', { slot, blocks: blocks.map((x) => ({ reason: x.reason, paths: x.paths.slice(0, 20) })) });
  }
  if (root === '/') await requireInitNamespace();

  // The switch: /usr first (read-only: its files are the repo's objects), then /etc.
  const deployed = sysroot.deployDir(slot);
  const since = new Date().toISOString();
  await writeLive(sysroot, { slot, commit: staged.commit, version: staged.version, boot_id: bootId(), since, state: 'switching' });
  // `-o bind`, not `--bind`: the option words util-linux and busybox mount both take.
  await mount(['-o', 'bind', join(deployed, 'usr'), join(root, 'usr')]);
  await mount(['-o', 'remount,bind,ro', join(root, 'usr')]);
  await mount(['-o', 'bind', join(deployed, 'etc'), join(root, 'etc')]);
  await writeLive(sysroot, { slot, commit: staged.commit, version: staged.version, boot_id: bootId(), since, state: 'live' });
  report.restarted = await restartUnits(units, { root, init });
  report.result = 'applied';
  const failed = report.restarted.filter((r) => r.exit_code !== 0);
  await appendJournal(sysroot.journalPath, {
    event: 'apply-live',
    slot,
    commit: staged.commit,
    version: staged.version,
    message: `version ${staged.version} (slot ${slot}) is live: ${report.files.total} files of /usr changed; restarted ${units.map((u) => u.name).join(', ') || 'nothing'}${failed.length ? `; FAILED to restart ${failed.map((f) => `${f.name} (exit ${f.exit_code})`).join(', ')}` : ''}`,
    data: { files: report.files.total, units: units.map((u) => u.name), restarted: report.restarted.map((r) => ({ name: r.name, exit_code: r.exit_code })), processes: processes.map((p) => p.pid) },
  });
  return report;
}

function refusal(reason: string, message: string, hint: string, data: Record<string, unknown>): LarchError {
  return new LarchError('REFUSED', `apply-live: ${message}`, { hint, data: { reason, ...data } });
}

async function mount(args: string[]): Promise<void> {
  const r = await runTool('mount', args, { purpose: 'to bind the staged tree over the running one' });
  if (r.code !== 0) throw new LarchError('IO', `apply-live: mount ${args.join(' ')} failed: ${stderrTail(r.stderr) || `exit ${r.code}`}`, { hint: 'apply-live needs root (CAP_SYS_ADMIN); reboot into the staged update instead', data: { tool: 'mount', args } });
}

/** The mounts must be made where every process sees them: PID 1's mount namespace. */
async function requireInitNamespace(): Promise<void> {
  const [mine, init] = await Promise.all([readlink('/proc/self/ns/mnt').catch(() => null), readlink('/proc/1/ns/mnt').catch(() => null)]);
  if (mine !== null && init !== null && mine !== init) {
    throw refusal('mount-namespace', `this process runs in a mount namespace of its own (${mine}, PID 1's is ${init}): mounts made here would be seen by no service`, 'run larch apply-live from a shell, not from a unit with private mounts (PrivateMounts=, ProtectSystem=)', {});
  }
}
