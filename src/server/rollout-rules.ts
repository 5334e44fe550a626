/**
 * What a ref's rollout state says should happen next (pure: no I/O, the clock passed in):
 * the steps of a plan over time, what an operator's announce options change, what announcing a
 * new release changes, the percentage an announcement carries, and the halt rule's verdict.
 * docs/fleet.md "Halting a rollout" and "Rollouts over time"; docs/formats.md §13.9.
 */
import { LarchError, quash } from '../errors.ts';
import { DEFAULT_ROLLOUT, type Halt, type HaltRule, type RefRollout, type ReleaseRef } from './rollout-state.ts';

/** Plans step at most every 10 s and at most 100 times. */
const MIN_STEP_S = 10;
const MAX_STEPS = 100;

const round2 = (n: number) => Math.round(n * 100) / 100;

export interface PlanSchedule {
  steps: number;
  /** Points added per step (the last step lands on 100 exactly). */
  step_pct: number;
  interval_s: number;
}

/** n = min(100, max(1, ⌊D / 10 s⌋)) steps of (100 − S) / n points, one every D / n seconds. */
export function planSchedule(plan: { start: number; over_s: number }): PlanSchedule {
  const steps = Math.min(MAX_STEPS, Math.max(1, Math.floor(plan.over_s / MIN_STEP_S)));
  return { steps, step_pct: round2((100 - plan.start) / steps), interval_s: plan.over_s / steps };
}

/**
 * The plan's next step: the smallest S + k·Δ above the current rollout (100 at the last step),
 * due one interval after the current rollout was recorded. So a restart after a long pause takes
 * one overdue step, and the next an interval later: the plan is delayed, never jumped, and the
 * halt rule always sees the fleet between two widenings. Null when there is no plan, the ref is
 * halted, or it is at 100.
 */
export function nextStep(r: RefRollout): { rollout: number; due_ms: number } | null {
  if (!r.plan || r.halted || r.rollout >= 100) return null;
  const s = planSchedule(r.plan);
  let k = 1;
  while (k < s.steps && round2(r.plan.start + k * s.step_pct) <= r.rollout) k++;
  return { rollout: k >= s.steps ? 100 : round2(r.plan.start + k * s.step_pct), due_ms: Date.parse(r.set) + s.interval_s * 1000 };
}

/** What an operator asks of a ref with `larch announce` (or `serve`): undefined leaves a choice as it is, null removes it. */
export interface RolloutChoices {
  rollout?: number;
  /** --rollout-over: seconds, or null (off). */
  over_s?: number | null;
  /** --halt-on-failures: the rule, or null (off). */
  halt_rule?: HaltRule | null;
  /** --resume: lift the ref's halt. */
  resume?: boolean;
}

export function hasChoices(c: RolloutChoices): boolean {
  return c.rollout !== undefined || c.over_s !== undefined || c.halt_rule !== undefined || c.resume === true;
}

/**
 * The ref's state with the operator's choices applied. A halted ref takes a new percentage
 * only with --resume (a halt is undone on purpose, never by the next routine widening).
 * @throws REFUSED (data.reason 'halted' or 'not-halted')
 */
export function applyChoices(ref: string, prev: RefRollout | undefined, c: RolloutChoices, now: Date): RefRollout {
  const r: RefRollout = { rollout: prev?.rollout ?? DEFAULT_ROLLOUT, set: prev?.set ?? now.toISOString(), ...prev };
  const set = now.toISOString();
  if (c.resume) {
    if (!r.halted) throw new LarchError('REFUSED', `ref '${quash(ref)}' is not halted: there is nothing to resume`, { hint: "'larch announce --rollout PCT' widens a rollout that is not halted", data: { reason: 'not-halted', ref } });
    r.history = [...(r.history ?? []), { event: 'resume', time: set, commit: r.halted.commit, version: r.halted.version }];
    Object.assign(r, { rollout: c.rollout ?? r.halted.rollout, set, resumed_at: { failures: r.halted.failures, decided: r.halted.decided } });
    delete r.halted;
  } else if (r.halted && (c.rollout !== undefined || c.over_s)) {
    const h = r.halted;
    throw new LarchError('REFUSED', `ref '${quash(ref)}' is halted: version ${h.version} stopped at ${h.rollout}% on ${h.time} (${h.failures} of ${h.decided} devices that decided fell back or failed, ${h.failure_pct}%)`, {
      hint: `fix the release and commit a new one (announced as usual), or lift the halt with 'larch announce --ref ${ref} --resume [--rollout PCT]'`,
      data: { reason: 'halted', ref, halted: h },
    });
  } else if (c.rollout !== undefined) {
    Object.assign(r, { rollout: c.rollout, set });
  }
  if (c.over_s === null) delete r.plan;
  else if (c.over_s !== undefined) {
    r.plan = { start: c.rollout ?? 0, over_s: c.over_s, started: set };
    Object.assign(r, { rollout: r.plan.start, set });
  }
  if (c.halt_rule === null) delete r.halt_rule;
  else if (c.halt_rule !== undefined) r.halt_rule = c.halt_rule;
  return r;
}

/**
 * serve's options for a ref, without what is recorded already: the same plan, the same halt
 * rule and the same rollout are not applied again, so restarting serve with the same options
 * never restarts a plan or narrows a widened rollout; a halted ref keeps its halt (said in `log`).
 */
export function serveChoices(c: RolloutChoices, recorded: RefRollout | undefined, log: (line: string) => void): RolloutChoices {
  const out: RolloutChoices = { ...c };
  const samePlan = c.over_s !== undefined && c.over_s !== null && recorded?.plan?.over_s === c.over_s && recorded.plan.start === (c.rollout ?? 0);
  if (samePlan || (c.over_s === null && !recorded?.plan)) delete out.over_s;
  if (samePlan || (recorded?.plan && c.over_s === undefined)) delete out.rollout;
  if (c.halt_rule === null ? !recorded?.halt_rule : c.halt_rule && recorded?.halt_rule?.failures_pct === c.halt_rule.failures_pct && recorded.halt_rule.min_devices === c.halt_rule.min_devices) delete out.halt_rule;
  if (recorded?.halted && (out.rollout !== undefined || out.over_s)) {
    log(`halted: --rollout and --rollout-over are not applied (resume with 'larch announce --resume')`);
    delete out.rollout;
    delete out.over_s;
  }
  return out;
}

/** Whether the ref's state follows its releases (a plan, a halt rule or a halt: format 2's business). */
export function isManaged(r: RefRollout | undefined): boolean {
  return r !== undefined && (r.plan !== undefined || r.halt_rule !== undefined || r.halted !== undefined || r.commit !== undefined);
}

/**
 * The ref's state once `head` is announced as its head. A new release in flight (not the one
 * recorded, not the last good release a halt lists) becomes `commit`; the one before becomes
 * the last good release if it reached the whole fleet unhalted (else the older last good
 * stays); a plan starts again at its start; a halt of the old release goes to the history.
 */
export function noteRelease(prev: RefRollout, head: ReleaseRef, now: Date): RefRollout {
  if (prev.commit === head.commit) return prev;
  if (prev.halted && prev.halted.to?.commit === head.commit) return prev; // the hold itself
  const r: RefRollout = { ...prev, commit: head.commit, version: head.version };
  delete r.resumed_at;
  const time = now.toISOString();
  if (prev.commit !== undefined && prev.version !== undefined && prev.rollout >= 100 && !prev.halted) r.last_good = { commit: prev.commit, version: prev.version };
  if (prev.halted) {
    r.history = [...(prev.history ?? []), { event: 'superseded', time, commit: prev.halted.commit, version: prev.halted.version }];
    delete r.halted;
  }
  if (r.plan) {
    r.plan = { ...r.plan, started: time };
    Object.assign(r, { rollout: r.plan.start, set: time });
  }
  return r;
}

/** The percentage an announcement of `commit` carries: the recorded one; a hold's last good release goes to everyone; a halt with no last good stops everyone. */
export function announcedRollout(r: RefRollout | undefined, commit: string): number {
  if (r?.halted) return r.halted.to?.commit === commit ? 100 : 0;
  return r?.rollout ?? DEFAULT_ROLLOUT;
}

/** The commit a summary lists for a ref whose repo head is `head`: a hold's last good release while the halted release is the head, else the head. */
export function listedCommit(r: RefRollout | undefined, head: string): string {
  return r?.halted && r.halted.commit === head && r.halted.to ? r.halted.to.commit : head;
}

export interface OutcomeCounts {
  took: number;
  decided: number;
  fell_back: number;
  failed: number;
}

/**
 * The halt rule: at least `min_devices` devices decided (booted the release good, fell back or
 * failed), and more than `failures_pct` percent of them fell back or failed. Staged devices do
 * not count: hundreds waiting for a reboot window would dilute a real failure below any threshold.
 * After a resume, the counts are those since the resume (`resumedAt`: the counts the halt saw).
 */
export function shouldHalt(c: OutcomeCounts, rule: HaltRule, resumedAt?: { failures: number; decided: number }): boolean {
  // After a resume, only the outcomes since: the ones the operator resumed over never count twice.
  const decided = c.decided - (resumedAt?.decided ?? 0);
  const failures = c.fell_back + c.failed - (resumedAt?.failures ?? 0);
  return decided >= rule.min_devices && 100 * failures > rule.failures_pct * decided;
}

/** The halt record for the release in flight. */
export function haltRecord(r: RefRollout & ReleaseRef, c: OutcomeCounts, to: ReleaseRef | null, now: Date): Halt {
  const failures = c.fell_back + c.failed;
  return { time: now.toISOString(), commit: r.commit, version: r.version, rollout: r.rollout, to, failures, decided: c.decided, took: c.took, failure_pct: round2((100 * failures) / c.decided) };
}
