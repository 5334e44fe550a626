/**
 * The generator's second thread (src/delta/diff-worker.ts): its patch is the one bsdiff makes on
 * the calling thread, and its choice for a file the one chooseFor makes, also for inputs that are views into larger buffers; one worker serves diff
 * after diff, and starts again after close; a diff it cannot finish is a rejection that says so.
 */
import t from 'tap';
import { gzipSync } from 'node:zlib';
import { bsdiff } from '../../../src/delta/bsdiff.ts';
import { chooseFor } from '../../../src/delta/choose.ts';
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
  await t.rejects(worker.diff(old, neu), /one request at a time/, 'a second diff while one runs is refused');
  t.ok(worker.busy, 'and the worker says it is busy');
  await first;
  t.notOk(worker.busy, 'not busy once it is done');
  const big = pair(8, 2_000_000);
  const stopped = worker.diff(big.old, big.neu);
  await worker.close();
  await t.rejects(stopped, /the generator's second thread \(generate-worker\.ts\) stopped/, 'a diff under way when the worker is stopped is rejected');
  t.ok(same(flat((await worker.diff(old, neu)).patch), flat(bsdiff(old, neu))), 'and the next diff starts a worker again');
});

t.test("a file's choice on the worker is the one chooseFor makes here", async (t) => {
  const worker = new DiffWorker();
  t.teardown(() => worker.close());
  const text = (seed: number) => {
    const rnd = prng(seed);
    return Buffer.from(Array.from({ length: 4000 }, (_, i) => `line ${i} ${Math.floor(rnd() * 20)}\n`).join(''));
  };
  const { old, neu } = pair(9, 300_000);
  const cases = {
    'a gzip file (through its view)': { old: gzipSync(text(1)), content: gzipSync(Buffer.concat([text(1).subarray(0, 9000), Buffer.from('a new line\n'), text(1).subarray(9000)])) },
    'a binary (plain patch)': { old, content: neu },
    'noise against noise (literal)': { old: Uint8Array.from(pair(10, 3000).old, (x, i) => (x * 31 + i * 7) & 0xff), content: Uint8Array.from(pair(11, 3000).old, (x, i) => (x * 101 + i * 13) & 0xff) },
  };
  const chosen = (c: Awaited<ReturnType<typeof chooseFor>>) => ({
    what: c.chosen === null ? 'literal' : c.chosen.record.type,
    control: c.chosen?.control.map((b) => Buffer.from(b).toString('hex')),
    diff: c.chosen && Buffer.from(c.chosen.patch.diff).toString('hex'),
    extra: c.chosen && Buffer.from(c.chosen.patch.extra).toString('hex'),
    scratch: c.chosen?.scratch,
    estimates: [c.estimateBefore, c.estimateAfter],
    streams: c.streams,
    report: c.report,
  });
  const whats: string[] = [];
  for (const [name, { old, content }] of Object.entries(cases)) {
    const input = { old, content, header: Uint8Array.of(1, 2, 3), source: 'ab'.repeat(32), views: true };
    const here = chosen(await chooseFor(input));
    t.same(chosen(await worker.choose(input)), here, `${name}: the same choice, records, bytes and figures`);
    whats.push(here.what);
  }
  t.same(whats, ['view-file', 'file', 'literal'], 'the cases cover the three choices');
});
