/** The progress bar: formatting, TTY-only drawing, and --expires-in durations. */
import t from 'tap';
import { createProgressBar, formatBytes, formatDuration, renderProgressLine } from '../../../src/cli/progress.ts';
import { parseDuration } from '../../../src/cli/option-values.ts';

t.test('formatting', async (t) => {
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(1023), '1023 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
  t.equal(formatDuration(83), '1:23');
  t.equal(formatDuration(3723), '1:02:03');
  const line = renderProgressLine({ label: 'part 1/2', doneBytes: 512 * 1024, totalBytes: 1024 * 1024, rate: 256 * 1024 }, 80);
  t.match(line, /^\[#+-+\] part 1\/2  512\.0 KiB \/ 1\.0 MiB  256\.0 KiB\/s  ETA 0:02$/);
  const bar = /^\[([#-]+)\]/.exec(line)![1];
  t.equal(bar.replace(/-/g, '').length * 2, bar.length, 'half full');
  t.ok(line.length <= 79, 'fits in 79 columns');
  t.ok(renderProgressLine({ label: 'x', doneBytes: 5, totalBytes: null, rate: null }, 80).startsWith('x  5 B'), 'unknown total: no bar');
  t.ok(renderProgressLine({ label: 'x'.repeat(200), doneBytes: 5, totalBytes: 10, rate: null }, 40).length < 40, 'fits the width');
});

t.test('draws only on a TTY, at most every 100 ms', async (t) => {
  const written: string[] = [];
  const quiet = createProgressBar('dl', { isTTY: false, write: (s: string) => written.push(s) });
  quiet.update(1, 2);
  quiet.done();
  t.same(written, [], 'not a terminal: nothing');
  let clock = 0;
  const bar = createProgressBar('dl', { isTTY: true, columns: 80, write: (s: string) => written.push(s) }, () => clock);
  for (let i = 0; i <= 10; i++) {
    clock = i * 50;
    bar.update(i * 1000, 10_000);
  }
  bar.done();
  t.equal(written.filter((s) => s.startsWith('\r')).length, 7, 'six throttled draws plus the final one');
  t.equal(written.at(-1), '\n');
  t.match(written.at(-2)!, /10000 B|9\.8 KiB/);
});

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('3600', 'x'), 3600);
  t.equal(parseDuration('90m', 'x'), 5400);
  t.equal(parseDuration('7d', 'x'), 604800);
  t.equal(parseDuration('2w', 'x'), 1209600);
  for (const bad of ['0', '-1', '1y', '', '1.5h']) t.throws(() => parseDuration(bad, '--expires-in'), { code: 'USAGE' }, bad);
});
