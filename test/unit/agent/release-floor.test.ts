/**
 * The device's pure anti-rollback checks (agent/release-floor.ts) and the boot env's form of the
 * floor (bootcount/release-gate.ts): what is refused, with which data, and what lowers the floor.
 */
import t from 'tap';
import { LarchError } from '../../../src/errors.ts';
import { checkRefBinding, checkRollbackRelease, checkStageRelease } from '../../../src/agent/release-floor.ts';
import { belowFloor, decodeGate, dropUnreadable, encodeGate } from '../../../src/bootcount/release-gate.ts';
import { bootloaderChoose } from '../../../src/bootcount/state.ts';

const target = (release: number | null, ref: string | null = 'os/stable') => ({
  commit: 'c'.repeat(64),
  version: 'v',
  metadata: new Map<string, string | number>([...(release === null ? [] : [['larch.release', release] as [string, number]]), ...(ref === null ? [] : [['larch.ref', ref] as [string, string]])]),
});
const reason = (fn: () => unknown) => {
  try {
    fn();
    return null;
  } catch (err) {
    return err instanceof LarchError ? { code: err.code, ...err.data } : err;
  }
};

t.test('stage: at or above the floor passes; below is refused unless --allow-downgrade within the vendor floor', async (t) => {
  t.equal(checkStageRelease(target(7), 7, null, false), null);
  t.equal(checkStageRelease(target(3), null, null, false), null, 'no floor: as before');
  t.match(reason(() => checkStageRelease(target(6), 7, null, false)), { code: 'REFUSED', reason: 'below-release-floor', release: 6, floor: 7, min_release: null });
  t.equal(checkStageRelease(target(6), 7, null, true), 6, '--allow-downgrade with no vendor floor: as before, and the floor goes down to 6');
  t.match(reason(() => checkStageRelease(target(6), 7, 7, true)), { reason: 'below-release-floor', min_release: 7 }, 'below the vendor floor');
  t.equal(checkStageRelease(target(6), 8, 5, true), 6, 'within it: the floor goes down to 6');
  t.match(reason(() => checkStageRelease(target(null), 1, null, false)), { release: 0 }, 'no release counts as 0');
});

t.test('rollback: the vendor floor, or anywhere with none', async (t) => {
  t.equal(checkRollbackRelease('A', 'v', 6, 7, null), 6);
  t.equal(checkRollbackRelease('A', 'v', 7, 7, 7), null);
  t.match(reason(() => checkRollbackRelease('A', 'v', 6, 7, 7)), { reason: 'below-release-floor', release: 6, floor: 7, min_release: 7, slot: 'A' });
});

t.test('ref binding: another ref is refused, none passes', async (t) => {
  t.match(reason(() => checkRefBinding('os/stable', target(1, 'os/beta'))), { code: 'REFUSED', reason: 'wrong-ref', ref: 'os/stable', commit_ref: 'os/beta' });
  t.equal(reason(() => checkRefBinding('os/stable', target(1, null))), null);
  t.equal(reason(() => checkRefBinding('os/stable', target(1))), null);
});

t.test('BOOT_RELEASES: only three plain decimals of nine digits at most are a floor', async (t) => {
  const gate = (v: string) => decodeGate(new Map([['BOOT_RELEASES', v]]));
  t.same(gate('7 6 7'), { floor: 7, releases: { A: 6, B: 7 } });
  t.same(gate('999999999 0 1').floor, 999999999);
  for (const bad of ['07 6 7', '7 06 7', '0x7 6 7', '1000000000 1 1', '7 6', '7  6 7', ' 7 6 7', '7 6 7 ', '-1 0 0', '7 6 x']) t.equal(gate(bad).floor, null, `'${bad}' is no floor`);
  t.ok(belowFloor(gate('7 6 7'), 'A'));
  t.notOk(belowFloor(gate('7 6 7'), 'B'), 'equal passes');
  t.notOk(belowFloor(decodeGate(new Map()), 'A'), 'no variable: no floor');
  t.equal(encodeGate({ floor: 3, releases: { A: 0, B: 3 } }), '3 0 3');
  t.equal(encodeGate({ floor: null, releases: { A: 1, B: 2 } }), null);
  t.same([...dropUnreadable(new Map([['BOOT_RELEASES', '07 1 1'], ['X', '1']]))], [['X', '1']]);
});

t.test('bootloaderChoose passes over a good slot below the floor without a write', async (t) => {
  const vars = new Map(Object.entries({ BOOT_ORDER: 'A B', BOOT_A_GOOD: '1', BOOT_A_LEFT: '0', BOOT_B_GOOD: '1', BOOT_B_LEFT: '0', BOOT_LKG: 'A', BOOT_RESCUE: '0', BOOT_RELEASES: '7 6 7' }));
  t.match(bootloaderChoose(vars), { slot: 'B', rescue: false, wrote: false });
  vars.set('BOOT_RELEASES', '6 6 7');
  t.match(bootloaderChoose(vars), { slot: 'A' }, 'at the floor it boots');
});
