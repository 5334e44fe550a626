/**
 * A delta control record declaring 2^40 bytes of metadata is refused when it is
 * decoded, before apply reads (and allocates) that many bytes from the literal stream.
 */
import t from 'tap';
import { DeltaFormatError, decodeRecord, encodeRecord } from '../../../src/delta/format.ts';
import { MAX_METADATA_BYTES } from '../../../src/store/object.ts';

t.test('a metadata record is refused when it declares more than a metadata object may hold', async (t) => {
  const body = (length: number) => encodeRecord({ type: 'metadata', kind: 'dirtree', length }).subarray(4);
  const before = process.memoryUsage().arrayBuffers;
  t.throws(() => decodeRecord(body(2 ** 40), false), new DeltaFormatError(`metadata record declares ${2 ** 40} bytes, over the ${MAX_METADATA_BYTES}-byte limit`), '2^40 bytes: refused, naming the size and the limit');
  t.throws(() => decodeRecord(body(MAX_METADATA_BYTES + 1), false), DeltaFormatError, 'one byte over the limit: refused');
  t.ok(process.memoryUsage().arrayBuffers - before < 1024 * 1024, 'nothing of the declared size was allocated');
  t.same(decodeRecord(body(MAX_METADATA_BYTES), false), { type: 'metadata', kind: 'dirtree', length: MAX_METADATA_BYTES }, 'the limit itself is accepted');
  t.same(decodeRecord(encodeRecord({ type: 'metadata', kind: 'dirmeta', length: 40 }).subarray(4), false), { type: 'metadata', kind: 'dirmeta', length: 40 }, 'a small dirmeta record is accepted');
});
