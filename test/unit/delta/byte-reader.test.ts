/**
 * The byte reader's patch-loop reads (src/delta/byte-reader.ts): addInto and copyInto give the
 * same bytes however the stream is chunked and the reads are sized, are synchronous (no promise)
 * while the current chunk holds the bytes, and name the stream when it ends early.
 */
import t from 'tap';
import fc from 'fast-check';
import { ByteReader, StreamEndedError } from '../../../src/delta/byte-reader.ts';

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

t.test('copyInto and addInto give the stream bytes for any chunking and read sizes (0 included)', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 70 }), fc.array(fc.integer({ min: 0, max: 90 }), { minLength: 1, maxLength: 8 }).filter((sizes) => sizes.some((n) => n > 0)), async (bytes, chunk, sizes) => {
      const copied = new Uint8Array(bytes.length);
      const added = new Uint8Array(bytes.length).fill(1);
      const copier = new ByteReader(chunked(bytes, chunk), 'literal');
      const adder = new ByteReader(chunked(bytes, chunk), 'diff');
      for (let at = 0, i = 0; at < bytes.length; i++) {
        const n = Math.min(sizes[i % sizes.length], bytes.length - at);
        await copier.copyInto(copied, at, n);
        await adder.addInto(added, at, n);
        at += n;
      }
      if (!Buffer.from(copied).equals(Buffer.from(bytes))) return false;
      if (!added.every((b, i) => b === ((bytes[i] + 1) & 0xff))) return false;
      return (await copier.atEnd()) && (await adder.atEnd());
    }),
    { numRuns: 300 },
  );
});

t.test('a read the current chunk holds returns no promise; one across chunks does', async (t) => {
  const r = new ByteReader(chunked(Uint8Array.from([1, 2, 3, 4, 5, 6]), 4), 'literal');
  const out = new Uint8Array(6);
  const first = r.copyInto(out, 0, 1);
  t.not(first, undefined, 'nothing is read yet: the first chunk must be waited for');
  await first;
  t.equal(r.copyInto(out, 1, 2), undefined, 'bytes 2-3 are in the first chunk: synchronous');
  out[3] = 10;
  t.equal(r.addInto(out, 3, 1), undefined, 'byte 4 too');
  const across = r.copyInto(out, 4, 2);
  t.not(across, undefined, 'bytes 5-6 are in the next chunk');
  await across;
  t.same([...out], [1, 2, 3, 14, 5, 6], 'byte 4 added onto the 10 there, the rest copied');
});

t.test('a stream that ends early is named, with the bytes missing', async (t) => {
  const out = new Uint8Array(10);
  await t.rejects(new ByteReader(chunked(Uint8Array.from([1, 2, 3]), 2), 'part 1/8 literal').copyInto(out, 0, 5)!, new StreamEndedError('part 1/8 literal stream ended 2 bytes early'));
  await t.rejects(new ByteReader(chunked(Uint8Array.from([1, 2, 3]), 2), 'part 1/8 diff').addInto(out, 0, 4)!, new StreamEndedError('part 1/8 diff stream ended 1 bytes early'));
});
