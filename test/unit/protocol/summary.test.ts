/** The signed summary: vector, round trip, and every refusal (unsigned, untrusted, modified, expired, rollback, malformed). */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { rejectsCode } from '../../helpers.ts';
import { type Summary, decodeSummary, deltaName, encodeSummary, findDelta, signSummary, verifySummary } from '../../../src/protocol/summary.ts';
import { encodeCanonical } from '../../../src/store/cbor.ts';
import { generateKey } from '../../../src/store/sign.ts';

const file = JSON.parse(readFileSync(new URL('../../vectors/summary/summary.json', import.meta.url), 'utf8'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytesOf = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));
const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);

function sample(over: Partial<Summary> = {}): Summary {
  return {
    serial: 7,
    created: 1000,
    expires: 2000,
    refs: { 'os/stable': { commit: B, version: '2.0', timestamp: 900 }, 'os/beta': { commit: A, version: '1.9', timestamp: 800 } },
    deltas: [
      { from: A, to: B, bytes: 150, envelope: { size: 50, sha256: '01'.repeat(32) }, parts: [{ size: 60, sha256: '02'.repeat(32) }, { size: 40, sha256: '03'.repeat(32) }] },
      { from: null, to: B, bytes: 80, envelope: { size: 30, sha256: '04'.repeat(32) }, parts: [{ size: 50, sha256: '05'.repeat(32) }] },
    ],
    ...over,
  };
}

/** A refusal of verifySummary: its code and data.reason. */
const refusal = (t: Test, p: Promise<unknown>, code: string, reason: string, name: string) => rejectsCode(t, p, code, name, { data: { reason } });

t.test('vectors: encoding, signing message and signature are byte-exact', async (t) => {
  for (const v of file.vectors) {
    const bytes = encodeSummary(v.summary);
    t.equal(hex(bytes), v.summary_hex, `encode: ${v.comment}`);
    t.same(decodeSummary(bytesOf(v.summary_hex)), v.summary, `decode: ${v.comment}`);
    const s = await verifySummary(bytes, bytesOf(v.sig_hex), { trusted: [bytesOf(file.public_key)], now: v.summary.created });
    t.same(s, v.summary, `verify: ${v.comment}`);
    // ed25519 is deterministic: re-signing with the RFC 8032 TEST 1 seed gives the same bytes.
    const seed = bytesOf('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    t.equal(hex(await signSummary(bytes, [{ seed, publicKey: bytesOf(file.public_key) }])), v.sig_hex, `sign: ${v.comment}`);
  }
});

t.test('round trip; deltas are sorted, so the encoding does not depend on list order', async (t) => {
  const s = sample();
  const enc = encodeSummary(s);
  const reversed = encodeSummary({ ...s, deltas: [...s.deltas].reverse() });
  t.equal(hex(enc), hex(reversed));
  const back = decodeSummary(enc);
  t.same(back.refs, s.refs);
  t.same(new Set(back.deltas.map(deltaName)), new Set([`${A}-${B}`, `empty-${B}`]));
  t.equal(findDelta(back, A, B)?.bytes, 150);
  t.equal(findDelta(back, null, B)?.bytes, 80);
  t.equal(findDelta(back, B, A), null);
});

t.test("refs named like Object.prototype members ('__proto__', 'constructor') are refs like any other", async (t) => {
  // Found by the fuzz run (LARCH_FUZZ_SEED=1129944826): a ref '__proto__' could not be encoded,
  // and decoded it set the refs object's prototype instead of adding a ref.
  const refs = JSON.parse('{"__proto__": {"commit": "' + A + '", "version": "1", "timestamp": 1}}');
  const back = decodeSummary(encodeSummary(sample({ refs })));
  t.same(Object.keys(back.refs), ['__proto__']);
  t.equal(back.refs['__proto__']?.commit, A);
  t.equal(back.refs['constructor'], undefined, 'a ref that is not served is not found on the prototype');
  t.equal(decodeSummary(encodeSummary(sample())).refs['toString'], undefined);
});

t.test('a good summary verifies; each refusal has its code and reason', async (t) => {
  const k = await generateKey();
  const other = await generateKey();
  const bytes = encodeSummary(sample());
  const sig = await signSummary(bytes, [k]);
  const ok = { trusted: [k.publicKey], now: 1500, lastSerial: 7 };
  t.equal((await verifySummary(bytes, sig, ok)).serial, 7, 'same serial as last time is accepted (a re-fetch)');
  t.equal((await verifySummary(bytes, sig, { trusted: [k.publicKey], now: 1500 })).serial, 7, 'first contact: no serial yet');
  t.equal((await verifySummary(bytes, await signSummary(bytes, [other, k]), ok)).serial, 7, 'one trusted signature among others is enough');

  await refusal(t, verifySummary(bytes, null, ok), 'SIGNATURE_MISSING', 'unsigned', 'no summary.sig');
  await refusal(t, verifySummary(bytes, Uint8Array.from([0x80]), ok), 'SIGNATURE_MISSING', 'unsigned', 'empty signature list');
  await refusal(t, verifySummary(bytes, Uint8Array.from([0xa0]), ok), 'SIGNATURE_INVALID', 'malformed-signatures', 'garbage summary.sig');
  const untrusted = await refusal(t, verifySummary(bytes, await signSummary(bytes, [other]), ok), 'SIGNATURE_INVALID', 'untrusted', 'signed by an untrusted key');
  t.equal((untrusted.data.keys as string[]).length, 1, 'names the key id');

  const modified = Uint8Array.from(bytes);
  modified[modified.length - 1] ^= 1;
  await refusal(t, verifySummary(modified, sig, ok), 'SIGNATURE_INVALID', 'modified', 'one bit flipped');
  // Leading garbage (ostree test-pull-summary-sigs) and a newer summary with the old signature.
  await refusal(t, verifySummary(Buffer.concat([Buffer.from([0]), bytes]), sig, ok), 'SIGNATURE_INVALID', 'modified', 'leading garbage');
  await refusal(t, verifySummary(encodeSummary(sample({ serial: 8 })), sig, ok), 'SIGNATURE_INVALID', 'modified', 'new summary, old signature');

  const expired = await refusal(t, verifySummary(bytes, sig, { ...ok, now: 2000 }), 'SIGNATURE_INVALID', 'expired', 'at the expiry second');
  t.match(expired.message, /expired at 1970-01-01T00:33:20Z/, 'message names the expiry time');
  t.match(expired.hint, /the server's summary is stale; ask the vendor to republish/, 'hint');
  t.same([expired.data.expires, expired.data.now], [2000, 2000]);

  const rollback = await refusal(t, verifySummary(bytes, sig, { ...ok, lastSerial: 8 }), 'SIGNATURE_INVALID', 'rollback', 'older serial');
  t.same([rollback.data.serial, rollback.data.lastSerial], [7, 8]);
});

t.test('a signed but malformed summary is refused after the signature check', async (t) => {
  const k = await generateKey();
  const cases: [string, Uint8Array][] = [
    ['not CBOR', Uint8Array.from([0xff, 0x00])],
    ['format 2', encodeCanonical({ format: 2, serial: 1, created: 1, expires: 2, refs: {}, deltas: [] })],
    ['unknown key', encodeCanonical({ format: 1, serial: 1, created: 1, expires: 2, refs: {}, deltas: [], extra: 1 })],
    ['expires before created', encodeCanonical({ format: 1, serial: 1, created: 5, expires: 2, refs: {}, deltas: [] })],
    ['short commit id', encodeCanonical({ format: 1, serial: 1, created: 1, expires: 2, refs: { os: { commit: new Uint8Array(31), version: '1', timestamp: 0 } }, deltas: [] })],
    ['bytes not the sum', encodeCanonical({ format: 1, serial: 1, created: 1, expires: 2, refs: {}, deltas: [{ from: null, to: new Uint8Array(32), bytes: 9, envelope: { size: 1, sha256: new Uint8Array(32) }, parts: [] }] })],
  ];
  for (const [name, bytes] of cases) {
    await refusal(t, verifySummary(bytes, await signSummary(bytes, [k]), { trusted: [k.publicKey], now: 1 }), 'SIGNATURE_INVALID', 'malformed', name);
  }
});
