/**
 * Applies a static delta, part by part, as a streaming interpreter. Before anything is stored:
 * the superblock's signature is checked against trusted keys, its commit against its id, the
 * commit's own signature against the same keys, and the repo must hold the delta's base commit.
 * Each part's checksum is checked before its bytes are used; each rebuilt object's id before it
 * is staged; each part is made durable before the next begins, so an interrupted apply resumes
 * with the parts it lacks. Memory per part, whatever the update's size: a brotli decoder per
 * stream (three, four in format 3; a 1 MiB window each, WINDOW_BITS), 128 KiB buffers and up to 8
 * objects of at most 1 MiB being stored. A view record (format 2) also expands its source's view:
 * a view of at most 1 MiB is held, from the source read whole; a larger one is written to R/tmp/,
 * its source read piece by piece (a kernel: one compressed LZ4 block at a time into one 8 MiB
 * block buffer, which the part lends to the fold next). The fold holds one deflate view, or one
 * 8 MiB LZ4 block and its compressed bytes (as large as the frame records, ~2 MB for a kernel).
 * With two threads (`threads`, threads.ts) the part with the largest source view is applied on a
 * second thread (part-thread.ts) beside the others: less time, more memory.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { open, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { threadId } from 'node:worker_threads';
import { collectGarbage } from '../_gc.ts';
import { memoryPoint } from '../_memory-log.ts';
import { LarchError, fromSystemError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { type FileHeader, type ObjectId, ObjectFormatError, decodeCommit, decodeFileHeader, metadataId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import { type Signature, decodeSignatures, keyId, verifyCommitSignatures } from '../store/sign.ts';
import { Transaction } from '../store/transaction.ts';
import { forEachTreeFile } from '../store/walk.ts';
import { ByteReader, StreamEndedError } from './byte-reader.ts';
import { createDecompressor } from './compress.ts';
import { type ControlRecord, type DeltaFormatVersion, type PartInfo, type PartStreams, type Superblock, DeltaFormatError, partHeaderBytes, DeltaUnsupportedError, RECORD_LENGTH_BYTES, decodeEnvelope, decodePartHeader, decodeRecord, decodeRecordLength, decodeSuperblock } from './format.ts';
import { PartThread } from './part-thread.ts';
import { defaultApplyThreads, secondThreadPart } from './threads.ts';
import { verifyDelta } from './sign.ts';
import { ZeroRunError, ZeroRunReader } from './zero-runs.ts';
import { ViewError } from './view/errors.ts';
import { type Segment, segmentTotals } from './view/segment.ts';
import { type SourceReader, type ViewBuffers, expandView, expandViewChunks, foldView } from './view/view.ts';

/** Where a part's bytes are: a region of a file (the one-file delta, or a downloaded part). */
export interface PartPlace {
  path: string;
  offset: number;
}

export interface DeltaSource {
  envelope: Uint8Array;
  part(index: number): Promise<PartPlace>;
}

export interface ApplyOptions {
  /** Keys that may sign the delta; null only with allowUnsigned. */
  trusted: Uint8Array[] | null;
  allowUnsigned?: boolean;
  /** After each part: `done` parts of `parts` are stored (with two threads, parts finish out of order). */
  onProgress?: (event: { part: number; parts: number; skipped: boolean; bytes: number; done: number }) => void;
  /** Point this branch at the delta's commit, in the transaction that stores the commit. */
  ref?: string;
  /** Threads to apply parts on, 1 or 2 (default: defaultApplyThreads()). */
  threads?: number;
}

export interface ApplyResult {
  from: ObjectId | null;
  to: ObjectId;
  parts: number;
  parts_applied: number;
  parts_skipped: number;
  objects_written: number;
}

/** Copy granularity of patches: reads of the source object, and the chunks handed to the writer. */
const CHUNK = 128 * 1024;
/**
 * A patch source is read in blocks of this size, and the most recently used blocks are kept
 * (1 MiB in all): bsdiff ops mostly move forward through the source with short jumps both ways,
 * so a block serves many ops, and a jump costs one block, not a refilled window. (A 1 MiB window
 * refilled on every jump outside it read gigabytes for a kernel's view: 1.7 s of the corpus
 * apply.) Small blocks, many of them: the views' ops jump across the whole source, and 16 blocks
 * of 64 KiB read 2.3 GB for the corpus delta's 292 MB of sources (1 GB for one 4.8 MB deflate
 * view); 128 blocks of 8 KiB read 527 MB, in the same memory (replayed from a trace of its reads).
 */
const SOURCE_BLOCK = 8 * 1024;
const SOURCE_BLOCKS_CACHED = 128;
/** Blocks of closed sources, reused: a new buffer per patched file let garbage pile up to +40 MiB RSS. */
const freeBlocks: Buffer[] = [];
/**
 * Output buffers of finished patches, reused for the same reason: one CHUNK per patched file
 * (1,314 in the corpus delta's last part, 164 MiB in all) was most of that part's garbage.
 */
const freeOutputs: Buffer[] = [];
/**
 * Objects up to this size are gathered in memory and stored beside the decoding of the next
 * records, at most WRITES_IN_FLIGHT at once: each store is a few thread-pool round trips (open,
 * write, rename) that otherwise left the decoder waiting (4 s of 12.6 on the corpus delta under
 * Node). Larger objects stream to their file as before.
 */
const GATHERED_OBJECT_BYTES = 1024 * 1024;
const WRITES_IN_FLIGHT = 8;
let sourceCounter = 0;

/** Reads and checks a delta's envelope. @throws SIGNATURE_INVALID, SIGNATURE_MISSING, DELTA_CORRUPT */
export async function openDelta(source: DeltaSource, opts: ApplyOptions): Promise<Superblock> {
  let sb: Superblock;
  let superblock: Uint8Array;
  let signatures: Uint8Array;
  try {
    ({ superblock, signatures } = decodeEnvelope(source.envelope));
    sb = decodeSuperblock(superblock);
  } catch (err) {
    if (err instanceof DeltaUnsupportedError) throw new LarchError('DELTA_UNSUPPORTED', `delta superblock: ${err.message}`, { data: { part: 'superblock', format: err.format } });
    if (err instanceof DeltaFormatError) throw new LarchError('DELTA_CORRUPT', `delta superblock: ${err.message}`, { data: { part: 'superblock' } });
    throw err;
  }
  if (opts.trusted === null || opts.trusted.length === 0) {
    if (!opts.allowUnsigned) throw new LarchError('USAGE', 'delta apply: no trusted keys to check the delta with', { hint: "pass --key K.pub or add keys with 'larch trust'; --allow-unsigned skips the check", data: { keys: 0 } });
  } else if (!(await verifyDelta(superblock, signatures, opts.trusted))) {
    throw new LarchError('SIGNATURE_INVALID', `delta to ${sb.to} is not signed by a trusted key`, { data: { to: sb.to } });
  }
  if (metadataId(sb.commit) !== sb.to) throw new LarchError('DELTA_CORRUPT', `delta superblock: its commit does not match its id ${sb.to}`, { data: { part: 'superblock', to: sb.to } });
  if (opts.trusted !== null && opts.trusted.length > 0) await checkCommitSignatures(sb, opts.trusted);
  return sb;
}

/**
 * The delta's commit must carry its own signature by a trusted key, as a commit pulled object by
 * object must: a delta signed by a trusted key is no licence for the commit it carries (a key
 * trusted for deltas, or a delta made of a commit the vendor never signed). Checked before any
 * part is downloaded or stored. @throws SIGNATURE_MISSING, SIGNATURE_INVALID (data.reason)
 */
async function checkCommitSignatures(sb: Superblock, trusted: Uint8Array[]): Promise<void> {
  let sigs: Signature[] | null = [];
  try {
    if (sb.commitSigs !== null) sigs = decodeSignatures(sb.commitSigs);
  } catch {
    sigs = null;
  }
  if (sigs === null) throw new LarchError('SIGNATURE_INVALID', `delta to ${sb.to}: the signatures of its commit are malformed`, { data: { to: sb.to, reason: 'malformed-commit-signatures' } });
  const hint = "the vendor signs the commit (larch commit --sign-key K, or larch sign) before 'larch delta generate'; nothing of this delta was stored";
  if (sigs.length === 0) throw new LarchError('SIGNATURE_MISSING', `delta to ${sb.to}: the delta is signed, but the commit it carries is not`, { hint, data: { to: sb.to, reason: 'commit-unsigned' } });
  if (!(await verifyCommitSignatures(sb.to, sigs, trusted))) {
    throw new LarchError('SIGNATURE_INVALID', `delta to ${sb.to}: the delta is signed by a trusted key, but the commit it carries is not (signed by ${sigs.map((s) => keyId(s.key)).join(', ')})`, { hint, data: { to: sb.to, reason: 'commit-untrusted', keys: sigs.map((s) => keyId(s.key)) } });
  }
}

/** @throws DELTA_BASE_MISSING, DELTA_CORRUPT, OBJECT_CORRUPT, SIGNATURE_*, NO_SPACE, LOCKED */
export async function applyDelta(repo: Repo, source: DeltaSource, opts: ApplyOptions): Promise<ApplyResult> {
  // A bad branch name is refused before anything is stored, not after the last part.
  if (opts.ref !== undefined) repo.refPath(opts.ref);
  memoryPoint('apply');
  const sb = await openDelta(source, opts);
  memoryPoint('superblock');
  if (sb.from !== null && !(await repo.hasObject('commit', sb.from))) {
    throw new LarchError('DELTA_BASE_MISSING', `delta is from commit ${sb.from}, which repo '${repo.path}' does not hold`, { data: { from: sb.from, to: sb.to } });
  }
  await checkScratchSpace(repo, sb);
  const result: ApplyResult = { from: sb.from, to: sb.to, parts: sb.parts.length, parts_applied: 0, parts_skipped: 0, objects_written: 0 };
  const todo: number[] = [];
  for (let i = 0; i < sb.parts.length; i++) {
    const part = sb.parts[i];
    if (await partStored(repo, part)) {
      result.parts_skipped++;
      opts.onProgress?.({ part: i, parts: sb.parts.length, skipped: true, bytes: part.size, done: result.parts_skipped });
    } else {
      todo.push(i);
    }
  }
  const applied = (i: number, written: number) => {
    result.objects_written += written;
    failpoint('delta::after-part-apply');
    result.parts_applied++;
    memoryPoint(`part ${i + 1}/${sb.parts.length} stored`);
    collectGarbage();
    opts.onProgress?.({ part: i, parts: sb.parts.length, skipped: false, bytes: sb.parts[i].size, done: result.parts_skipped + result.parts_applied });
  };
  const here = async (i: number, lockHeld: boolean) => {
    memoryPoint(`part ${i + 1}/${sb.parts.length}`);
    applied(i, await applyCheckedPart(repo, await source.part(i), sb.parts[i], i, sb.parts.length, sb.format, lockHeld));
  };
  const second = secondThreadPart(sb.parts, todo, opts.threads ?? defaultApplyThreads());
  if (second === null) {
    for (const i of todo) await here(i, false);
  } else {
    await withSecondThread(repo, sb, source, todo, second, here, applied);
  }
  memoryPoint('finish');
  await finish(repo, sb, opts.ref);
  memoryPoint('done');
  return result;
}

/**
 * Applies `todo` on two threads: part `second` on a PartThread, the rest here, each part in its
 * own transaction under the one repo lock, held here for the while. A failure on this thread
 * waits for the other's part to finish or fail whole; one there stops this thread at its next
 * part. The first failure is thrown.
 */
async function withSecondThread(repo: Repo, sb: Superblock, source: DeltaSource, todo: readonly number[], second: number, here: (i: number, lockHeld: boolean) => Promise<void>, applied: (i: number, written: number) => void): Promise<void> {
  const lock = await repo.lock();
  const thread = new PartThread();
  let failed: { err: unknown } | null = null;
  const fail = (err: unknown) => {
    failed ??= { err };
  };
  const there = (async () => {
    memoryPoint(`part ${second + 1}/${sb.parts.length} (second thread)`);
    const where = await source.part(second);
    const written = await thread.apply({ repo: repo.path, where, part: sb.parts[second], index: second, count: sb.parts.length, format: sb.format });
    // Its memory goes back before the parts left here (the thread's own heap and compiled code).
    await thread.close();
    applied(second, written);
  })().catch(fail);
  try {
    for (const i of todo) {
      if (failed) break;
      if (i !== second) await here(i, true);
    }
  } catch (err) {
    fail(err);
  }
  await there;
  await thread.close();
  await lock.release();
  if (failed) throw (failed as { err: unknown }).err;
}

/**
 * A format-2 delta says, per part, the largest source view it writes to R/tmp/ while it
 * applies; that space must be free before the first part (the update's own objects are checked
 * by the caller, which knows their size from the summary). @throws NO_SPACE
 */
async function checkScratchSpace(repo: Repo, sb: Superblock): Promise<void> {
  const need = Math.max(0, ...sb.parts.map((p) => p.scratch ?? 0));
  if (need === 0) return;
  const tmp = join(repo.path, 'tmp');
  const st = await statfs(tmp);
  const free = Number(st.bavail) * Number(st.bsize);
  if (free < need) {
    throw new LarchError('NO_SPACE', `not enough space on the filesystem of ${tmp} for the delta to ${sb.to}: it expands a file of ${need} bytes there while it applies, ${free} bytes are free`, {
      hint: "free space there (e.g. with 'larch prune'), then run the command again; nothing of the delta was stored",
      data: { path: tmp, need, free, to: sb.to },
    });
  }
}

async function partStored(repo: Repo, part: PartInfo): Promise<boolean> {
  // Last object first: a part not yet applied is usually missing all of them, so one check says so.
  for (let i = part.objects.length - 1; i >= 0; i--) if (!(await repo.hasObject(part.objects[i].kind, part.objects[i].id))) return false;
  return true;
}

/** Hashes the part's bytes before any of them is interpreted. @throws DELTA_CORRUPT */
async function checkPartChecksum(where: { path: string; offset: number }, part: PartInfo, index: number, count: number): Promise<void> {
  const hash = createHash('sha256');
  let n = 0;
  try {
    for await (const chunk of createReadStream(where.path, { start: where.offset, end: where.offset + part.size - 1, highWaterMark: 256 * 1024 })) {
      hash.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
  } catch (err) {
    throw fromSystemError(err, `read part ${index + 1}/${count} of`, where.path);
  }
  const label = `part ${index + 1}/${count}`;
  if (n !== part.size) throw new LarchError('DELTA_CORRUPT', `${label}: truncated: ${n} of ${part.size} bytes`, { data: { part: index, expected: part.size, actual: n } });
  const actual = hash.digest('hex');
  if (actual !== part.sha256) throw new LarchError('DELTA_CORRUPT', `${label}: checksum mismatch: expected ${part.sha256}, got ${actual}`, { data: { part: index, expected: part.sha256, actual } });
}

function streamOf(path: string, start: number, length: number): AsyncIterable<Uint8Array> {
  // A stream of no bytes is empty. Ending a decoder that got no input instead emits an error that
  // nothing listens to before the first read, which ended the process (found by fuzzing).
  if (length === 0) return (async function* () {})();
  const decompress = createDecompressor();
  pipeline(createReadStream(path, { start, end: start + length - 1, highWaterMark: CHUNK }), decompress, () => {});
  return decompress;
}

/** A part's diff bytes: a ByteReader (formats 1-2), or runs of zeros and bytes (format 3). */
interface DiffReader {
  /** Adds the next n diff bytes into out[at..at+n), modulo 256; undefined when done synchronously. */
  addInto(out: Uint8Array, at: number, n: number): Promise<void> | undefined;
  atEnd(): Promise<boolean>;
  close(): Promise<void>;
}

/** A source object of the base commit (a file read through a cache of blocks, or a view held in memory), so a patch of many short ops costs few reads. */
interface SourceObject {
  size: number;
  /** Copies n bytes at pos of the source into target at offset. @throws DeltaFormatError past the end */
  readInto(target: Uint8Array, offset: number, pos: number, n: number): void;
  close(): Promise<void>;
}

/** Opens a patch source (decompressed to a temp file for archive repos). @throws OBJECT_MISSING */
async function openSourceObject(repo: Repo, id: ObjectId, tmpDir: string): Promise<SourceObject> {
  const { path, temp } = await sourceObjectPath(repo, id, tmpDir);
  return openSourceFile(path, id, temp);
}

/** The file holding a source object's content: the object itself, or (archive repos) a decompressed temp copy. */
async function sourceObjectPath(repo: Repo, id: ObjectId, tmpDir: string): Promise<{ path: string; temp: string | null }> {
  let path = repo.objectPath('file', id);
  let temp: string | null = null;
  if (repo.mode === 'archive') {
    temp = join(tmpDir, `source-${process.pid}-${threadId}-${++sourceCounter}-${id}`);
    const fh = await open(temp, 'wx', 0o600);
    try {
      for await (const c of (await repo.readFile(id)).content()) await fh.write(c);
    } finally {
      await fh.close();
    }
    path = temp;
  }
  return { path, temp };
}

/**
 * Opens a patch source's file. Synchronous file calls: sources are opened one at a time, and a
 * thread-pool round trip per call showed up as futex time on the corpus delta. @throws OBJECT_MISSING
 */
function openSourceFd(path: string, id: ObjectId): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new LarchError('OBJECT_MISSING', `patch source ${id} is missing from the repo`, { data: { id } });
    throw err;
  }
}

/** A source read through a cache of blocks; `temp` is removed when it is closed. @throws OBJECT_MISSING */
function openSourceFile(path: string, id: ObjectId, temp: string | null): SourceObject {
  const fd = openSourceFd(path, id);
  const { size } = fstatSync(fd);
  /** Block index -> its bytes, least recently used first (a Map keeps insertion order). */
  const blocks = new Map<number, Buffer>();
  const block = (index: number): Buffer => {
    let bytes = blocks.get(index);
    if (bytes) {
      blocks.delete(index);
    } else {
      if (blocks.size >= SOURCE_BLOCKS_CACHED) {
        const [oldest, reused] = blocks.entries().next().value as [number, Buffer];
        blocks.delete(oldest);
        bytes = reused;
      } else {
        bytes = freeBlocks.pop() ?? Buffer.allocUnsafe(SOURCE_BLOCK);
      }
      const want = Math.min(SOURCE_BLOCK, size - index * SOURCE_BLOCK);
      for (let got = 0; got < want; ) {
        const n = readSync(fd, bytes, got, want - got, index * SOURCE_BLOCK + got);
        if (n === 0) throw new DeltaFormatError(`source ${id} is shorter than its size`);
        got += n;
      }
    }
    blocks.set(index, bytes);
    return bytes;
  };
  return {
    size,
    readInto(target, offset, pos, n) {
      if (pos < 0 || pos + n > size) throw new DeltaFormatError(`patch reads past the end of source ${id}`);
      while (n > 0) {
        const index = Math.floor(pos / SOURCE_BLOCK);
        const at = pos - index * SOURCE_BLOCK;
        const take = Math.min(n, SOURCE_BLOCK - at);
        target.set(block(index).subarray(at, at + take), offset);
        offset += take;
        pos += take;
        n -= take;
      }
    },
    async close() {
      for (const b of blocks.values()) if (freeBlocks.length < SOURCE_BLOCKS_CACHED) freeBlocks.push(b);
      blocks.clear();
      closeSync(fd);
      if (temp) await rm(temp, { force: true });
    },
  };
}

/**
 * Checks one part's bytes and interprets them inside a transaction; returns the number of objects
 * written. `lockHeld`: the caller holds the repo's lock (applyDelta with a second thread).
 */
export async function applyCheckedPart(repo: Repo, where: PartPlace, part: PartInfo, index: number, count: number, format: DeltaFormatVersion, lockHeld: boolean): Promise<number> {
  await checkPartChecksum(where, part, index, count);
  return applyPart(repo, where, part, index, count, format, lockHeld);
}

/** Interprets one part inside a transaction; returns the number of objects written. */
async function applyPart(repo: Repo, where: PartPlace, part: PartInfo, index: number, count: number, format: DeltaFormatVersion, lockHeld: boolean): Promise<number> {
  const label = `part ${index + 1}/${count}`;
  const headerBytes = partHeaderBytes(format);
  const head = Buffer.alloc(headerBytes);
  const fh = await open(where.path, 'r');
  await fh.read(head, 0, headerBytes, where.offset).finally(() => fh.close());
  let streams: PartStreams;
  try {
    streams = decodePartHeader(head, part.size, format);
  } catch (err) {
    throw new LarchError('DELTA_CORRUPT', `${label}: ${(err as Error).message}`, { data: { part: index } });
  }
  const { control: cLen, runs: rLen, diff: dLen, literal: lLen } = streams;
  const base = where.offset + headerBytes;
  const control = new ByteReader(streamOf(where.path, base, cLen), `${label} control`);
  const diffBytes = new ByteReader(streamOf(where.path, base + cLen + rLen, dLen), `${label} diff`);
  // Format 3: the diff bytes are zero-run coded, their runs in a stream of their own.
  const diff: DiffReader = format >= 3 ? new ZeroRunReader(new ByteReader(streamOf(where.path, base + cLen, rLen), `${label} runs`), diffBytes) : diffBytes;
  const literal = new ByteReader(streamOf(where.path, base + cLen + rLen + dLen, lLen), `${label} literal`);
  let nextObject = 0;
  const nextRecord = async (expectOps: boolean): Promise<ControlRecord | null> => {
    if (await control.atEnd()) return null;
    return decodeRecord(await control.read(decodeRecordLength(await control.read(RECORD_LENGTH_BYTES))), expectOps, format);
  };

  const txn = await Transaction.begin(repo, { lockHeld });
  const writes = new WriteQueue();
  // The part's view buffers (a kernel's LZ4 block, shared by its source expansion and its fold; the
  // small .gz views, made and re-encoded in the same few buffers); dropped with the part.
  const buffers: ViewBuffers = {};
  try {
    for (;;) {
      const rec = await nextRecord(false);
      if (rec === null) break;
      if (rec.type === 'ops') throw new DeltaFormatError('op record outside a patch');
      // Each object record stands for the next object the superblock lists for this part.
      const listed = part.objects[nextObject++];
      const kind = rec.type === 'metadata' ? rec.kind : 'file';
      if (!listed) throw new DeltaFormatError('more objects than the part lists');
      if (listed.kind !== kind) throw new DeltaFormatError(`object ${nextObject} is a ${kind}, listed as a ${listed.kind}`);
      const id = listed.id;
      if (rec.type === 'metadata') {
        const bytes = await literal.read(rec.length);
        if (metadataId(bytes) !== id) throw new LarchError('OBJECT_CORRUPT', `${label}: rebuilt ${rec.kind} ${id}: checksum mismatch`, { data: { id } });
        await writes.add(() => txn.writeMetadata(rec.kind, bytes));
        continue;
      }
      let header: FileHeader;
      try {
        header = decodeFileHeader(rec.header);
      } catch (err) {
        if (err instanceof ObjectFormatError) throw new DeltaFormatError(`file ${id}: ${err.message}`);
        throw err;
      }
      if (header.type !== 'reg') {
        if (rec.source !== null) throw new DeltaFormatError(`file ${id} has no content but a patch source`);
        await writes.add(() => txn.writeFile(header, undefined, `${label}: file ${id}`, id));
        continue;
      }
      const streamed = header.size > GATHERED_OBJECT_BYTES;
      if (streamed) memoryPoint(`${label}: file ${id} (${header.size} bytes)`);
      const tmpDir = join(repo.path, 'tmp');
      let content: AsyncIterable<Uint8Array>;
      if (rec.type === 'view-file') {
        if (totalN(rec.dst) !== header.size) throw new DeltaFormatError(`file ${id}: its view segments cover ${totalN(rec.dst)} bytes, the file has ${header.size}`);
        content = afterFirstChunk(foldView(patched(await openViewSource(repo, rec.source, rec.src, tmpDir, buffers), () => nextRecord(true), diff, literal), rec.dst, buffers), 'delta::mid-view-fold');
      } else {
        content = rec.source === null ? literal.pieces(header.size) : patched(await openSourceObject(repo, rec.source, tmpDir), () => nextRecord(true), diff, literal);
      }
      if (!streamed) {
        const gathered = await gather(content, header.size);
        await writes.add(() => txn.writeFile(header, { stream: chunksOf(gathered) }, `${label}: file ${id}`, id));
      } else {
        await txn.writeFile(header, { stream: content }, `${label}: file ${id}`, id);
        memoryPoint(`${label}: after file ${id}`);
      }
    }
    if (nextObject !== part.objects.length) throw new DeltaFormatError(`${part.objects.length - nextObject} object(s) listed for this part were not in it`);
    if (!(await diff.atEnd()) || !(await literal.atEnd())) throw new DeltaFormatError('streams hold bytes past the last object');
    await writes.drain();
    const written = txn.stats.objects_written;
    // One sync per part (content durable before it is renamed into place); the final commit's
    // transaction syncs again before the commit object exists, which covers every part's renames.
    await txn.commit({}, { syncRenames: false });
    return written;
  } catch (err) {
    await writes.settle();
    await txn.abort();
    await Promise.all([control.close(), diff.close(), literal.close()]).catch(() => {});
    if (err instanceof DeltaFormatError || err instanceof StreamEndedError || err instanceof ViewError || err instanceof ZeroRunError) throw new LarchError('DELTA_CORRUPT', `${label}: ${err.message}`, { data: { part: index } });
    if (err instanceof LarchError && err.code === 'INVALID_INPUT') throw new LarchError('DELTA_CORRUPT', `${label}: ${err.message}`, { data: { ...err.data, part: index } });
    throw err;
  }
}

/** Stores run concurrently, at most WRITES_IN_FLIGHT; the first failure is thrown by the next add or by drain. */
class WriteQueue {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | null = null;

  async add(write: () => Promise<unknown>): Promise<void> {
    while (this.inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(this.inFlight);
    this.throwIfFailed();
    const done: Promise<void> = write().then(
      () => {},
      (error) => {
        this.failure ??= { error };
      },
    );
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  /** Waits for every store; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }

  /** Waits for every store, failed or not (before the transaction is aborted). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}

/**
 * Copies of an object's bytes, up to one past its declared size: a patch that makes more than
 * that is refused by the store as it would be when streamed, without holding the excess.
 */
async function gather(content: AsyncIterable<Uint8Array>, size: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of content) {
    out.push(Uint8Array.prototype.slice.call(chunk, 0, Math.min(chunk.length, size + 1 - total)));
    total += out[out.length - 1].length;
    if (total > size) break;
  }
  return out;
}

async function* chunksOf(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* chunks;
}

const totalN = (segments: readonly Segment[]) => segments.reduce((a, s) => a + s.n, 0);

/**
 * The source of a view record: the source object's view, expanded by its segments. bspatch reads
 * its source both ways, so a view over IN_MEMORY_VIEW_BYTES is written to R/tmp/view-* (removed
 * when the patch closes it) rather than held; a smaller one is held, which spares the many
 * small `.gz` sources of an OS update four file operations each.
 * @throws OBJECT_MISSING, DeltaFormatError, ViewError
 */
async function openViewSource(repo: Repo, id: ObjectId, segments: readonly Segment[], tmpDir: string, buffers: ViewBuffers): Promise<SourceObject> {
  const { path, temp } = await sourceObjectPath(repo, id, tmpDir);
  const viewPath = join(tmpDir, `view-${process.pid}-${threadId}-${++sourceCounter}-${id}`);
  let held: Uint8Array | null;
  try {
    held = await expandSourceView(path, id, segments, viewPath, buffers);
  } catch (err) {
    await rm(viewPath, { force: true });
    if (err instanceof ViewError) throw new DeltaFormatError(`source ${id}: ${err.message}`);
    if (typeof (err as NodeJS.ErrnoException).code === 'string' && !(err instanceof LarchError)) throw fromSystemError(err, 'write the view of a patch source to', viewPath);
    throw err;
  } finally {
    if (temp) await rm(temp, { force: true });
  }
  if (held !== null) {
    failpoint('delta::after-view-expand');
    return memorySource(held, id);
  }
  // Collected here, outside the function that expanded the source, so nothing of the expansion
  // (its reader's buffer, a deflate view) is still reachable through the patch and fold; the
  // LZ4 block buffer is the part's, lent again to the fold.
  collectGarbage();
  failpoint('delta::after-view-expand');
  return openSourceFile(viewPath, id, viewPath);
}

/**
 * Expands the view of the source at `path`: returned when it is at most IN_MEMORY_VIEW_BYTES,
 * written to viewPath otherwise (then null). A large source is read piece by piece as its
 * segments ask (a kernel's LZ4 blocks one at a time), never whole.
 * @throws OBJECT_MISSING, DeltaFormatError, ViewError
 */
async function expandSourceView(path: string, id: ObjectId, segments: readonly Segment[], viewPath: string, buffers: ViewBuffers): Promise<Uint8Array | null> {
  const fd = openSourceFd(path, id);
  try {
    const size = fstatSync(fd).size;
    if (totalN(segments) !== size) throw new DeltaFormatError(`the view segments of source ${id} cover ${totalN(segments)} bytes, the source has ${size}`);
    // In the part's buffer (ViewBuffers.sourceView): the patch that reads it ends before the next record expands its source.
    if (segmentTotals(segments).m <= IN_MEMORY_VIEW_BYTES) return expandView(readFileSync(fd), segments, buffers);
    // A view this large is expanded on a collected heap: left to the collector, the garbage of the
    // records before it and of its expansion were resident together (about 10 MiB of the corpus
    // delta's peak).
    collectGarbage();
    memoryPoint(`view of source ${id} (${segmentTotals(segments).m} bytes)`);
    const fh = await open(viewPath, 'wx', 0o600);
    try {
      for (const chunk of expandViewChunks(fileReader(fd, size, id), segments, buffers)) await fh.write(chunk);
    } finally {
      await fh.close();
    }
    memoryPoint(`view of source ${id} written`);
    return null;
  } finally {
    closeSync(fd);
  }
}

/** A source file read front to back into one buffer, grown to the largest piece asked for. */
function fileReader(fd: number, size: number, id: ObjectId): SourceReader {
  let buffer = Buffer.allocUnsafe(0);
  let pos = 0;
  return {
    size,
    next(n) {
      if (n > buffer.length) buffer = Buffer.allocUnsafe(Math.max(n, CHUNK));
      for (let got = 0; got < n; ) {
        const r = readSync(fd, buffer, got, n - got, pos + got);
        if (r === 0) throw new DeltaFormatError(`source ${id} ends ${n - got} bytes early`);
        got += r;
      }
      pos += n;
      return buffer.subarray(0, n);
    },
  };
}

/** Views up to this size are held in memory while their patch runs. */
const IN_MEMORY_VIEW_BYTES = 1024 * 1024;

function memorySource(bytes: Uint8Array, id: ObjectId): SourceObject {
  return {
    size: bytes.length,
    readInto(target, offset, pos, n) {
      if (pos < 0 || pos + n > bytes.length) throw new DeltaFormatError(`patch reads past the end of source ${id}`);
      target.set(bytes.subarray(pos, pos + n), offset);
    },
    async close() {},
  };
}

/** Passes chunks through, and passes a failpoint once the first has been handed on. */
async function* afterFirstChunk(chunks: AsyncIterable<Uint8Array>, point: 'delta::mid-view-fold'): AsyncGenerator<Uint8Array> {
  let first = true;
  for await (const c of chunks) {
    yield c;
    if (first) failpoint(point);
    first = false;
  }
}

/**
 * bspatch as a stream: old bytes plus diff bytes, then extra bytes, per op. Output is gathered
 * into one CHUNK-sized buffer, because ops are often a few bytes long and each yielded piece
 * costs the writer a syscall (951k writes on the corpus delta before this). The buffer is reused
 * once the writer pulls the next chunk, as Transaction.writeFile allows: a new one per chunk
 * raised peak RSS by 20-50 MiB (garbage outpaced the collector).
 */
async function* patched(source: SourceObject, nextOps: () => Promise<ControlRecord | null>, diff: DiffReader, literal: ByteReader): AsyncGenerator<Uint8Array> {
  // Taken from the pool and given back when the patch ends: by then its reader has pulled past
  // the last chunk handed out, so nothing still reads from it.
  const out = freeOutputs.pop() ?? Buffer.allocUnsafe(CHUNK);
  try {
    let fill = 0;
    let oldPos = 0;
    for (;;) {
      const rec = await nextOps();
      if (rec === null || rec.type !== 'ops') throw new DeltaFormatError('patch ops ended without their terminating record');
      if (rec.ops.length === 0) break;
      for (const [diffLen, extraLen, seek] of rec.ops) {
        if (oldPos < 0 || oldPos + diffLen > source.size) throw new DeltaFormatError(`patch reads outside its source (${oldPos}+${diffLen} of ${source.size})`);
        for (let done = 0; done < diffLen; ) {
          const n = Math.min(CHUNK - fill, diffLen - done);
          // Synchronous unless a stream needs its next chunk: no promise per op.
          source.readInto(out, fill, oldPos + done, n);
          const adding = diff.addInto(out, fill, n);
          if (adding) await adding;
          fill += n;
          done += n;
          if (fill === CHUNK) {
            yield out;
            fill = 0;
          }
        }
        for (let done = 0; done < extraLen; ) {
          const n = Math.min(CHUNK - fill, extraLen - done);
          const copying = literal.copyInto(out, fill, n);
          if (copying) await copying;
          fill += n;
          done += n;
          if (fill === CHUNK) {
            yield out;
            fill = 0;
          }
        }
        oldPos += diffLen + seek;
      }
    }
    if (fill > 0) yield out.subarray(0, fill);
  } finally {
    freeOutputs.push(out);
    await source.close();
  }
}

/**
 * After the parts: every object of the new tree must be stored, and only then is the commit
 * (with its signatures) moved into place, so a delta that leaves out objects never produces a
 * commit that looks complete. @throws DELTA_CORRUPT
 */
async function finish(repo: Repo, sb: Superblock, ref: string | undefined): Promise<void> {
  const refs = ref === undefined ? {} : { [ref]: sb.to };
  if (await repo.hasObject('commit', sb.to)) {
    // Stored before (an earlier run, or another source): only the ref is left to move.
    if (ref === undefined) return;
    const lock = await repo.lock();
    try {
      await repo.writeRef(ref, sb.to);
    } finally {
      await lock.release();
    }
    return;
  }
  let root;
  try {
    root = decodeCommit(sb.commit).root;
  } catch (err) {
    throw new LarchError('DELTA_CORRUPT', `delta superblock: commit ${sb.to}: ${(err as Error).message}`, { data: { part: 'superblock', to: sb.to } });
  }
  try {
    forEachTreeFile(repo, root, (id, path) => {
      if (!repo.hasObjectSync('file', id)) throw new LarchError('OBJECT_MISSING', `file ${id} at '${path()}' is missing`, { data: { id, path: path() } });
    });
  } catch (err) {
    if (err instanceof LarchError && err.code === 'OBJECT_MISSING') throw new LarchError('DELTA_CORRUPT', `delta left the tree of ${sb.to} incomplete: ${err.message}`, { data: { ...err.data, to: sb.to } });
    throw err;
  }
  const txn = await Transaction.begin(repo);
  try {
    await txn.writeMetadata('commit', sb.commit);
    if (sb.commitSigs) await txn.writeSignatures(sb.to, sb.commitSigs);
    await txn.commit(refs);
    failpoint('delta::after-commit-write');
  } catch (err) {
    await txn.abort();
    throw err;
  }
}
