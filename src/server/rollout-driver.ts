/**
 * Carries out what R/rollout.json asks of each ref, once per `larch serve --sign-key` round
 * (auto-publish.ts): widens a plan by one step when it is due, and halts a release in flight
 * when its halt rule holds over the fleet view (the aggregator's device records). A halt is
 * recorded first, durably, under the repo's lock; the same round then publishes the summary,
 * which lists the last good release for a halted ref (publish.ts), and announces it. A crash in
 * between is finished by the next round, which finds the summary out of date. docs/fleet.md.
 */
import type { Repo } from '../store/repo.ts';
import type { DeviceRecord } from './fleet/model.ts';
import { rolloutCounts } from './fleet/model.ts';
import { type ProgressSample, appendEvent, appendProgress, keep, loadProgress } from './fleet/history.ts';
import { type RefRollout, type ReleaseRef, type RolloutState, readRolloutState, updateRolloutState } from './rollout-state.ts';
import { haltRecord, nextStep, shouldHalt } from './rollout-rules.ts';

const SAMPLE_INTERVAL_MS = 60_000;

/** What the driver reads of the fleet view. */
export interface FleetView {
  readonly devices: ReadonlyMap<string, DeviceRecord>;
  /** False until the retained statuses are in: a partial fleet is a biased sample, never judged. */
  readonly synced: boolean;
}

export interface DriverOptions {
  /** Where events.jsonl and progress.jsonl go (R/fleet or --fleet-state). */
  stateDir: string;
  /** The fleet view; `start` asks for one to be started (a ref has a halt rule), else null when there is none. */
  fleet: (start: boolean) => Promise<FleetView | null>;
  log: (line: string) => void;
  now?: () => Date;
}

export interface RolloutDriver {
  /** One round: steps and halts carried out; returns the refs to announce again. */
  round(): Promise<string[]>;
  /** The rollout state as last read (for the API). */
  readonly state: RolloutState;
  /** The progress samples of a ref, oldest first. */
  progress(ref: string): ProgressSample[];
}

export async function startRolloutDriver(repo: Repo, opts: DriverOptions): Promise<RolloutDriver> {
  const now = opts.now ?? (() => new Date());
  const series = await loadProgress(opts.stateDir);
  const lastSample = new Map<string, number>();
  let state: RolloutState = {};

  async function sample(ref: string, r: RefRollout, fleet: FleetView | null, force: boolean): Promise<void> {
    if (!fleet?.synced || !r.commit || !r.version) return;
    const t = now();
    if (!force && t.getTime() - (lastSample.get(ref) ?? 0) < SAMPLE_INTERVAL_MS) return;
    lastSample.set(ref, t.getTime());
    const c = rolloutCounts(fleet.devices.values(), ref, r.commit);
    const s: ProgressSample = { time: t.toISOString(), ref, commit: r.commit, version: r.version, rollout: r.halted ? r.halted.rollout : r.rollout, took: c.took, good: c.good, staged: c.staged, trying: c.trying, fell_back: c.fell_back, failed: c.failed };
    keep(series, s);
    await appendProgress(opts.stateDir, s).catch((err) => opts.log(`rollout: write progress: ${(err as Error).message}`));
  }

  /** The release a halt lists instead: the recorded last good one, else the halted commit's parent, when R still holds it. */
  async function lastGood(r: RefRollout & ReleaseRef): Promise<ReleaseRef | null> {
    const candidate = r.last_good?.commit ?? (await repo.readCommit(r.commit)).parent;
    if (!candidate || !(await repo.hasObject('commit', candidate))) return null;
    return { commit: candidate, version: (await repo.readCommit(candidate)).version };
  }

  async function halt(ref: string, r: RefRollout & ReleaseRef, fleet: FleetView): Promise<boolean> {
    const counts = rolloutCounts(fleet.devices.values(), ref, r.commit);
    if (!r.halt_rule || !shouldHalt(counts, r.halt_rule, r.resumed_at)) return false;
    const to = await lastGood(r);
    const t = now();
    const { result } = await updateRolloutState(repo, (s) => {
      const cur = s[ref];
      // Checked again under the lock: another writer may have moved the release on or halted it.
      if (!cur || cur.halted || cur.commit !== r.commit || !cur.version) return null;
      cur.halted = haltRecord({ ...cur, commit: r.commit, version: cur.version }, counts, to, t);
      delete cur.resumed_at;
      cur.history = [...(cur.history ?? []), { event: 'halt', time: t.toISOString(), commit: r.commit, version: cur.version }];
      return cur.halted;
    });
    if (!result) return false;
    const rule = r.halt_rule;
    opts.log(`rollout of ${ref} HALTED: version ${r.version} at ${result.rollout}%: ${result.failures} of ${result.decided} devices that decided fell back or failed (${result.failure_pct}% > ${rule.failures_pct}%, at least ${rule.min_devices} decided); ${to ? `announcing version ${to.version} to the devices not yet moved` : 'no earlier release is known: announcing it at 0%'}`);
    await appendEvent(opts.stateDir, { time: t.toISOString(), event: 'halt', ref, commit: r.commit, version: r.version, rollout: result.rollout, to, failures: result.failures, decided: result.decided, took: result.took, failure_pct: result.failure_pct, rule }).catch((err) => opts.log(`rollout: write events: ${(err as Error).message}`));
    return true;
  }

  async function step(ref: string, r: RefRollout): Promise<boolean> {
    const next = nextStep(r);
    if (!next || now().getTime() < next.due_ms) return false;
    const t = now();
    const { result } = await updateRolloutState(repo, (s) => {
      const cur = s[ref];
      const again = cur ? nextStep(cur) : null;
      if (!cur || !again || again.rollout !== next.rollout) return false;
      Object.assign(cur, { rollout: again.rollout, set: t.toISOString() });
      return true;
    });
    if (!result) return false;
    opts.log(`rollout of ${ref} widened to ${next.rollout}% (plan: ${r.plan!.start}% to 100% over ${r.plan!.over_s} s)`);
    await appendEvent(opts.stateDir, { time: t.toISOString(), event: 'step', ref, commit: r.commit ?? '', version: r.version ?? '', rollout: next.rollout }).catch((err) => opts.log(`rollout: write events: ${(err as Error).message}`));
    return true;
  }

  /**
   * Resumes and supersedes are written to R/rollout.json by other processes (larch announce):
   * each history entry not seen before is journaled here too (the halts this driver made are
   * already). At start, what the file holds counts as seen.
   */
  let seenHistory: Set<string> | null = null;
  async function noteHistory(s: RolloutState): Promise<void> {
    const entries = Object.entries(s).flatMap(([ref, r]) => (r.history ?? []).map((h) => ({ ref, ...h })));
    const key = (h: { ref: string; event: string; time: string; commit: string }) => `${h.ref} ${h.event} ${h.time} ${h.commit}`;
    if (seenHistory === null) {
      seenHistory = new Set(entries.map(key));
      return;
    }
    for (const h of entries) {
      if (seenHistory.has(key(h))) continue;
      seenHistory.add(key(h));
      if (h.event === 'halt') continue;
      opts.log(`rollout of ${h.ref}: ${h.event === 'resume' ? `halt of version ${h.version} lifted (resume)` : `halt of version ${h.version} superseded by a new release`}`);
      await appendEvent(opts.stateDir, { time: h.time, event: h.event, ref: h.ref, commit: h.commit, version: h.version }).catch((err) => opts.log(`rollout: write events: ${(err as Error).message}`));
    }
  }

  return {
    get state() {
      return state;
    },
    progress: (ref) => series.get(ref) ?? [],
    async round() {
      state = await readRolloutState(repo);
      await noteHistory(state);
      const again: string[] = [];
      const anyRule = Object.values(state).some((r) => r.halt_rule && !r.halted);
      const fleet = await opts.fleet(anyRule);
      for (const [ref, r] of Object.entries(state)) {
        let changed = false;
        if (r.halt_rule && !r.halted && r.commit && r.version && fleet?.synced) changed = await halt(ref, r as RefRollout & ReleaseRef, fleet);
        if (!changed) changed = await step(ref, r);
        if (changed) again.push(ref);
      }
      if (again.length > 0) {
        state = await readRolloutState(repo);
        await noteHistory(state);
      }
      for (const [ref, r] of Object.entries(state)) await sample(ref, r, fleet, again.includes(ref));
      return again;
    },
  };
}
