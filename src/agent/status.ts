/**
 * `larch status`: the booted, pending and rollback deployments, the boot state and what the last
 * boot and the last update did. The JSON shape is a contract for scripts (docs/cli.md).
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { compareDebianVersions, parseDebianVersion } from '../packages/debian-version.ts';
import { type BootState, type Slot, SLOTS, isBootable, other } from '../bootcount/state.ts';
import { type BootEnvHealth, type LastBoot, bootedSlot, lastBootPath, readBootState, readJsonFile } from './boot.ts';
import { type DeploymentRecord, readDeployment } from './deploy.ts';
import { type FailedRelease, type FailedReleases, describeFailure, findFailed } from './failed-releases.ts';
import { readFailedReleases } from './failed-store.ts';
import type { DeviceConfig, Sysroot } from './sysroot.ts';
import { recordKargs } from './deployment-kargs.ts';
import { trustStatus } from './trust-store.ts';
import { followedName } from './remotes.ts';
import { readLive } from './live/state.ts';
import { type AgentStatus, deploymentAgent } from './agent-binary.ts';
import { LarchError } from '../errors.ts';
import { type LayerInfo, decodeLayerInfo, layerSummary } from '../packages/layer-info.ts';

export interface DeploymentStatus {
  slot: Slot;
  commit: string;
  version: string;
  timestamp: string;
  subject: string;
  /** Where it came from: the remote's URL, the ref, and the remote's name (null: a deployment from before named remotes). */
  origin: { remote: string; ref: string; name: string | null };
  signed_by: string[];
  deployed_at: string;
  /** Confirmed by health checks: boots without spending tries. */
  good: boolean;
  tries_left: number;
  etc_conflicts: string[];
  /** Its finalize (the /etc merge at shutdown) did not complete: /etc edits made after the upgrade may be missing. */
  finalize_interrupted?: { started: string; detected: string; from_slot: Slot } | null;
  /** The agent that runs this deployment: its own /usr/bin/larch, or the legacy S/larch/bin/larch (agent-binary.ts). */
  agent: AgentStatus;
  /** Its kernel arguments as written on the command line (larch.slot= aside); null where larch manages none (provisioned without --kargs). */
  kargs: string[] | null;
  /** The vendor commit the deployment was built from: for one with nothing layered, its own commit and version. */
  base: { commit: string; version: string };
  /** The packages layered on the base (names, sorted; not their dependencies). */
  layered: string[];
  /** Base packages replaced by other versions, and removed (names, sorted). */
  overrides: { replaced: string[]; removed: string[] };
  /** A derived commit made on this device from the base (unsigned: signed_by are the base's signers). */
  local: boolean;
  /** The layer with versions (formats.md §12.2), for people: what `status` prints. */
  layer_packages: Pick<LayerInfo, 'layered'> & LayerInfo['overrides'];
  /** Set when the commit's layer is unreadable (malformed metadata, a damaged commit: the error's message); the layer fields then show none. */
  layer_error: string | null;
}

/** The layer of each deployed commit, from the device's repo (null: not derived, or the commit is not in the repo). */
type DeployedLayer = { layer: LayerInfo | null; error: string | null };

/** S/larch/last-update.json: the result of the last check/upgrade/deploy/rollback. */
export interface LastUpdate {
  time: string;
  action: string;
  /** ok: staged (or rolled back); downloaded: --download-only fetched it, nothing staged; pinned: upgrade held; cancelled: larch cancel stopped it, nothing changed. */
  result: 'ok' | 'downloaded' | 'pinned' | 'error' | 'no-update' | 'cancelled';
  version: string | null;
  commit: string | null;
  error: { code: string; message: string; hint: string } | null;
}

/**
 * What a deployment is, as rpm-ostree status labels them: booted; staged (unconfirmed, the
 * bootloader tries it next); next-boot (good, boots next though not booted now: before the
 * first boot, or after `larch rollback`); rollback (good, not first); failed (remembered as
 * failed here, failed-releases.ts); unbootable (neither good nor with tries: a cancelled or
 * interrupted update).
 */
export type DeploymentLabel = 'booted' | 'staged' | 'next-boot' | 'rollback' | 'failed' | 'unbootable';

export interface Status {
  sysroot: string;
  remote: string;
  ref: string;
  /** The name of the followed remote (`larch remote list`; origin: the provisioned one). */
  following: string;
  bootloader: string;
  pinned: boolean;
  booted: DeploymentStatus | null;
  /** Staged: the bootloader will try it at the next boot. */
  pending: DeploymentStatus | null;
  /** Good and not first: `larch rollback` makes it first. */
  rollback: DeploymentStatus | null;
  boot: { order: Slot[]; last_good: Slot; rescue: boolean; slots: Record<Slot, { good: boolean; tries_left: number; deployed: boolean }> };
  last_boot: LastBoot | null;
  last_update: LastUpdate | null;
  /** Every deployment, slot order, each labelled by what it is. */
  deployments: (DeploymentStatus & { label: DeploymentLabel })[];
  /** The slot the bootloader boots next (null: neither is bootable nor known good). */
  next_boot: Slot | null;
  /** Releases that failed on this device (S/larch/failed.json), oldest first: never staged again by themselves. */
  failed_releases: FailedRelease[];
  /** The boot env: ok; repaired (no valid copy, rewritten by this read); corrupt (a board env larch never rewrites). */
  boot_env: BootEnvHealth;
  boot_env_detail: { message: string; hint: string | null } | null;
  /** The trust document's version (null: none, the provisioned keys count for every role) and each trusted key's roles. */
  trust: { version: number | null; keys: { id: string; roles: string[] }[] };
  /** S/larch/hil-hold exists: the initramfs skips boot-check at every boot (a HIL harness reads the env; docs/boot.md). */
  hil_hold: boolean;
  /** The staged deployment whose /usr and /etc the running system uses (apply-live), in this boot; null: the booted one's. */
  live: { slot: Slot; commit: string; version: string; since: string; state: 'switching' | 'live' } | null;
}

export function lastUpdatePath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'last-update.json');
}

export async function readStatus(sysroot: Sysroot): Promise<Status> {
  const config = await sysroot.readConfig();
  const { state, env } = await readBootState(sysroot, config);
  const records: Record<Slot, DeploymentRecord | null> = { A: await readDeployment(sysroot, 'A'), B: await readDeployment(sysroot, 'B') };
  const booted = await bootedSlot(sysroot);
  const agents: Record<Slot, AgentStatus | null> = { A: null, B: null };
  for (const s of SLOTS) if (records[s]) agents[s] = await deploymentAgent(sysroot, sysroot.deployDir(s), records[s]!.agent);
  const layers = await deployedLayers(sysroot, records);
  const view = (slot: Slot | null) => (slot && records[slot] ? deploymentStatus(records[slot]!, state, agents[slot]!, layers[slot], config) : null);
  const others = booted ? [other(booted)] : [...SLOTS];
  const pendingSlot = others.find((s) => records[s] && state.order[0] === s && !state.slots[s].good && isBootable(state, s)) ?? null;
  const failed = await readFailedReleases(sysroot);
  const nextBoot = state.order.find((s) => isBootable(state, s)) ?? (state.slots[state.lastGood] ? state.lastGood : null);
  const labels = labelDeployments(state, records, booted, nextBoot, failed);
  const rollbackSlot = others.find((s) => labels[s] === 'rollback') ?? null;
  return {
    sysroot: sysroot.path,
    remote: config.remote.url,
    ref: config.ref,
    following: followedName(config),
    bootloader: config.bootloader,
    pinned: config.pinned,
    booted: view(booted),
    pending: view(pendingSlot),
    rollback: view(rollbackSlot),
    boot: {
      order: [...state.order],
      last_good: state.lastGood,
      rescue: state.rescue,
      slots: {
        A: { good: state.slots.A.good, tries_left: state.slots.A.triesLeft, deployed: records.A !== null },
        B: { good: state.slots.B.good, tries_left: state.slots.B.triesLeft, deployed: records.B !== null },
      },
    },
    last_boot: await readJsonFile<LastBoot>(lastBootPath(sysroot)),
    last_update: await readJsonFile<LastUpdate>(lastUpdatePath(sysroot)),
    deployments: SLOTS.filter((s) => records[s]).map((s) => ({ label: labels[s]!, ...deploymentStatus(records[s]!, state, agents[s]!, layers[s], config) })),
    next_boot: nextBoot,
    failed_releases: failed.releases,
    boot_env: env.health,
    boot_env_detail: env.message === null ? null : { message: env.message, hint: env.hint },
    trust: await trustStatus(sysroot),
    hil_hold: await lstat(sysroot.hilHoldPath).then(() => true, () => false),
    live: await readLive(sysroot).then((l) => (l ? { slot: l.slot, commit: l.commit, version: l.version, since: l.since, state: l.state } : null)),
  };
}

function labelDeployments(state: BootState, records: Record<Slot, DeploymentRecord | null>, booted: Slot | null, nextBoot: Slot | null, failed: FailedReleases): Record<Slot, DeploymentLabel | null> {
  const label = (s: Slot): DeploymentLabel | null => {
    const r = records[s];
    if (!r) return null;
    if (s === booted) return 'booted';
    if (!state.slots[s].good) return isBootable(state, s) ? 'staged' : findFailed(failed, r.commit, r.kargs) ? 'failed' : 'unbootable';
    return s === nextBoot && (booted === null || state.order[0] === s) ? 'next-boot' : 'rollback';
  };
  return { A: label('A'), B: label('B') };
}

/**
 * The layer of each deployment's commit, from the device's repo. An unreadable layer (malformed
 * metadata, a damaged commit object or repo) is reported, not thrown: status, and the daemon,
 * which reads it, must work on a device whose derived commit is damaged.
 */
async function deployedLayers(sysroot: Sysroot, records: Record<Slot, DeploymentRecord | null>): Promise<Record<Slot, DeployedLayer>> {
  const out: Record<Slot, DeployedLayer> = { A: { layer: null, error: null }, B: { layer: null, error: null } };
  const deployed = SLOTS.filter((s) => records[s]);
  if (deployed.length === 0) return out;
  const known = (err: unknown) => (err instanceof LarchError ? err.message : Promise.reject(err));
  const repo = await sysroot.openRepo().catch(known);
  for (const s of deployed) {
    const r = records[s]!;
    if (typeof repo === 'string') out[s] = { layer: null, error: repo };
    else if (await repo.hasObject('commit', r.commit)) {
      out[s] = await repo
        .readCommit(r.commit)
        .then((c) => ({ layer: decodeLayerInfo(c.metadata, `commit ${r.commit} (slot ${s})`), error: null }))
        .catch(async (err) => ({ layer: null, error: await known(err) }));
    }
  }
  return out;
}

/** The layer fields of a deployment's status (layer null: a vendor commit as it is). */
export function layerStatus(commit: string, version: string, layer: LayerInfo | null, error: string | null = null): Pick<DeploymentStatus, 'base' | 'layered' | 'overrides' | 'local' | 'layer_packages' | 'layer_error'> {
  const summary = layerSummary(commit, version, layer);
  return {
    base: summary.base,
    layered: summary.layered,
    overrides: summary.overrides,
    local: summary.local,
    layer_packages: { layered: layer?.layered ?? [], replaced: layer?.overrides.replaced ?? [], removed: layer?.overrides.removed ?? [] },
    layer_error: error,
  };
}

function deploymentStatus(r: DeploymentRecord, state: BootState, agent: AgentStatus, d: DeployedLayer, config: DeviceConfig): DeploymentStatus {
  return {
    slot: r.slot,
    commit: r.commit,
    // The contract: a layered deployment's version is its base's.
    version: d.layer ? d.layer.base.version : r.version,
    timestamp: r.timestamp,
    subject: r.subject,
    origin: { remote: r.origin.remote, ref: r.origin.ref, name: r.origin.name ?? null },
    signed_by: r.signedBy,
    deployed_at: r.deployedAt,
    good: state.slots[r.slot].good,
    tries_left: state.slots[r.slot].triesLeft,
    etc_conflicts: r.etcMerge?.conflicts ?? [],
    finalize_interrupted: r.finalizeInterrupted ?? null,
    agent,
    kargs: recordKargs(config, r)?.kargs ?? null,
    ...layerStatus(r.commit, r.version, d.layer, d.error),
  };
}

function notOlder(a: string, b: string): boolean {
  return !(parseDebianVersion(a) && parseDebianVersion(b) && compareDebianVersions(a, b) < 0);
}

/**
 * A deployment's layer, as `rpm-ostree status` prints it: nothing for a vendor commit as it is.
 * (LocalPackages is not printed: the commit metadata does not say which layered package came
 * from a .deb file; each layered package shows its version instead.)
 */
function formatLayer(d: DeploymentStatus): string[] {
  if (d.layer_error) return [`    LAYER UNKNOWN: ${d.layer_error}`];
  if (d.base.commit === d.commit) return [];
  const p = d.layer_packages;
  const out = [`    BaseCommit: ${d.base.commit} (version ${d.base.version})`];
  if (p.layered.length > 0) out.push(`    LayeredPackages: ${p.layered.map((x) => `${x.name} (${x.version})`).join(', ')}`);
  if (p.replaced.length > 0) out.push(`    ReplacedBasePackages: ${p.replaced.map((x) => `${x.name} ${x.base_version} -> ${x.version}`).join(', ')}`);
  if (p.removed.length > 0) out.push(`    RemovedBasePackages: ${p.removed.map((x) => `${x.name} ${x.version}`).join(', ')}`);
  return out;
}

/** The human form of `larch status`. */
export function formatStatus(s: Status): string {
  const lines: string[] = [];
  const dep = (label: string, d: DeploymentStatus | null) => {
    if (!d) return;
    lines.push(`${label} slot ${d.slot}: version ${d.version}  commit ${d.commit.slice(0, 12)}  ${d.timestamp}`);
    // A derived commit is the device's own, unsigned: the vendor's signature is on its base (checked when the layer is built).
    const trust = !d.local ? `signed by ${d.signed_by.join(', ') || 'nobody'}` : `made on this device from base ${d.base.version} ${d.base.commit.slice(0, 12)}${d.signed_by.length > 0 ? `, signed by ${d.signed_by.join(', ')}` : ''}`;
    lines.push(`    ${d.good ? 'good' : d.tries_left > 0 ? `unconfirmed, ${d.tries_left} tries left` : 'not bootable'}; from ${d.origin.name ? `${d.origin.name} (${d.origin.remote})` : d.origin.remote} ${d.origin.ref}; ${trust}`);
    lines.push(`    agent: ${d.agent.in_tree ? `larch ${d.agent.version ?? '(version unknown)'} (${d.agent.path})` : d.agent.path ? `none in the tree: the device's ${d.agent.path}` : 'none in the tree, and no legacy agent'}`);
    if (d.kargs) lines.push(`    kernel arguments: ${d.kargs.join(' ') || '(none)'}`);
    if (d.etc_conflicts.length > 0) lines.push(`    /etc conflicts (vendor's version saved as FILE.larchnew): ${d.etc_conflicts.join(', ')}`);
    lines.push(...formatLayer(d));
    if (d.finalize_interrupted) lines.push(`    FINALIZE INTERRUPTED (started ${d.finalize_interrupted.started}): /etc edits made on slot ${d.finalize_interrupted.from_slot} after the upgrade may be missing (see larch history)`);
  };
  lines.push(`sysroot ${s.sysroot}  (${s.bootloader}; ${s.following === 'origin' ? '' : `${s.following} `}${s.remote} ${s.ref}${s.pinned ? '; pinned' : ''})`);
  if (!s.booted) lines.push('booted: unknown (not booted through larch yet: no larch.slot= on the kernel command line)');
  if (s.live) lines.push(`LIVE: version ${s.live.version} (slot ${s.live.slot}) is the running /usr and /etc since ${s.live.since}${s.live.state === 'switching' ? ' (SWITCH INCOMPLETE: run larch apply-live again)' : ''}; it boots next`);
  const titles: Record<DeploymentLabel, string> = { booted: '* booted ', staged: '  pending', 'next-boot': '  next boot', rollback: '  rollback', failed: '  failed', unbootable: '  unbootable' };
  for (const d of s.deployments) {
    dep(titles[d.label], d);
    const f = d.label === 'failed' ? s.failed_releases.find((r) => r.commit === d.commit) : undefined;
    if (f) lines.push(`    ${describeFailure(f)}`);
    if (d.label === 'unbootable') lines.push('    not bootable (a cancelled or interrupted update): the bootloader skips it');
  }
  // A failed release not in a slot any more is still refused: say so while it is not older than the booted one.
  for (const f of s.failed_releases) {
    if (s.deployments.some((d) => d.commit === f.commit) || (s.booted && !notOlder(f.version, s.booted.version))) continue;
    lines.push(`  ${describeFailure(f)}`);
  }
  lines.push(`boot order ${s.boot.order.join(' ')}; last known good ${s.boot.last_good}${s.boot.rescue ? '; RESCUE: no slot is bootable, running the last known good one' : ''}`);
  lines.push(`boot env ${s.boot_env}${s.boot_env_detail ? `: ${s.boot_env_detail.message}` : ''}`);
  if (s.boot_env_detail?.hint) lines.push(`    to fix: ${s.boot_env_detail.hint}`);
  if (s.hil_hold) lines.push(`HIL HOLD: ${s.sysroot}/larch/hil-hold exists, so no boot runs boot-check (nothing is confirmed or falls back); remove it to boot normally`);
  if (s.last_boot) {
    const b = s.last_boot;
    lines.push(`last boot ${b.time}: slot ${b.slot}, ${b.healthy ? 'healthy' : `UNHEALTHY (${b.failed_checks.join(', ')})`}, ${b.outcome}${b.fell_back ? `; FELL BACK from slot ${b.from}` : ''}`);
  }
  if (s.last_update) {
    const u = s.last_update;
    lines.push(`last update ${u.time}: ${u.action} ${u.result}${u.version ? ` (version ${u.version})` : ''}${u.error ? `: ${u.error.message} [${u.error.code}]` : ''}`);
  }
  return lines.join('\n') + '\n';
}
