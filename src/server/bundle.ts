/**
 * `larch bundle create`: one file a device upgrades from with no network (a USB stick, a
 * factory share): a summary signed for it alone, listing one ref at the target release and the
 * deltas from the releases the devices run, the repo's trust chain, and those deltas' files,
 * framed as src/protocol/bundle.ts says (docs/formats.md §8.7). Deltas missing from R/deltas/
 * are generated (and stay there, as `delta generate` would leave them).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { fsyncPath } from '../_durable.ts';
import { generateDelta } from '../delta/generate.ts';
import { encodeBundleIndex } from '../protocol/bundle.ts';
import { type Summary, type SummaryDelta, deltaName, encodeSummary, signSummary } from '../protocol/summary.ts';
import { trustFilePath } from '../protocol/trust.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { checkSummarySigners, deltaTrust, describeDelta } from './publish.ts';
import { latestTrust, trustVersions } from './trust-repo.ts';

export interface BundleOptions {
  ref: string;
  /** Releases the devices run (versions or revisions); none: a delta from nothing (any device, a larger file). */
  from: string[];
  /** The target release (a version on the ref's history or a revision); default: the ref's head. */
  to?: string;
  signKeys: SecretKey[];
  expiresInSeconds: number;
  out: string;
  now?: number;
}

export interface BundleResult {
  path: string;
  ref: string;
  commit: ObjectId;
  version: string;
  deltas: { from: ObjectId | null; to: ObjectId; bytes: number; generated: boolean }[];
  bytes: number;
  serial: number;
  expires_s: number;
}

/**
 * A release on the ref: a version found walking back from its head, else a revision
 * (id, unique prefix, branch). @throws NOT_FOUND
 */
async function release(repo: Repo, ref: string, head: ObjectId, name: string): Promise<ObjectId> {
  for (let id: ObjectId | null = head; id !== null; ) {
    const c = await repo.readCommit(id);
    if (c.version === name) return id;
    id = c.parent;
  }
  return repo.resolveRev(name).catch((err) => {
    throw new LarchError('NOT_FOUND', `no release '${name}' on ${ref} (no version of its history, no revision)`, { hint: `'larch log --repo ${repo.path} ${ref}' lists the releases`, data: { ref, release: name, cause: (err as Error).message } });
  });
}

/** @throws SIGNATURE_MISSING (no key), NOT_FOUND (ref or release), SIGNATURE_INVALID (keys not of the summary role), IO, NO_SPACE */
export async function createBundle(repo: Repo, opts: BundleOptions): Promise<BundleResult> {
  if (opts.signKeys.length === 0) throw new LarchError('SIGNATURE_MISSING', 'bundle create needs a signing key: devices refuse unsigned summaries', { hint: 'pass --sign-key K.key (the summary role)', data: { command: 'bundle create', option: 'sign-key' } });
  const head = await repo.readRef(opts.ref);
  if (!head) throw new LarchError('NOT_FOUND', `no ref '${opts.ref}' in '${repo.path}'`, { hint: `'larch refs --repo ${repo.path}' lists them`, data: { ref: opts.ref } });
  const to = opts.to === undefined ? head : await release(repo, opts.ref, head, opts.to);
  const target = await repo.readCommit(to);
  const froms: (ObjectId | null)[] = opts.from.length === 0 ? [null] : [...new Set(await Promise.all(opts.from.map((f) => release(repo, opts.ref, head, f))))].filter((f) => f !== to);
  const trust = await latestTrust(repo);
  if (trust) checkSummarySigners(trust.document, trust.version, opts.signKeys);
  const trusted = await deltaTrust(repo, opts.signKeys);

  const deltas: SummaryDelta[] = [];
  const made: BundleResult['deltas'] = [];
  for (const from of froms) {
    const dir = join(repo.path, 'deltas', deltaName({ from, to }));
    let d = await describeDelta(dir, trusted).catch(() => null);
    const generated = !d || 'reason' in d;
    if (generated) {
      await generateDelta(repo, { from, to, signKeys: opts.signKeys });
      d = await describeDelta(dir, trusted);
    }
    if (!d || 'reason' in d) throw new LarchError('INVALID_INPUT', `the delta ${deltaName({ from, to })} cannot be bundled: ${d ? d.message : 'unreadable'}`, { data: { delta: deltaName({ from, to }) } });
    deltas.push(d);
    made.push({ from, to, bytes: d.bytes, generated });
  }

  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const summary: Summary = { serial: now, created: now, expires: now + opts.expiresInSeconds, refs: { [opts.ref]: { commit: to, version: target.version, timestamp: target.timestamp } }, deltas, ...(repo.collectionId === null ? {} : { collectionId: repo.collectionId }), ...(trust ? { trustVersion: trust.version } : {}) };
  const summaryBytes = encodeSummary(summary);
  const sig = await signSummary(summaryBytes, opts.signKeys);

  // Every member: the summary pair in memory, the rest files of R read as they are.
  const members: { path: string; bytes?: Uint8Array; file?: string }[] = [
    { path: 'summary', bytes: summaryBytes },
    { path: 'summary.sig', bytes: sig },
    ...(await trustVersions(repo)).map((v) => ({ path: trustFilePath(v), file: join(repo.path, trustFilePath(v)) })),
    // The target's commit object and signatures: a device reads them before the delta (the agent it needs, what it is bound to).
    ...['commit', 'sig'].map((ext) => ({ path: `objects/${to.slice(0, 2)}/${to.slice(2)}.${ext}`, file: join(repo.path, 'objects', to.slice(0, 2), `${to.slice(2)}.${ext}`) })),
    ...deltas.flatMap((d) => {
      const name = deltaName(d);
      return [{ path: `deltas/${name}/envelope`, file: join(repo.path, 'deltas', name, 'envelope') }, ...d.parts.map((_, i) => ({ path: `deltas/${name}/part-${i}`, file: join(repo.path, 'deltas', name, `part-${i}`) }))];
    }),
  ];
  // An unsigned commit has no .sig (devices refuse it; the bundle still says what it is).
  const commitSig = members.findIndex((m) => m.path.endsWith('.sig') && m.path.startsWith('objects/'));
  if (commitSig >= 0 && !(await stat(members[commitSig]!.file!).then(() => true, () => false))) members.splice(commitSig, 1);
  const described = [];
  for (const m of members) {
    if (m.bytes) described.push({ path: m.path, size: m.bytes.length, sha256: createHash('sha256').update(m.bytes).digest('hex') });
    else described.push({ path: m.path, size: (await stat(m.file!)).size, sha256: await fileSha256(m.file!) });
  }
  const { header, order } = encodeBundleIndex(described);
  const out = resolve(opts.out);
  const tmp = `${out}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644).catch((err) => Promise.reject(fromSystemError(err, 'create', tmp)));
  let bytes = 0;
  try {
    const write = async (b: Uint8Array) => {
      for (let at = 0; at < b.length; ) at += (await fh.write(b, at, b.length - at)).bytesWritten;
      bytes += b.length;
    };
    await write(header);
    const byPath = new Map(members.map((m) => [m.path, m]));
    for (const path of order) {
      const m = byPath.get(path)!;
      if (m.bytes) await write(m.bytes);
      else for await (const chunk of createReadStream(m.file!)) await write(chunk as Buffer);
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw fromSystemError(err, 'write', out);
  }
  await fh.close();
  await rename(tmp, out).catch((err) => Promise.reject(fromSystemError(err, 'rename', out)));
  await fsyncPath(dirname(out));
  return { path: out, ref: opts.ref, commit: to, version: target.version, deltas: made, bytes, serial: summary.serial, expires_s: summary.expires };
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
