import t from 'tap';
import { readFileSync } from 'node:fs';
import { type CborValue, decodeCanonical, encodeCanonical } from '../../../src/store/cbor.ts';

const file = JSON.parse(readFileSync(new URL('../../vectors/cbor/rfc8949.json', import.meta.url), 'utf8'));

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const valueOf = (v: { value?: unknown; bigint?: string; bytes?: string }): CborValue =>
  v.bigint !== undefined ? BigInt(v.bigint) : v.bytes !== undefined ? Uint8Array.from(Buffer.from(v.bytes, 'hex')) : (v.value as CborValue);

t.test('encodes RFC 8949 examples canonically and decodes them back', async (t) => {
  for (const v of file.vectors.filter((v: { valid: boolean }) => v.valid)) {
    const value = valueOf(v);
    t.equal(hex(encodeCanonical(value)), v.hex, `encode ${v.comment}`);
    const decoded = decodeCanonical(Buffer.from(v.hex, 'hex'));
    t.not(decoded, undefined, `decode ${v.comment}`);
    t.equal(hex(encodeCanonical(decoded!)), v.hex, `re-encode ${v.comment}`);
  }
});

t.test('refuses non-canonical and malformed encodings', async (t) => {
  for (const v of file.vectors.filter((v: { valid: boolean }) => !v.valid)) {
    t.equal(decodeCanonical(Buffer.from(v.hex, 'hex')), undefined, `refuse ${v.comment}`);
  }
});

t.test('refuses values outside the model', async (t) => {
  t.throws(() => encodeCanonical(1.5), RangeError, 'float');
  t.throws(() => encodeCanonical(2 ** 60), RangeError, 'unsafe integer');
  t.throws(() => encodeCanonical(new Date() as unknown as CborValue), TypeError, 'Date');
  t.throws(() => encodeCanonical(2n ** 64n), RangeError, 'over 64 bits');
});

t.test('map order does not depend on insertion order', async (t) => {
  const a = encodeCanonical({ version: '1', a: 1, zz: [1], b: { y: 1, x: 2 } });
  const b = encodeCanonical({ b: { x: 2, y: 1 }, zz: [1], a: 1, version: '1' });
  t.equal(hex(a), hex(b));
});
