/** The boot-state model: the boot-case table through bootloaderChoose, decode/encode, and each event. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type BootState,
  BOOT_VARIABLES,
  INITIAL_STATE,
  attemptBoot,
  bootloaderChoose,
  decode,
  detectFallback,
  encode,
  findProblems,
  mergeInto,
  next,
  planBootCheck,
} from '../../../src/bootcount/state.ts';
import { type BootCase, caseStartVars } from '../../../hil-tests/lib/boot-table.ts';
import { ROOT } from '../../helpers.ts';

const table = JSON.parse(readFileSync(join(ROOT, 'board', 'boot-cases.json'), 'utf8')) as { cases: BootCase[] };

t.test('boot-cases.json through bootloaderChoose', async (t) => {
  t.ok(table.cases.length >= 25, `${table.cases.length} cases`);
  for (const c of table.cases) {
    let vars = caseStartVars(c);
    c.boots.forEach((expected, i) => {
      const at = `${c.name} boot ${i + 1}`;
      const choice = bootloaderChoose(vars, { lkgMarker: c.lkg_marker });
      t.equal(choice.slot, expected.slot, `${at}: slot`);
      t.equal(choice.rescue, expected.rescue, `${at}: rescue`);
      t.equal(choice.wrote, expected.wrote, `${at}: wrote`);
      if (expected.wrote) t.same(Object.fromEntries(choice.newVars), expected.env, `${at}: env after`);
      else t.same(choice.newVars, vars, `${at}: env untouched`);
      vars = choice.newVars;
    });
  }
});

t.test('decode is total and agrees with encode', async (t) => {
  t.same(INITIAL_STATE, { order: ['A', 'B'], slots: { A: { good: true, triesLeft: 0 }, B: { good: false, triesLeft: 0 } }, lastGood: 'A', rescue: false });
  const values = ['A B', 'B A', 'A', '', '0', '1', '2', '9', '10', 'B', 'x'];
  let n = 0;
  for (const order of values) {
    for (const aGood of ['0', '1', 'x']) {
      for (const bLeft of ['0', '3', '9', '10', 'x']) {
        for (const lkg of ['A', 'B', 'C']) {
          const vars = new Map([['BOOT_ORDER', order], ['BOOT_A_GOOD', aGood], ['BOOT_B_LEFT', bLeft], ['BOOT_LKG', lkg]]);
          const state = decode(vars);
          t.same(decode(encode(state)), state, `round trip ${JSON.stringify([...vars])}`);
          t.equal(findProblems(encode(state)).length, 0, 'encode writes only valid values');
          n++;
        }
      }
    }
  }
  t.ok(n > 400);
});

t.test('encode writes every larch variable and mergeInto keeps the others', async (t) => {
  const vars = encode(INITIAL_STATE);
  t.same([...vars.keys()], [...BOOT_VARIABLES]);
  const merged = mergeInto(new Map([['bootcmd', 'run distro_bootcmd'], ['BOOT_ORDER', 'garbage']]), INITIAL_STATE);
  t.equal(merged.get('bootcmd'), 'run distro_bootcmd');
  t.equal(merged.get('BOOT_ORDER'), 'A B');
  t.throws(() => encode({ ...INITIAL_STATE, slots: { A: INITIAL_STATE.slots.A, B: { good: false, triesLeft: 10 } } }), RangeError);
});

t.test('findProblems names missing and invalid variables', async (t) => {
  const problems = findProblems(new Map([['BOOT_ORDER', 'C D'], ['BOOT_A_LEFT', '3']]));
  t.same(problems.find((p) => p.variable === 'BOOT_ORDER'), { variable: 'BOOT_ORDER', value: 'C D', problem: 'invalid' });
  t.same(problems.find((p) => p.variable === 'BOOT_LKG'), { variable: 'BOOT_LKG', value: null, problem: 'missing' });
  t.notOk(problems.some((p) => p.variable === 'BOOT_A_LEFT'));
});

t.test('events', async (t) => {
  const staged = next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B' });
  t.same(staged.order, ['B', 'A'], 'staged slot first');
  t.same(staged.slots.B, { good: false, triesLeft: 3 });
  t.equal(staged.lastGood, 'A');
  t.throws(() => next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B', tries: 0 }), RangeError);
  t.throws(() => next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B', tries: 10 }), RangeError);

  const tried = next(staged, { type: 'boot-attempt' });
  t.same(tried.slots.B, { good: false, triesLeft: 2 }, 'a boot spends a try');
  const good = next(tried, { type: 'marked-good', slot: 'B' });
  t.same(good.slots.B, { good: true, triesLeft: 0 });
  t.equal(good.lastGood, 'B');
  t.same(next(good, { type: 'boot-attempt' }), good, 'a good slot boots without a write');

  const back = next(good, { type: 'rollback-requested', slot: 'A' });
  t.same(back.order, ['A', 'B'], 'rollback to the good previous slot');
  t.equal(back.lastGood, 'A');
  t.same(next(staged, { type: 'rollback-requested', slot: 'A' }).order, ['A', 'B'], 'rollback away from a pending update');
  const badPrevious = next(good, { type: 'marked-bad', slot: 'A' });
  t.same(next(badPrevious, { type: 'rollback-requested', slot: 'A' }), badPrevious, 'no rollback onto a bad slot');
  t.same(next(staged, { type: 'rollback-requested', slot: 'B' }), staged, 'no rollback onto an unconfirmed slot');

  // larch rollback of a staged update: the update's slot is never booted again, the booted slot first.
  const cancelled = next(staged, { type: 'upgrade-cancelled', slot: 'B' });
  t.same(cancelled, { order: ['A', 'B'], slots: { A: { good: true, triesLeft: 0 }, B: { good: false, triesLeft: 0 } }, lastGood: 'A', rescue: false });
  // Before an upgrade rewrites a slot, and before cleanup --rollback removes one: not bootable, second,
  // and not the rescue slot (its contents go away).
  for (const type of ['slot-prepared', 'slot-cleaned'] as const) {
    const cleared = next(good, { type, slot: 'B' });
    t.same(cleared, { order: ['A', 'B'], slots: { A: { good: true, triesLeft: 0 }, B: { good: false, triesLeft: 0 } }, lastGood: 'A', rescue: false }, type);
    t.equal(next(next(cleared, { type: 'marked-bad', slot: 'A' }), { type: 'boot-attempt' }).lastGood, 'A', `${type}: rescue never boots the cleared slot`);
  }

  // Staging over the last known good slot moves lastGood to the other slot.
  const overLkg = next(tried, { type: 'upgrade-staged', slot: 'A', tries: 2 });
  t.equal(overLkg.lastGood, 'B');

  const bothBad = next(next(good, { type: 'marked-bad', slot: 'A' }), { type: 'marked-bad', slot: 'B' });
  const rescue = attemptBoot(bothBad);
  t.same([rescue.slot, rescue.rescue, rescue.wrote], ['B', true, true], 'both bad: the last known good, flagged');
  const again = attemptBoot(rescue.state);
  t.same([again.slot, again.rescue, again.wrote], ['B', true, false], 'rescue is stable and writes once');
  t.equal(next(rescue.state, { type: 'marked-good', slot: 'B' }).rescue, false, 'mark-good leaves rescue');
  t.equal(next(rescue.state, { type: 'upgrade-staged', slot: 'A' }).rescue, false, 'an upgrade leaves rescue');
});

t.test('fallback detection and the boot-check plan', async (t) => {
  const staged = next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B', tries: 1 });
  const spent = next(staged, { type: 'boot-attempt' });
  t.same(detectFallback(spent, 'B'), { booted: 'B', primary: 'B', fellBack: false, from: null, to: null, rescue: false });
  const afterFallback = next(spent, { type: 'boot-attempt' });
  const report = detectFallback(afterFallback, 'A');
  t.same([report.fellBack, report.from, report.to], [true, 'B', 'A']);

  const plan = planBootCheck(afterFallback, 'A', true);
  t.same(plan.events, [{ type: 'fallback-recorded', booted: 'A' }]);
  t.equal(plan.outcome, 'already-good');
  const recorded = next(afterFallback, plan.events[0]);
  t.equal(detectFallback(recorded, 'A').fellBack, false, 'reported once');
  t.same(attemptBoot(recorded).slot, attemptBoot(afterFallback).slot, 'recording never changes the choice');

  t.same(planBootCheck(spent, 'B', true).events, [{ type: 'marked-good', slot: 'B' }]);
  t.same([planBootCheck(spent, 'B', false).reboot, planBootCheck(spent, 'B', false).outcome], [true, 'retry']);
  t.same([planBootCheck(INITIAL_STATE, 'A', false).reboot, planBootCheck(INITIAL_STATE, 'A', false).outcome], [false, 'unhealthy-stay']);

  const bothBad: BootState = { order: ['B', 'A'], slots: { A: { good: false, triesLeft: 0 }, B: { good: false, triesLeft: 0 } }, lastGood: 'A', rescue: false };
  const rescued = attemptBoot(bothBad).state;
  const stay = planBootCheck(rescued, 'A', false);
  t.same([stay.reboot, stay.outcome, stay.report.rescue], [false, 'both-bad', true]);
  t.same(planBootCheck(rescued, 'A', true).outcome, 'confirmed');
});

t.test('a failed env write boots the last known good slot without spending a try', async (t) => {
  const vars = encode(next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B' }));
  const choice = bootloaderChoose(vars, { saveFails: true });
  t.same([choice.slot, choice.wrote], ['A', false]);
  t.same(choice.newVars, vars);
});
