/** A repo's keyring: the public keys in R/keys/trusted/*.pub that verification trusts by default. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../_durable.ts';
import type { Repo } from './repo.ts';
import { formatPublicKey, keyId, readPublicKey } from './sign.ts';

export async function readTrustedKeys(repo: Repo): Promise<{ id: string; key: Uint8Array; path: string }[]> {
  const dir = join(repo.path, 'keys', 'trusted');
  const names = (await readdir(dir).catch(() => [])).filter((n) => n.endsWith('.pub')).sort();
  const out = [];
  for (const n of names) {
    const key = await readPublicKey(join(dir, n));
    out.push({ id: keyId(key), key, path: join(dir, n) });
  }
  return out;
}

/** Adds a public key file to the keyring under its key id. @throws KEY_INVALID, NOT_FOUND */
export async function trustKey(repo: Repo, pubPath: string): Promise<string> {
  const key = await readPublicKey(pubPath);
  const id = keyId(key);
  const dest = join(repo.path, 'keys', 'trusted', `${id}.pub`);
  await writeFileAtomic(dest, formatPublicKey(key));
  return id;
}
