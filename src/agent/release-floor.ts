/**
 * Anti-rollback without a clock, on the device (docs/formats.md "S/larch/release-floor.json",
 * docs/boot.md "The release floor"). Every commit carries `larch.release`, a counter per vendor
 * repo (store/release.ts). The device keeps the highest release it booted good as its floor,
 * durably in S/larch/release-floor.json and, for the bootloader, in the boot env
 * (BOOT_RELEASES: the floor and each slot's release; bootcount/release-gate.ts). Then:
 *   - upgrade, deploy, the daemon and a delta refuse a commit below the floor before anything is
 *     downloaded (`below-release-floor`), and one bound to another ref (`wrong-ref`: `larch.ref`,
 *     OSTree's ref binding); a commit with no `larch.ref` (made before) is accepted;
 *   - `--allow-downgrade` and `larch rollback`, an operator's acts, go below the floor only down to
 *     the vendor floor (`larch.min_release` of the booted commit; vendorMinRelease), or anywhere
 *     when there is none (as before the floor): the floor stops what a device does by itself
 *     (upgrade, the daemon, a command's upgrade), the vendor floor bounds what an operator may do;
 *   - either one lowers the floor to the release it goes to (an operator's act, journaled), so the
 *     bootloader boots it; booting it good never raises the floor past what it is then.
 * Pure checks first, then the file and env I/O.
 */
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import { RELEASES_VARIABLE, encodeGate } from '../bootcount/release-gate.ts';
import { SLOTS, type Slot } from '../bootcount/state.ts';
import { writeFileAtomic } from '../_durable.ts';
import type { CborValue } from '../store/cbor.ts';
import type { ObjectId } from '../store/object.ts';
import { commitMinRelease, commitRef, commitRelease, isRelease } from '../store/release.ts';
import { deviceMinRelease } from './trust-store.ts';
import { changeBootState, readBootState, readJsonFile } from './boot.ts';
import { readDeployment } from './deploy.ts';
import { appendJournal } from './journal.ts';
import type { DeviceConfig, Sysroot } from './sysroot.ts';

type Metadata = ReadonlyMap<string, CborValue>;

// ---- pure checks --------------------------------------------------------------------------------

export interface TargetInfo {
  commit: ObjectId;
  version: string;
  metadata: Metadata;
}

/**
 * Refuses a commit bound to another ref than the one the device follows (a commit signed for
 * os/beta served as os/stable). A commit with no `larch.ref` passes.
 * @throws REFUSED with data.reason "wrong-ref"
 */
export function checkRefBinding(followedRef: string, target: TargetInfo): void {
  const bound = commitRef(target.metadata);
  if (bound === null || bound === followedRef) return;
  throw new LarchError('REFUSED', `refusing commit ${target.commit.slice(0, 12)} (version ${target.version}): it was made for ref '${bound}', and this device follows '${followedRef}'`, {
    hint: `the server offers another branch's commit under ${followedRef} (a mistake, or an attack): tell the vendor; to follow ${bound} on purpose, the device's ref must say so ('ref' in S/larch/config.json, as provision --ref writes it)`,
    data: { reason: 'wrong-ref', ref: followedRef, commit_ref: bound, commit: target.commit, version: target.version },
  });
}

/**
 * May the device stage `target` with this floor? Returns the floor to lower to first (an allowed
 * --allow-downgrade below the floor) or null (nothing to change).
 * @throws REFUSED with data.reason "below-release-floor", data.release, data.floor, data.min_release
 */
export function checkStageRelease(target: TargetInfo, floor: number | null, vendorMin: number | null, allowDowngrade: boolean): number | null {
  const release = commitRelease(target.metadata) ?? 0;
  if (floor === null || release >= floor) return null;
  if (allowDowngrade && (vendorMin === null || release >= vendorMin)) return release;
  const why = !allowDowngrade ? `this device booted release ${floor} good, and never stages an older release by itself` : `the vendor allows downgrades only down to release ${vendorMin} (larch.min_release)`;
  throw new LarchError('REFUSED', `refusing to downgrade to version ${target.version} (commit ${target.commit.slice(0, 12)}, release ${release}): it is below the release floor: ${why}`, {
    hint: 'ask the vendor for a newer release; an old release shipped again as a new commit (a higher larch.release) is taken with --allow-downgrade',
    data: { reason: 'below-release-floor', release, floor, min_release: vendorMin, commit: target.commit, version: target.version },
  });
}

/**
 * May `larch rollback` make the other slot (release `release`, staged and verified here) boot?
 * Returns the floor to lower to, or null.
 * @throws REFUSED with data.reason "below-release-floor"
 */
export function checkRollbackRelease(slot: Slot, version: string, release: number, floor: number | null, vendorMin: number | null): number | null {
  if (floor === null || release >= floor) return null;
  if (vendorMin === null || release >= vendorMin) return release;
  throw new LarchError('REFUSED', `refusing to roll back to slot ${slot} (version ${version}, release ${release}): the vendor allows going back only down to release ${vendorMin} (larch.min_release)`, {
    hint: 'deploy a release at or above the vendor floor instead: larch deploy VERSION',
    data: { reason: 'below-release-floor', release, floor, min_release: vendorMin, slot, version },
  });
}

/**
 * The vendor floor for downgrades: the lowest release `--allow-downgrade` and `larch rollback` may
 * go to: the higher of the trust document's `min_release` (trust-store.ts) and the booted
 * commit's `larch.min_release`; none of either: no vendor floor.
 */
export async function vendorMinRelease(sysroot: Sysroot, bootedCommitMeta: Metadata): Promise<number | null> {
  const floors = [await deviceMinRelease(sysroot), commitMinRelease(bootedCommitMeta)].filter((n): n is number => n !== null);
  return floors.length === 0 ? null : Math.max(...floors);
}

// ---- S/larch/release-floor.json -----------------------------------------------------------------

export interface FloorRecord {
  format: 1;
  /** The highest release booted good here (or lowered to by rollback / --allow-downgrade). */
  floor: number;
  /** The commit that set it, its version, and when. */
  commit: string;
  version: string;
  time: string;
  /** What set it: a slot marked good, or an operator's downgrade. */
  reason: 'marked-good' | 'rollback' | 'allow-downgrade';
}

export function releaseFloorPath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'release-floor.json');
}

/** The device floor; null when the device has none yet (provisioned before, or nothing booted good since). */
export async function readReleaseFloor(sysroot: Sysroot): Promise<FloorRecord | null> {
  const path = releaseFloorPath(sysroot);
  const json = await readJsonFile<Partial<FloorRecord>>(path);
  if (json === null) return null;
  if (json.format !== 1 || !isRelease(json.floor) || typeof json.commit !== 'string' || typeof json.version !== 'string') {
    // Never read a damaged floor as none: that would open every downgrade.
    throw new LarchError('INVALID_INPUT', `${path}: not a release floor (expected {"format": 1, "floor": N, "commit", "version", "time", "reason"})`, {
      hint: `write the highest larch.release this device booted good into it ('larch status --json' shows the deployments' releases), e.g. {"format": 1, "floor": 7, "commit": "", "version": "", "time": "", "reason": "marked-good"}`,
      data: { path },
    });
  }
  return json as FloorRecord;
}

async function writeReleaseFloor(sysroot: Sysroot, record: Omit<FloorRecord, 'format' | 'time'>): Promise<void> {
  await writeFileAtomic(releaseFloorPath(sysroot), JSON.stringify({ format: 1, ...record, time: new Date().toISOString() }, null, 2) + '\n');
}

// ---- the boot env -------------------------------------------------------------------------------

/** The release of the commit a slot holds: null for no deployment; 0 for a commit without one. */
async function slotRelease(sysroot: Sysroot, slot: Slot): Promise<{ release: number; commit: string; version: string } | null> {
  const record = await readDeployment(sysroot, slot);
  if (!record) return null;
  const repo = await sysroot.openRepo();
  const release = (await repo.hasObject('commit', record.commit)) ? (commitRelease((await repo.readCommit(record.commit)).metadata) ?? 0) : 0;
  return { release, commit: record.commit, version: record.version };
}

/**
 * The env variables of the floor as they should be, for an env write: BOOT_RELEASES from the
 * file's floor and the releases of the slots' deployments (removed while there is no floor).
 */
export async function releaseEnvVars(sysroot: Sysroot): Promise<Map<string, string | null>> {
  const floor = (await readReleaseFloor(sysroot))?.floor ?? null;
  const releases = { A: 0, B: 0 };
  for (const slot of SLOTS) releases[slot] = (await slotRelease(sysroot, slot))?.release ?? 0;
  return new Map([[RELEASES_VARIABLE, encodeGate({ floor, releases })]]);
}

/** Writes BOOT_RELEASES into the env when it differs (one write, none when equal). */
async function syncBootEnv(sysroot: Sysroot, config: DeviceConfig): Promise<void> {
  const wanted = await releaseEnvVars(sysroot);
  const { vars, env } = await readBootState(sysroot, config);
  if (env.health === 'corrupt') return;
  if ([...wanted].every(([k, v]) => (vars.get(k) ?? null) === v)) return;
  await changeBootState(sysroot, config, (s) => s, wanted);
}

/**
 * After a slot was marked good (boot-check, mark-good): the floor rises to its release when that
 * is higher, in the file first (what staging checks), then in the env (what the bootloader
 * checks). Also puts back variables a rewritten env lost. No floor file and a commit without a
 * release: nothing (the device boots as before).
 */
export async function recordGoodRelease(sysroot: Sysroot, config: DeviceConfig, slot: Slot): Promise<number | null> {
  const held = await slotRelease(sysroot, slot);
  const current = await readReleaseFloor(sysroot);
  let floor = current?.floor ?? null;
  if (held && commitReleaseKnown(held.release) && (floor === null || held.release > floor)) {
    await writeReleaseFloor(sysroot, { floor: held.release, commit: held.commit, version: held.version, reason: 'marked-good' });
    // No slot field: this entry is not the slot's state (reconstruct() and the journal's carry-over read those).
    await appendJournal(sysroot.journalPath, { event: 'mark-good', commit: held.commit, version: held.version, message: `release floor raised to ${held.release}${floor === null ? '' : ` from ${floor}`}: releases below it are no longer staged or booted`, data: { release_floor: held.release, previous_floor: floor } });
    floor = held.release;
  }
  if (floor !== null) await syncBootEnv(sysroot, config);
  return floor;
}

/** A release of 0 is what a commit made before releases reads as: it sets no floor. */
const commitReleaseKnown = (release: number) => release > 0;

/**
 * Lowers the floor for an operator's downgrade (rollback, --allow-downgrade) to `release`, in
 * the file and journal; the env follows in the caller's env write (releaseEnvVars).
 */
export async function lowerReleaseFloor(sysroot: Sysroot, to: { release: number; commit: string; version: string }, reason: 'rollback' | 'allow-downgrade'): Promise<void> {
  const current = await readReleaseFloor(sysroot);
  if (current === null || to.release >= current.floor) return;
  await writeReleaseFloor(sysroot, { floor: to.release, commit: to.commit, version: to.version, reason });
  await appendJournal(sysroot.journalPath, { event: reason === 'rollback' ? 'rollback' : 'stage', commit: to.commit, version: to.version, message: `release floor lowered from ${current.floor} to ${to.release} by ${reason === 'rollback' ? 'larch rollback' : '--allow-downgrade'}`, data: { release_floor: to.release, previous_floor: current.floor } });
}

// ---- the one call of the update path ------------------------------------------------------------

/**
 * The checks of a target before anything is downloaded: ref binding, then the floor. Returns
 * the floor a permitted --allow-downgrade lowers to (stage() lowers it), or null.
 */
export async function checkTarget(sysroot: Sysroot, config: DeviceConfig, bootedCommitMeta: Metadata, target: TargetInfo, allowDowngrade: boolean): Promise<number | null> {
  checkRefBinding(config.ref, target);
  const floor = (await readReleaseFloor(sysroot))?.floor ?? null;
  return checkStageRelease(target, floor, await vendorMinRelease(sysroot, bootedCommitMeta), allowDowngrade);
}

/**
 * `larch rollback` to `slot`: checks the floor and lowers it in the file when allowed; the
 * caller's env write then carries releaseEnvVars().
 * @throws REFUSED with data.reason "below-release-floor"
 */
export async function checkRollback(sysroot: Sysroot, slot: Slot, bootedCommitMeta: Metadata): Promise<void> {
  const held = await slotRelease(sysroot, slot);
  const floor = (await readReleaseFloor(sysroot))?.floor ?? null;
  if (!held) return;
  const lowerTo = checkRollbackRelease(slot, held.version, held.release, floor, await vendorMinRelease(sysroot, bootedCommitMeta));
  if (lowerTo !== null) await lowerReleaseFloor(sysroot, { release: lowerTo, commit: held.commit, version: held.version }, 'rollback');
}
