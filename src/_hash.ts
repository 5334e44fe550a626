/** SHA-256 through node:crypto (Node and Bun both back it with native code). */
import { createHash, type Hash } from 'node:crypto';

export function sha256(...parts: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

export function sha256Stream(): Hash {
  return createHash('sha256');
}
