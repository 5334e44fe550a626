/**
 * The zero-run coding of format 3's diff bytes (src/delta/zero-runs.ts): what the encoder writes,
 * that the reader gives back the same bytes however they are asked for, and that malformed runs
 * are refused with a message naming the stream.
 */
import t from 'tap';
import fc from 'fast-check';
import { ByteReader, StreamEndedError } from '../../../src/delta/byte-reader.ts';
import { RUN_END_ZEROS, ZeroRunError, ZeroRunReader, encodeZeroRuns } from '../../../src/delta/zero-runs.ts';

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

function reader(runs: Uint8Array, bytes: Uint8Array, chunk = 3): ZeroRunReader {
  return new ZeroRunReader(new ByteReader(chunked(runs, chunk), 'runs'), new ByteReader(chunked(bytes, chunk), 'diff'));
}

/**
 * Reads `total` diff bytes through the reader in requests of the given sizes (cycled), added onto
 * a base of 1s: a zero leaves a 1, a byte b gives b + 1; returns the diff bytes (result - 1).
 */
async function readAll(r: ZeroRunReader, total: number, requests: number[]): Promise<Uint8Array> {
  const out = new Uint8Array(total).fill(1);
  let at = 0;
  for (let i = 0; at < total; i++) {
    const n = Math.min(requests[i % requests.length], total - at);
    await r.addInto(out, at, n);
    at += n;
  }
  return out.map((b) => (b - 1) & 0xff);
}

t.test('the encoder: runs of zeros and the bytes between them, a run of bytes ended by two zeros', async (t) => {
  t.equal(RUN_END_ZEROS, 2, 'two zeros in a row end a run of bytes');
  const { runs, bytes } = encodeZeroRuns(Uint8Array.from([0, 0, 0, 5, 0, 6, 0, 0, 0, 7]));
  t.same([...runs], [3, 3, 3, 1], '(3 zeros, 3 bytes: 5 0 6), then (3 zeros, 1 byte: 7)');
  t.same([...bytes], [5, 0, 6, 7], 'a lone zero stays inside a run of bytes');
  t.same([...encodeZeroRuns(new Uint8Array(0)).runs], [], 'nothing codes to nothing');
  t.same([...encodeZeroRuns(new Uint8Array(300)).runs], [0xac, 0x02, 0], '300 zeros: one LEB128 varint, then 0 bytes');
  t.same([...encodeZeroRuns(Uint8Array.from([1, 2, 0])).runs], [0, 2, 1, 0], 'zeros at the very end are a run of zeros of their own');
});

t.test('the reader adds back the coded bytes whatever the request and chunk sizes (property)', async (t) => {
  const arb = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 255 })), { maxLength: 3000 }).map((a) => Uint8Array.from(a));
  await t.resolves(
    fc.assert(
      fc.asyncProperty(arb, fc.integer({ min: 1, max: 4 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 64 }), async (diff, endZeros, requests, chunk) => {
        const { runs, bytes } = encodeZeroRuns(diff, endZeros);
        const r = reader(runs, bytes, chunk);
        const back = await readAll(r, diff.length, requests);
        return Buffer.from(back).equals(Buffer.from(diff)) && (await r.atEnd());
      }),
      { numRuns: 300 },
    ),
    'decode(encode(x)) = x, and both streams end with the bytes',
  );
});

t.test('malformed runs are refused, naming the stream', async (t) => {
  const bytes = (r: ZeroRunReader, n: number) => readAll(r, n, [n]);
  await t.rejects(bytes(reader(Uint8Array.from([0, 0]), new Uint8Array(0)), 1), new ZeroRunError('runs stream holds an empty run (0 zeros, 0 bytes)'), 'an empty pair');
  await t.rejects(bytes(reader(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 1]), new Uint8Array(0)), 1), /runs stream holds a varint longer than 5 bytes/, 'a varint of six bytes');
  await t.rejects(bytes(reader(Uint8Array.from([0x85, 0x00, 1]), Uint8Array.from([9])), 1), /runs stream holds a varint with a redundant last byte/, 'a varint with a zero last byte (not the shortest form)');
  await t.rejects(bytes(reader(Uint8Array.from([0x85]), new Uint8Array(0)), 1), StreamEndedError, 'a varint cut short');
  await t.rejects(bytes(reader(new Uint8Array(0), new Uint8Array(0)), 1), /runs stream ended before the diff bytes it describes/, 'no runs left for the bytes asked for');
  await t.rejects(bytes(reader(Uint8Array.from([0, 4]), Uint8Array.from([1, 2])), 4), /diff stream ended 2 bytes early/, 'a run of bytes longer than the diff stream');
  const extra = reader(Uint8Array.from([1, 0, 1, 0]), new Uint8Array(0));
  await bytes(extra, 1);
  t.equal(await extra.atEnd(), false, 'a pair left over: not at the end (the part is then refused)');
  const unread = reader(Uint8Array.from([0, 1]), Uint8Array.from([7, 8]));
  await bytes(unread, 1);
  t.equal(await unread.atEnd(), false, 'diff bytes no run accounts for: not at the end');
});
