import t from 'tap';
import { breakdown, formatBreakdown } from '../../../bench/delta-breakdown.ts';
import type { Row } from '../../../bench/delta-methods.ts';

const figures = (objects: number, newBytes: number, before: number, after: number, view: number) => ({ objects, new_bytes: newBytes, estimate_before: before, estimate_after: after, view });

// Two rows as `larch delta generate --json` reports them: plain (format 1) and auto (views).
const plain: Row = {
  method: 'larch-plain',
  command: '',
  bytes: 1500,
  larchStats: {
    by_kind: { kernel: figures(1, 1000, 600, 600, 0), initramfs: figures(1, 100, 100, 100, 0), gzip: figures(4, 40, 200, 200, 0), elf: figures(10, 5000, 500, 500, 0), other: figures(3, 30, 100, 100, 0) },
    streams: { found: 0, used: 0, fallbacks: [] },
  },
};
const auto: Row = {
  method: 'larch',
  command: '',
  bytes: 1000,
  larchStats: {
    by_kind: { kernel: figures(1, 1000, 600, 300, 1), initramfs: figures(1, 100, 100, 10, 1), gzip: figures(4, 40, 200, 90, 3), elf: figures(10, 5000, 500, 500, 0), other: figures(3, 30, 100, 100, 0) },
    streams: {
      found: 6,
      used: 5,
      fallbacks: [
        { path: '/usr/share/doc/a/changelog.gz', codec: 'deflate', reason: 'larger' },
        { path: '/boot/vmlinuz-6.1.0-57-amd64', codec: 'xz', reason: 'no-encoder' },
      ],
    },
  },
};

t.test('the breakdown puts each kind before and after side by side, shares scaled to the real delta bytes', async (t) => {
  const b = breakdown([plain, auto])!;
  t.ok(b, 'a breakdown from two rows with by_kind');
  const kernel = b.lines.find((l) => l.kind === 'kernel')!;
  t.equal(kernel.plainEstimate, 600);
  t.equal(kernel.estimate, 300);
  t.equal(kernel.ratio, 0.5);
  t.equal(kernel.views, 1);
  // larch's estimates add up to 1000, its delta is 1000 bytes: 30% is 300 bytes.
  t.equal(kernel.share, 0.3);
  t.equal(kernel.deltaBytes, 300);
  t.same(b.lines.map((l) => l.kind), ['kernel', 'initramfs', 'gzip', 'elf', 'other']);
  t.equal(b.total.objects, 19);
  t.equal(b.total.newBytes, 6170);
  t.equal(b.total.plainEstimate, 1500);
  t.equal(b.total.estimate, 1000);
  t.equal(b.total.deltaBytes, 1000);
  t.equal(b.note, undefined, 'the larch row\'s estimate without views equals the larch-plain row\'s');
  t.same(b.streams?.fallbacks, { larger: { deflate: 1 }, 'no-encoder': { xz: 1 } });
  const text = formatBreakdown(b, auto.bytes).join('\n');
  t.match(text, /brotli q5/, 'the header says the estimates are per-object brotli q5 sizes');
  t.match(text, /no-encoder: \/boot\/vmlinuz-6\.1\.0-57-amd64/, 'fallbacks other than larger are named by path');
  t.notMatch(text, /larger: \/usr/, 'larger fallbacks are counted, not listed');
});

t.test('the scaling follows the delta bytes, and a disagreement between the two befores is noted', async (t) => {
  const bigger: Row = { ...auto, bytes: 2000, larchStats: { ...auto.larchStats, by_kind: { ...(auto.larchStats!.by_kind as object), other: figures(3, 30, 90, 100, 0) } } };
  const b = breakdown([plain, bigger])!;
  t.equal(b.lines.find((l) => l.kind === 'kernel')!.deltaBytes, 600);
  t.match(b.note, /1490 B, the larch-plain row's 1500 B/);
});

t.test('one row alone still gives its side; no by_kind gives no breakdown', async (t) => {
  const only = breakdown([plain])!;
  t.equal(only.lines[0].plainEstimate, 600);
  t.equal(only.lines[0].estimate, undefined);
  t.equal(only.streams, undefined);
  t.equal(breakdown([{ method: 'larch', command: '', na: 'no larch binary' }]), undefined);
  t.equal(breakdown([{ method: 'larch', command: '', bytes: 5, larchStats: { bytes: 5 } }]), undefined, 'a binary older than by_kind');
});
