/**
 * S/larch/failed.json on disk: the releases that failed on this device (failed-releases.ts has
 * the rules). In the sysroot, apart from the slots' deployment records, so the memory survives
 * reboots and a slot being written again; replaced atomically at each change.
 */
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import type { Slot } from '../bootcount/state.ts';
import { writeFileAtomic } from '../_durable.ts';
import { type LastBoot, readJsonFile } from './boot.ts';
import { readDeployment } from './deploy.ts';
import { EMPTY_FAILED_RELEASES, type FailedRelease, type FailedReleases, forgetFailure, formatFailedReleases, recordFailure, toFailedReleases } from './failed-releases.ts';
import type { Sysroot } from './sysroot.ts';

export function failedReleasesPath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'failed.json');
}

/** The remembered failures; none when the file does not exist. @throws INVALID_INPUT naming the file when it is not ours */
export async function readFailedReleases(sysroot: Sysroot): Promise<FailedReleases> {
  const path = failedReleasesPath(sysroot);
  const json = await readJsonFile<unknown>(path);
  if (json === null) return EMPTY_FAILED_RELEASES;
  try {
    return toFailedReleases(json);
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${path}: not a list of failed releases: ${(err as Error).message}`, { hint: 'remove the file (the device then forgets which releases failed on it); docs/formats.md describes it', data: { path } });
  }
}

export async function rememberFailure(sysroot: Sysroot, entry: FailedRelease): Promise<void> {
  await writeFileAtomic(failedReleasesPath(sysroot), formatFailedReleases(recordFailure(await readFailedReleases(sysroot), entry)));
}

export async function forgetFailedRelease(sysroot: Sysroot, commit: string): Promise<void> {
  const f = await readFailedReleases(sysroot);
  if (f.releases.some((r) => r.commit === commit)) await writeFileAtomic(failedReleasesPath(sysroot), formatFailedReleases(forgetFailure(f, commit)));
}

/**
 * What boot-check learned about a release, remembered: the booted slot spent its last try
 * unhealthy (`triesLeft` is what the bootloader left), or the bootloader fell back away from
 * `fellBackFrom`. The failed checks of a fallback are those of the last boot of that commit.
 */
export async function rememberBootFailure(sysroot: Sysroot, o: { slot: Slot; commit: string | null; version: string | null; kargs?: string[]; retry: boolean; triesLeft: number; failed: string[]; fellBackFrom: Slot | null; previousBoot: LastBoot | null }): Promise<void> {
  const time = new Date().toISOString();
  if (o.retry && o.triesLeft === 0 && o.commit) {
    await rememberFailure(sysroot, { commit: o.commit, version: o.version ?? '', time, reason: 'tries-exhausted', failed_checks: o.failed, slot: o.slot, ...kargsOf(o.kargs) });
  }
  if (o.fellBackFrom) {
    const left = await readDeployment(sysroot, o.fellBackFrom);
    if (!left) return;
    const prev = o.previousBoot;
    const checks = prev && prev.commit === left.commit && !prev.healthy ? prev.failed_checks : [];
    await rememberFailure(sysroot, { commit: left.commit, version: left.version, time, reason: 'fell-back', failed_checks: checks, slot: o.fellBackFrom, ...kargsOf(left.kargs) });
  }
}

/** A failure names the kernel arguments of a deployment that has them (failed-releases.ts). */
export function kargsOf(kargs: string[] | undefined): { kargs?: string[] } {
  return kargs ? { kargs } : {};
}
