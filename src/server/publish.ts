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
import { type SecretKey, decodeSignatures, keyId } from '../store/sign.ts';
import { DeltaFormatError, decodeEnvelope, decodeSuperblock } from '../delta/format.ts';
import { verifyDelta } from '../delta/sign.ts';
import { readTrustedKeys } from '../store/keyring.ts';
import { listDeltaNames, openDeltaDir } from '../delta/source.ts';
import { type Summary, type SummaryDelta, decodeSummary, encodeSummary, signSummary } from './summary.ts';

export interface PublishOptions {
  signKeys: SecretKey[];
  /** Seconds from now until devices refuse the summary as stale. */
  expiresInSeconds: number;
  /** Seconds since the epoch; injectable for tests. */
  now?: number;
}

/**
 * Why a delta is left out of the summary (snake_case, for scripts): a device would refuse an
 * `unsigned` or `untrusted` one (exit 6) instead of fetching objects, so it is never offered.
 */
export type SkipReason = 'unreadable' | 'malformed' | 'incomplete' | 'no_ref' | 'unsigned' | 'untrusted';
export interface SkippedDelta {
  name: string;
  reason: SkipReason;
  /** The same for people: what is wrong and with which file. */
  message: string;
}

export interface PublishResult {
  path: string;
  serial: number;
  created: number;
  expires: number;
  refs: Summary['refs'];
  deltas: { name: string; bytes: number; parts: number }[];
  /** Deltas in R/deltas/ that are not listed, and why. */
  skipped: SkippedDelta[];
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
    const { refs, deltas, skipped } = await summaryContents(repo, await deltaTrust(repo, opts.signKeys));
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
 * The keys a listed delta must be signed by: the summary's own signing keys (the ones devices
 * are provisioned to trust) and R's keyring ('larch trust', e.g. during a key rotation).
 */
export async function deltaTrust(repo: Repo, signKeys: SecretKey[]): Promise<Uint8Array[]> {
  return [...signKeys.map((k) => k.publicKey), ...(await readTrustedKeys(repo)).map((k) => k.key)];
}

/**
 * What a summary of the repo lists now: every ref with its commit's version and time, and the
 * complete deltas leading to a ref's commit signed by a `trusted` key (the others in `skipped`,
 * with the reason). Read without the lock; publish calls it under the lock, `serve --sign-key`
 * to see what changed.
 */
export async function summaryContents(repo: Repo, trusted: Uint8Array[]): Promise<Pick<Summary, 'refs' | 'deltas'> & { skipped: SkippedDelta[] }> {
  const refs: Summary['refs'] = {};
  for (const { branch, commit } of await repo.listRefs()) {
    const c = await repo.readCommit(commit);
    refs[branch] = { commit, version: c.version, timestamp: c.timestamp };
  }
  const targets = new Set(Object.values(refs).map((r) => r.commit));
  const deltas: SummaryDelta[] = [];
  const skipped: SkippedDelta[] = [];
  for (const name of await listDeltaNames(repo.path)) {
    const d = await describeDelta(join(repo.path, 'deltas', name), trusted);
    if ('reason' in d) skipped.push({ name, ...d });
    else if (!targets.has(d.to)) skipped.push({ name, reason: 'no_ref', message: `leads to commit ${d.to}, which no ref points at` });
    else deltas.push(d);
  }
  return { refs, deltas, skipped };
}

type Skip = Omit<SkippedDelta, 'name'>;

/**
 * A delta directory as the summary lists it, or why it is left out (unreadable, malformed, a
 * part missing or of the wrong size, not signed by a trusted key).
 */
async function describeDelta(dir: string, trusted: Uint8Array[]): Promise<SummaryDelta | Skip> {
  let envelope: Uint8Array;
  try {
    envelope = (await openDeltaDir(dir)).envelope;
  } catch (err) {
    return { reason: 'unreadable', message: `envelope unreadable: ${(err as Error).message}` };
  }
  let sb;
  let signed: { superblock: Uint8Array; signatures: Uint8Array };
  try {
    signed = decodeEnvelope(envelope);
    sb = decodeSuperblock(signed.superblock);
  } catch (err) {
    if (err instanceof DeltaFormatError) return { reason: 'malformed', message: `envelope malformed: ${err.message}` };
    throw err;
  }
  for (let i = 0; i < sb.parts.length; i++) {
    const size = await stat(join(dir, `part-${i}`)).then((s) => s.size, () => null);
    if (size !== sb.parts[i].size) return { reason: 'incomplete', message: size === null ? `part-${i} is missing` : `part-${i} is ${size} bytes, not ${sb.parts[i].size}` };
  }
  if ((decodeSignatures(signed.signatures) ?? []).length === 0) return { reason: 'unsigned', message: "not signed: devices would refuse it (make it with 'delta generate --sign-key K.key')" };
  if (!(await verifyDelta(signed.superblock, signed.signatures, trusted))) return { reason: 'untrusted', message: "not signed by a key this summary is signed with (or one in R's keyring): devices would refuse it" };
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
