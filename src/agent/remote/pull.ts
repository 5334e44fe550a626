/**
 * Pulling from an archive repo's files, over any FileFetcher (fetcher.ts): the signed summary,
 * a static delta (envelope + parts downloaded with resume into a download directory, each
 * part checked against the signed checksums before anything is applied), or, when no delta
 * leads to the wanted commit, the commit's objects one by one.
 *
 *   BASE/summary, BASE/summary.sig            docs/formats.md §10
 *   BASE/deltas/FROM-TO/{envelope,part-N}      §8
 *   BASE/objects/XX/REST.{commit,sig,dirtree,dirmeta,filez}   §3 (archive mode)
 */
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, addContext } from '../../errors.ts';
import { applyDelta, openDelta, type ApplyResult, type DeltaSource } from '../../delta/apply.ts';
import { writeFileAtomic } from '../../_durable.ts';
import { failpoint } from '../../failpoint.ts';
import { sha256, sha256Stream } from '../../_hash.ts';
import { type Commit, ObjectFormatError, type ObjectId, decodeCommit } from '../../store/object.ts';
import { type ObjectSource, type PullResult, pullCommit } from '../../store/pull-local.ts';
import { Repo, type StoredFile, maxFilezBytes } from '../../store/repo.ts';
import { decodeSignatures, verifyCommitSignatures } from '../../store/sign.ts';
import { MAX_SUMMARY_BYTES, MAX_SUMMARY_SIG_BYTES, type Summary, type SummaryDelta, type VerifyOptions, deltaName, findDelta, verifySummary } from '../../protocol/summary.ts';
import type { FileFetcher } from './fetcher.ts';

export interface TrustOptions {
  /** Keys trusted for commits and deltas; null (or empty) only with allowUnsigned. */
  trusted: Uint8Array[] | null;
  allowUnsigned?: boolean;
}

export interface PullProgress {
  phase: 'download' | 'apply' | 'objects';
  /** download: bytes of this pull held so far; objects: objects stored or found. */
  done: number;
  /** download: bytes to hold in all (parts already applied are not counted); objects: unknown (null). */
  total: number | null;
  /** objects: bytes of object files fetched so far (a progress bar counts these, not objects). */
  bytes?: number;
  part?: number;
  parts?: number;
}

const isCode = (err: unknown, code: string) => err instanceof LarchError && err.code === code;

/**
 * Fetches summary and summary.sig and verifies them (verifySummary: signature by a
 * trusted key, expiry, serial). A signature that does not match is fetched once more: a
 * publish between the two requests gives a new summary with the old signature.
 * @throws SIGNATURE_MISSING, SIGNATURE_INVALID (data.reason), NOT_FOUND, IO
 * @example const summary = await fetchSummary(httpFetcher(url), { trusted: keys, now: Math.floor(Date.now() / 1000), lastSerial });
 */
export async function fetchSummary(f: FileFetcher, opts: Omit<VerifyOptions, 'source'>): Promise<Summary> {
  const url = f.where('summary');
  const once = async () => {
    const bytes = await f.fetchBytes('summary', { maxBytes: MAX_SUMMARY_BYTES });
    const sig = await f.fetchBytes('summary.sig', { maxBytes: MAX_SUMMARY_SIG_BYTES }).catch((err) => (isCode(err, 'NOT_FOUND') ? null : Promise.reject(err)));
    return verifySummary(bytes, sig, { ...opts, source: url });
  };
  try {
    return await once();
  } catch (err) {
    if (err instanceof LarchError && err.code === 'SIGNATURE_INVALID' && err.data.reason === 'modified') return once();
    throw err;
  }
}

export interface DeltaPullOptions extends TrustOptions {
  /** The remote's files. */
  fetcher: FileFetcher;
  /** The delta as the verified summary lists it: its sizes and checksums bind what is downloaded. */
  delta: SummaryDelta;
  /** Parts are kept in DIR/FROM-TO/ until applied, so an interrupted pull resumes (S/larch/download). */
  downloadDir: string;
  onProgress?: (e: PullProgress) => void;
}

/**
 * Downloads a delta (envelope, then every part the repo still needs, each resumed where an
 * earlier run stopped and checked against its signed size and SHA-256), then applies it. A part
 * that arrives corrupt is fetched once more from byte 0; corrupt again, the pull stops before
 * anything is applied. The download directory is removed once the delta is applied.
 * @throws DELTA_BASE_MISSING, DELTA_CORRUPT (data.part, data.url), SIGNATURE_*, NOT_FOUND, IO, NO_SPACE
 */
export async function pullDelta(repo: Repo, opts: DeltaPullOptions): Promise<ApplyResult & { downloadedBytes: number }> {
  const { delta } = opts;
  const name = deltaName(delta);
  if (delta.from !== null && !(await repo.hasObject('commit', delta.from))) {
    throw new LarchError('DELTA_BASE_MISSING', `delta ${name} is from commit ${delta.from}, which repo '${repo.path}' does not hold`, { data: { from: delta.from, to: delta.to } });
  }
  const dir = join(opts.downloadDir, name);
  await mkdir(dir, { recursive: true });
  const f = opts.fetcher;
  const base = f.where(`deltas/${name}/`);
  let downloadedBytes = 0;

  // The envelope: its size and checksum are in the signed summary, so nothing else is accepted.
  const envelopePath = join(dir, 'envelope');
  let envelope = await readIfHash(envelopePath, delta.envelope.sha256, delta.envelope.size);
  if (envelope === null) {
    envelope = await f.fetchBytes(`deltas/${name}/envelope`, { maxBytes: delta.envelope.size, expectedSize: delta.envelope.size });
    downloadedBytes += envelope.length;
    const actual = sha256(envelope);
    if (actual !== delta.envelope.sha256) throw new LarchError('DELTA_CORRUPT', `delta ${name}: envelope '${base}envelope': checksum mismatch: expected ${delta.envelope.sha256} (summary), got ${actual}`, { data: { url: `${base}envelope`, expected: delta.envelope.sha256, actual } });
    await writeFileAtomic(envelopePath, envelope);
    failpoint('delta::after-envelope-write');
  }
  const source: DeltaSource = { envelope, part: async (i) => ({ path: join(dir, `part-${i}`), offset: 0 }) };
  // Signature first: no part is downloaded for a delta the device would refuse.
  const sb = await openDelta(source, { trusted: opts.trusted, allowUnsigned: opts.allowUnsigned });
  const agrees = sb.from === delta.from && sb.to === delta.to && sb.parts.length === delta.parts.length && sb.parts.every((p, i) => p.size === delta.parts[i].size && p.sha256 === delta.parts[i].sha256);
  if (!agrees) throw new LarchError('DELTA_CORRUPT', `delta ${name}: its superblock does not match what the summary lists`, { data: { url: `${base}envelope` } });

  const needed: number[] = [];
  for (let i = 0; i < sb.parts.length; i++) if (!(await allStored(repo, sb.parts[i].objects))) needed.push(i);
  const total = needed.reduce((n, i) => n + sb.parts[i].size, 0);
  let held = 0;
  for (const i of needed) {
    const part = sb.parts[i];
    const label = `part ${i + 1}/${sb.parts.length}`;
    const url = `${base}part-${i}`;
    const path = join(dir, `part-${i}`);
    const progress = (received: number) => opts.onProgress?.({ phase: 'download', done: held + received, total, part: i, parts: sb.parts.length });
    for (let round = 0; ; round++) {
      try {
        const r = await f.downloadFile(`deltas/${name}/part-${i}`, path, { maxBytes: part.size, expectedSize: part.size, onProgress: (p) => progress(p.receivedBytes) });
        downloadedBytes += r.bytes - r.resumedFromBytes;
      } catch (err) {
        throw addContext(`delta ${name}: ${label}`, err);
      }
      const actual = await hashFile(path);
      if (actual === part.sha256) break;
      // A resume may have joined two versions of the file, so once more from byte 0; then give up.
      await rm(path, { force: true });
      if (round === 1) {
        throw new LarchError('DELTA_CORRUPT', `delta ${name}: ${label} ('${url}'): checksum mismatch: expected ${part.sha256}, got ${actual}`, {
          hint: 'the server holds a damaged part; nothing of this delta was applied. Ask the vendor to republish the delta',
          data: { part: i, url, expected: part.sha256, actual },
        });
      }
    }
    held += part.size;
    failpoint('delta::after-part-download');
    progress(0);
  }

  const result = await applyDelta(repo, source, {
    trusted: opts.trusted,
    allowUnsigned: opts.allowUnsigned,
    onProgress: (e) => opts.onProgress?.({ phase: 'apply', done: e.done, total: e.parts, part: e.part, parts: e.parts }),
  });
  await rm(dir, { recursive: true, force: true });
  failpoint('delta::after-download-dir-unlink');
  return { ...result, downloadedBytes };
}

async function allStored(repo: Repo, objects: { kind: 'file' | 'dirtree' | 'dirmeta' | 'commit'; id: ObjectId }[]): Promise<boolean> {
  for (let i = objects.length - 1; i >= 0; i--) if (!(await repo.hasObject(objects[i].kind, objects[i].id))) return false;
  return true;
}

async function hashFile(path: string): Promise<string> {
  const h = sha256Stream();
  const fh = await open(path, 'r');
  try {
    for await (const chunk of fh.createReadStream({ highWaterMark: 256 * 1024 })) h.update(chunk as Buffer);
  } finally {
    await fh.close().catch(() => {});
  }
  return h.digest('hex');
}

/** A small file's bytes when it exists with this size and checksum, else null. */
async function readIfHash(path: string, sha: string, size: number): Promise<Uint8Array | null> {
  const st = await stat(path).catch(() => null);
  if (!st || st.size !== size) return null;
  const fh = await open(path, 'r');
  try {
    const bytes = new Uint8Array(size);
    await fh.read(bytes, 0, size, 0);
    return sha256(bytes) === sha ? bytes : null;
  } finally {
    await fh.close();
  }
}

export interface ObjectPullOptions extends TrustOptions {
  /** The remote's files. */
  fetcher: FileFetcher;
  commit: ObjectId;
  /** Branch to point at the commit once it is complete. */
  ref?: string;
  /** File objects are downloaded (with resume) into DIR/objects-cache/ and removed once stored. */
  downloadDir: string;
  /** Objects fetched at once (default 4: a device's link, not a LAN). */
  concurrency?: number;
  /**
   * Largest .filez accepted when its dirtree records no size (format 1; default 4 GiB): the
   * endless-data cap. A format-2 dirtree's size caps the download at maxFilezBytes(size).
   */
  maxObjectBytes?: number;
  onProgress?: (e: PullProgress) => void;
}

/**
 * Fetches one commit object by object: the commit and its signatures first (checked against the
 * trusted keys before anything else is read), then its dirtrees, dirmetas and files, every one
 * checked against its id before it is stored, all in one transaction.
 * @throws SIGNATURE_MISSING, SIGNATURE_INVALID, OBJECT_MISSING, OBJECT_CORRUPT, HOSTILE_TREE, IO, NO_SPACE, LOCKED
 */
export async function pullObjects(repo: Repo, opts: ObjectPullOptions): Promise<PullResult> {
  const cacheDir = join(opts.downloadDir, 'objects-cache');
  let objects = 0;
  let bytes = 0;
  const report = () => opts.onProgress?.({ phase: 'objects', done: objects, total: null, bytes });
  const f = countingFetcher(opts.fetcher, (n) => {
    bytes += n;
    report();
  });
  const source = await objectSource(f, cacheDir, opts);
  const result = await pullCommit(repo, source, opts.commit, {
    ref: opts.ref,
    concurrency: opts.concurrency ?? 4,
    verify: (_bytes, sigs) => verifyCommitTrust(opts.commit, sigs, opts, f.where('')),
    onObject: () => {
      objects++;
      report();
    },
  });
  await rm(cacheDir, { recursive: true, force: true });
  return result;
}

/** A fetcher that reports every byte it receives (for a progress bar in bytes). */
function countingFetcher(f: FileFetcher, received: (bytes: number) => void): FileFetcher {
  return {
    url: f.url,
    where: (path) => f.where(path),
    exchange: (signal, fn) => f.exchange(signal, (inner) => fn(countingFetcher(inner, received))),
    async fetchBytes(path, o) {
      const bytes = await f.fetchBytes(path, o);
      received(bytes.length);
      return bytes;
    },
    async downloadFile(path, dest, o) {
      let held: number | null = null;
      let counted = 0;
      const r = await f.downloadFile(path, dest, {
        ...o,
        onProgress: (p) => {
          // The first report may be what an earlier run left (HTTP) or already hold a chunk (MQTT):
          // counted as the difference from then on, and the rest when the file is whole.
          if (held !== null && p.receivedBytes > held) {
            received(p.receivedBytes - held);
            counted += p.receivedBytes - held;
          }
          held = p.receivedBytes;
          o.onProgress?.(p);
        },
      });
      const rest = r.bytes - r.resumedFromBytes - counted;
      if (rest > 0) received(rest);
      return r;
    },
  };
}

async function verifyCommitTrust(id: ObjectId, sigBytes: Uint8Array | null, opts: TrustOptions, where: string): Promise<void> {
  if (opts.trusted === null || opts.trusted.length === 0) {
    if (opts.allowUnsigned) return;
    throw new LarchError('SIGNATURE_MISSING', `no trusted key to check commit ${id} with`, { hint: 'provision the vendor public key; allowUnsigned skips the check (tests only)', data: { id } });
  }
  const sigs = sigBytes === null ? [] : decodeSignatures(sigBytes);
  if (sigs === null) throw new LarchError('SIGNATURE_INVALID', `commit ${id} from '${where}': its .sig file is malformed`, { data: { id } });
  if (sigs.length === 0) throw new LarchError('SIGNATURE_MISSING', `commit ${id} from '${where}' is not signed`, { data: { id } });
  if (!(await verifyCommitSignatures(id, sigs, opts.trusted))) throw new LarchError('SIGNATURE_INVALID', `commit ${id} from '${where}' is not signed by a trusted key`, { hint: "'larch trust show' lists the keys the device trusts, 'larch remote list' each remote's", data: { id, reason: 'untrusted' } });
}

/** An object's path in an archive repo (formats.md §3). */
export const objectPath = (id: ObjectId, ext: string) => `objects/${id.slice(0, 2)}/${id.slice(2)}.${ext}`;

/** NOT_FOUND of an object's file becomes OBJECT_MISSING naming the object and where it was looked for. */
const missing = (kind: string, id: ObjectId, u: string) => (err: unknown) =>
  Promise.reject(isCode(err, 'NOT_FOUND') ? new LarchError('OBJECT_MISSING', `${kind} ${id} is missing from '${u}'`, { hint: 'the server repo is incomplete; ask the vendor to republish', data: { kind, id, url: u } }) : err);

/**
 * The largest metadata object read from a remote, by kind (formats.md §2.7): far above what a
 * real tree needs (a commit with a package list is kilobytes; a dirtree entry is about 80 bytes,
 * so 16 MiB is some 200,000 entries in one directory) and far below the store's 64 MiB, because
 * an object is held in memory before its id can be checked: a server, or anyone on the path,
 * sends at most this much to a device's memory.
 */
export const MAX_PULLED_METADATA_BYTES = { commit: 4 * 1024 * 1024, dirmeta: 1024 * 1024, dirtree: 16 * 1024 * 1024 } as const;

/** A metadata object's bytes, checked against its id. @throws OBJECT_MISSING, OBJECT_CORRUPT, IO */
async function fetchMetadataObject(f: FileFetcher, kind: 'dirtree' | 'dirmeta' | 'commit', id: ObjectId): Promise<Uint8Array> {
  const u = f.where(objectPath(id, kind));
  const bytes = await f.fetchBytes(objectPath(id, kind), { maxBytes: MAX_PULLED_METADATA_BYTES[kind] }).catch(missing(kind, id, u));
  const actual = sha256(bytes);
  if (actual !== id) throw new LarchError('OBJECT_CORRUPT', `${kind} ${id} from '${u}': checksum mismatch: got ${actual}`, { data: { kind, id, url: u, actual } });
  return bytes;
}

/** A commit's .sig file, or null when the remote has none (verifyCommitTrust decides what that means). */
async function fetchCommitSignatures(f: FileFetcher, id: ObjectId): Promise<Uint8Array | null> {
  return f.fetchBytes(objectPath(id, 'sig'), { maxBytes: 1024 * 1024 }).catch((err) => (isCode(err, 'NOT_FOUND') ? null : Promise.reject(err)));
}

/**
 * One commit object and nothing under it, checked as a pull checks it (its id, then its
 * signatures against the trusted keys), then decoded: what `larch check` reads the package list
 * of the update on offer from. It is not stored: a repo holding a commit without its tree would
 * count the commit as pulled (upgrade and pullUpdate skip a commit the repo has).
 * @throws OBJECT_MISSING, OBJECT_CORRUPT, SIGNATURE_MISSING, SIGNATURE_INVALID, IO
 */
export async function fetchCommitObject(f: FileFetcher, id: ObjectId, trust: TrustOptions): Promise<Commit> {
  const bytes = await fetchMetadataObject(f, 'commit', id);
  await verifyCommitTrust(id, await fetchCommitSignatures(f, id), trust, f.where(''));
  try {
    return decodeCommit(bytes);
  } catch (err) {
    if (err instanceof ObjectFormatError) throw new LarchError('OBJECT_CORRUPT', `commit ${id} from '${f.where(objectPath(id, 'commit'))}': ${err.message}`, { data: { kind: 'commit', id } });
    throw err;
  }
}

/**
 * Objects of an archive repo over a fetcher. File objects go through a throwaway archive repo in the
 * download directory, so the .filez reader (header limits, DEFLATE that must end with the file)
 * is the store's own.
 */
async function objectSource(f: FileFetcher, cacheDir: string, opts: ObjectPullOptions): Promise<ObjectSource> {
  const cache = await Repo.init(cacheDir, 'archive');
  return {
    path: f.where(''),
    readMetadataBytes: (kind, id) => fetchMetadataObject(f, kind, id),
    readSignatures: (commitId) => fetchCommitSignatures(f, commitId),
    async readFile(id, size): Promise<StoredFile> {
      const u = f.where(objectPath(id, 'filez'));
      const maxBytes = size === undefined ? (opts.maxObjectBytes ?? 4 * 1024 ** 3) : maxFilezBytes(size);
      await f
        .downloadFile(objectPath(id, 'filez'), cache.objectPath('file', id), { maxBytes })
        .catch((err) => {
          if (size === undefined || !(err instanceof LarchError) || err.data?.reason !== 'too-large') throw err;
          throw new LarchError('INVALID_INPUT', `file ${id} from '${u}' is longer than its signed size allows: the tree says ${size} bytes of content, so at most ${maxBytes} bytes as .filez (${err.message})`, {
            hint: 'the server or something between is sending other or endless data; nothing of it was stored',
            data: { url: u, id, size, max_bytes: maxBytes, reason: 'too-large' },
          });
        })
        .catch(missing('file', id, u));
      try {
        return await cache.readFile(id);
      } catch (err) {
        throw addContext(`'${u}'`, err);
      }
    },
    async released(id) {
      await rm(cache.objectPath('file', id), { force: true });
    },
  };
}

/**
 * Why a delta could not bring its commit, where the object pull of the same commit can: the
 * delta is unsigned or untrusted, missing (404), its files are not the size or checksum the
 * signed summary says (truncated, replaced, damaged beyond a resume), or it rebuilt an object
 * wrong (a corrupt source object on the device). Snake_case, for the journal and --json.
 */
export type DeltaFallbackReason = 'unsigned' | 'untrusted' | 'missing' | 'truncated' | 'corrupt' | 'unsupported' | 'base_missing';

export interface DeltaFallback {
  /** The delta's name (FROM-TO). */
  delta: string;
  reason: DeltaFallbackReason;
  /** The error the delta failed with. */
  code: string;
  message: string;
}

const FALLBACK_REASONS: Partial<Record<string, DeltaFallbackReason>> = {
  SIGNATURE_MISSING: 'unsigned',
  SIGNATURE_INVALID: 'untrusted',
  NOT_FOUND: 'missing',
  INVALID_INPUT: 'truncated',
  DELTA_CORRUPT: 'corrupt',
  DELTA_UNSUPPORTED: 'unsupported',
  OBJECT_CORRUPT: 'corrupt',
  DELTA_BASE_MISSING: 'base_missing',
};

/**
 * The fallback reason of an error from a delta pull, or null when the object pull would fail
 * the same way (network down, no space, the repo locked, a timeout): then the error stands.
 */
export function deltaFallbackReason(err: unknown): DeltaFallbackReason | null {
  return err instanceof LarchError ? (FALLBACK_REASONS[err.code] ?? null) : null;
}

export interface CommitPullOptions extends TrustOptions {
  fetcher: FileFetcher;
  /** The delta the summary offers to this commit, or null. */
  delta: SummaryDelta | null;
  downloadDir: string;
  /** Bytes held so far (delta parts, or object files) and the total when known. */
  progress?: (done: number, total: number | null) => void;
  /** Told (and awaited) before the object pull starts when the delta failed: the device journals it. */
  /** Told why the delta was given up, and the error it failed with; what it throws ends the pull (no objects are fetched). */
  onFallback?: (f: DeltaFallback, err: LarchError) => Promise<void>;
}

/**
 * A Remote's pull, for every transport: the delta when it leads from a commit the repo holds,
 * and when that delta cannot bring the commit (deltaFallbackReason), the commit object by
 * object, so one bad delta on the server never blocks an update the objects can deliver.
 * @throws what pullObjects throws, and pullDelta's errors that are no fallback reason
 */
export async function pullCommitWithFallback(repo: Repo, to: ObjectId, opts: CommitPullOptions): Promise<{ via: 'delta' | 'objects'; bytes: number; fallback?: DeltaFallback }> {
  const { delta, fetcher, trusted, downloadDir, progress } = opts;
  let fallback: DeltaFallback | undefined;
  if (delta && delta.to === to && (delta.from === null || (await repo.hasObject('commit', delta.from)))) {
    try {
      const r = await pullDelta(repo, { fetcher, delta, downloadDir, trusted, onProgress: (e) => e.phase === 'download' && progress?.(e.done, e.total) });
      return { via: 'delta', bytes: r.downloadedBytes };
    } catch (err) {
      const reason = deltaFallbackReason(err);
      if (reason === null) throw err;
      const e = err as LarchError;
      fallback = { delta: deltaName(delta), reason, code: e.code, message: e.message };
      // What was downloaded of it is of no further use (and may be what is damaged).
      await rm(join(downloadDir, deltaName(delta)), { recursive: true, force: true });
      await opts.onFallback?.(fallback, e);
    }
  }
  const r = await pullObjects(repo, { fetcher, commit: to, downloadDir, trusted, onProgress: (e) => e.bytes !== undefined && progress?.(e.bytes, null) });
  return { via: 'objects', bytes: r.bytes_written, ...(fallback ? { fallback } : {}) };
}

export interface UpdatePullOptions extends TrustOptions {
  fetcher: FileFetcher;
  /** The verified summary (fetchSummary). */
  summary: Summary;
  /** The ref to pull, as the summary names it. */
  ref: string;
  /** The commit the device runs now (a delta from it is preferred), or null on a fresh repo. */
  from: ObjectId | null;
  downloadDir: string;
  onProgress?: (e: PullProgress) => void;
}

/**
 * Brings the ref's commit into the repo the cheapest way the summary offers: a delta from
 * `from` (or a from-scratch delta when there is no `from`), else object by object.
 * @throws NOT_FOUND (ref not in the summary), and what pullDelta / pullObjects throw
 */
export async function pullUpdate(repo: Repo, opts: UpdatePullOptions): Promise<{ commit: ObjectId; method: 'present' | 'delta' | 'objects'; downloadedBytes?: number }> {
  const target = opts.summary.refs[opts.ref];
  if (!target) throw new LarchError('NOT_FOUND', `the remote '${opts.fetcher.where('')}' has no ref '${opts.ref}'`, { data: { ref: opts.ref, refs: Object.keys(opts.summary.refs) } });
  if (await repo.hasObject('commit', target.commit)) return { commit: target.commit, method: 'present' };
  const delta = findDelta(opts.summary, opts.from, target.commit);
  if (delta) {
    const r = await pullDelta(repo, { ...opts, delta });
    return { commit: r.to, method: 'delta', downloadedBytes: r.downloadedBytes };
  }
  await pullObjects(repo, { ...opts, commit: target.commit });
  return { commit: target.commit, method: 'objects' };
}
