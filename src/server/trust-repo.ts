/**
 * A repo's trust chain, R/trust/N.cbor (docs/formats.md §15): every trust document the vendor
 * published, version 1 up with no gap, each accepted by the one before (TUF). Devices walk it from
 * their version to the one the summary names (trust_version); `larch trust publish` adds to it.
 */
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import type { Repo } from '../store/repo.ts';
import { type TrustDocument, acceptTrust, decodeSignedTrust, trustFilePath } from '../protocol/trust.ts';

/** The versions in R/trust/, ascending. */
export async function trustVersions(repo: Repo): Promise<number[]> {
  const names = await readdir(join(repo.path, 'trust')).catch(() => [] as string[]);
  return names.map((n) => /^([1-9][0-9]{0,15})\.cbor$/.exec(n)).filter((m) => m !== null).map((m) => Number(m![1])).sort((a, b) => a - b);
}

/** The newest trust document of R and its bytes, or null when R has none. @throws INVALID_INPUT, IO */
export async function latestTrust(repo: Repo): Promise<{ version: number; document: TrustDocument; bytes: Uint8Array } | null> {
  const versions = await trustVersions(repo);
  if (versions.length === 0) return null;
  const version = versions.at(-1)!;
  const path = join(repo.path, trustFilePath(version));
  const bytes = await readFile(path).catch((err) => Promise.reject(fromSystemError(err, 'read', path)));
  try {
    return { version, document: decodeSignedTrust(bytes).document, bytes: Uint8Array.from(bytes) };
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${path}: not a valid larch trust document: ${(err as Error).message}`, { hint: 'restore it from the vendor\'s copy (the chain must stay intact for devices to walk it)', data: { path } });
  }
}

/**
 * Adds a signed trust document to R's chain: version 1 when R has none, else the next version,
 * accepted by the newest one (signed by the current and the new root thresholds).
 * @throws SIGNATURE_INVALID (data.reason as acceptTrust's), INVALID_INPUT (data.reason 'trust-gap'), IO
 */
export async function publishTrust(repo: Repo, bytes: Uint8Array, source: string): Promise<{ version: number; path: string; installed: boolean }> {
  const lock = await repo.lock();
  try {
    const latest = await latestTrust(repo);
    // The repo side does not know which keys devices were provisioned with: the first one is checked against its own root only.
    const next = await acceptTrust(bytes, { current: latest?.bytes ?? null, vouchers: null, source });
    if (next === null) return { version: latest!.version, path: join(repo.path, trustFilePath(latest!.version)), installed: false };
    const version = next.document.version;
    const expected = (latest?.version ?? 0) + 1;
    if (version !== expected) {
      throw new LarchError('INVALID_INPUT', `${source}: trust document version ${version} would leave a gap in ${join(repo.path, 'trust')} (next is version ${expected}); devices walk the chain one version at a time`, { hint: `make it with 'larch trust rotate' from version ${expected - 1}${expected === 1 ? " (or 'larch trust create', whose version is 1)" : ''}`, data: { reason: 'trust-gap', version, expected } });
    }
    const path = join(repo.path, trustFilePath(version));
    await mkdir(join(repo.path, 'trust'), { recursive: true });
    await writeFileAtomic(path, bytes);
    return { version, path, installed: true };
  } finally {
    await lock.release();
  }
}
