/**
 * `larch status`: the booted, pending and rollback deployments, the boot state and what the last
 * boot and the last update did. The JSON shape is a contract for scripts (docs/cli.md).
 */
import { join } from 'node:path';
import { type BootState, type Slot, SLOTS, isBootable, other } from '../bootcount/state.ts';
import { type LastBoot, bootedSlot, lastBootPath, readBootState, readJsonFile } from './boot.ts';
import { type DeploymentRecord, readDeployment } from './deploy.ts';
import type { Sysroot } from './sysroot.ts';

export interface DeploymentStatus {
  slot: Slot;
  commit: string;
  version: string;
  timestamp: string;
  subject: string;
  origin: { remote: string; ref: string };
  signed_by: string[];
  deployed_at: string;
  /** Confirmed by health checks: boots without spending tries. */
  good: boolean;
  tries_left: number;
  etc_conflicts: string[];
  /** Its finalize (the /etc merge at shutdown) did not complete: /etc edits made after the upgrade may be missing. */
  finalize_interrupted?: { started: string; detected: string; from_slot: Slot } | null;
}

/** S/larch/last-update.json: the result of the last check/upgrade/deploy/rollback. */
export interface LastUpdate {
  time: string;
  action: string;
  result: 'ok' | 'error' | 'no-update';
  version: string | null;
  commit: string | null;
  error: { code: string; message: string; hint: string } | null;
}

export interface Status {
  sysroot: string;
  remote: string;
  ref: string;
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
}

export function lastUpdatePath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'last-update.json');
}

export async function readStatus(sysroot: Sysroot): Promise<Status> {
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const records: Record<Slot, DeploymentRecord | null> = { A: await readDeployment(sysroot, 'A'), B: await readDeployment(sysroot, 'B') };
  const booted = await bootedSlot(sysroot);
  const view = (slot: Slot | null) => (slot && records[slot] ? deploymentStatus(records[slot]!, state) : null);
  const others = booted ? [other(booted)] : [...SLOTS];
  const pendingSlot = others.find((s) => records[s] && state.order[0] === s && !state.slots[s].good && isBootable(state, s)) ?? null;
  const rollbackSlot = others.find((s) => records[s] && s !== pendingSlot && state.slots[s].good && s !== booted) ?? null;
  return {
    sysroot: sysroot.path,
    remote: config.remote.url,
    ref: config.ref,
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
  };
}

function deploymentStatus(r: DeploymentRecord, state: BootState): DeploymentStatus {
  return {
    slot: r.slot,
    commit: r.commit,
    version: r.version,
    timestamp: r.timestamp,
    subject: r.subject,
    origin: r.origin,
    signed_by: r.signedBy,
    deployed_at: r.deployedAt,
    good: state.slots[r.slot].good,
    tries_left: state.slots[r.slot].triesLeft,
    etc_conflicts: r.etcMerge?.conflicts ?? [],
    finalize_interrupted: r.finalizeInterrupted ?? null,
  };
}

/** The human form of `larch status`. */
export function formatStatus(s: Status): string {
  const lines: string[] = [];
  const dep = (label: string, d: DeploymentStatus | null) => {
    if (!d) return;
    lines.push(`${label} slot ${d.slot}: version ${d.version}  commit ${d.commit.slice(0, 12)}  ${d.timestamp}`);
    lines.push(`    ${d.good ? 'good' : `unconfirmed, ${d.tries_left} tries left`}; from ${d.origin.remote} ${d.origin.ref}; signed by ${d.signed_by.join(', ') || 'nobody'}`);
    if (d.etc_conflicts.length > 0) lines.push(`    /etc conflicts (vendor's version saved as FILE.larchnew): ${d.etc_conflicts.join(', ')}`);
    if (d.finalize_interrupted) lines.push(`    FINALIZE INTERRUPTED (started ${d.finalize_interrupted.started}): /etc edits made on slot ${d.finalize_interrupted.from_slot} after the upgrade may be missing (see larch history)`);
  };
  lines.push(`sysroot ${s.sysroot}  (${s.bootloader}; ${s.remote} ${s.ref}${s.pinned ? '; pinned' : ''})`);
  if (!s.booted) lines.push('booted: unknown (not booted through larch yet: no larch.slot= on the kernel command line)');
  dep('* booted ', s.booted);
  dep('  pending', s.pending);
  dep('  rollback', s.rollback);
  lines.push(`boot order ${s.boot.order.join(' ')}; last known good ${s.boot.last_good}${s.boot.rescue ? '; RESCUE: no slot is bootable, running the last known good one' : ''}`);
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
