/**
 * `larch kargs`: changes the kernel arguments as rpm-ostree kargs does, never on the booted
 * deployment (a bad argument must fall back by the tries): a staged, unconfirmed deployment is
 * changed in place and given fresh tries; otherwise the booted commit is staged again into the
 * other slot with the new arguments, and the booted deployment becomes the rollback.
 * docs/boot.md "Kernel arguments per slot".
 */
import { LarchError } from '../errors.ts';
import { syncFilesystem, writeFileAtomic } from '../_durable.ts';
import { failpoint } from '../failpoint.ts';
import { type Slot, isBootable, next, other } from '../bootcount/state.ts';
import type { ObjectId } from '../store/object.ts';
import { bootedSlot, changeBootState, readBootState } from './boot.ts';
import { type DeploymentRecord, encodeDeploymentRecord, readDeployment } from './deploy.ts';
import { bootloaderKargsProblem, recordKargs, writeSlotKargs } from './deployment-kargs.ts';
import { describeFailure, findFailed } from './failed-releases.ts';
import { readFailedReleases } from './failed-store.ts';
import { appendJournal } from './journal.ts';
import { sameKargs } from './kargs.ts';
import { readOrigin } from './layering/origin.ts';
import { releaseEnvVars } from './release-floor.ts';
import { type UpdateContext, refuseLiveSlot, requireBootedGood, stage } from './update.ts';

export interface KargsResult {
  /** staged: a new deployment of the booted commit; changed-staged: the staged one changed in place. */
  result: 'staged' | 'changed-staged' | 'unchanged' | 'dry-run';
  /** The slot whose deployment has (or, unchanged, keeps) the arguments. */
  slot: Slot;
  commit: ObjectId;
  version: string;
  kargs: string[];
  kargs_before: string[];
}

/**
 * The deployment `larch kargs` changes: the staged one when there is one, else the booted one.
 * @throws REFUSED (kargs-unmanaged), NOT_FOUND (the booted slot holds no deployment)
 */
export async function kargsTarget(ctx: UpdateContext): Promise<{ slot: Slot; record: DeploymentRecord; staged: boolean; kargs: string[] }> {
  const { sysroot } = ctx;
  const config = await sysroot.readConfig();
  if (!config.kargs) {
    throw new LarchError('REFUSED', `${sysroot.path} was provisioned without --kargs: larch does not manage its kernel arguments (its boot script passes its own larch_bootargs)`, {
      hint: "provision the device with --kargs 'ARGS' (the board's defaults; larch image build does), or change larch_bootargs in its boot script",
      data: { reason: 'kargs-unmanaged', sysroot: sysroot.path },
    });
  }
  const { state } = await readBootState(sysroot, config);
  const bootedName = (await bootedSlot(sysroot)) ?? state.order[0];
  const staged = await readDeployment(sysroot, other(bootedName));
  if (staged && state.order[0] === staged.slot && !state.slots[staged.slot].good && isBootable(state, staged.slot)) {
    return { slot: staged.slot, record: staged, staged: true, kargs: recordKargs(config, staged)!.kargs };
  }
  const booted = await readDeployment(sysroot, bootedName);
  if (!booted) throw new LarchError('NOT_FOUND', `the booted slot ${bootedName} holds no deployment`, { hint: 'provision the device first', data: { slot: bootedName } });
  return { slot: bootedName, record: booted, staged: false, kargs: recordKargs(config, booted)!.kargs };
}

/**
 * Applies `change` to the target's arguments (kargsTarget) and stages the result.
 * @throws REFUSED (kargs-unmanaged, failed-here: these arguments already failed with this
 *   commit, booted-unconfirmed), what `change` throws, and what staging throws
 */
export async function changeKargs(ctx: UpdateContext, change: (before: string[]) => string[] | Promise<string[]>, opts: { dryRun?: boolean } = {}): Promise<KargsResult> {
  const { sysroot } = ctx;
  const target = await kargsTarget(ctx);
  const { record } = target;
  const after = await change([...target.kargs]);
  const config = await sysroot.readConfig();
  const problem = bootloaderKargsProblem(config.bootloader, after);
  if (problem) throw new LarchError('USAGE', `kargs: ${problem}`, { hint: 'on a GRUB board, give arguments without quotes or backslashes', data: { command: 'kargs', kargs: after } });
  const slot = target.staged ? target.slot : other(target.slot);
  const out = { slot, commit: record.commit, version: record.version, kargs: after, kargs_before: target.kargs };
  if (sameKargs(after, target.kargs)) return { ...out, result: 'unchanged', slot: target.slot };
  const failed = findFailed(await readFailedReleases(sysroot), record.commit, after);
  if (failed) {
    throw new LarchError('REFUSED', `kargs: ${describeFailure(failed)}`, {
      hint: 'change the arguments (larch kargs), or wait for a newer release',
      data: { reason: 'failed-here', commit: record.commit, kargs: after, failed },
    });
  }
  if (opts.dryRun) return { ...out, result: 'dry-run' };
  if (!target.staged) {
    const { state } = await readBootState(sysroot, config);
    requireBootedGood(state, { slot: target.slot, record });
    await stage(ctx, config, target.slot, record.commit, record.signedBy, await readOrigin(sysroot, target.slot), after);
    return { ...out, result: 'staged' };
  }
  // In place: unbootable while its file and record change, then staged again with fresh tries.
  await refuseLiveSlot(sysroot, slot);
  await changeBootState(sysroot, config, (s) => next(s, { type: 'slot-prepared', slot }));
  failpoint('update::after-mark-unbootable');
  await writeSlotKargs(sysroot.slotBootDir(slot), config.bootloader, slot, after);
  await syncFilesystem(sysroot.bootDir);
  const vendor = recordKargs(config, record)!.kargsVendor;
  await writeFileAtomic(sysroot.deployRecordPath(slot), encodeDeploymentRecord({ ...record, kargs: after, kargsVendor: vendor }));
  await changeBootState(sysroot, config, (s) => next(s, { type: 'upgrade-staged', slot, tries: config.tries }), await releaseEnvVars(sysroot));
  failpoint('update::after-bootenv-write');
  await appendJournal(sysroot.journalPath, { event: 'stage', slot, commit: record.commit, version: record.version, message: `slot ${slot} (version ${record.version}) staged again with ${config.tries} tries and the kernel arguments '${after.join(' ')}'`, data: { kargs: after, kargs_before: target.kargs } });
  return { ...out, result: 'changed-staged' };
}
