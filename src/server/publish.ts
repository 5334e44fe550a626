/**
 * `larch publish`: writes R/summary and R/summary.sig listing the repo's refs and the deltas
 * to their commits, so that any static web server (or `larch serve`) serves the repo to devices.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import { sha256 } from '../_hash.ts';
import type { Repo } from '../store/repo.ts';
import { type SecretKey, decodeSignatures, keyId } from '../store/sign.ts';
import { DeltaFormatError, decodeEnvelope, decodeSuperblock } from '../delta/format.ts';
import { verifyDelta } from '../delta/sign.ts';
import { readTrustedKeys } from '../store/keyring.ts';
import { listDeltaNames, openDeltaDir } from '../delta/source.ts';
import { type Summary, type SummaryDelta, decodeSummary, encodeSummary, signSummary } from '../protocol/summary.ts';
import type { TrustDocument } from '../protocol/trust.ts';
import { latestTrust } from './trust-repo.ts';
import { readBarriers, summaryBarriers } from './barriers.ts';
import { readRolloutState } from './rollout-state.ts';
import { listedCommit } from './rollout-rules.ts';

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
  created_s: number;
  expires_s: number;
  refs: Summary['refs'];
  deltas: { name: string; bytes: number; parts: number }[];
  /** Deltas in R/deltas/ that are not listed, and why. */
  skipped: SkippedDelta[];
  signed_by: string[];
}

/**
 * Builds, signs and writes the summary. Holds the repo's writer lock, so two publishes never
 * hand out the same serial. The serial is max(previous + 1, now): it keeps rising even when the
 * old summary is lost, as long as the server's clock is right.
 * @throws SIGNATURE_MISSING (no key), LOCKED, IO, NO_SPACE
 */
export async function publish(repo: Repo, opts: PublishOptions): Promise<PublishResult> {
  if (opts.signKeys.length === 0) throw new LarchError('SIGNATURE_MISSING', 'publish needs a signing key: devices refuse unsigned summaries', { hint: "pass --sign-key K.key (make one with 'larch keygen')", data: { command: 'publish', option: 'sign-key' } });
  if (!Number.isSafeInteger(opts.expiresInSeconds) || opts.expiresInSeconds <= 0) throw new RangeError('expiresInSeconds must be a positive integer');
  const lock = await repo.lock();
  try {
    const now = opts.now ?? Math.floor(Date.now() / 1000);
    const { refs, deltas, skipped } = await summaryContents(repo, await deltaTrust(repo, opts.signKeys));
    const trust = await latestTrust(repo);
    if (trust) checkSummarySigners(trust.document, trust.version, opts.signKeys);
    const serial = nextSerial(await publishedSummaryInfo(repo), trust?.version, now, join(repo.path, 'summary'));
    const summary: Summary = { serial, created: now, expires: now + opts.expiresInSeconds, refs, deltas, ...(repo.collectionId === null ? {} : { collectionId: repo.collectionId }), ...(trust ? { trustVersion: trust.version } : {}) };
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
      created_s: summary.created,
      expires_s: summary.expires,
      refs,
      deltas: deltas.map((d) => ({ name: `${d.from ?? 'empty'}-${d.to}`, bytes: d.bytes, parts: d.parts.length })),
      skipped,
      signed_by: opts.signKeys.map((k) => keyId(k.publicKey)),
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
  // With a trust document, its commit role too: devices check deltas against that role.
  const commitRole = (await latestTrust(repo))?.document.roles.commit.keys ?? [];
  return [...signKeys.map((k) => k.publicKey), ...(await readTrustedKeys(repo)).map((k) => k.key), ...commitRole];
}

/**
 * The next summary's serial: max(previous + 1, now), or `now` when the trust version changed (a
 * new trust document resets devices' serial floor, the way out of a serial fast-forwarded by a
 * stolen key). @throws INVALID_INPUT (data.reason 'serial-at-limit') when no higher serial exists
 */
export function nextSerial(previous: { serial: number; trustVersion?: number }, trustVersion: number | undefined, now: number, path: string): number {
  if (trustVersion !== previous.trustVersion) return now;
  if (previous.serial >= Number.MAX_SAFE_INTEGER) {
    throw new LarchError('INVALID_INPUT', `${path} has serial ${previous.serial}, the highest a summary can have: no later summary can be published (a summary signed with a stolen key can do this)`, {
      hint: "rotate the trust document (larch trust rotate, revoking the stolen key; larch trust publish), then publish again: the new trust version resets the serial, here and on devices (docs/fleet.md)",
      data: { reason: 'serial-at-limit', path, serial: previous.serial, trust_version: previous.trustVersion ?? null },
    });
  }
  return Math.max(previous.serial + 1, now);
}

/** Refuses to publish a summary the devices would refuse: not signed by the summary role's threshold. @throws SIGNATURE_INVALID */
export function checkSummarySigners(doc: TrustDocument, version: number, signKeys: SecretKey[]): void {
  const role = doc.roles.summary;
  const ids = new Set(role.keys.map(keyId));
  const inRole = new Set(signKeys.map((k) => keyId(k.publicKey)).filter((id) => ids.has(id)));
  if (inRole.size < role.threshold) {
    throw new LarchError('SIGNATURE_INVALID', `publish: ${inRole.size} of the signing keys belong to the summary role of trust document version ${version}, which needs ${role.threshold}: devices would refuse the summary`, {
      hint: `sign with summary-role keys (${[...ids].join(', ')}); 'larch trust show' lists them`,
      data: { reason: 'not-summary-role', trust_version: version, threshold: role.threshold, signed_by: signKeys.map((k) => keyId(k.publicKey)), summary_keys: [...ids] },
    });
  }
}

/**
 * What a summary of the repo lists now: every ref with its commit's version and time, and the
 * complete deltas leading to a ref's commit signed by a `trusted` key (the others in `skipped`,
 * with the reason); a halted ref lists its last good release (rollout-rules.ts listedCommit). Read without the lock; publish calls it under the lock, `serve --sign-key`
 * to see what changed.
 */
export async function summaryContents(repo: Repo, trusted: Uint8Array[]): Promise<Pick<Summary, 'refs' | 'deltas'> & { skipped: SkippedDelta[] }> {
  const refs: Summary['refs'] = Object.create(null);
  const barrierState = await readBarriers(repo);
  const rollouts = await readRolloutState(repo);
  for (const { branch, commit: head } of await repo.listRefs()) {
    // A halted rollout (R/rollout.json) lists its last good release instead of the head, on every
    // path that publishes: a manual 'larch publish' cannot undo a halt. The ref itself is untouched.
    const commit = listedCommit(rollouts[branch], head);
    const c = await repo.readCommit(commit);
    refs[branch] = { commit, version: c.version, timestamp: c.timestamp };
    // Barriers (R/barriers.json) are listed only when the ref has some: without, the summary is as
    // before. Under a hold, none newer than the listed release (devices must not be led past it).
    const barriers = (await summaryBarriers(repo, barrierState, branch)).filter((b) => commit === head || b.timestamp <= c.timestamp);
    if (barriers.length > 0) refs[branch].barriers = barriers;
  }
  // Deltas to a barrier are listed too: devices below it are offered the barrier, not the head.
  const targets = new Set(Object.values(refs).flatMap((r) => [r.commit, ...(r.barriers ?? []).map((b) => b.commit)]));
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

export type Skip = Omit<SkippedDelta, 'name'>;

/**
 * A delta directory as the summary lists it, or why it is left out (unreadable, malformed, a
 * part missing or of the wrong size, not signed by a trusted key).
 */
export async function describeDelta(dir: string, trusted: Uint8Array[]): Promise<SummaryDelta | Skip> {
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

/** The serial and trust version of R's published summary (serial 0 when there is none, or it is unreadable). */
export async function publishedSummaryInfo(repo: Repo): Promise<{ serial: number; trustVersion?: number }> {
  const path = join(repo.path, 'summary');
  const bytes = await readFile(path).catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', path))));
  if (bytes === null) return { serial: 0 };
  try {
    const s = decodeSummary(bytes);
    return { serial: s.serial, trustVersion: s.trustVersion };
  } catch {
    return { serial: 0 };
  }
}

/** The serial of R's published summary (0 when there is none, or it is unreadable). */
export async function publishedSerial(repo: Repo): Promise<number> {
  return (await publishedSummaryInfo(repo)).serial;
}
