/** The signed trust document: vectors, and every acceptance rule (TUF root rotation, first document vouched, version only up). */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { rejectsCode } from '../../helpers.ts';
import { type TrustDocument, acceptTrust, addTrustSignatures, createSignedTrust, decodeSignedTrust, decodeTrustDocument, encodeTrustDocument, keysWithRoles, meetsThreshold, minRelease, trustSigningMessage } from '../../../src/protocol/trust.ts';
import { generateKey, keyId } from '../../../src/store/sign.ts';

const file = JSON.parse(readFileSync(new URL('../../vectors/trust/trust.json', import.meta.url), 'utf8'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytesOf = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));

t.test('vectors: document, signing message and signed file are byte-exact', async (t) => {
  let current: Uint8Array | null = null;
  for (const v of file.vectors) {
    const doc = decodeTrustDocument(bytesOf(v.document_hex));
    t.equal(doc.version, v.document.version, `decode: ${v.comment}`);
    t.same(Object.fromEntries(Object.entries(doc.roles).map(([r, x]) => [r, { keys: x.keys.map(hex), threshold: x.threshold }])), v.document.roles, `roles: ${v.comment}`);
    t.equal(doc.minRelease, v.document.min_release, `min_release: ${v.comment}`);
    t.equal(hex(encodeTrustDocument(doc)), v.document_hex, `re-encode: ${v.comment}`);
    t.equal(hex(trustSigningMessage(bytesOf(v.document_hex))), v.message_hex, `message: ${v.comment}`);
    const signed = decodeSignedTrust(bytesOf(v.trust_hex));
    t.equal(hex(signed.signed), v.document_hex, `embedded document: ${v.comment}`);
    // Each vector is accepted after the one before (the first vouched by the TEST 1 key).
    const accepted = await acceptTrust(bytesOf(v.trust_hex), { current, vouchers: [bytesOf(file.keys.test1)], source: 'vector' });
    t.equal(accepted?.document.version, v.document.version, `accepted in order: ${v.comment}`);
    current = bytesOf(v.trust_hex);
  }
  t.equal(minRelease(decodeSignedTrust(bytesOf(file.vectors[0].trust_hex)).document), 3);
  t.equal(minRelease(decodeSignedTrust(bytesOf(file.vectors[1].trust_hex)).document), null);
});

t.test('rotation: old and new root thresholds both needed; version only goes up; the first is vouched for', async (t) => {
  const [r1, r2, c1, c2, stranger] = await Promise.all([generateKey(), generateKey(), generateKey(), generateKey(), generateKey()]);
  const role = (keys: Uint8Array[], threshold = 1) => ({ keys, threshold });
  const doc = (version: number, root: Uint8Array, commit: Uint8Array): TrustDocument => ({ version, roles: { root: role([root]), commit: role([commit]), summary: role([root]), command: role([root]) } });
  const v1 = await createSignedTrust(doc(1, r1.publicKey, c1.publicKey), [r1]);
  const src = { source: 'test' };
  // The first document: its root signed it, and a provisioned key vouches for it.
  await rejectsCode(t, acceptTrust(v1, { current: null, vouchers: [stranger.publicKey], ...src }), 'SIGNATURE_INVALID', 'first document not vouched by a provisioned key', { data: { reason: 'not-vouched' } });
  t.ok(await acceptTrust(v1, { current: null, vouchers: [r1.publicKey], ...src }), 'first document vouched for');
  t.ok(await acceptTrust(v1, { current: null, vouchers: null, ...src }), 'the repo side checks its root only');
  await rejectsCode(t, acceptTrust(await createSignedTrust(doc(1, r1.publicKey, c1.publicKey), [stranger]), { current: null, vouchers: [stranger.publicKey], ...src }), 'SIGNATURE_INVALID', 'first document not signed by its root', { data: { reason: 'root-threshold' } });

  // Rotating root r1 -> r2 and commit c1 -> c2.
  const v2doc = doc(2, r2.publicKey, c2.publicKey);
  const onlyOld = await createSignedTrust(v2doc, [r1]);
  const onlyNew = await createSignedTrust(v2doc, [r2]);
  const both = await addTrustSignatures(onlyNew, [r1]);
  await rejectsCode(t, acceptTrust(onlyOld, { current: v1, vouchers: [], ...src }), 'SIGNATURE_INVALID', 'signed by the old root only', { data: { reason: 'root-threshold' } });
  await rejectsCode(t, acceptTrust(onlyNew, { current: v1, vouchers: [], ...src }), 'SIGNATURE_INVALID', 'signed by the new root only', { data: { reason: 'old-root-threshold' } });
  t.equal((await acceptTrust(both, { current: v1, vouchers: [], ...src }))?.document.version, 2, 'signed by both roots: accepted');
  t.equal(await acceptTrust(both, { current: both, vouchers: [], ...src }), null, 'the same document again: nothing to do');
  await rejectsCode(t, acceptTrust(v1, { current: both, vouchers: [], ...src }), 'SIGNATURE_INVALID', 'a lower version', { data: { reason: 'trust-rollback', version: 1, current_version: 2 } });
  const otherV2 = await createSignedTrust(doc(2, r2.publicKey, c1.publicKey), [r1, r2]);
  await rejectsCode(t, acceptTrust(otherV2, { current: both, vouchers: [], ...src }), 'SIGNATURE_INVALID', 'another document of the same version', { data: { reason: 'trust-rollback' } });

  // A threshold of 2 counts distinct keys.
  const two = { version: 3, roles: { root: role([r1.publicKey, r2.publicKey], 2), commit: role([c2.publicKey]), summary: role([r2.publicKey]), command: role([r2.publicKey]) } };
  await rejectsCode(t, acceptTrust(await createSignedTrust(two, [r2]), { current: both, vouchers: [], ...src }), 'SIGNATURE_INVALID', 'root threshold 2 with one signature', { data: { reason: 'root-threshold', threshold: 2 } });
  t.ok(await acceptTrust(await createSignedTrust(two, [r1, r2]), { current: both, vouchers: [], ...src }), 'root threshold 2 with two');
  t.ok(meetsThreshold([keyId(r1.publicKey), keyId(r1.publicKey), keyId(r2.publicKey)], two.roles.root), 'two distinct keys meet 2');
  t.notOk(meetsThreshold([keyId(r1.publicKey), keyId(r1.publicKey), keyId(stranger.publicKey)], two.roles.root), 'one key twice and a stranger do not');
  t.same(keysWithRoles(two).find((k) => k.id === keyId(r2.publicKey))?.roles, ['root', 'summary', 'command']);
});

t.test('malformed documents are refused with a reason', async (t) => {
  const k = await generateKey();
  const r = { keys: [k.publicKey], threshold: 1 };
  t.throws(() => encodeTrustDocument({ version: 1, roles: { root: { keys: [k.publicKey], threshold: 2 }, commit: r, summary: r, command: r } }), /threshold 2 is more than/);
  t.throws(() => encodeTrustDocument({ version: 0, roles: { root: r, commit: r, summary: r, command: r } }), /version 0/);
  t.throws(() => encodeTrustDocument({ version: 1, roles: { root: { keys: [k.publicKey, k.publicKey], threshold: 1 }, commit: r, summary: r, command: r } }), /twice/);
  await rejectsCode(t, acceptTrust(Uint8Array.from([0xa0]), { current: null, vouchers: null, source: 'x' }), 'SIGNATURE_INVALID', 'not a trust file', { data: { reason: 'malformed' } });
});
