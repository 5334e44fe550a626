/**
 * The generator's second thread (src/delta/diff-worker.ts): its patch is the one bsdiff makes on
 * the calling thread, also for inputs that are views into larger buffers; one worker serves diff
 * after diff, and starts again after close; a diff it cannot finish is a rejection that says so.
 */
import t from 'tap';
import { bsdiff } from '../../../src/delta/bsdiff.ts';
import { DiffWorker } from '../../../src/delta/diff-worker.ts';
import { prng } from '../../helpers.ts';

function pair(seed: number, n: number): { old: Uint8Array; neu: Uint8Array } {
  const rnd = prng(seed);
  const old = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 16));
  const neu = Uint8Array.from(old);
  for (let i = 0; i < n; i += 97) neu[i] = (neu[i] + 1 + Math.floor(rnd() * 3)) & 0xff;
  // A moved block and new bytes, so the patch has several control entries and extra bytes.
  if (n >= 1000) {
    neu.set(old.subarray(0, n >> 3), n >> 1);
    neu.set(Uint8Array.from({ length: 200 }, () => Math.floor(rnd() * 256)), n - 300);
  }
  return { old, neu };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const flat = (p: ReturnType<typeof bsdiff>) => ({ control: p.control, diff: Buffer.from(p.diff).toString('hex'), extra: Buffer.from(p.extra).toString('hex') });

t.test('the worker makes the same patch as bsdiff here, diff after diff, and again after close', async (t) => {
  const worker = new DiffWorker();
  t.teardown(() => worker.close());
  for (const [seed, n] of [[1, 0], [2, 1], [3, 5000], [4, 300_000]]) {
    const { old, neu } = pair(seed, n);
    const got = await worker.diff(old, neu);
    const want = bsdiff(old, neu);
    t.ok(same(flat(got.patch), flat(want)), `${n} bytes: the same control entries, diff and extra bytes (${want.control.length} entries)`);
    t.ok(got.ms >= 0, `${n} bytes: the worker reports its time (${got.ms.toFixed(1)} ms)`);
  }
  await worker.close();
  const { old, neu } = pair(5, 40_000);
  t.ok(same(flat((await worker.diff(old, neu)).patch), flat(bsdiff(old, neu))), 'after close, the next diff starts a worker again');
});

t.test('views into larger buffers: only their own bytes are diffed', async (t) => {
  const worker = new DiffWorker();
  t.teardown(() => worker.close());
  const { old, neu } = pair(6, 50_000);
  const around = (b: Uint8Array) => {
    const big = new Uint8Array(b.length + 7000).fill(0x5a);
    big.set(b, 3000);
    return big.subarray(3000, 3000 + b.length);
  };
  const got = await worker.diff(around(old), around(neu));
  t.ok(same(flat(got.patch), flat(bsdiff(old, neu))), 'the patch of the views is the patch of their bytes');
});

t.test('one diff at a time; a diff stopped by close is a rejection that names the second thread', async (t) => {
  const worker = new DiffWorker();
  t.teardown(() => worker.close());
  const { old, neu } = pair(7, 20_000);
  const first = worker.diff(old, neu);
  t.throws(() => worker.diff(old, neu), /one diff at a time/, 'a second diff while one runs is refused');
  await first;
  const big = pair(8, 2_000_000);
  const stopped = worker.diff(big.old, big.neu);
  await worker.close();
  await t.rejects(stopped, /the generator's second thread \(bsdiff-worker\.ts\) stopped/, 'a diff under way when the worker is stopped is rejected');
  t.ok(same(flat((await worker.diff(old, neu)).patch), flat(bsdiff(old, neu))), 'and the next diff starts a worker again');
});
