/**
 * Which part the delta apply's second thread takes (src/delta/threads.ts, secondThreadPart), and
 * how many threads it uses by default (LARCH_APPLY_THREADS).
 */
import t from 'tap';
import { LarchError } from '../../../src/errors.ts';
import { defaultApplyThreads, secondThreadPart } from '../../../src/delta/threads.ts';
import type { PartInfo } from '../../../src/delta/format.ts';

const part = (scratch?: number): PartInfo => ({ size: 1, sha256: '', raw: 1, objects: [], ...(scratch === undefined ? {} : { scratch }) });

t.test('the part with the largest scratch, among those left to apply, when there are others', async (t) => {
  const parts = [part(0), part(2_000_000), part(), part(53_000_000), part(5_000_000)];
  t.equal(secondThreadPart(parts, [0, 1, 2, 3, 4], 2), 3, 'the kernel-sized view');
  t.equal(secondThreadPart(parts, [0, 1, 2, 4], 2), 4, 'the largest of those left (the kernel part stored already)');
  t.equal(secondThreadPart(parts, [0, 2], 2), null, 'no part with a view on disk: none');
  t.equal(secondThreadPart(parts, [3], 2), null, 'nothing else to apply meanwhile: none');
  t.equal(secondThreadPart(parts, [0, 1, 2, 3, 4], 1), null, 'one thread: none');
  t.equal(secondThreadPart([part(7), part(7)], [0, 1], 2), 0, 'a tie goes to the first');
});

t.test('one thread unless LARCH_APPLY_THREADS says 2; anything else is a usage error', async (t) => {
  t.equal(defaultApplyThreads({}), 1, 'unset: 1');
  t.equal(defaultApplyThreads({ LARCH_APPLY_THREADS: '' }), 1, 'empty: 1');
  t.equal(defaultApplyThreads({ LARCH_APPLY_THREADS: '2' }), 2, '2');
  t.equal(defaultApplyThreads({ LARCH_APPLY_THREADS: '1' }), 1, '1');
  for (const bad of ['0', '3', 'two', ' 2']) {
    let caught: unknown = null;
    try {
      defaultApplyThreads({ LARCH_APPLY_THREADS: bad });
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof LarchError && caught.code === 'USAGE' && caught.message.includes(`not '${bad}'`), `'${bad}': USAGE naming the value (${(caught as Error | null)?.message})`);
  }
});
