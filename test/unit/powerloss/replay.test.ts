/** Crash states from a write log: what is durable, what may be dropped or reordered, reproducibly. */
import t from 'tap';
import { prng } from '../../helpers.ts';
import { type LogRecord, SECTOR_BYTES, crashStates, splitAtCut } from '../../powerloss/replay.ts';

const w = (sector: number, sectors: number, fill: number): LogRecord => ({ kind: 'write', offset: sector * SECTOR_BYTES, data: new Uint8Array(sectors * SECTOR_BYTES).fill(fill) });
const F: LogRecord = { kind: 'flush' };
// Two writes made durable by a flush, then three sectors pending, the last over the first.
const LOG: LogRecord[] = [w(0, 1, 1), w(5, 1, 2), F, w(10, 2, 3), w(10, 1, 4)];

t.test('everything before the last flush is durable; the rest is pending, cut into sectors', async (t) => {
  const { durable, pending } = splitAtCut(LOG, LOG.length);
  t.same(durable.map((x) => x.offset / SECTOR_BYTES), [0, 5]);
  t.same(pending.map((p) => [p.sector, p.data[0]]), [[10, 3], [11, 3], [10, 4]]);
  const early = splitAtCut(LOG, 2);
  t.same([early.durable.length, early.pending.length], [0, 2], 'a cut before the flush: nothing durable');
});

t.test('barrier first, all last, distinct states, counted drops and reorderings', async (t) => {
  const states = crashStates(LOG, LOG.length, 10, prng(1));
  t.equal(states[0].name, 'barrier');
  t.same([states[0].dropped, states[0].writes.length], [3, 2], 'barrier: the durable writes only');
  t.equal(states.at(-1)!.name, 'all');
  t.same([states.at(-1)!.dropped, states.at(-1)!.reordered], [0, false]);
  const keys = states.map((s) => s.writes.map((x) => `${x.offset}:${x.data[0]}`).join(','));
  t.equal(new Set(keys).size, keys.length, 'no state twice');
  for (const s of states) {
    const order = s.writes.slice(2).map((x) => x.data[0]);
    const oldOverNew = order.indexOf(4) >= 0 && order.lastIndexOf(3) > order.indexOf(4) && s.writes.slice(2).some((x, i) => x.data[0] === 3 && x.offset === 10 * SECTOR_BYTES && i > order.indexOf(4));
    t.equal(s.reordered, oldOverNew, `${s.name}: reordered only when sector 10's old write lands over its new one`);
  }
  t.ok(states.length <= 10);
  t.same(crashStates(LOG, LOG.length, 10, prng(1)), states, 'the same seed gives the same states');
  t.same(crashStates([w(0, 1, 1), F], 2, 5, prng(1)).map((s) => s.name), ['barrier'], 'nothing pending: one state');
});
