/**
 * The CI fuzz run: every target of targets.ts with a short budget (LARCH_FUZZ_RUNS inputs each,
 * default 300; the I/O-heavy ones fewer), every corpus input of test/vectors/fuzz/ replayed as a
 * regression vector, the harness's own checks shown to fail, and the huge declared sizes refused
 * fast and without allocating. The long run is `npm run fuzz` (scripts/fuzz.ts).
 */
import t from 'tap';
import { LarchError } from '../../src/errors.ts';
import { decodeCanonical } from '../../src/store/cbor.ts';
import { openDeltaFile } from '../../src/delta/source.ts';
import { encodePreamble } from '../../src/delta/format.ts';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';
import { type FuzzTarget, FuzzFinding, MAX_ALLOCATION_BYTES, checkInput, corpusInputs, installAllocationGuard, runTarget } from './harness.ts';
import { TARGETS, cleanupFixtures } from './targets.ts';

const RUNS = Number(process.env.LARCH_FUZZ_RUNS ?? 300);
/** Targets that write files and run a transaction per input get a smaller share. */
const SLOW: Record<string, number> = { 'delta-part': 0.15, 'tar-import': 0.3, 'delta-superblock': 0.5 };
const SEED = Number(process.env.LARCH_FUZZ_SEED ?? Date.now() % 2 ** 31);

t.teardown(cleanupFixtures);

t.test('the harness catches what it must', async (t) => {
  const target = (run: FuzzTarget['run'], extra: Partial<FuzzTarget> = {}): FuzzTarget => ({ name: 'self-test', drives: '-', seeds: () => [], run, ...extra });
  const restore = installAllocationGuard();
  try {
    await t.resolves(checkInput(target(() => { throw new LarchError('INVALID_INPUT', 'bad', { data: {} }); }), new Uint8Array(1)), 'a LarchError is a good ending');
    await t.rejects(checkInput(target(() => { throw new TypeError('x.y is undefined'); }), new Uint8Array(1)), FuzzFinding, 'a TypeError is a finding');
    await t.rejects(checkInput(target(() => { throw new RangeError('Invalid typed array length'); }), new Uint8Array(1)), FuzzFinding, 'a RangeError is a finding');
    await t.rejects(checkInput(target(() => { throw new LarchError('INVALID_INPUT', 'bad', { data: {} }); }, { neverThrows: true }), new Uint8Array(1)), FuzzFinding, 'any exception of a verdict-only parser is a finding');
    await t.rejects(checkInput(target(() => new Uint8Array(MAX_ALLOCATION_BYTES + 1)), new Uint8Array(1)), /allocated/, 'allocating by a declared size is a finding');
    await t.rejects(checkInput(target(() => Buffer.alloc(MAX_ALLOCATION_BYTES + 1)), new Uint8Array(1)), /allocated/, 'Buffer.alloc too');
    await t.rejects(
      checkInput(target(() => { const end = performance.now() + 30; while (performance.now() < end); }, { maxMsPerInput: 5 }), new Uint8Array(1)),
      /took \d+ ms/,
      'an input over the time bound is a finding',
    );
  } finally {
    restore();
  }
  t.equal(new Uint8Array(3).length, 3, 'the guard is removed afterwards');
});

t.test('huge declared sizes are refused fast, before allocating', async (t) => {
  const restore = installAllocationGuard();
  try {
    for (const head of ['5b0000010000000000', '9b0000010000000000', 'bb0000010000000000', '5a80000000', '7b0000010000000000']) {
      const started = performance.now();
      t.equal(decodeCanonical(Buffer.from(head + '00', 'hex')), undefined, `CBOR head ${head} declaring 2^31..2^40 is refused`);
      t.ok(performance.now() - started < 100, 'in under 100 ms');
    }
    const o = await checkInput(TARGETS.find((x) => x.name === 'cbor')!, Uint8Array.from(Buffer.from('5b0000010000000000', 'hex')));
    t.ok(o.largestAllocation < 1024, `CBOR: largest allocation ${o.largestAllocation} bytes`);
  } finally {
    restore();
  }
  const dir = tempDir(t);
  const file = join(dir, 'delta');
  await writeFile(file, encodePreamble(64 * 1024 * 1024));
  const err = await openDeltaFile(file).then(() => null, (e: unknown) => e);
  t.ok(err instanceof LarchError && err.code === 'DELTA_CORRUPT' && /declares 67108864 bytes/.test(err.message), `a 16-byte delta declaring a 64 MiB envelope is refused before the envelope is allocated: ${String(err)}`);
});

for (const target of TARGETS) {
  t.test(`target ${target.name}`, async (t) => {
    const corpus = corpusInputs(target.name);
    if (corpus.length > 0) {
      await target.setup?.();
      const restore = installAllocationGuard();
      try {
        for (const { file, input } of corpus) await t.resolves(checkInput(target, input), `corpus ${file.split('/').slice(-2).join('/')}`);
      } finally {
        restore();
        await target.teardown?.();
      }
    }
    const runs = Math.max(20, Math.round(RUNS * (SLOW[target.name] ?? 1)));
    const r = await runTarget(target, { numRuns: runs, seed: SEED });
    t.equal(r.failure?.message ?? null, null, `${r.inputs} inputs, slowest ${r.slowestMs.toFixed(1)} ms; rerun with LARCH_FUZZ_SEED=${SEED} (path ${r.failure?.path ?? '-'})`);
    t.equal(r.inputs, runs, 'every input ran');
    if (target.roundTrip) t.ok(r.roundTrips >= 50, `${r.roundTrips} round trips`);
    t.ok(r.heapGrowthMiB < 256, `heap grew ${r.heapGrowthMiB.toFixed(1)} MiB`);
    t.ok(r.fdGrowth <= 0, `no file descriptor left open (${r.fdGrowth} more than before)`);
    t.comment(JSON.stringify({ target: r.name, inputs: r.inputs, round_trips: r.roundTrips, slowest_ms: Number(r.slowestMs.toFixed(1)), mean_ms: Number(r.meanMs.toFixed(2)), largest_allocation: r.largestAllocation, fd_growth: r.fdGrowth, heap_growth_mib: Number(r.heapGrowthMiB.toFixed(1)), endings: r.endings }));
  });
}
