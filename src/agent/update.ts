/**
 * The device's update verbs, as rpm-ostree's: check, upgrade, deploy, rollback, finalize,
 * cleanup, pin. Order of an upgrade, so that a refusal or a crash at any step leaves the booted
 * deployment and the boot state untouched until the new slot is complete:
 *   1. read and verify the signed summary (signature, expiry, serial); pick the target commit;
 *      refuse a summary or commit of another product (product-binding.ts), a downgrade unless
 *      allowed;                                                            nothing written yet
 *   2. space pre-flight;                                                   nothing written yet
 *   3. pull the commit into the repo (delta, or object by object), every object verified, and
 *      check the commit's signature;                         only the repo gains objects
 *   4. mark the inactive slot unbootable, write the deployment into it (checkout, /etc merge,
 *      boot files), then make it first in the boot order with N tries: one env write each.
 */
import { lstat, readdir, rm, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LarchError } from '../errors.ts';
import { enterPhase, isCancelled } from '../cancellation.ts';
import { failpoint } from '../failpoint.ts';
import { readLive } from './live/state.ts';
import { type BootState, type Slot, next, other, planRollback } from '../bootcount/state.ts';
import { fsyncPath, writeFileAtomic } from '../_durable.ts';
import { compareDebianVersions, parseDebianVersion } from '../packages/debian-version.ts';
import { type PackageDiff, decodePackageList, diffCommitPackages } from '../packages/package-diff.ts';
import type { Binding } from '../store/binding.ts';
import type { Commit, ObjectId } from '../store/object.ts';
import { dropObjects, prune } from '../store/prune.ts';
import type { Repo } from '../store/repo.ts';
import { readPublicKey } from '../store/sign.ts';
import { verifyCommit } from '../store/signatures.ts';
import type { Summary, SummaryDelta } from '../protocol/summary.ts';
import { findDelta } from '../protocol/summary.ts';
import { bootedSlot, changeBootState, readBootState } from './boot.ts';
import { type DeploymentPlan, type DeploymentRecord, type EtcMerger, encodeDeploymentRecord, finalizeMarkerPath, planDeployment, readDeployment, redoEtcMerge, removeDeployment, writeDeployment } from './deploy.ts';
import { type FailedRelease, describeFailure, findFailed } from './failed-releases.ts';
import { forgetFailedRelease, readFailedReleases } from './failed-store.ts';
import { appendJournal } from './journal.ts';
import { checkCommitBinding, checkSummaryBinding, deviceBinding, isBound } from './product-binding.ts';
import { roleKeys } from './trust-store.ts';
import { readDeltaFileTarget } from './remote/delta-file.ts';
import { type Channel, followedChannel, followedName, scopeOf } from './remotes.ts';
import { followChannel, followDeployment } from './following.ts';
import { fetchTrustedSummary } from './trust-sync.ts';
import { meetsThreshold } from '../protocol/trust.ts';
import { pendingBarrier, releaseOf, requireAgent } from './compat.ts';
import { VERSION } from '../version.ts';
import { checkRollback, checkTarget, lowerReleaseFloor, releaseEnvVars } from './release-floor.ts';
import type { DeltaFallback } from './remote/pull.ts';
import type { Remote } from './remote/remote.ts';
import { type LastUpdate, lastUpdatePath } from './status.ts';
import type { DeviceConfig, Sysroot } from './sysroot.ts';
import { legacyAgentPath, retireLegacyAgent } from './agent-binary.ts';
import { type Origin, baseCommitOf, writeOrigin } from './layering/origin.ts';
import { reapplyLayers } from './layering/reapply.ts';
import { baseOf, refuseRemoteLocal } from './layering/trust.ts';
import { type DeploymentKargs, deploymentKargs, recordKargs } from './deployment-kargs.ts';
import { computeKargs } from './kargs.ts';

export interface UpdateContext {
  sysroot: Sysroot;
  /** The remote of the channel: the followed one, or the rebase target's. */
  remote: Remote;
  merger: EtcMerger;
  progress?: (done: number, total: number | null) => void;
  /** rebase: the remote (by name) and ref to stage from and follow from then on; absent: the followed ones. */
  channel?: Channel;
  /** upgrade/deploy --from-file: `remote` reads this bundle (no serial floor; only its deltas). */
  fromFile?: string;
  /** upgrade/deploy --from-file with a one-file delta: `remote` applies it (remote/delta-file.ts); there is no summary. */
  fromDelta?: string;
}

/** The channel of an operation: the rebase target's, else the followed one. */
function channelOf(ctx: UpdateContext, config: DeviceConfig): Channel {
  return ctx.channel ?? followedChannel(config);
}

/** The commit role's keys of the channel's remote (its own trust, or the origin's). */
async function commitKeys(ctx: UpdateContext, config?: DeviceConfig) {
  const channel = ctx.channel ?? followedChannel(config ?? (await ctx.sysroot.readConfig()));
  return roleKeys(ctx.sysroot, 'commit', scopeOf(ctx.sysroot, channel.name, channel.remote));
}

export interface UpgradeOptions {
  dryRun?: boolean;
  downloadOnly?: boolean;
  allowDowngrade?: boolean;
  /** deploy: a commit id or a version instead of the ref's head. */
  target?: string;
  /** deploy --retry-failed: stage a commit that failed on this device (failed-releases.ts) again. */
  retryFailed?: boolean;
  /** upgrade --drop-failing-layers: re-apply the layering without the parts that fail on the new base. */
  dropFailingLayers?: boolean;
}

export interface UpgradeResult {
  result: 'staged' | 'downloaded' | 'no-update' | 'dry-run' | 'pinned';
  from: { slot: Slot; commit: ObjectId; version: string };
  to: { slot: Slot; commit: ObjectId; version: string } | null;
  download: { via: 'delta' | 'objects' | 'none'; bytes: number; fallback?: DeltaFallback };
  etc_conflicts: string[];
  etc_plan?: unknown;
  /** dry-run only: what the packages do (db diff's shape); null when a commit has no package list. */
  packages?: PackageDiff | null;
  /** With layering (docs/layering.md): the derived commit staged on top of to.commit, and the layer parts dropped. */
  layered?: { commit: ObjectId; dropped: string[] };
  /** deploy: the newest release of the ref the remote offers (null: deployed from the device's repo without asking the remote). */
  newest?: { commit: ObjectId; version: string } | null;
}

export interface CheckResult {
  available: boolean;
  booted: { slot: Slot; commit: string; version: string };
  /**
   * older: the offer is older than the booted release (olderThanBooted, the rule upgrade refuses
   * downgrades by): the vendor moved the ref's head back (a held rollout, a rollback of the ref).
   */
  update: { commit: string; version: string; timestamp: number; bytes: number | null; via: 'delta' | 'objects'; failed_here: FailedRelease | null; barrier: boolean; older: boolean } | null;
  /** With opts.packages: the update's package diff; null when there is no update or a commit has no package list. */
  packages?: PackageDiff | null;
}

/** The booted slot and its deployment; refuses to write the other slot while the booted one is unconfirmed. */
async function bootedDeployment(sysroot: Sysroot, state: BootState): Promise<{ slot: Slot; record: DeploymentRecord }> {
  const slot = (await bootedSlot(sysroot)) ?? state.order[0];
  const record = await readDeployment(sysroot, slot);
  if (!record) throw new LarchError('NOT_FOUND', `the booted slot ${slot} holds no deployment`, { hint: 'provision the device first', data: { slot } });
  return { slot, record };
}

/**
 * Is there an update? With opts.packages (the CLI's check), also its package diff, which costs
 * one commit object more from the remote; the daemon's periodic checks do without.
 */
export async function check(ctx: UpdateContext, opts: { packages?: boolean } = {}): Promise<CheckResult> {
  const { sysroot } = ctx;
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = await bootedDeployment(sysroot, state);
  const device = await deviceBinding(sysroot, config, booted.record.commit);
  const summary = await fetchVerifiedSummary(ctx, config, device);
  await appendJournal(sysroot.journalPath, { event: 'check', message: `checked ${ctx.remote.describe()}: ${config.ref} is at version ${summary.refs[config.ref]?.version ?? '(missing)'}` });
  const head = summary.refs[config.ref];
  if (!head) throw new LarchError('NOT_FOUND', `the remote has no ref '${config.ref}'`, { hint: 'check the ref the device was provisioned with (larch status)', data: { ref: config.ref, refs: Object.keys(summary.refs) } });
  const bootedInfo = { slot: booted.slot, commit: booted.record.commit, version: booted.record.version };
  const packages = opts.packages ? { packages: null } : {};
  // A layered deployment is up to date when its vendor base is the head (layering/origin.ts).
  const base = await baseCommitOf(sysroot, booted.slot, booted.record.commit);
  if (head.commit === base) return { available: false, booted: bootedInfo, update: null, ...packages };
  // Below a barrier release, the barrier is what is on offer (compat.ts).
  const barrier = pendingBarrier(head, await bootedRelease(sysroot, booted.record));
  const offer = barrier ?? head;
  // The offered commit's object, when the device is bound to something it could contradict.
  const offered = isBound(device) ? await offeredCommit(ctx, offer.commit) : null;
  if (offered) checkCommitBinding(device, offer.commit, offered);
  const delta = findDelta(summary, base, offer.commit);
  // An update that failed here is still reported, with that failure: upgrade refuses it.
  const failedHere = findFailed(await readFailedReleases(sysroot), offer.commit);
  // Still reported when older than the booted release (the head is what it is); upgrade refuses it.
  const older = olderThanBooted(offer, booted.record) !== null;
  const update = { commit: offer.commit, version: offer.version, timestamp: offer.timestamp, bytes: delta ? delta.bytes : null, via: delta ? ('delta' as const) : ('objects' as const), failed_here: failedHere, barrier: barrier !== null, older };
  if (!opts.packages) return { available: true, booted: bootedInfo, update };
  return { available: true, booted: bootedInfo, update, packages: await offeredPackages(ctx, booted.record.commit, offer.commit, offered) };
}

/**
 * The commit on offer, before any of it is stored: from the repo when a download already brought
 * it, else its commit object alone (remote.fetchCommit: id and signatures checked, kept in memory).
 */
export async function offeredCommit(ctx: UpdateContext, id: ObjectId): Promise<Commit> {
  const repo = await ctx.sysroot.openRepo();
  return (await repo.hasObject('commit', id)) ? repo.readCommit(id) : ctx.remote.fetchCommit(id, { trusted: (await commitKeys(ctx)).keys });
}

/**
 * The package diff of the update on offer: the booted commit's list from the local repo, the
 * offered commit's from its commit (offeredCommit, unless the caller has it). No fetch when the
 * booted commit has no list: the answer is null either way.
 */
async function offeredPackages(ctx: UpdateContext, bootedCommit: ObjectId, id: ObjectId, offered: Commit | null): Promise<PackageDiff | null> {
  const repo = await ctx.sysroot.openRepo();
  const booted = await repo.readCommit(bootedCommit);
  if (!decodePackageList(booted.metadata)) return null;
  return diffCommitPackages(booted.metadata, (offered ?? (await offeredCommit(ctx, id))).metadata);
}

/** The booted commit's time and release counter, what barriers are compared with. */
async function bootedRelease(sysroot: Sysroot, record: DeploymentRecord): Promise<{ commit: ObjectId; timestamp: number; release?: number }> {
  const repo = await sysroot.openRepo();
  const release = (await repo.hasObject('commit', record.commit)) ? releaseOf((await repo.readCommit(record.commit)).metadata) : undefined;
  return { commit: record.commit, timestamp: Date.parse(record.timestamp) / 1000, release };
}

async function fetchVerifiedSummary(ctx: UpdateContext, config: DeviceConfig, device: Binding): Promise<Summary> {
  // Under the device's trust (summary role), new trust documents picked up on the way (trust-sync.ts);
  // the binding is checked before the serial is recorded: another product's summary must not raise this device's floor.
  return fetchTrustedSummary(ctx.remote, ctx.sysroot, config, (summary) => checkSummaryBinding(device, summary, ctx.remote.describe()), channelOf(ctx, config), { bundle: ctx.fromFile !== undefined });
}

/** upgrade (to the ref's head) and deploy (opts.target). */
export async function upgrade(ctx: UpdateContext, opts: UpgradeOptions = {}): Promise<UpgradeResult> {
  const { sysroot } = ctx;
  const action = ctx.channel ? 'rebase' : opts.target ? 'deploy' : 'upgrade';
  // A cancelled upgrade leaves the finished download the device had (or none) as it was.
  // (Unreadable here: upgradeSteps says why, and nothing is restored.)
  const downloadedBefore = await sysroot.openRepo().then((r) => r.readRef('larch/downloaded')).catch(() => undefined);
  try {
    const result = await upgradeSteps(ctx, opts);
    if (!opts.dryRun) await recordLastUpdate(sysroot, { action, result: lastUpdateResult(result.result), version: result.to?.version ?? null, commit: result.to?.commit ?? null, error: null });
    if (!opts.dryRun) failpoint('update::after-last-update');
    return result;
  } catch (caught) {
    let err = caught;
    if (err instanceof LarchError && err.code === 'NO_SPACE') {
      // cleanup frees the repo's filesystem; the boot partition holds only the two slots' boot files.
      const onBoot = typeof err.data.path === 'string' && (err.data.path === sysroot.bootDir || err.data.path.startsWith(sysroot.bootDir + '/'));
      const hint = onBoot
        ? `the boot partition ${sysroot.bootDir} cannot hold this release's boot files beside the booted slot's; larch cleanup cannot free it: remove files that are not larch's from ${sysroot.bootDir}, or ship a smaller kernel/initramfs`
        : "run 'larch cleanup' (add --rollback to drop the rollback deployment) to free space, then upgrade again; nothing was deployed";
      err = new LarchError('NO_SPACE', `${action}: ${err.message}`, { hint, data: err.data });
    }
    if (isCancelled(err)) {
      if (downloadedBefore !== undefined) await sysroot.openRepo().then((r) => r.writeRef('larch/downloaded', downloadedBefore)).catch(() => {});
      await recordLastUpdate(sysroot, { action, result: 'cancelled', version: null, commit: null, error: { code: err.code, message: err.message, hint: err.hint } }).catch(() => {});
      await appendJournal(sysroot.journalPath, { event: 'cancel', message: `${action} cancelled: ${err.message}`, data: { phase: err.data.phase } }).catch(() => {});
    } else if (err instanceof LarchError) {
      await recordLastUpdate(sysroot, { action, result: 'error', version: null, commit: null, error: { code: err.code, message: err.message, hint: err.hint } }).catch(() => {});
      await appendJournal(sysroot.journalPath, { event: 'error', message: `${action} failed: ${err.message}`, data: { code: err.code } }).catch(() => {});
    }
    throw err;
  }
}

/** What last-update.json says of an upgrade that returned: a download is not an update done. */
function lastUpdateResult(r: UpgradeResult['result']): LastUpdate['result'] {
  return r === 'staged' ? 'ok' : r === 'downloaded' ? 'downloaded' : r === 'pinned' ? 'pinned' : 'no-update';
}

async function upgradeSteps(ctx: UpdateContext, opts: UpgradeOptions): Promise<UpgradeResult> {
  const { sysroot } = ctx;
  const config = await sysroot.readConfig();
  const { state, env } = await readBootState(sysroot, config);
  const booted = await bootedDeployment(sysroot, state);
  const from = { slot: booted.slot, commit: booted.record.commit, version: booted.record.version };
  const none = { via: 'none' as const, bytes: 0 };
  // pin holds upgrades; deploy and rebase are asked for by name.
  if (config.pinned && !opts.target && !ctx.channel) return { result: 'pinned', from, to: null, download: none, etc_conflicts: [] };
  // A board env with no valid copy cannot take the staging writes: say so before downloading.
  if (env.health === 'corrupt' && !opts.downloadOnly && !opts.dryRun) {
    throw new LarchError('ENV_CORRUPT', `${env.message}; larch does not change it, so nothing can be staged`, { data: { boot_env: 'corrupt' }, hint: `${env.hint}; --download-only works meanwhile` });
  }

  // 1. the signed summary and the target
  const device = await deviceBinding(sysroot, config, booted.record.commit);
  const channel = channelOf(ctx, config);
  const repo = await sysroot.openRepo();
  // deploy of a commit the device has already (a rollback's, a download's) needs no remote: it
  // was verified when it came, and is verified again below.
  const local = opts.target ? await resolveLocalTarget(repo, opts.target) : null;
  let summary: Summary | null = null;
  let barrier = null;
  let target: { commit: ObjectId; version: string; timestamp: number };
  if (local) target = local;
  else if (ctx.fromDelta) {
    // A one-file delta: its signatures are the trust, its superblock the target.
    const t = await readDeltaFileTarget(ctx.fromDelta, (await commitKeys(ctx, config)).keys);
    if (opts.target && t.version !== opts.target && !t.commit.startsWith(opts.target)) {
      throw new LarchError('USAGE', `the delta ${ctx.fromDelta} brings version ${t.version} (${t.commit.slice(0, 12)}), not '${opts.target}'`, { data: { file: ctx.fromDelta, target: opts.target, commit: t.commit, version: t.version } });
    }
    const base = await baseCommitOf(sysroot, booted.slot, booted.record.commit);
    if (t.from !== null && t.from !== base && !(await repo.hasObject('commit', t.from))) {
      throw new LarchError('DELTA_BASE_MISSING', `the delta ${ctx.fromDelta} updates commit ${t.from.slice(0, 12)}, which this device does not have (it runs version ${booted.record.version}, ${base.slice(0, 12)}); nothing was changed`, {
        hint: `make the delta from version ${booted.record.version} (larch delta generate --from ${base.slice(0, 12)} --out FILE), or from nothing`,
        data: { file: ctx.fromDelta, from: t.from, booted: base },
      });
    }
    target = t;
  } else {
    summary = await fetchVerifiedSummary(ctx, config, device);
    const head = summary.refs[channel.ref];
    if (!head) {
      const hint = ctx.channel ? `larch remote show ${channel.name} --refs lists the refs it serves` : 'check the ref the device was provisioned with (larch status)';
      throw new LarchError('NOT_FOUND', `the remote ${ctx.channel ? `${channel.name} (${ctx.remote.describe()}) ` : ''}has no ref '${channel.ref}'`, { hint, data: { ref: channel.ref, refs: Object.keys(summary.refs), remote: channel.name } });
    }
    barrier = pendingBarrier(head, await bootedRelease(sysroot, booted.record));
    // upgrade goes through a barrier release first; deploy goes where it is told.
    const offer = barrier ?? head;
    target = opts.target ? await resolveTarget(ctx, repo, head, channel, opts.target) : { commit: offer.commit, version: offer.version, timestamp: offer.timestamp };
  }
  const newest = opts.target ? { newest: summary ? { commit: summary.refs[channel.ref]!.commit, version: summary.refs[channel.ref]!.version } : null } : {};
  // A layered deployment's base is what the vendor's commits are compared with (and deltas start from).
  const base = await baseCommitOf(sysroot, booted.slot, booted.record.commit);
  if (target.commit === base) {
    // A rebase onto the commit already booted stages nothing: the device follows the new channel from now on.
    if (ctx.channel && !opts.dryRun && !opts.downloadOnly) await followChannel(sysroot, channel, `rebase; version ${from.version} is booted already`);
    return { result: 'no-update', from, to: null, download: none, etc_conflicts: [], ...newest };
  }
  // The target's commit object alone, before anything of it is stored: the agent it needs and what it is bound to.
  const targetCommit = await offeredCommit(ctx, target.commit);
  refuseRemoteLocal(target.commit, targetCommit, ctx.remote.describe());
  requireAgent({ ...target, metadata: targetCommit.metadata }, VERSION, barrier && barrier.commit !== target.commit ? barrier : null);
  if (isBound(device)) checkCommitBinding(device, target.commit, targetCommit);
  const failed = findFailed(await readFailedReleases(sysroot), target.commit);
  if (failed && !opts.retryFailed) {
    throw new LarchError('REFUSED', `refusing version ${target.version} (commit ${target.commit.slice(0, 12)}): ${describeFailure(failed)}`, {
      hint: `larch deploy ${target.version} --retry-failed tries it again; a newer release on ${channel.ref} is taken as usual`,
      data: { reason: 'failed-here', commit: target.commit, version: target.version, time: failed.time, failed_checks: failed.failed_checks, failure: failed.reason },
    });
  }
  const older = olderThanBooted(target, booted.record);
  if (older && !opts.allowDowngrade) {
    throw new LarchError('REFUSED', `refusing to downgrade from version ${booted.record.version} (${booted.record.timestamp}) to ${target.version} (${new Date(target.timestamp * 1000).toISOString()}): its ${older} is older`, { hint: 'pass --allow-downgrade if you mean it', data: { reason: 'downgrade', by: older, from_version: booted.record.version, version: target.version, commit: target.commit } });
  }
  // Ref binding and the release floor (release-floor.ts), on the commit object alone: before anything is downloaded.
  const bootedMeta = (await repo.readCommit(booted.record.commit)).metadata;
  const lowerFloorTo = await checkTarget(sysroot, { ...config, ref: channel.ref }, bootedMeta, { ...target, metadata: targetCommit.metadata }, opts.allowDowngrade === true);
  if (!opts.downloadOnly && !opts.dryRun) requireBootedGood(state, booted);
  const slot = other(booted.slot);
  const delta = summary && (findDelta(summary, base, target.commit) ?? findDelta(summary, null, target.commit));
  const to = { slot, commit: target.commit, version: target.version };
  // A bundle holds deltas only: without one from what the device runs it cannot bring the commit.
  if (ctx.fromFile && !delta && !(await repo.hasObject('commit', target.commit))) {
    throw new LarchError('DELTA_BASE_MISSING', `the bundle ${ctx.fromFile} has no delta from version ${booted.record.version} (${base.slice(0, 12)}), the one this device runs, to version ${target.version}; nothing was changed`, {
      hint: `make the bundle with --from ${booted.record.version} (larch bundle create), or with no --from (a delta from nothing, larger)`,
      data: { file: ctx.fromFile, from: base, to: target.commit, deltas: summary?.deltas.map((d) => ({ from: d.from, to: d.to })) ?? [] },
    });
  }
  // 2. space (before anything is downloaded)
  await checkSpace(sysroot, delta, booted.slot);

  // 3. download and verify
  // The commit role (commits and deltas), read after the summary: a trust document it brought counts.
  const commitRole = await commitKeys(ctx, config);
  const trusted = commitRole.keys;
  let download: UpgradeResult['download'] = none;
  if (!(await repo.hasObject('commit', target.commit))) {
    // A bundle holds no objects to fall back to: its delta's failure is the answer (a damaged member, named).
    const onFallback = async (f: DeltaFallback, err: LarchError) => {
      if (ctx.fromFile) throw err;
      await journalFallback(f);
    };
    const journalFallback = (f: DeltaFallback) => appendJournal(sysroot.journalPath, { event: 'download', commit: target.commit, version: target.version, message: `delta ${f.delta} failed (${f.reason}: ${f.message}); fetching version ${target.version} object by object`, data: { fallback: f } }).then(() => {});
    enterPhase('download');
    download = await ctx.remote.pull(repo, target.commit, { delta, trusted, downloadDir: sysroot.downloadDir, progress: ctx.progress, onFallback });
    failpoint('update::after-download');
    await appendJournal(sysroot.journalPath, { event: 'download', commit: target.commit, version: target.version, message: `downloaded version ${target.version} (${download.bytes} bytes, ${download.via === 'delta' ? 'static delta' : 'object by object'})`, data: download });
  }
  const verified = await verifyCommit(repo, target.commit, trusted);
  const signedBy = verified.signatures.filter((s) => s.trusted && s.valid).map((s) => s.key_id);
  if (!verified.valid || !meetsThreshold(signedBy, commitRole)) {
    const whose = channel.name === followedName(config) && !ctx.channel ? 'the device trusts' : `remote ${channel.name} is trusted with`;
    throw new LarchError('SIGNATURE_INVALID', `commit ${target.commit} (version ${target.version}) is not signed by ${commitRole.threshold > 1 ? `${commitRole.threshold} keys` : 'a key'} of the commit role ${whose}${signedBy.length > 0 ? ` (valid signatures by ${signedBy.join(', ')} only)` : ''}`, { hint: "the vendor signs commits with larch commit --sign-key K; 'larch trust show --sysroot S' lists the keys of each role, 'larch remote list' each remote's", data: { commit: target.commit, signed_by: signedBy, threshold: commitRole.threshold, reason: 'untrusted', remote: channel.name } });
  }
  await appendJournal(sysroot.journalPath, { event: 'verify', commit: target.commit, version: target.version, message: `commit signed by ${signedBy.join(', ')}` });
  await repo.writeRef('larch/downloaded', target.commit);
  failpoint('update::after-downloaded-ref');
  // A dry run downloads (into the repo only: nothing bootable changes) so it can show the /etc plan.
  if (opts.dryRun) {
    // The target is in the repo now (pulled and verified above): both lists are local reads.
    const packages = diffCommitPackages((await repo.readCommit(booted.record.commit)).metadata, (await repo.readCommit(target.commit)).metadata);
    return { result: 'dry-run', from, to, download, etc_conflicts: [], packages, ...newest };
  }
  if (opts.downloadOnly) return { result: 'downloaded', from, to, download, etc_conflicts: [], ...newest };

  // 4. deploy into the other slot and stage it
  // The booted deployment's layering, re-applied on the verified new base (layering/reapply.ts).
  const layers = await reapplyLayers(sysroot, repo, booted.slot, { commit: target.commit, version: target.version }, { dropFailing: opts.dropFailingLayers });
  if (lowerFloorTo !== null) await lowerReleaseFloor(sysroot, { release: lowerFloorTo, commit: target.commit, version: target.version }, 'allow-downgrade');
  // A derived commit's signed_by are its base's verified signers (status: made on this device from that base).
  const record = await stage(ctx, config, booted.slot, layers.commit, signedBy, layers.origin);
  await repo.writeRef('larch/downloaded', null);
  // Tried again on purpose: a new failure will be a new record.
  if (failed) await forgetFailedRelease(sysroot, target.commit);
  const layered = layers.commit !== target.commit || layers.dropped.length > 0 ? { layered: { commit: layers.commit, dropped: layers.dropped } } : {};
  return { result: 'staged', from, to, download, etc_conflicts: record.etcMerge?.conflicts ?? [], etc_plan: record.etcMerge?.plan, ...layered, ...newest };
}

/**
 * Stages a commit made on the device (layering: a derived commit, or the vendor base again) the
 * way upgrade stages a vendor commit, with its origin; the caller has verified the base
 * (layering/trust.ts). Refuses while the booted slot is unconfirmed, as upgrade does.
 * @throws REFUSED (booted-unconfirmed), NO_SPACE, and what writing the slot throws
 */
export async function stageLocal(ctx: UpdateContext, commit: ObjectId, signedBy: string[], origin: Origin | null): Promise<{ from: { slot: Slot; commit: ObjectId; version: string }; record: DeploymentRecord }> {
  const { sysroot } = ctx;
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = await bootedDeployment(sysroot, state);
  requireBootedGood(state, booted);
  await checkSpace(sysroot, null, booted.slot);
  const record = await stage(ctx, config, booted.slot, commit, signedBy, origin);
  return { from: { slot: booted.slot, commit: booted.record.commit, version: booted.record.version }, record };
}

/**
 * larch/base-X names the vendor base of slot X's derived commit (none for a vendor commit): the
 * base stays in the repo (prune keeps one commit per ref, not its parent), since uninstall,
 * override reset and the trust checks of the derived commit (layering/trust.ts) need it.
 */
async function writeBaseRef(repo: Repo, slot: Slot, commit: ObjectId | null): Promise<void> {
  const base = commit && (await repo.hasObject('commit', commit)) ? baseOf((await repo.readCommit(commit)).metadata) : null;
  await repo.writeRef(`larch/base-${slot}`, base);
}

/** Writing the other slot while the booted one is unconfirmed could replace the last tree known to boot. @throws REFUSED */
export function requireBootedGood(state: BootState, booted: { slot: Slot; record: DeploymentRecord }): void {
  if (state.slots[booted.slot].good) return;
  throw new LarchError('REFUSED', `the booted slot ${booted.slot} (version ${booted.record.version}) is not confirmed yet, so the other slot may hold the only tree known to boot`, {
    hint: "let boot-check mark it good (or run 'larch mark-good'), then try again; upgrade --download-only works meanwhile",
    data: { reason: 'booted-unconfirmed', slot: booted.slot },
  });
}

/**
 * Writes commit into the slot beside `bootedSlot` and makes it first with the configured tries.
 * Its kernel arguments are the booted deployment's with the vendor's change applied (kargs.ts
 * computeKargs), or exactly `kargs` (larch kargs).
 */
export async function stage(ctx: UpdateContext, config: DeviceConfig, bootedSlotName: Slot, commit: ObjectId, signedBy: string[], origin: Origin | null = null, kargs?: string[]): Promise<DeploymentRecord> {
  const { sysroot } = ctx;
  const slot = other(bootedSlotName);
  await refuseLiveSlot(sysroot, slot);
  const repo = await sysroot.openRepo();
  // Before anything is written: the tree is deployable (planDeployment) and its boot files fit.
  const plan = await repairing(ctx, repo, commit, () => planDeployment(repo, commit));
  await checkDeployable(sysroot, plan, bootedSlotName, commit);
  // The kernel arguments too (a bad kargs.d file is refused while the other slot is still intact).
  const kargsFrom = await stagedKargs(sysroot, config, bootedSlotName, kargs);
  const checkedKargs = kargsFrom && (await repairing(ctx, repo, commit, () => deploymentKargs(repo, commit, kargsFrom)));
  // At the point of no return (the new tree is checked out beside the old one): the bootloader
  // must not boot the slot while its old deployment is replaced.
  const replace = async () => {
    await changeBootState(sysroot, config, (s) => next(s, { type: 'slot-prepared', slot }));
    failpoint('update::after-mark-unbootable');
  };
  const channel = channelOf(ctx, config);
  const write = () => writeDeployment(sysroot, repo, slot, commit, { origin: { remote: channel.remote.url, ref: channel.ref, name: channel.name }, signedBy, merge: { bootedSlot: bootedSlotName, merger: ctx.merger }, kargs: checkedKargs, replace });
  const record = await repairing(ctx, repo, commit, write);
  await repo.writeRef(`larch/slot-${slot}`, commit);
  await writeBaseRef(repo, slot, commit);
  // The slot's layering request (none: the file goes), before the slot can boot.
  await writeOrigin(sysroot, slot, origin);
  failpoint('update::after-slot-ref');
  // rebase: the device follows the new channel from before the slot can boot, so a kill between
  // the two leaves the operator's choice made and the next upgrade stages from it.
  if (ctx.channel) await followChannel(sysroot, channel, `rebase; version ${record.version} staged in slot ${slot}`);
  await changeBootState(sysroot, config, (s) => next(s, { type: 'upgrade-staged', slot, tries: config.tries }), await releaseEnvVars(sysroot));
  failpoint('update::after-bootenv-write');
  await appendJournal(sysroot.journalPath, {
    event: 'stage',
    slot,
    commit,
    version: record.version,
    message: `version ${record.version} written to slot ${slot} and staged with ${config.tries} tries${record.etcMerge && record.etcMerge.conflicts.length > 0 ? `; /etc conflicts: ${record.etcMerge.conflicts.join(', ')}` : ''}`,
    data: { etc_conflicts: record.etcMerge?.conflicts ?? [] },
  });
  return record;
}

/** The running system uses slot's tree (apply-live): it is not rewritten before a reboot. @throws REFUSED live-applied */
export async function refuseLiveSlot(sysroot: Sysroot, slot: Slot): Promise<void> {
  const live = await readLive(sysroot);
  if (live?.slot !== slot) return;
  throw new LarchError('REFUSED', `slot ${slot} (version ${live.version}) is live since ${live.since}: the running /usr and /etc are its files, so it is not rewritten before a reboot`, {
    hint: 'reboot first (the live update boots, and boot-check confirms it); then upgrade again',
    data: { reason: 'live-applied', slot, commit: live.commit },
  });
}

/** How a staged deployment gets its kernel arguments; undefined where the device manages none. */
async function stagedKargs(sysroot: Sysroot, config: DeviceConfig, bootedSlotName: Slot, exact?: string[]): Promise<DeploymentKargs | undefined> {
  if (!config.kargs) return undefined;
  const booted = await readDeployment(sysroot, bootedSlotName);
  const from = booted ? recordKargs(config, booted) : null;
  const derive = exact ? () => [...exact] : from ? (vendor: string[]) => computeKargs(from.kargs, from.kargsVendor, vendor) : (vendor: string[]) => vendor;
  return { bootloader: config.bootloader, defaults: config.kargs, derive };
}

/**
 * Runs fn (which reads commit's objects) and, when a stored object of the commit is missing (a
 * partial commit an older prune left) or does not match its id (bit rot, a deployed file edited
 * in place), drops the damaged ones, pulls the commit again object by object (only what is not
 * in the repo is fetched, each object verified on the way in) and runs fn once more.
 */
async function repairing<T>(ctx: UpdateContext, repo: Repo, commit: ObjectId, fn: () => Promise<T>): Promise<T> {
  return fn().catch(async (err) => {
    const kind = err instanceof LarchError ? err.data.kind : undefined;
    const damaged = err instanceof LarchError && (err.code === 'OBJECT_MISSING' || err.code === 'OBJECT_CORRUPT') && (kind === 'file' || kind === 'dirtree' || kind === 'dirmeta');
    if (!damaged) throw err;
    const ids = Array.isArray(err.data.ids) ? (err.data.ids as string[]) : [err.data.id as string];
    if (err.code === 'OBJECT_CORRUPT') await dropObjects(repo, kind, ids);
    const again = await ctx.remote.pull(repo, commit, { delta: null, trusted: (await commitKeys(ctx)).keys, downloadDir: ctx.sysroot.downloadDir, progress: ctx.progress });
    const what = err.code === 'OBJECT_CORRUPT' ? 'corrupt' : 'missing';
    await appendJournal(ctx.sysroot.journalPath, { event: 'download', commit, message: `${ids.length} stored object(s) of commit ${commit.slice(0, 12)} were ${what} (${err.message}); fetched the commit's objects again (${again.bytes} bytes)`, data: { [what]: ids, ...again } });
    return fn();
  });
}

/** The most commits `deploy` walks back from the ref's head on the remote (one commit object each). */
export const MAX_HISTORY = 10_000;

/** Is this a commit id prefix (4 to 64 hex digits)? */
const isIdPrefix = (s: string) => /^[0-9a-f]{4,64}$/.test(s);

/**
 * deploy's target among the commits the device has (its deployments' and bases', a finished
 * download): the one whose version is `target`, or whose id is or starts with it. Layered
 * commits made on the device are not targets (their vendor base is).
 * @returns null when none matches @throws USAGE when a prefix matches several
 */
async function resolveLocalTarget(repo: Repo, target: string): Promise<{ commit: ObjectId; version: string; timestamp: number } | null> {
  const ids = new Set<ObjectId>();
  for (const r of await repo.listRefs()) if (r.branch.startsWith('larch/')) ids.add(r.commit);
  const byVersion: { commit: ObjectId; version: string; timestamp: number }[] = [];
  const byId: { commit: ObjectId; version: string; timestamp: number }[] = [];
  for (const id of ids) {
    if (!(await repo.hasObject('commit', id))) continue;
    const c = await repo.readCommit(id);
    if (baseOf(c.metadata) !== null) continue;
    const hit = { commit: id, version: c.version, timestamp: c.timestamp };
    if (c.version === target) byVersion.push(hit);
    else if (isIdPrefix(target) && id.startsWith(target)) byId.push(hit);
  }
  // A version is a name (the newest commit with it); an id prefix must be unique.
  if (byVersion.length) return byVersion.sort((a, b) => b.timestamp - a.timestamp)[0]!;
  return pickOne(byId, target, 'on this device');
}

/** One match, or none; several: USAGE naming the candidates. */
function pickOne<T extends { commit: ObjectId; version: string }>(matches: T[], target: string, where: string): T | null {
  if (matches.length <= 1) return matches[0] ?? null;
  const candidates = matches.map((m) => ({ commit: m.commit, version: m.version }));
  throw new LarchError('USAGE', `'${target}' matches ${matches.length} commits ${where}: ${candidates.map((c) => `${c.commit.slice(0, 12)} (version ${c.version})`).join(', ')}; give more digits or the version`, {
    hint: 'give more digits of the commit id, the full id, or the version',
    data: { target, candidates },
  });
}

/**
 * deploy's target on the remote: the ref's head, else the ref's whole history there (at most
 * MAX_HISTORY commits back), by version, full id or unique id prefix (at least 4 hex digits).
 * @throws NOT_FOUND, USAGE (a prefix of several commits: data.candidates)
 */
export async function resolveTarget(ctx: UpdateContext, repo: Repo, head: { commit: ObjectId; version: string; timestamp: number }, channel: Channel, target: string): Promise<{ commit: ObjectId; version: string; timestamp: number }> {
  if (head.version === target || head.commit === target) return head;
  // A version or a full id ends the walk where it is found; a prefix walks it all (it must be unique).
  const exact = (h: { commit: ObjectId; version: string }) => h.version === target || h.commit === target;
  const history = ctx.remote.history ? await ctx.remote.history(repo, head.commit, MAX_HISTORY, isIdPrefix(target) && target.length < 64 ? undefined : exact) : [];
  const matches = new Map<ObjectId, { commit: ObjectId; version: string }>();
  for (const h of history) if (h.version === target || h.commit === target || (isIdPrefix(target) && h.commit.startsWith(target))) matches.set(h.commit, h);
  // A version names the newest commit that has it (a version shipped twice); an id prefix must be unique.
  const byVersion = history.find((h) => h.version === target);
  const found = byVersion ?? pickOne([...matches.values()], target, `in the history of ${channel.ref}`);
  if (!found) {
    const walked = history.length >= MAX_HISTORY ? ` (the newest ${MAX_HISTORY} commits)` : ` (${history.length} commits)`;
    throw new LarchError('NOT_FOUND', `version or commit '${target}' is not in the history of ${channel.ref} on ${ctx.remote.describe()}${walked}`, { hint: "larch check shows the newest version; use a version from the vendor's release list, a commit id or a unique prefix of one", data: { target, ref: channel.ref, remote: ctx.remote.describe(), walked: history.length } });
  }
  // Not local yet: the commit object (verified, not stored) says when it was made; guessing 0
  // would call every newer commit a downgrade.
  const c = (await repo.hasObject('commit', found.commit)) ? await repo.readCommit(found.commit) : await ctx.remote.fetchCommit(found.commit, { trusted: (await commitKeys(ctx)).keys });
  return { commit: found.commit, version: found.version, timestamp: c.timestamp };
}

/**
 * Whether a release is older than another: by Debian version ordering (when both versions are
 * Debian versions) or by commit timestamp. Either one is enough, so a wrong build clock (a 1970
 * timestamp) cannot open a downgrade, nor can a version string out of order. Names what is older.
 */
export function isOlderRelease(a: { version: string; timestamp: number }, b: { version: string; timestamp: number }): 'version' | 'timestamp' | null {
  if (parseDebianVersion(a.version) && parseDebianVersion(b.version) && compareDebianVersions(a.version, b.version) < 0) return 'version';
  if (a.timestamp < b.timestamp) return 'timestamp';
  return null;
}

/**
 * Whether a release is older than the booted deployment's (isOlderRelease with its record's
 * version and time): what upgrade refuses as a downgrade and check reports as update.older, one
 * rule so the two never disagree.
 */
export function olderThanBooted(release: { version: string; timestamp: number }, booted: DeploymentRecord): 'version' | 'timestamp' | null {
  return isOlderRelease({ version: release.version, timestamp: release.timestamp }, { version: booted.version, timestamp: Date.parse(booted.timestamp) / 1000 });
}

/**
 * Space pre-flight, before anything is downloaded or written, per filesystem (S/boot is usually
 * its own FAT partition, so it is statfs'ed on its own):
 *   - the repo's: the delta's bytes (downloaded, then applied) and its new objects (estimated as
 *     2x the compressed size), plus the new /etc (a real copy, as large as the booted one's);
 *     an object-by-object pull's size is not known up front, and a pull that runs out fails
 *     cleanly with NO_SPACE;
 *   - /boot's: one slot's boot files (estimated as the booted slot's; checkDeployable checks the
 *     exact size once the commit is local), with the other slot's old files counted as free,
 *     since they are removed (the slot marked unbootable first) before the new ones are written.
 * @throws NO_SPACE naming the filesystem, what is missing and what would free it
 */
async function checkSpace(sysroot: Sysroot, delta: SummaryDelta | null, bootedSlotName: Slot): Promise<void> {
  const etcBytes = await dirBytes(join(sysroot.deployDir(bootedSlotName), 'etc'), true);
  const need = (delta ? delta.bytes * 3 : 0) + etcBytes + 4 * 1024 * 1024;
  await requireFree(sysroot.larchDir, need, 0, `the update needs about ${mib(need)} (${delta ? `download ${mib(delta.bytes)}, new objects, ` : ''}/etc ${mib(etcBytes)})`, "run 'larch cleanup' to remove the rollback deployment and objects no deployment uses, then upgrade again");
  await checkBootSpace(sysroot, await dirBytes(sysroot.slotBootDir(bootedSlotName), true), bootedSlotName);
}

/** Room for `bytes` of boot files in the slot beside bootedSlotName (its old files count as free). */
async function checkBootSpace(sysroot: Sysroot, bytes: number, bootedSlotName: Slot): Promise<void> {
  const reclaimable = await dirBytes(sysroot.slotBootDir(other(bootedSlotName)), true);
  // Room for a new env copy too (uboot.env and grubenv are rewritten through a temp file).
  const need = bytes + 64 * 1024;
  await requireFree(sysroot.bootDir, need, reclaimable, `the boot files need about ${mib(need)}`, `the boot partition holds only the booted slot's files and one update's; remove files that are not larch's from ${sysroot.bootDir}, or ship a smaller kernel/initramfs (larch cleanup cannot free it)`);
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

async function requireFree(path: string, need: number, reclaimable: number, what: string, hint: string): Promise<void> {
  const st = await statfs(path);
  const free = Number(st.bavail) * Number(st.bsize) + reclaimable;
  if (free >= need) return;
  throw new LarchError('NO_SPACE', `not enough space on the filesystem of ${path}: ${what}, ${mib(free)} is free${reclaimable ? ` (with the other slot's old files, ${mib(reclaimable)}, removed)` : ''}; ${mib(need - free)} missing`, {
    hint,
    data: { path, need, free },
  });
}

/**
 * The last checks before a slot is touched, on the commit now in the repo: a kernel when the
 * booted slot boots one (a slot without a kernel is never staged), and the exact boot files' size.
 */
async function checkDeployable(sysroot: Sysroot, plan: DeploymentPlan, bootedSlotName: Slot, commit: ObjectId): Promise<void> {
  const booted = await readDeployment(sysroot, bootedSlotName);
  if (!plan.kernel && booted?.bootFiles.includes('vmlinuz')) {
    throw new LarchError('INVALID_INPUT', `commit ${commit} has no kernel in /boot (no vmlinuz or vmlinuz-*), so its slot could not boot; nothing was written`, {
      hint: 'the vendor must ship a kernel in the tree (compose: kernel = "linux-image-...")',
      data: { commit, reason: 'no-kernel' },
    });
  }
  await checkBootSpace(sysroot, plan.bootBytes, bootedSlotName);
}

/** Bytes of the regular files in dir (and, with deep, below it; symlinks not followed). */
async function dirBytes(dir: string, deep = false): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isFile()) total += await lstat(join(dir, e.name)).then((s) => s.size, () => 0);
    else if (deep && e.isDirectory()) total += await dirBytes(join(dir, e.name), true);
  }
  return total;
}

async function recordLastUpdate(sysroot: Sysroot, u: Omit<LastUpdate, 'time'>): Promise<void> {
  await writeFileAtomic(lastUpdatePath(sysroot), JSON.stringify({ time: new Date().toISOString(), ...u }, null, 2) + '\n');
}

/**
 * rollback: make the other slot first again. A good rollback slot becomes primary; a staged
 * (unconfirmed) update is cancelled instead, leaving the booted slot first.
 */
export async function rollback(sysroot: Sysroot): Promise<{ result: 'rolled-back' | 'cancelled'; slot: Slot; version: string }> {
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = await bootedDeployment(sysroot, state);
  const target = other(booted.slot);
  const record = await readDeployment(sysroot, target);
  if (!record) throw new LarchError('NOT_FOUND', `slot ${target} holds no deployment to roll back to`, { hint: 'there is no previous version on this device', data: { slot: target } });
  const event = planRollback(state, booted.slot);
  if (!event) {
    throw new LarchError('REFUSED', `slot ${target} (version ${record.version}) is not known good: it failed or was never confirmed, so rolling back to it could leave the device unbootable`, { hint: 'deploy a known version instead: larch deploy VERSION', data: { reason: 'target-not-good', slot: target, version: record.version, commit: record.commit } });
  }
  if (event.type === 'rollback-requested') await checkRollback(sysroot, target, (await (await sysroot.openRepo()).readCommit(booted.record.commit)).metadata);
  await changeBootState(sysroot, config, (s) => next(s, event), await releaseEnvVars(sysroot));
  const outcome = event.type === 'rollback-requested' ? 'rolled-back' : 'cancelled';
  failpoint('rollback::after-bootenv-write');
  // The device follows the channel of what boots next (a rollback after a rebase goes back to the old channel).
  await followDeployment(sysroot, outcome === 'rolled-back' ? record : booted.record, `rollback to version ${outcome === 'rolled-back' ? record.version : booted.record.version}`);
  const message = outcome === 'rolled-back' ? `rollback: slot ${target} (version ${record.version}) boots next` : `rollback: the staged version ${record.version} in slot ${target} was cancelled; slot ${booted.slot} stays`;
  await appendJournal(sysroot.journalPath, { event: 'rollback', slot: target, commit: record.commit, version: record.version, message });
  await recordLastUpdate(sysroot, { action: 'rollback', result: 'ok', version: record.version, commit: record.commit, error: null });
  return { result: outcome, slot: target, version: record.version };
}

/**
 * finalize: redo the /etc merge of the staged slot, so admin edits made since `upgrade` land
 * (OSTree's staged deployments). Run by `upgrade --reboot` and at shutdown.
 */
export async function finalize(ctx: UpdateContext): Promise<{ slot: Slot | null; conflicts: string[] }> {
  const { sysroot } = ctx;
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = await bootedDeployment(sysroot, state);
  const slot = other(booted.slot);
  const record = await readDeployment(sysroot, slot);
  if (!record || state.order[0] !== slot || state.slots[slot].good) return { slot: null, conflicts: [] };
  // Live (apply-live): the running /etc is the slot's own, edited in place; a merge from the booted
  // slot's /etc would undo those edits.
  if ((await readLive(sysroot))?.slot === slot) return { slot: null, conflicts: [] };
  // A marker for the time between start and end: a finalize that does not complete (power cut,
  // kill, a full disk) is reported when the slot boots, instead of its /etc edits going missing silently.
  const marker = finalizeMarkerPath(sysroot, slot);
  await writeFileAtomic(marker, JSON.stringify({ started: new Date().toISOString(), from_slot: booted.slot }) + '\n');
  failpoint('finalize::after-marker-write');
  const merge = await redoEtcMerge(sysroot, booted.slot, slot, ctx.merger);
  const updated: DeploymentRecord = { ...record, etcMerge: merge };
  await writeFileAtomic(sysroot.deployRecordPath(slot), encodeDeploymentRecord(updated));
  failpoint('finalize::after-record-write');
  await rm(marker, { force: true });
  await fsyncPath(dirname(marker));
  failpoint('finalize::after-marker-unlink');
  await appendJournal(sysroot.journalPath, { event: 'finalize', slot, commit: record.commit, version: record.version, message: `/etc of slot ${slot} merged again with the current local /etc${merge.conflicts.length ? `; conflicts: ${merge.conflicts.join(', ')}` : ''}` });
  return { slot, conflicts: merge.conflicts };
}

/** cleanup: drop the rollback deployment (with --rollback) and every object no deployment uses. */
export async function cleanup(sysroot: Sysroot, opts: { rollback?: boolean } = {}): Promise<{ removed_slot: Slot | null; objects_deleted: number; bytes_freed: number }> {
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = await bootedDeployment(sysroot, state);
  const repo = await sysroot.openRepo();
  let removed_slot: Slot | null = null;
  const otherSlot = other(booted.slot);
  if (opts.rollback && (await readDeployment(sysroot, otherSlot)) && state.order[0] !== otherSlot) {
    await changeBootState(sysroot, config, (s) => next(s, { type: 'slot-cleaned', slot: otherSlot }));
    failpoint('cleanup::after-bootenv-write');
    await removeDeployment(sysroot, otherSlot);
    await repo.writeRef(`larch/slot-${otherSlot}`, null);
    removed_slot = otherSlot;
  }
  // Refs keep what deployments use (larch/slot-X) and a finished download (larch/downloaded).
  for (const slot of ['A', 'B'] as const) {
    const r = await readDeployment(sysroot, slot);
    await repo.writeRef(`larch/slot-${slot}`, r ? r.commit : null);
    await writeBaseRef(repo, slot, r ? r.commit : null);
  }
  for (const r of await repo.listRefs()) if (!r.branch.startsWith('larch/')) await repo.writeRef(r.branch, null);
  failpoint('cleanup::after-refs');
  const pruned = await prune(repo, { keep: 1 });
  // The legacy agent (S/larch/bin/larch) goes once every deployment carries its own.
  const deployments = [];
  for (const slot of ['A', 'B'] as const) {
    const r = await readDeployment(sysroot, slot);
    if (r) deployments.push({ dir: sysroot.deployDir(slot), agent: r.agent });
  }
  const legacyRetired = await retireLegacyAgent(sysroot, deployments);
  await appendJournal(sysroot.journalPath, { event: 'cleanup', message: `cleanup: ${removed_slot ? `slot ${removed_slot} removed; ` : ''}${pruned.objects_deleted} objects (${pruned.bytes_freed} bytes) freed${legacyRetired ? `; the legacy agent ${legacyAgentPath(sysroot)} removed: every deployment carries its own` : ''}`, ...(legacyRetired ? { data: { legacy_agent_removed: true } } : {}) });
  return { removed_slot, objects_deleted: pruned.objects_deleted, bytes_freed: pruned.bytes_freed };
}

export async function setPinned(sysroot: Sysroot, pinned: boolean): Promise<void> {
  const config = await sysroot.readConfig();
  await sysroot.writeConfig({ ...config, pinned });
  await appendJournal(sysroot.journalPath, { event: 'pin', message: pinned ? 'pinned: upgrades are held until unpin' : 'unpinned: upgrades resume' });
}
