/**
 * Weekly reboot windows: parsing, and where a time stands (next start, inside a window, a window
 * spanning midnight, the wrap from Sunday to Monday), on fixed UTC times.
 */
import t from 'tap';
import { parseWindowSpec, windowPosition } from '../../../src/agent/reboot-window.ts';

// 2026-11-23 is a Monday.
const at = (iso: string) => new Date(iso);
const pos = (specs: string[], iso: string) => windowPosition(specs.flatMap(parseWindowSpec), at(iso));

t.test('parsing: days, ranges, times, lengths', async (t) => {
  t.same(parseWindowSpec('Mon,Wed 02:00 60m').map((w) => [w.startMin, w.lengthMin]), [[120, 60], [2 * 1440 + 120, 60]]);
  t.same(parseWindowSpec('Fri-Mon 23:30 2h').map((w) => w.startMin / 1440 | 0), [0, 4, 5, 6], 'a range wraps over the week end');
  t.same(parseWindowSpec('sunday 00:00 1h30m').map((w) => [w.startMin, w.lengthMin]), [[6 * 1440, 90]]);
  t.equal(parseWindowSpec('Mon-Sun 00:00 24h').length, 7);
  for (const bad of ['Mon 02:00', 'Mon 24:00 60m', 'Mon 02:60 60m', 'Funday 02:00 60m', 'Mon 02:00 0m', 'Mon 02:00 10081m', 'Mon-Tue-Wed 02:00 1h', '02:00 60m', 'Mon 2h 02:00']) {
    t.throws(() => parseWindowSpec(bad), /reboot window/, `refused: '${bad}'`);
  }
});

t.test('before a window today: the start is later today', async (t) => {
  const p = pos(['Mon,Wed 02:00 60m'], '2026-11-23T01:15:00Z');
  t.equal(p.open, false);
  t.equal(p.start.toISOString(), '2026-11-23T02:00:00.000Z');
  t.equal(p.end.toISOString(), '2026-11-23T03:00:00.000Z');
});

t.test('now inside a window: open, with the window it is in', async (t) => {
  const p = pos(['Mon,Wed 02:00 60m'], '2026-11-23T02:59:59Z');
  t.equal(p.open, true);
  t.equal(p.start.toISOString(), '2026-11-23T02:00:00.000Z');
  const edge = pos(['Mon,Wed 02:00 60m'], '2026-11-23T02:00:00Z');
  t.equal(edge.open, true, 'the start minute is inside');
  const after = pos(['Mon,Wed 02:00 60m'], '2026-11-23T03:00:00Z');
  t.equal(after.open, false, 'the end is outside');
  t.equal(after.start.toISOString(), '2026-11-25T02:00:00.000Z', 'then Wednesday');
});

t.test('week wrap: after the last window of the week comes next Monday', async (t) => {
  const p = pos(['Mon,Wed 02:00 60m'], '2026-11-28T12:00:00Z'); // Saturday
  t.equal(p.open, false);
  t.equal(p.start.toISOString(), '2026-11-30T02:00:00.000Z');
  const sunLate = pos(['Sun 23:00 30m'], '2026-11-29T23:45:00Z');
  t.equal(sunLate.start.toISOString(), '2026-12-06T23:00:00.000Z', 'just after the only window: a week later');
});

t.test('a window spanning midnight (and the week end) is open the morning after', async (t) => {
  const p = pos(['Sun 23:00 3h'], '2026-11-30T01:30:00Z'); // Monday 01:30
  t.equal(p.open, true);
  t.equal(p.start.toISOString(), '2026-11-29T23:00:00.000Z');
  t.equal(p.end.toISOString(), '2026-11-30T02:00:00.000Z');
  const q = pos(['Wed 22:00 4h'], '2026-11-26T01:00:00Z'); // Thursday 01:00
  t.equal(q.open, true, 'Wednesday 22:00 + 4h covers Thursday 01:00');
  t.equal(pos(['Wed 22:00 4h'], '2026-11-26T02:00:00Z').open, false, 'and ends at 02:00');
});

t.test('several windows: the nearest start wins; overlaps report the longest open one', async (t) => {
  const p = pos(['Fri 04:00 1h', 'Tue 03:00 30m', 'Thu 23:00 10m'], '2026-11-24T05:00:00Z'); // Tuesday 05:00
  t.equal(p.start.toISOString(), '2026-11-26T23:00:00.000Z');
  t.equal(p.window.spec, 'Thu 23:00 10m');
  const o = pos(['Mon 01:00 2h', 'Mon 00:30 1h'], '2026-11-23T01:10:00Z');
  t.equal(o.open, true);
  t.equal(o.end.toISOString(), '2026-11-23T03:00:00.000Z');
  t.equal(pos(['Mon-Sun 00:00 24h'], '2026-11-27T17:13:00Z').open, true, 'every day, all day: always open');
  t.throws(() => windowPosition([], new Date()), RangeError);
});
