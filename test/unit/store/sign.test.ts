import t from 'tap';
import * as ed from '@noble/ed25519';
import { readFileSync } from 'node:fs';
import { decodeSignatures, encodeSignatures, formatPublicKey, formatSecretKey, generateKey, keyId, signCommit, verifyCommitSignatures } from '../../../src/store/sign.ts';

const vectors = JSON.parse(readFileSync(new URL('../../vectors/ed25519/rfc8032.json', import.meta.url), 'utf8'));
const b = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));

t.test('RFC 8032 vectors through the library we sign with', async (t) => {
  for (const v of vectors.vectors) {
    t.equal(Buffer.from(await ed.getPublicKeyAsync(b(v.secret))).toString('hex'), v.public, `public key: ${v.comment}`);
    if (v.valid) t.equal(Buffer.from(await ed.signAsync(b(v.message), b(v.secret))).toString('hex'), v.signature, `sign: ${v.comment}`);
    t.equal(await ed.verifyAsync(b(v.signature), b(v.message), b(v.public)), v.valid, `verify: ${v.comment}`);
  }
});

t.test('commit signatures verify only with the right key and the right commit', async (t) => {
  const k1 = await generateKey();
  const k2 = await generateKey();
  const commit = 'ab'.repeat(32);
  const sig = await signCommit(commit, k1);
  t.ok(await verifyCommitSignatures(commit, [sig], [k1.publicKey]), 'good key');
  t.notOk(await verifyCommitSignatures(commit, [sig], [k2.publicKey]), 'other key not trusted');
  t.notOk(await verifyCommitSignatures('ac'.repeat(32), [sig], [k1.publicKey]), 'other commit');
  const flipped = { key: sig.key, sig: Uint8Array.from(sig.sig) };
  flipped.sig[10] ^= 1;
  t.notOk(await verifyCommitSignatures(commit, [flipped], [k1.publicKey]), 'flipped signature bit');
  // A signature by k2 that names k1 as its key must not pass.
  const forged = { key: k1.publicKey, sig: (await signCommit(commit, k2)).sig };
  t.notOk(await verifyCommitSignatures(commit, [forged], [k1.publicKey]), 'signature by another key');
});

t.test('signature files round-trip and malformed ones are refused', async (t) => {
  const k = await generateKey();
  const sig = await signCommit('00'.repeat(32), k);
  const enc = encodeSignatures([sig]);
  t.same(decodeSignatures(enc), [sig]);
  t.equal(decodeSignatures(enc.subarray(0, enc.length - 1)), null, 'truncated');
  t.equal(decodeSignatures(Uint8Array.from([0xa0])), null, 'not an array');
  t.equal(keyId(k.publicKey).length, 16);
  t.match(formatSecretKey(k), /^larch-ed25519-secret [A-Za-z0-9+/=]{44}\n$/);
  t.match(formatPublicKey(k.publicKey), /^larch-ed25519-public [A-Za-z0-9+/=]{44}\n$/);
});
