/**
 * A write transaction: objects are staged under R/tmp/staging-PID-X/, made durable with
 * one filesystem sync, moved into R/objects/, synced again, and only then do refs move.
 * A crash at any point leaves complete objects only (plus a staging dir that `prune` removes),
 * and every ref names a complete commit.
 */
import { mkdir, open, rm, symlink, writeFile } from 'node:fs/promises';
import { chmodSync, chownSync, closeSync, lchownSync, lstatSync, openSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDeflateRaw, deflateRaw } from 'node:zlib';
import { promisify } from 'node:util';
import { LarchError, fromSystemError } from '../errors.ts';
import { sha256, sha256Stream } from '../_hash.ts';
import { createExclusiveWriteStream, openReadStream } from './_fs.ts';
import { syncFilesystem } from '../_durable.ts';
import { runToolSync } from '../_run.ts';
import { failpoint } from '../failpoint.ts';
import type { Lock } from './lock.ts';
import { type FileHeader, type ObjectId, type ObjectKind, MAX_FILE_HEADER_BYTES, MAX_METADATA_BYTES, encodeFileHeader, encodeXattrList, fileHeaderProblem } from './object.ts';
import type { Repo } from './repo.ts';
import { writeXattrs } from './xattrs.ts';

/** Files up to this size are read whole: one read, no stream machinery (99% of the files of bench/'s 448 MiB tree). */
const SMALL_FILE_BYTES = 256 * 1024;
const deflateRawAsync = promisify(deflateRaw);

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/**
 * Writes a stream of chunks to a new file through a FileHandle, calling `seen` on each chunk
 * first: no stream machinery per file (a delta apply writes thousands of objects; measured
 * faster than pipeline + Transform + WriteStream).
 */
async function writeHashed(path: string, chunks: AsyncIterable<Uint8Array>, seen: (chunk: Uint8Array) => void): Promise<void> {
  // Synchronous writes: a staged object is written by one caller at a time, and a thread-pool
  // round trip per chunk cost more (futex + eventfd) than the write itself on a delta apply.
  const fd = openSync(path, 'wx', 0o600);
  try {
    for await (const chunk of chunks) {
      seen(chunk);
      let at = 0;
      while (at < chunk.length) at += writeSync(fd, chunk, at, chunk.length - at);
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads a whole file of at most buffer.length - 1 bytes into buffer; returns the filled part. */
async function readSmallFile(path: string | Buffer, buffer: Buffer): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    let filled = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0 || filled + bytesRead === buffer.length) return buffer.subarray(0, filled + bytesRead);
      filled += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

function mismatch(expected: ObjectId, actual: ObjectId): LarchError {
  return new LarchError('OBJECT_CORRUPT', `rebuilt object ${expected}: checksum mismatch: got ${actual}`, { data: { id: expected, actual } });
}

function changedWhileReading(where: string, expected: number, actual: number): LarchError {
  return new LarchError('INVALID_INPUT', `'${where}' has ${actual} bytes but its size said ${expected}; did it change while being committed?`, { data: { path: where, expected, actual } });
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** Where the bytes of a regular file come from: a path on disk or a stream (a tar entry). */
export type ContentSource = { path: string | Buffer } | { stream: AsyncIterable<Uint8Array> | Readable };

export class Transaction {
  private staged = new Map<string, string>();
  private xattrJobs: { path: Buffer; xattrs: FileHeader['xattrs'] }[] = [];
  private specialsInFlight = new Map<ObjectId, Promise<boolean>>();
  private readBuffers: Buffer[] = [];
  private counter = 0;
  private done = false;
  /** Bytes of object data newly written in this transaction (for --json stats). */
  stats = { objects_written: 0, bytes_written: 0, objects_reused: 0 };
  /** Metadata objects found already in the repo (objects_reused counts each once). */
  private readonly present = new Set<string>();

  private constructor(
    readonly repo: Repo,
    private readonly lock: Lock,
    private readonly dir: string,
  ) {}

  /**
   * Takes the repo's writer lock and opens a staging directory. With `lockHeld`, the caller holds
   * the lock for the transaction's whole life and releases it itself (a delta apply's parts on two
   * threads, whose transactions run side by side under the one lock). @throws LOCKED
   */
  static async begin(repo: Repo, opts: { lockHeld?: boolean } = {}): Promise<Transaction> {
    if (repo.mode === 'bare' && !isRoot()) {
      throw new LarchError('INVALID_INPUT', `repo '${repo.path}' is in mode 'bare', which needs root to keep owners`, { hint: "run as root, or use a repo made with 'larch init --mode bare-user'", data: { path: repo.path, mode: repo.mode } });
    }
    const lock = opts.lockHeld ? HELD_BY_CALLER : await repo.lock();
    try {
      return new Transaction(repo, lock, await repo.makeStagingDir());
    } catch (err) {
      await lock.release();
      throw fromSystemError(err, 'create staging directory in', repo.path);
    }
  }

  private key(kind: string, id: ObjectId) {
    return `${kind}:${id}`;
  }

  /** Whether the object is staged here or in the repo: one stat, no thread-pool round trip (a delta apply asks for every object it rebuilds). */
  has(kind: ObjectKind, id: ObjectId): boolean {
    return this.staged.has(this.key(kind, id)) || this.repo.hasObjectSync(kind, id);
  }

  private tempPath(): string {
    return join(this.dir, `${++this.counter}.part`);
  }

  /** Stages a metadata object (dirtree, dirmeta, commit) and returns its id. */
  async writeMetadata(kind: Exclude<ObjectKind, 'file'>, bytes: Uint8Array): Promise<ObjectId> {
    if (bytes.length > MAX_METADATA_BYTES) {
      throw new LarchError('INVALID_INPUT', `a ${kind} of ${bytes.length} bytes is over the ${MAX_METADATA_BYTES}-byte limit (a directory with too many entries?)`, { data: { kind, bytes: bytes.length } });
    }
    const id = sha256(bytes);
    if (this.staged.has(this.key(kind, id)) || this.present.has(this.key(kind, id))) return id;
    if (await this.repo.hasObject(kind, id)) {
      // Counted once, as a staged object is written once (a dirmeta is shared by many directories).
      this.present.add(this.key(kind, id));
      this.stats.objects_reused++;
      return id;
    }
    const path = join(this.dir, `${id}.${kind}`);
    await writeFile(path, bytes).catch((err) => {
      throw fromSystemError(err, `stage ${kind}`, path);
    });
    this.staged.set(this.key(kind, id), path);
    this.stats.objects_written++;
    this.stats.bytes_written += bytes.length;
    return id;
  }

  /** Stages detached signatures of a commit (replacing any earlier ones). */
  async writeSignatures(commitId: ObjectId, bytes: Uint8Array): Promise<void> {
    const path = join(this.dir, `${commitId}.sig`);
    await writeFile(path, bytes).catch((err) => {
      throw fromSystemError(err, 'stage signatures', path);
    });
    this.staged.set(this.key('sig', commitId), path);
  }

  /**
   * Stages a file object, hashing and writing its content in one pass. For a regular file the
   * header's size must match the bytes read (a file that changes while being committed is refused).
   */
  /**
   * Stages a file object and returns its id. With `expectedId` (objects rebuilt from a delta),
   * content that hashes to anything else is discarded and refused (OBJECT_CORRUPT).
   */
  async writeFile(header: FileHeader, source?: ContentSource, where = 'path' in (source ?? {}) ? String((source as { path: string }).path) : 'input', expectedId?: ObjectId): Promise<ObjectId> {
    const problem = fileHeaderProblem(header) ?? (encodeFileHeader(header).length > MAX_FILE_HEADER_BYTES ? 'its header (xattrs) is over the 1 MiB limit' : null);
    if (problem) throw new LarchError('INVALID_INPUT', `${where}: ${problem}`, { data: { path: where } });
    try {
      return await this.writeFileUnchecked(header, source, expectedId, where);
    } catch (err) {
      throw fromSystemError(err, 'store', where);
    }
  }

  private async writeFileUnchecked(header: FileHeader, source?: ContentSource, expectedId?: ObjectId, where = 'input stream'): Promise<ObjectId> {
    const headerBytes = encodeFileHeader(header);
    if (header.type !== 'reg') {
      const id = sha256(headerBytes);
      if (expectedId !== undefined && id !== expectedId) throw mismatch(expectedId, id);
      // Identical symlinks often come in bursts (man page aliases): stage each id once. The
      // promise is registered before any await, so concurrent callers share it.
      let staging = this.specialsInFlight.get(id);
      if (!staging) {
        staging = (async () => {
          if (this.has('file', id)) return false;
          await this.stageSpecial(id, header, headerBytes);
          return true;
        })();
        this.specialsInFlight.set(id, staging);
        if (!(await staging)) this.stats.objects_reused++;
      } else {
        await staging;
        this.stats.objects_reused++;
      }
      return id;
    }
    if (!source) throw new TypeError('a regular file needs a content source');
    if ('path' in source) return this.writeFileFromPath(header, headerBytes, source.path);
    return this.writeFileFromStream(header, headerBytes, source.stream, where, expectedId);
  }

  /**
   * A file on disk: small files are read whole (bounded by SMALL_FILE_BYTES), large ones are
   * hashed in a read-only pass first, so a file the repo already has costs one read and no
   * write (a re-commit of an unchanged 200 MB tree writes nothing).
   */
  private async writeFileFromPath(header: FileHeader & { type: 'reg' }, headerBytes: Uint8Array, path: string | Buffer): Promise<ObjectId> {
    const where = path.toString();
    if (header.size <= SMALL_FILE_BYTES) {
      // Read into a reused buffer: allocating one per file left 100+ MiB of garbage on a
      // 16k-file tree before the collector caught up (measured with bench/commit.ts).
      const buffer = this.readBuffers.pop() ?? Buffer.allocUnsafe(SMALL_FILE_BYTES + 1);
      try {
        const data = await readSmallFile(path, buffer).catch((err) => {
          throw fromSystemError(err, 'read', where);
        });
        if (data.length !== header.size) throw changedWhileReading(where, header.size, data.length);
        const id = sha256(headerBytes, data);
        if (this.has('file', id)) {
          this.stats.objects_reused++;
          return id;
        }
        const tmp = this.tempPath();
        const body = this.repo.mode === 'archive' ? Buffer.concat([u32(headerBytes.length), headerBytes, await deflateRawAsync(data, { level: 6 })]) : data;
        await writeFile(tmp, body, { flag: 'wx', mode: 0o600 }).catch((err) => {
          throw fromSystemError(err, 'stage file in', this.dir);
        });
        return await this.placeStaged(tmp, id, header, headerBytes, data.length);
      } finally {
        this.readBuffers.push(buffer);
      }
    }
    const hash = sha256Stream().update(headerBytes);
    let count = 0;
    try {
      for await (const chunk of await openReadStream(path)) {
        hash.update(chunk as Buffer);
        count += (chunk as Buffer).length;
      }
    } catch (err) {
      throw fromSystemError(err, 'read', where);
    }
    if (count !== header.size) throw changedWhileReading(where, header.size, count);
    const id = hash.digest('hex');
    if (this.has('file', id)) {
      this.stats.objects_reused++;
      return id;
    }
    const written = await this.writeFileFromStream(header, headerBytes, await openReadStream(path), where);
    if (written !== id) throw new LarchError('INVALID_INPUT', `'${where}' changed while being committed`, { hint: 'commit a tree that nothing writes to meanwhile', data: { path: where } });
    return id;
  }

  /**
   * Hashes and stages in one pass; for streams that can be read only once (tar entries, pulls,
   * deltas). The stream may reuse a chunk's buffer once the next chunk is pulled.
   */
  private async writeFileFromStream(header: FileHeader & { type: 'reg' }, headerBytes: Uint8Array, stream: AsyncIterable<Uint8Array> | Readable, where: string, expectedId?: ObjectId): Promise<ObjectId> {
    const tmp = this.tempPath();
    const hash = sha256Stream().update(headerBytes);
    let count = 0;
    // A stream longer than its header says (a lying delta, a compression bomb) is stopped at
    // once, not written to the end.
    const tooLong = () => new LarchError('INVALID_INPUT', `${where} runs past its declared ${header.size} bytes`, { data: { expected: header.size } });
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        count += chunk.length;
        // A copy, because deflate may still hold it when the source reuses its buffer (see above).
        cb(count > header.size ? tooLong() : null, Buffer.from(chunk));
      },
    });
    try {
      if (this.repo.mode === 'archive') {
        const out = await createExclusiveWriteStream(tmp);
        out.write(u32(headerBytes.length));
        out.write(headerBytes);
        await pipeline(stream, tap, createDeflateRaw({ level: 6 }), out);
      } else {
        await writeHashed(tmp, stream, (chunk) => {
          hash.update(chunk);
          count += chunk.length;
          if (count > header.size) throw tooLong();
        });
      }
    } catch (err) {
      await rm(tmp, { force: true });
      // A full disk is the repo's problem, not the input's: name where the bytes were going.
      const full = (err as NodeJS.ErrnoException)?.code === 'ENOSPC' || (err as NodeJS.ErrnoException)?.code === 'EDQUOT';
      throw full ? fromSystemError(err, `store ${where} in`, this.repo.path) : fromSystemError(err, 'read', where);
    }
    if (count !== header.size) {
      await rm(tmp, { force: true });
      throw changedWhileReading(where, header.size, count);
    }
    const id = hash.digest('hex');
    if (expectedId !== undefined && id !== expectedId) {
      await rm(tmp, { force: true });
      throw mismatch(expectedId, id);
    }
    if (this.has('file', id)) {
      await rm(tmp, { force: true });
      this.stats.objects_reused++;
      return id;
    }
    return this.placeStaged(tmp, id, header, headerBytes, count);
  }

  /** Moves a fully written temp file to its staged name and applies bare-mode metadata. */
  private async placeStaged(tmp: string, id: ObjectId, header: FileHeader, headerBytes: Uint8Array, size: number): Promise<ObjectId> {
    const path = join(this.dir, `${id}.${this.repo.mode === 'archive' ? 'filez' : 'file'}`);
    renameSync(tmp, path);
    // Archive objects are served as static files: readable by the web server's user.
    if (this.repo.mode === 'archive') chmodSync(path, 0o644);
    else await this.applyBareMetadata(path, header, headerBytes, id);
    this.staged.set(this.key('file', id), path);
    this.stats.objects_written++;
    this.stats.bytes_written += size;
    return id;
  }

  /**
   * Sets owner, mode and xattrs on a staged bare object. bare-user cannot set owners, so it
   * writes the header to a .filemeta sidecar, but only when the file itself does not already
   * say the same (a root-owned tree committed by root needs no sidecars).
   */
  private async applyBareMetadata(path: string, header: FileHeader, headerBytes: Uint8Array, id: ObjectId): Promise<void> {
    const link = header.type === 'lnk';
    if (this.repo.mode === 'bare') {
      // chown before chmod: chown clears setuid/setgid bits.
      (link ? lchownSync : chownSync)(path, header.uid, header.gid);
      if (!link) chmodSync(path, header.mode);
      if (header.xattrs.length > 0) {
        this.xattrJobs.push({ path: Buffer.from(path), xattrs: header.xattrs });
        await this.stageSidecar('xattrs', id, encodeXattrList(header.xattrs));
      }
      return;
    }
    // The committing user must be able to read the object back, and a bare-user repo must not
    // hold setuid/setgid files owned by that user: such modes go to the sidecar only.
    if (!link) chmodSync(path, (header.mode & 0o777) | 0o400);
    const st = lstatSync(path);
    const faithful = st.uid === header.uid && st.gid === header.gid && (link || (st.mode & 0o7777) === header.mode) && header.xattrs.length === 0;
    if (!faithful) await this.stageSidecar('filemeta', id, headerBytes);
  }

  private async stageSidecar(kind: 'xattrs' | 'filemeta', id: ObjectId, bytes: Uint8Array): Promise<void> {
    const side = join(this.dir, `${id}.${kind}`);
    await writeFile(side, bytes).catch((err) => {
      throw fromSystemError(err, 'stage', side);
    });
    this.staged.set(this.key(kind, id), side);
  }

  private async stageSpecial(id: ObjectId, header: FileHeader, headerBytes: Uint8Array): Promise<void> {
    const ext = this.repo.mode === 'archive' ? 'filez' : 'file';
    const path = join(this.dir, `${id}.${ext}`);
    if (this.repo.mode === 'archive') {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(headerBytes.length);
      await writeFile(path, Buffer.concat([len, headerBytes]));
    } else if (header.type === 'lnk') {
      await symlink(Buffer.from(header.target), path);
      await this.applyBareMetadata(path, header, headerBytes, id);
    } else {
      makeFifo(path, header.mode);
      await this.applyBareMetadata(path, header, headerBytes, id);
    }
    this.staged.set(this.key('file', id), path);
    this.stats.objects_written++;
  }

  /**
   * Makes the staged objects durable and moves them into objects/, then moves the refs.
   * @throws NO_SPACE, IO
   */
  async commit(refs: Record<string, ObjectId> = {}, opts: { syncRenames?: boolean } = {}): Promise<void> {
    try {
      await writeXattrs(this.xattrJobs);
      const stagedPaths = [...this.staged.values()];
      await syncFilesystem(this.dir, [...stagedPaths, this.dir]);
      failpoint('transaction::after-stage-sync');
      // Signatures, then commits, last: an object is only ever referenced by one already in place,
      // and a commit is never in place without its signatures. (Commits went before their
      // signatures: an upgrade killed between the two left a commit the repo counted as pulled and
      // that no key had signed, refused by every later upgrade; found by the failpoint enumeration,
      // transaction::after-object-rename.) A signature whose commit is missing is garbage prune removes.
      const order = (k: string) => (k.startsWith('commit:') ? 2 : k.startsWith('sig:') ? 1 : 0);
      const entries = [...this.staged.entries()].sort((a, b) => order(a[0]) - order(b[0]));
      const touchedDirs = new Set<string>();
      for (const [key, from] of entries) {
        const [kind, id] = key.split(':') as [ObjectKind, ObjectId];
        const to = this.repo.objectPath(kind, id);
        touchedDirs.add(join(to, '..'));
        // objects/XX/ exist from init; a missing one (deleted by hand) is made again.
        try {
          renameSync(from, to);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, 'move object into', to);
          await mkdir(join(to, '..'), { recursive: true });
          renameSync(from, to);
        }
        failpoint('transaction::after-object-rename');
      }
      // The renames need their own sync only when something is about to rely on them (a ref here).
      // Without it (delta parts), a power cut can lose a rename, never an object's content: the
      // object is then missing, and whatever needs it (the next part, the final commit) finds out.
      if (opts.syncRenames ?? true) await syncFilesystem(join(this.repo.path, 'objects'), [...touchedDirs]);
      failpoint('transaction::after-renames-sync');
      for (const [branch, id] of Object.entries(refs)) {
        await this.repo.writeRef(branch, id);
        failpoint('transaction::after-ref-write');
      }
    } catch (err) {
      throw fromSystemError(err, 'commit transaction in', this.repo.path);
    } finally {
      await this.finish();
    }
  }

  /**
   * Unstages the file objects (and their sidecars) not in `keep`: an OCI import stores each file
   * as its layer streams past, and a later layer may replace or white it out. Returns how many
   * objects went (they stay counted in bytes_written: they were written).
   */
  async discardFiles(keep: Set<ObjectId>): Promise<number> {
    const gone = new Set<string>();
    let objects = 0;
    for (const [k, path] of this.staged) {
      const [kind, id] = k.split(':');
      if ((kind !== 'file' && kind !== 'xattrs' && kind !== 'filemeta') || keep.has(id)) continue;
      await rm(path, { force: true });
      this.staged.delete(k);
      gone.add(path);
      if (kind === 'file') objects++;
    }
    this.xattrJobs = this.xattrJobs.filter((j) => !gone.has(j.path.toString()));
    this.stats.objects_written -= objects;
    return objects;
  }

  /** Drops everything staged and releases the lock. */
  async abort(): Promise<void> {
    await this.finish();
  }

  private async finish(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await rm(this.dir, { recursive: true, force: true }).catch(() => {});
    await this.lock.release();
  }
}

/** The lock of a transaction whose caller holds the repo's lock (and releases it). */
const HELD_BY_CALLER: Lock = { release: async () => {} };

/** Node has no mkfifo(3); the coreutils/busybox command does it. */
export function makeFifo(path: string, mode: number): void {
  const r = runToolSync('mkfifo', ['-m', (mode & 0o7777).toString(8), path], { purpose: 'to store a FIFO', hint: "busybox's mkfifo works too" });
  if (r.code !== 0) throw new LarchError('IO', `mkfifo '${path}' failed: ${r.stderr.trim()}`, { data: { path } });
}
