/** Signing and verifying delta superblocks (ed25519, as commits; see format.ts for the message). */
import * as ed from '@noble/ed25519';
import { createHash } from 'node:crypto';
import { type SecretKey, type Signature, decodeSignatures, verifyAnySignature } from '../store/sign.ts';
import { deltaSigningMessage } from './format.ts';

const message = (superblock: Uint8Array) => deltaSigningMessage(createHash('sha256').update(superblock).digest());

export async function signDelta(superblock: Uint8Array, key: SecretKey): Promise<Signature> {
  return { key: key.publicKey, sig: await ed.signAsync(message(superblock), key.seed) };
}

/** True when a trusted key made one of the signatures over this superblock. */
export async function verifyDelta(superblock: Uint8Array, signatures: Uint8Array, trusted: Uint8Array[]): Promise<boolean> {
  const sigs = decodeSignatures(signatures);
  return sigs !== null && verifyAnySignature(message(superblock), sigs, trusted);
}
