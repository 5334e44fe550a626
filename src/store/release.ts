/**
 * The repo's release counter and ref binding (docs/formats.md §12, "Release counter"): every
 * commit made by `larch commit` and `larch compose` carries `larch.release`, one above the highest
 * release the repo has given out, and `larch.ref`, the branch it was made on. Devices keep the
 * highest release they booted good as a floor (src/agent/release-floor.ts) and refuse a commit
 * bound to another ref.
 *
 * The highest release is cheap to find however many commits the repo holds: R/release (a
 * decimal number and a newline, written under the writer lock before the ref moves) and the
 * releases of the refs' heads (a commit pulled in from another repo, or made before R/release
 * existed); no history walk. Releases only go up along a repo's commits, so a ref head holds the
 * highest of its history unless `commit --release N --force` said otherwise.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import type { CborValue } from './cbor.ts';
import type { Repo } from './repo.ts';

/** Commit metadata keys (formats.md §12). */
export const RELEASE_KEY = 'larch.release';
export const REF_KEY = 'larch.ref';
export const MIN_RELEASE_KEY = 'larch.min_release';

/**
 * The largest release: nine decimal digits, so U-Boot's and GRUB's `test -lt` compare it as a
 * signed 32-bit number on every board (docs/boot.md, "The release floor").
 */
export const MAX_RELEASE = 999_999_999;

/** A valid release value: an integer 0..MAX_RELEASE. */
export function isRelease(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_RELEASE;
}

/** The commit's `larch.release`, or null when it has none (a commit made before releases) or holds no valid one. */
export function commitRelease(metadata: ReadonlyMap<string, CborValue>): number | null {
  const v = metadata.get(RELEASE_KEY);
  return isRelease(v) ? v : null;
}

/** The commit's `larch.ref`, or null when it has none (made before ref binding). */
export function commitRef(metadata: ReadonlyMap<string, CborValue>): string | null {
  const v = metadata.get(REF_KEY);
  return typeof v === 'string' ? v : null;
}

/** The commit's `larch.min_release` (the vendor floor for downgrades), or null. */
export function commitMinRelease(metadata: ReadonlyMap<string, CborValue>): number | null {
  const v = metadata.get(MIN_RELEASE_KEY);
  return isRelease(v) ? v : null;
}

export function releaseCounterPath(repo: Repo): string {
  return join(repo.path, 'release');
}

/** R/release, or 0 when the repo has none yet. @throws REPO_CORRUPT for a file that holds no release */
async function readCounter(repo: Repo): Promise<number> {
  const path = releaseCounterPath(repo);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw fromSystemError(err, 'read', path);
  }
  const n = /^(0|[1-9]\d*)\n?$/.test(text) ? Number(text.trim()) : NaN;
  if (!isRelease(n)) throw new LarchError('REPO_CORRUPT', `${path} does not hold a release number (0..${MAX_RELEASE})`, { hint: `write the highest larch.release of the repo's commits into it ('larch log' shows them), e.g. echo 7 > ${path}`, data: { path } });
  return n;
}

/** The highest release the repo has given out: R/release and every ref head's `larch.release`. */
export async function highestRelease(repo: Repo): Promise<number> {
  let highest = await readCounter(repo);
  for (const { commit } of await repo.listRefs()) {
    const release = commitRelease((await repo.readCommit(commit)).metadata);
    if (release !== null && release > highest) highest = release;
  }
  return highest;
}

/**
 * The release the next commit gets: one above the highest, or `wanted` when given, which must be
 * above the highest unless `force`. Call it with the writer lock held.
 * @throws INVALID_INPUT when wanted is not above the highest (without force), or the counter is at its maximum
 */
export async function nextRelease(repo: Repo, wanted?: number, force = false): Promise<number> {
  const highest = await highestRelease(repo);
  if (wanted !== undefined) {
    if (!isRelease(wanted)) throw new LarchError('INVALID_INPUT', `release ${wanted} is not an integer 0..${MAX_RELEASE}`, { data: { release: wanted, max: MAX_RELEASE } });
    if (wanted <= highest && !force) {
      throw new LarchError('INVALID_INPUT', `release ${wanted} is not above the repo's highest release ${highest}: devices that booted ${highest} would refuse it`, { hint: `leave --release out (the commit gets ${highest + 1}), or add --force if devices must never see it as newer`, data: { release: wanted, highest } });
    }
    return wanted;
  }
  if (highest >= MAX_RELEASE) throw new LarchError('INVALID_INPUT', `the repo's release counter is at its maximum ${MAX_RELEASE}`, { data: { highest, max: MAX_RELEASE } });
  return highest + 1;
}

/** Raises R/release to `release` (never lowers it). Call it with the writer lock held, before the ref moves. */
export async function recordRelease(repo: Repo, release: number): Promise<void> {
  if (release <= (await readCounter(repo))) return;
  const path = releaseCounterPath(repo);
  await writeFileAtomic(path, `${release}\n`).catch((err) => Promise.reject(fromSystemError(err, 'write', path)));
}
