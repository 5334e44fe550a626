/**
 * `larch publish`: writes R/summary and R/summary.sig listing the repo's refs and the deltas
 * to their commits, so that any static web server (or `larch serve`) serves the repo to devices.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../store/_durable.ts';
import { sha256 } from '../store/_hash.ts';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { keyId } from '../store/sign.ts';
import { DeltaFormatError, decodeEnvelope, decodeSuperblock } from '../delta/format.ts';
import { listDeltaNames, openDeltaDir } from '../delta/source.ts';
import { type Summary, type SummaryDelta, decodeSummary, encodeSummary, signSummary } from './summary.ts';

export interface PublishOptions {
  signKeys: SecretKey[];
  /** Seconds from now until devices refuse the summary as stale. */
  expiresInSeconds: number;
  /** Seconds since the epoch; injectable for tests. */
  now?: number;
}

export interface PublishResult {
  path: string;
  serial: number;
  created: number;
  expires: number;
  refs: Summary['refs'];
  deltas: { name: string; bytes: number; parts: number }[];
  /** Deltas in R/deltas/ that lead to no ref's commit, or are incomplete, and are not listed. */
  skipped: { name: string; reason: string }[];
  signedBy: string[];
}

/**
 * Builds, signs and writes the summary. Holds the repo's writer lock, so two publishes never
 * hand out the same serial. The serial is max(previous + 1, now): it keeps rising even when the
 * old summary is lost, as long as the server's clock is right.
 * @throws SIGNATURE_MISSING (no key), LOCKED, IO, NO_SPACE
 */
export async function publish(repo: Repo, opts: PublishOptions): Promise<PublishResult> {
  if (opts.signKeys.length === 0) throw new LarchError('SIGNATURE_MISSING', 'publish needs a signing key: devices refuse unsigned summaries', { hint: "pass --sign-key K.key (make one with 'larch keygen')" });
  if (!Number.isSafeInteger(opts.expiresInSeconds) || opts.expiresInSeconds <= 0) throw new RangeError('expiresInSeconds must be a positive integer');
  const lock = await repo.lock();
  try {
    const now = opts.now ?? Math.floor(Date.now() / 1000);
    const { refs, deltas, skipped } = await summaryContents(repo);
    const previous = await readPreviousSerial(repo);
    const summary: Summary = { serial: Math.max(previous + 1, now), created: now, expires: now + opts.expiresInSeconds, refs, deltas };
    const bytes = encodeSummary(summary);
    const sig = await signSummary(bytes, opts.signKeys);
    // summary.sig first: a device that fetches between the two renames sees a mismatch, refetches,
    // and gets the pair (verifySummary reports it as 'modified'; the fetcher retries once).
    const path = join(repo.path, 'summary');
    await writeFileAtomic(`${path}.sig`, sig);
    await writeFileAtomic(path, bytes);
    return {
      path,
      serial: summary.serial,
      created: summary.created,
      expires: summary.expires,
      refs,
      deltas: deltas.map((d) => ({ name: `${d.from ?? 'empty'}-${d.to}`, bytes: d.bytes, parts: d.parts.length })),
      skipped,
      signedBy: opts.signKeys.map((k) => keyId(k.publicKey)),
    };
  } finally {
    await lock.release();
  }
}

/**
 * What a summary of the repo lists now: every ref with its commit's version and time, and the
 * complete deltas leading to a ref's commit (the others in `skipped`, with the reason). Read
 * without the lock; publish calls it under the lock, `serve --sign-key` to see what changed.
 */
export async function summaryContents(repo: Repo): Promise<Pick<Summary, 'refs' | 'deltas'> & { skipped: PublishResult['skipped'] }> {
  const refs: Summary['refs'] = {};
  for (const { branch, commit } of await repo.listRefs()) {
    const c = await repo.readCommit(commit);
    refs[branch] = { commit, version: c.version, timestamp: c.timestamp };
  }
  const targets = new Set(Object.values(refs).map((r) => r.commit));
  const deltas: SummaryDelta[] = [];
  const skipped: PublishResult['skipped'] = [];
  for (const name of await listDeltaNames(repo.path)) {
    const d = await describeDelta(join(repo.path, 'deltas', name));
    if (typeof d === 'string') skipped.push({ name, reason: d });
    else if (!targets.has(d.to)) skipped.push({ name, reason: 'leads to no ref' });
    else deltas.push(d);
  }
  return { refs, deltas, skipped };
}

/** A delta directory as the summary lists it, or why it is left out (unreadable, a part missing or of the wrong size). */
async function describeDelta(dir: string): Promise<SummaryDelta | string> {
  let envelope: Uint8Array;
  try {
    envelope = (await openDeltaDir(dir)).envelope;
  } catch (err) {
    return `envelope unreadable: ${(err as Error).message}`;
  }
  let sb;
  try {
    sb = decodeSuperblock(decodeEnvelope(envelope).superblock);
  } catch (err) {
    if (err instanceof DeltaFormatError) return `envelope malformed: ${err.message}`;
    throw err;
  }
  for (let i = 0; i < sb.parts.length; i++) {
    const size = await stat(join(dir, `part-${i}`)).then((s) => s.size, () => null);
    if (size !== sb.parts[i].size) return size === null ? `part-${i} is missing` : `part-${i} is ${size} bytes, not ${sb.parts[i].size}`;
  }
  const parts = sb.parts.map((p) => ({ size: p.size, sha256: p.sha256 }));
  return { from: sb.from, to: sb.to, bytes: envelope.length + parts.reduce((n, p) => n + p.size, 0), envelope: { size: envelope.length, sha256: sha256(envelope) }, parts };
}

async function readPreviousSerial(repo: Repo): Promise<number> {
  const path = join(repo.path, 'summary');
  const bytes = await readFile(path).catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', path))));
  if (bytes === null) return 0;
  try {
    return decodeSummary(bytes).serial;
  } catch {
    return 0; // an unreadable old summary: the clock-based serial still rises past it in practice
  }
}
