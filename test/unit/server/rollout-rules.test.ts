/** The rollout rules (src/server/rollout-rules.ts): plan steps, operator choices, new releases, holds, the halt verdict. */
import t from 'tap';
import { rejectsCode } from '../../helpers.ts';
import { announcedRollout, applyChoices, listedCommit, nextStep, noteRelease, planSchedule, serveChoices, shouldHalt } from '../../../src/server/rollout-rules.ts';
import type { RefRollout } from '../../../src/server/rollout-state.ts';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);
const T0 = Date.parse('2026-12-06T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);

t.test('plan schedule: ⌊D / 10 s⌋ steps, at most 100, the last one on 100', async (t) => {
  t.same(planSchedule({ start: 10, over_s: 60 }), { steps: 6, step_pct: 15, interval_s: 10 }, '60 s from 10%: six steps of 15 points, every 10 s');
  t.same(planSchedule({ start: 5, over_s: 86400 }), { steps: 100, step_pct: 0.95, interval_s: 864 }, '24 h: 100 steps of 14.4 min');
  t.same(planSchedule({ start: 0, over_s: 5 }), { steps: 1, step_pct: 100, interval_s: 5 }, 'shorter than one step: one step');
  // 24 h from 5%: the steps walk 5.95, 6.9, ... and the 100th is exactly 100.
  let r: RefRollout = { rollout: 5, set: at(0).toISOString(), plan: { start: 5, over_s: 86400, started: at(0).toISOString() } };
  const seen: number[] = [];
  for (let i = 0; i < 100; i++) {
    const s = nextStep(r)!;
    seen.push(s.rollout);
    r = { ...r, rollout: s.rollout, set: new Date(s.due_ms).toISOString() };
  }
  t.equal(seen[0], 5.95);
  t.equal(seen.at(-1), 100, 'the last step is 100');
  t.ok(seen.every((x, i) => i === 0 || x > seen[i - 1]!), 'every step widens');
  t.equal(nextStep(r), null, 'at 100: no step');
});

t.test('a step is due an interval after the last one was recorded: a restart after downtime takes one, never jumps', async (t) => {
  const r: RefRollout = { rollout: 25, set: at(0).toISOString(), plan: { start: 10, over_s: 60, started: at(-10).toISOString() } };
  const s = nextStep(r)!;
  t.same(s, { rollout: 40, due_ms: T0 + 10_000 }, 'from 25: 40, 10 s after 25 was set');
  // serve was down for an hour: the step due long ago is 40, the next one 10 s after it is recorded.
  t.equal(nextStep({ ...r, rollout: 40, set: at(3600).toISOString() })!.due_ms, T0 + 3610_000, 'the next one an interval after the overdue step');
  t.equal(nextStep({ ...r, halted: { time: '', commit: B, version: '2', rollout: 25, to: null, failures: 3, decided: 8, took: 9, failure_pct: 37.5 } }), null, 'a halt freezes the plan');
  t.same(nextStep({ ...r, rollout: 3 }), { rollout: 25, due_ms: T0 + 10_000 }, 'below the start (a resume at a lower PCT): the first step above it');
});

t.test('operator choices: --rollout, a plan, a halt rule, off; a halted ref takes --rollout only with --resume', async (t) => {
  const now = at(0);
  t.same(applyChoices('os/stable', undefined, { rollout: 10 }, now), { rollout: 10, set: now.toISOString() });
  const planned = applyChoices('os/stable', { rollout: 100, set: at(-99).toISOString() }, { rollout: 5, over_s: 3600, halt_rule: { failures_pct: 20, min_devices: 10 } }, now);
  t.same(planned, { rollout: 5, set: now.toISOString(), plan: { start: 5, over_s: 3600, started: now.toISOString() }, halt_rule: { failures_pct: 20, min_devices: 10 } });
  t.same(applyChoices('os/stable', planned, { over_s: 7200 }, now).plan, { start: 0, over_s: 7200, started: now.toISOString() }, 'a plan without --rollout starts at 0');
  const off = applyChoices('os/stable', planned, { over_s: null, halt_rule: null }, now);
  t.notOk('plan' in off || 'halt_rule' in off, 'off removes both');
  const halted: RefRollout = { ...planned, commit: B, version: '2', halted: { time: now.toISOString(), commit: B, version: '2', rollout: 37, to: { commit: A, version: '1' }, failures: 4, decided: 13, took: 19, failure_pct: 30.77 } };
  await rejectsCode(t, () => applyChoices('os/stable', halted, { rollout: 50 }, now), 'REFUSED', '--rollout on a halted ref', { data: { reason: 'halted' } });
  t.equal(applyChoices('os/stable', halted, { halt_rule: { failures_pct: 30, min_devices: 5 } }, now).halt_rule!.failures_pct, 30, 'the rule of a halted ref may change');
  const resumed = applyChoices('os/stable', halted, { resume: true }, at(60));
  t.notOk(resumed.halted, 'resumed: no halt');
  t.equal(resumed.rollout, 37, 'at the rollout it had reached');
  t.same(resumed.history, [{ event: 'resume', time: at(60).toISOString(), commit: B, version: '2' }]);
  t.same(resumed.resumed_at, { failures: 4, decided: 13 }, 'the outcomes the halt was judged on are kept: the rule judges only newer ones');
  t.notOk('resumed_at' in noteRelease(resumed, { commit: C, version: '3' }, at(70)), 'a new release is judged on its own outcomes');
  t.equal(applyChoices('os/stable', halted, { resume: true, rollout: 10 }, now).rollout, 10, '--resume --rollout 10: at 10');
  await rejectsCode(t, () => applyChoices('os/stable', planned, { resume: true }, now), 'REFUSED', '--resume of a ref not halted', { data: { reason: 'not-halted' } });
});

t.test('a new release in flight: the last good one moves only after a full, unhalted rollout; a plan restarts; a halt is superseded', async (t) => {
  const plan = { start: 10, over_s: 60, started: at(-100).toISOString() };
  const full: RefRollout = { rollout: 100, set: at(-50).toISOString(), commit: A, version: '1', plan, halt_rule: { failures_pct: 20, min_devices: 10 } };
  const b = noteRelease(full, { commit: B, version: '2' }, at(0));
  t.same(b.last_good, { commit: A, version: '1' }, 'v1 reached everyone: it is the last good release');
  t.equal(b.commit, B);
  t.equal(b.rollout, 10, 'the plan starts again at its start');
  t.equal(b.plan!.started, at(0).toISOString());
  t.equal(noteRelease(b, { commit: B, version: '2' }, at(5)), b, 'the same head again: nothing changes');
  const partial = noteRelease({ ...b, rollout: 40 }, { commit: C, version: '3' }, at(10));
  t.same(partial.last_good, { commit: A, version: '1' }, 'v2 stopped at 40%: v1 stays the last good release');
  const halted: RefRollout = { ...b, rollout: 100, halted: { time: at(1).toISOString(), commit: B, version: '2', rollout: 40, to: { commit: A, version: '1' }, failures: 4, decided: 10, took: 12, failure_pct: 40 } };
  t.equal(noteRelease(halted, { commit: A, version: '1' }, at(2)), halted, "announcing the hold's last good release is not a new release");
  const superseded = noteRelease(halted, { commit: C, version: '3' }, at(3));
  t.notOk(superseded.halted, 'a new commit ends the halt');
  t.same(superseded.last_good, { commit: A, version: '1' }, 'a halted release never becomes the last good one');
  t.same(superseded.history, [{ event: 'superseded', time: at(3).toISOString(), commit: B, version: '2' }]);
});

t.test('what is listed and announced: a hold lists and announces the last good release at 100; with none known, the release at 0', async (t) => {
  const halt = { time: '', commit: B, version: '2', rollout: 40, failures: 4, decided: 10, took: 12, failure_pct: 40 };
  const held: RefRollout = { rollout: 40, set: '', commit: B, version: '2', halted: { ...halt, to: { commit: A, version: '1' } } };
  t.equal(listedCommit(held, B), A, 'the summary lists v1 while v2 is the head');
  t.equal(listedCommit(held, C), C, 'a newer head (a fix) is listed: the hold is of v2 only');
  t.equal(announcedRollout(held, A), 100, 'v1 to everyone');
  const noGood: RefRollout = { ...held, halted: { ...halt, to: null } };
  t.equal(listedCommit(noGood, B), B, 'no last good release: the head stays listed');
  t.equal(announcedRollout(noGood, B), 0, '... and is announced at 0: nobody else moves');
  t.equal(announcedRollout({ rollout: 37, set: '' }, B), 37);
  t.equal(announcedRollout(undefined, B), 100);
});

t.test('the halt verdict: more than N% of at least M decided; staged devices do not count', async (t) => {
  const rule = { failures_pct: 20, min_devices: 10 };
  const c = (good: number, fell_back: number, failed: number, staged = 0) => ({ took: good + fell_back + failed + staged, decided: good + fell_back + failed, fell_back, failed });
  t.notOk(shouldHalt(c(8, 2, 0), rule), 'exactly 20% of 10: not more than N');
  t.ok(shouldHalt(c(7, 2, 1), rule), '30% of 10: halt');
  t.notOk(shouldHalt(c(5, 3, 0), rule), '37.5% of 8: too few decided');
  t.notOk(shouldHalt(c(90, 10, 0, 1000), rule), '10% of 100 decided, 1,000 staged: no halt');
  t.ok(shouldHalt(c(7, 3, 0, 1000), { failures_pct: 20, min_devices: 10 }), '1,000 staged do not dilute 3 of 10');
  t.ok(shouldHalt(c(7999, 2001, 0), { failures_pct: 20, min_devices: 10 }), 'two decimals: 20.01% > 20%');
  t.notOk(shouldHalt(c(7999, 2001, 0), { failures_pct: 20.01, min_devices: 10 }), '20.01% is not more than 20.01%');
  // Resumed over 4 failures of 13: the same evidence does not halt again; new failures do.
  t.notOk(shouldHalt(c(9, 4, 0), rule, { failures: 4, decided: 13 }), 'after a resume, the outcomes it was resumed over do not count');
  t.notOk(shouldHalt(c(19, 5, 0), rule, { failures: 4, decided: 13 }), '1 failure of 11 since: no halt');
  t.ok(shouldHalt(c(17, 7, 0), rule, { failures: 4, decided: 13 }), '3 failures of 11 since: halt again');
});

t.test("serve's options are not applied again when recorded: a restart never restarts a plan or lifts a halt", async (t) => {
  const rule = { failures_pct: 20, min_devices: 10 };
  const recorded: RefRollout = { rollout: 55, set: '', plan: { start: 10, over_s: 60, started: '' }, halt_rule: rule };
  const log: string[] = [];
  t.same(serveChoices({ rollout: 10, over_s: 60, halt_rule: rule }, recorded, (l) => log.push(l)), {}, 'the same plan and rule: nothing to apply');
  t.same(serveChoices({ over_s: 120 }, recorded, () => {}), { over_s: 120 }, 'a different plan is applied');
  t.same(serveChoices({ rollout: 10, over_s: 60, halt_rule: rule }, undefined, () => {}), { rollout: 10, over_s: 60, halt_rule: rule }, 'nothing recorded: all applied');
  const halted: RefRollout = { ...recorded, halted: { time: '', commit: B, version: '2', rollout: 55, to: null, failures: 3, decided: 10, took: 10, failure_pct: 30 } };
  t.same(serveChoices({ rollout: 100 }, { ...halted, plan: undefined }, (l) => log.push(l)), {}, 'a halted ref keeps its halt');
  t.match(log.join('\n'), /halted/, '... and serve says so');
});
