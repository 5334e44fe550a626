/**
 * A larch repository on disk: its layout, modes, reading objects and refs, and the
 * write transaction that stages objects and makes them durable before any ref moves.
 *
 *   R/config.json            {"larch": 1, "mode": "bare" | "bare-user" | "archive", "dirtree_format": 1 | 2,
 *                             "collection_id"?: tstr (the product's repo id, carried by its commits and summary)}
 *   R/objects/XX/REST.EXT    objects by id (XX = first two hex digits)
 *   R/refs/heads/BRANCH      a commit id and a newline
 *   R/keys/trusted/*.pub     the keyring `verify` uses when no --key is given
 *   R/tmp/                   staging directories of transactions; `prune` removes leftovers
 *   R/lock                   the writer lock
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { createInflateRaw, inflateRawSync } from 'node:zlib';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { sha256 } from '../_hash.ts';
import { fsyncPath, writeFileAtomic } from '../_durable.ts';
import { bindingValueProblem } from './binding.ts';
import { openReadStream } from './_fs.ts';
import { type Lock, acquireLock } from './lock.ts';
import {
  type Commit,
  type DirMeta,
  type DirTree,
  type DirTreeFormat,
  DIRTREE_FORMATS,
  type FileHeader,
  type ObjectId,
  type ObjectKind,
  ID_RE,
  MAX_FILE_HEADER_BYTES,
  MAX_METADATA_BYTES,
  ObjectFormatError,
  decodeCommit,
  decodeDirMeta,
  decodeDirTree,
  decodeFileHeader,
  decodeXattrList,
} from './object.ts';

export type RepoMode = 'bare' | 'bare-user' | 'archive';
export const REPO_MODES: RepoMode[] = ['bare', 'bare-user', 'archive'];
const BRANCH_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

export function isValidBranch(name: string): boolean {
  return BRANCH_RE.test(name) && !name.includes('..') && name.length <= 255;
}

/**
 * The largest `.filez` (archive mode: u32 header length, header, raw DEFLATE of the content)
 * of a file whose content is size bytes: the header at its 1 MiB limit, plus a DEFLATE bound.
 * zlib's deflateBound for the parameters larch writes with (level 6, 32 KiB window) is
 * size + size/4096 + size/16384 + size/2^25 + 7; this allows size/64 + 1 KiB over the size,
 * so a stream of stored blocks of 320 bytes or more (any common encoder) fits too.
 */
export function maxFilezBytes(size: number): number {
  return 4 + MAX_FILE_HEADER_BYTES + size + Math.floor(size / 64) + 1024;
}

/** The file object as it is stored: its header and a way to read its content. */
export interface StoredFile {
  header: FileHeader;
  /** Content of a regular file as a stream of chunks; empty for lnk and fifo. */
  content(): AsyncIterable<Uint8Array>;
}

/** config.json: the keys in a fixed order, so the same settings give the same bytes. */
const configText = (mode: RepoMode, dirtreeFormat: DirTreeFormat, collectionId: string | null = null): string =>
  JSON.stringify({ larch: 1, mode, dirtree_format: dirtreeFormat, ...(collectionId === null ? {} : { collection_id: collectionId }) }, null, 2) + '\n';

export class Repo {
  private constructor(
    readonly path: string,
    readonly mode: RepoMode,
    /**
     * The dirtree format commits write: 2 lists each file's size, 1 does not (config key
     * `dirtree_format`; absent means 1, so a repo made before format 2 keeps its ids).
     */
    readonly dirtreeFormat: DirTreeFormat,
    /**
     * The repo's collection id (config key `collection_id`, store/binding.ts): commits made here
     * carry it as larch.collection_id and its summary as collection_id; null: none.
     */
    readonly collectionId: string | null = null,
  ) {}

  /**
   * Creates a repo (or opens an existing one of the same mode: init is idempotent). A new repo
   * writes dirtree format 2 unless dirtreeFormat says otherwise; given for an existing repo,
   * dirtreeFormat switches what its next commits write.
   */
  static async init(path: string, mode: RepoMode, dirtreeFormat?: DirTreeFormat, collectionId?: string): Promise<Repo> {
    const existing = await readFile(join(path, 'config.json'), 'utf8').catch(() => null);
    if (existing !== null) {
      const repo = await Repo.open(path);
      if (repo.mode !== mode) throw new LarchError('EXISTS', `repo '${path}' exists with mode '${repo.mode}', not '${mode}'`, { data: { path, mode: repo.mode } });
      // A product's devices are bound to its collection id: it is given once, never changed.
      if (collectionId !== undefined && repo.collectionId !== null && collectionId !== repo.collectionId) {
        throw new LarchError('EXISTS', `repo '${path}' has collection id '${repo.collectionId}', not '${collectionId}'`, { hint: 'devices bound to it would refuse the other id; make a new repo for another product', data: { path, collection_id: repo.collectionId } });
      }
      const format = dirtreeFormat ?? repo.dirtreeFormat;
      const collection = collectionId ?? repo.collectionId;
      if (format === repo.dirtreeFormat && collection === repo.collectionId) return repo;
      const lock = await repo.lock();
      try {
        await writeFileAtomic(join(path, 'config.json'), configText(mode, format, collection));
      } catch (err) {
        throw fromSystemError(err, 'write repo config', path);
      } finally {
        await lock.release();
      }
      return new Repo(path, mode, format, collection);
    }
    try {
      await mkdir(path, { recursive: true });
      for (const d of ['objects', 'refs/heads', 'keys/trusted', 'tmp']) await mkdir(join(path, d), { recursive: true });
      for (let i = 0; i < 256; i++) await mkdir(join(path, 'objects', i.toString(16).padStart(2, '0')), { recursive: true });
      await writeFileAtomic(join(path, 'config.json'), configText(mode, dirtreeFormat ?? 2, collectionId ?? null));
    } catch (err) {
      throw fromSystemError(err, 'create repo', path);
    }
    return new Repo(path, mode, dirtreeFormat ?? 2, collectionId ?? null);
  }

  /** @throws NOT_FOUND when path holds no repo, INVALID_INPUT for an unknown config */
  static async open(path: string): Promise<Repo> {
    let text: string;
    try {
      text = await readFile(join(path, 'config.json'), 'utf8');
    } catch {
      throw new LarchError('NOT_FOUND', `no larch repo at '${path}'`, { hint: `create one with 'larch init --repo ${path}'`, data: { path } });
    }
    let config: { larch?: number; mode?: string; dirtree_format?: unknown; collection_id?: unknown };
    try {
      config = JSON.parse(text);
    } catch {
      throw new LarchError('REPO_CORRUPT', `repo config '${join(path, 'config.json')}' is not JSON`, { data: { path } });
    }
    if (config.larch !== 1 || !REPO_MODES.includes(config.mode as RepoMode)) {
      throw new LarchError('REPO_CORRUPT', `repo config '${join(path, 'config.json')}' has format ${config.larch} mode '${config.mode}'; this larch reads format 1`, { data: { path } });
    }
    const format = config.dirtree_format ?? 1;
    if (!DIRTREE_FORMATS.includes(format as DirTreeFormat)) {
      throw new LarchError('REPO_CORRUPT', `repo config '${join(path, 'config.json')}' has dirtree_format ${JSON.stringify(format)}; this larch writes 1 or 2`, { hint: 'set "dirtree_format" in it to 1 or 2 (see docs/formats.md §2.3)', data: { path } });
    }
    const collection = config.collection_id ?? null;
    if (collection !== null && (typeof collection !== 'string' || bindingValueProblem('collection_id', collection) !== null)) {
      throw new LarchError('REPO_CORRUPT', `repo config '${join(path, 'config.json')}' has collection_id ${quash(JSON.stringify(collection))}, which is not a reverse-DNS id`, { hint: 'set "collection_id" in it to the id the repo was made with (e.g. com.example.gateway), or remove it', data: { path } });
    }
    return new Repo(path, config.mode as RepoMode, format as DirTreeFormat, collection);
  }

  objectPath(kind: ObjectKind | 'sig' | 'filemeta' | 'xattrs', id: ObjectId): string {
    const ext = kind === 'file' ? (this.mode === 'archive' ? 'filez' : 'file') : kind;
    return join(this.path, 'objects', id.slice(0, 2), `${id.slice(2)}.${ext}`);
  }

  async hasObject(kind: ObjectKind, id: ObjectId): Promise<boolean> {
    try {
      await lstat(this.objectPath(kind, id));
      return true;
    } catch {
      return false;
    }
  }

  /** hasObject in one synchronous call: for checks of many objects in a row, where a thread-pool round trip each costs more than the stat. */
  hasObjectSync(kind: ObjectKind, id: ObjectId): boolean {
    try {
      // No exception for a missing object: a delta apply asks for each one it is about to store.
      return lstatSync(this.objectPath(kind, id), { throwIfNoEntry: false }) !== undefined;
    } catch {
      return false;
    }
  }

  /** Reads a metadata object, refusing oversized ones and checking its id. @throws OBJECT_MISSING, OBJECT_CORRUPT */
  async readMetadataBytes(kind: Exclude<ObjectKind, 'file'>, id: ObjectId): Promise<Uint8Array> {
    const path = this.objectPath(kind, id);
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw metadataOpenError(err, kind, id, path);
    }
    try {
      const { size } = await fh.stat();
      checkMetadataSize(size, kind, id, path);
      const bytes = new Uint8Array(size);
      const { bytesRead } = await fh.read(bytes, 0, size, 0);
      return checkedMetadata(bytes.subarray(0, bytesRead), kind, id, path);
    } finally {
      await fh.close();
    }
  }

  /**
   * readMetadataBytes in synchronous calls: a walk of a whole tree's metadata (an applied delta's
   * completeness check, 1,278 directories on the corpus pair) took 0.54-0.70 s through the thread
   * pool and 0.14-0.19 s this way (under Bun). @throws as readMetadataBytes
   */
  readMetadataBytesSync(kind: Exclude<ObjectKind, 'file'>, id: ObjectId): Uint8Array {
    const path = this.objectPath(kind, id);
    let fd;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw metadataOpenError(err, kind, id, path);
    }
    try {
      const { size } = fstatSync(fd);
      checkMetadataSize(size, kind, id, path);
      const bytes = new Uint8Array(size);
      return checkedMetadata(bytes.subarray(0, readSync(fd, bytes, 0, size, 0)), kind, id, path);
    } finally {
      closeSync(fd);
    }
  }

  private async decodeMetadata<T>(kind: Exclude<ObjectKind, 'file'>, id: ObjectId, decode: (b: Uint8Array) => T): Promise<T> {
    return decodeMetadataBytes(await this.readMetadataBytes(kind, id), kind, id, decode);
  }

  readCommit(id: ObjectId): Promise<Commit> {
    return this.decodeMetadata('commit', id, decodeCommit);
  }
  readDirTree(id: ObjectId): Promise<DirTree> {
    return this.decodeMetadata('dirtree', id, decodeDirTree);
  }
  readDirMeta(id: ObjectId): Promise<DirMeta> {
    return this.decodeMetadata('dirmeta', id, decodeDirMeta);
  }
  /** readDirTree in synchronous calls (readMetadataBytesSync). */
  readDirTreeSync(id: ObjectId): DirTree {
    return decodeMetadataBytes(this.readMetadataBytesSync('dirtree', id), 'dirtree', id, decodeDirTree);
  }
  /** readDirMeta in synchronous calls (readMetadataBytesSync). */
  readDirMetaSync(id: ObjectId): DirMeta {
    return decodeMetadataBytes(this.readMetadataBytesSync('dirmeta', id), 'dirmeta', id, decodeDirMeta);
  }

  /**
   * Opens a file object: its stored header and content. The content is NOT verified here;
   * callers that need the id checked hash header + content (fsck, pull-local, checkout --verify).
   * @throws OBJECT_MISSING, OBJECT_CORRUPT
   */
  async readFile(id: ObjectId): Promise<StoredFile> {
    const path = this.objectPath('file', id);
    try {
      if (this.mode === 'archive') return await this.readArchiveFile(id, path);
      const header = await this.readBareHeader(id, path);
      return { header, content: () => (header.type === 'reg' ? lazyStream(() => openReadStream(path)) : emptyStream()) };
    } catch (err) {
      throw fileObjectError(err, id, path) ?? err;
    }
  }

  /**
   * A regular file object's header and whole content, read in one piece: for the delta generator,
   * which holds each new file and its source whole anyway. An archive object is read and inflated
   * in one synchronous call each: 7x faster under Bun than readFile's stream of 16 KiB chunks
   * (222 MB of the corpus's objects in 0.63 s against 4.6 s).
   * The content must be exactly the header's size and the DEFLATE stream must end at the end of
   * the file, as readFile's. Not verified against the id (as readFile).
   * @throws OBJECT_MISSING, OBJECT_CORRUPT (also when the object is not a regular file)
   */
  async readFileWhole(id: ObjectId): Promise<{ header: FileHeader & { type: 'reg' }; content: Buffer }> {
    const path = this.objectPath('file', id);
    try {
      if (this.mode === 'archive') {
        // Synchronous, as the inflate: a read on the thread pool waited there behind the
        // generator's part compressions (22 s of the corpus delta's generation, for 0.6 s of reading).
        return inflateArchiveObject(readFileSync(path));
      }
      const { header } = await this.readFile(id);
      if (header.type !== 'reg') throw new ObjectFormatError(`a ${header.type} has no content to read`);
      const content = await readFile(path).catch((err) => Promise.reject(fromSystemError(err, 'read', path)));
      if (content.length !== header.size) throw new ObjectFormatError(`has ${content.length} bytes, its header says ${header.size}`);
      return { header, content };
    } catch (err) {
      throw fileObjectError(err, id, path) ?? fromSystemError(err, 'read', path);
    }
  }

  /**
   * A bare object's header: from the object file's own metadata, except what a sidecar holds:
   * bare-user keeps a .filemeta sidecar (the whole header) for objects whose owner, mode or
   * xattrs the file itself cannot carry; bare keeps a .xattrs sidecar for objects with xattrs.
   */
  private async readBareHeader(id: ObjectId, path: string): Promise<FileHeader> {
    const st = await lstat(path);
    if (this.mode === 'bare-user') {
      const bytes = await readFile(this.objectPath('filemeta', id)).catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
      if (bytes !== null) {
        const header = decodeFileHeader(bytes);
        const type = st.isFile() ? 'reg' : st.isSymbolicLink() ? 'lnk' : st.isFIFO() ? 'fifo' : 'other';
        if (type !== header.type) throw new ObjectFormatError(`object is a ${type} but its header says ${header.type}`);
        return header;
      }
    }
    const xattrBytes = this.mode === 'bare' ? await readFile(this.objectPath('xattrs', id)).catch(() => null) : null;
    const xattrs = xattrBytes ? decodeXattrList(xattrBytes) : [];
    const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, xattrs };
    if (st.isFile()) return { type: 'reg', ...base, size: st.size };
    if (st.isSymbolicLink()) return { type: 'lnk', ...base, mode: 0o777, target: Uint8Array.from(await readlink(path, { encoding: 'buffer' })) };
    if (st.isFIFO()) return { type: 'fifo', ...base };
    throw new ObjectFormatError('object is not a regular file, symlink or fifo');
  }

  // .filez: u32 big-endian header length ‖ canonical CBOR file header ‖ raw DEFLATE (RFC 1951) of the content.
  private async readArchiveFile(id: ObjectId, path: string): Promise<StoredFile> {
    // The header is read with synchronous calls: a few microseconds each, where a round trip
    // through the thread pool per call made the delta generator's planning (two trees' headers)
    // take 5 s on the corpus pair, and waited behind its compressions.
    const fd = openSync(path, 'r');
    let header: FileHeader;
    let headerLen: number;
    try {
      const lenBuf = Buffer.alloc(4);
      headerLen = archiveHeaderLength(lenBuf.subarray(0, readSync(fd, lenBuf, 0, 4, 0)));
      const hb = Buffer.alloc(headerLen);
      if (readSync(fd, hb, 0, headerLen, 4) !== headerLen) throw new ObjectFormatError(TRUNCATED_HEADER);
      header = decodeFileHeader(Uint8Array.from(hb));
      // A symlink or FIFO has no content: nothing may follow its header.
      if (header.type !== 'reg' && fstatSync(fd).size !== 4 + headerLen) throw new ObjectFormatError('bytes follow the header of an object that has no content');
    } finally {
      closeSync(fd);
    }
    return {
      header,
      content: () => (header.type === 'reg' ? inflateExact(path, 4 + headerLen) : emptyStream()),
    };
  }

  async readSignatures(commitId: ObjectId): Promise<Uint8Array | null> {
    try {
      return await readFile(this.objectPath('sig', commitId));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fromSystemError(err, 'read signatures', this.objectPath('sig', commitId));
    }
  }

  // ---- refs ----------------------------------------------------------------

  refPath(branch: string): string {
    if (!isValidBranch(branch)) throw new LarchError('INVALID_INPUT', `'${quash(branch)}' is not a valid branch name`, { hint: 'use letters, digits, . _ - and / between parts', data: { branch } });
    return join(this.path, 'refs', 'heads', branch);
  }

  async readRef(branch: string): Promise<ObjectId | null> {
    const text = await readFile(this.refPath(branch), 'utf8').catch(() => null);
    if (text === null) return null;
    const id = text.trim();
    if (!ID_RE.test(id)) throw new LarchError('REPO_CORRUPT', `ref '${branch}' does not hold a commit id`, { data: { branch } });
    return id;
  }

  /** Moves a ref atomically (or deletes it with null). */
  async writeRef(branch: string, id: ObjectId | null): Promise<void> {
    const path = this.refPath(branch);
    if (id === null) {
      await rm(path, { force: true });
      await fsyncPath(join(path, '..'));
      return;
    }
    await mkdir(join(path, '..'), { recursive: true });
    await writeFileAtomic(path, id + '\n');
  }

  async listRefs(): Promise<{ branch: string; commit: ObjectId }[]> {
    const out: { branch: string; commit: ObjectId }[] = [];
    const base = join(this.path, 'refs', 'heads');
    const walk = async (dir: string, prefix: string) => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (e.name.startsWith('.tmp-')) continue;
        const name = prefix ? `${prefix}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(join(dir, e.name), name);
        else {
          const commit = await this.readRef(name).catch(() => null);
          if (commit) out.push({ branch: name, commit });
        }
      }
    };
    await walk(base, '');
    return out.sort((a, b) => a.branch.localeCompare(b.branch));
  }

  /**
   * Resolves a revision: a full id, a unique id prefix (at least 4 hex digits) of a stored
   * commit, or a branch, each optionally followed by ^ (parent), repeatable.
   * @throws NOT_FOUND
   */
  async resolveRev(rev: string): Promise<ObjectId> {
    const m = /^(.*?)(\^*)$/.exec(rev)!;
    let id = await this.resolveBase(m[1]);
    for (let i = 0; i < m[2].length; i++) {
      const parent = (await this.readCommit(id)).parent;
      if (parent === null) throw new LarchError('NOT_FOUND', `commit ${id} has no parent (from '${quash(rev)}')`, { hint: `'larch log --repo ${this.path} ${quash(rev)}' shows the history there is`, data: { rev, commit: id } });
      id = parent;
    }
    return id;
  }

  private async resolveBase(rev: string): Promise<ObjectId> {
    if (ID_RE.test(rev)) {
      if (!(await this.hasObject('commit', rev))) throw new LarchError('NOT_FOUND', `commit ${rev} is not in repo '${this.path}'`, { hint: `'larch refs --repo ${this.path}' and 'larch log --repo ${this.path} BRANCH' list what exists`, data: { rev, repo: this.path } });
      return rev;
    }
    if (isValidBranch(rev)) {
      const id = await this.readRef(rev);
      if (id) return id;
    }
    if (/^[0-9a-f]{4,63}$/.test(rev)) {
      const names = await readdir(join(this.path, 'objects', rev.slice(0, 2))).catch(() => []);
      const hits = names.filter((n) => n.endsWith('.commit') && n.startsWith(rev.slice(2))).map((n) => rev.slice(0, 2) + n.slice(0, 62));
      if (hits.length === 1) return hits[0];
      if (hits.length > 1) throw new LarchError('NOT_FOUND', `'${rev}' matches ${hits.length} commits; give more digits`, { hint: 'give more digits of the commit id, or a branch name', data: { rev, matches: hits.length } });
    }
    throw new LarchError('NOT_FOUND', `no branch or commit '${quash(rev)}' in repo '${this.path}'`, { hint: `'larch refs --repo ${this.path}' and 'larch log --repo ${this.path} BRANCH' list what exists`, data: { rev, repo: this.path } });
  }

  /** Takes the writer lock. @throws LOCKED */
  lock(timeoutMs?: number): Promise<Lock> {
    return acquireLock(join(this.path, 'lock'), timeoutMs);
  }

  /** A fresh staging directory under tmp/, named with our pid so prune can tell leftovers. */
  async makeStagingDir(): Promise<string> {
    const dir = join(this.path, 'tmp', `staging-${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }
}

/** A metadata object that cannot be opened, as readMetadataBytes reports it. */
function metadataOpenError(err: unknown, kind: ObjectKind, id: ObjectId, path: string): unknown {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new LarchError('OBJECT_MISSING', `${kind} ${id} is missing`, { data: { kind, id, path } });
  return fromSystemError(err, `read ${kind}`, path);
}

/** @throws OBJECT_CORRUPT for a metadata object over MAX_METADATA_BYTES */
function checkMetadataSize(size: number, kind: ObjectKind, id: ObjectId, path: string): void {
  if (size > MAX_METADATA_BYTES) throw new LarchError('OBJECT_CORRUPT', `${kind} ${id} is ${size} bytes, over the ${MAX_METADATA_BYTES}-byte limit`, { data: { kind, id, path } });
}

/** The bytes read, when they hash to the object's id. @throws OBJECT_CORRUPT */
function checkedMetadata(bytes: Uint8Array, kind: ObjectKind, id: ObjectId, path: string): Uint8Array {
  const actual = sha256(bytes);
  if (actual !== id) throw new LarchError('OBJECT_CORRUPT', `${kind} ${id}: checksum mismatch: expected ${id}, got ${actual}`, { data: { kind, id, path, actual } });
  return bytes;
}

/** Decodes a checked metadata object. @throws OBJECT_CORRUPT when it does not parse */
function decodeMetadataBytes<T>(bytes: Uint8Array, kind: ObjectKind, id: ObjectId, decode: (b: Uint8Array) => T): T {
  try {
    return decode(bytes);
  } catch (err) {
    if (err instanceof ObjectFormatError) throw new LarchError('OBJECT_CORRUPT', `${kind} ${id}: ${err.message}`, { data: { kind, id } });
    throw err;
  }
}

async function* emptyStream(): AsyncIterable<Uint8Array> {}

const TRUNCATED_HEADER = 'truncated inside its header';

/** A file object's missing or malformed file as the error readers report; null for any other error. */
function fileObjectError(err: unknown, id: ObjectId, path: string): LarchError | null {
  if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') return new LarchError('OBJECT_MISSING', `file ${id} is missing`, { data: { kind: 'file', id, path } });
  if (err instanceof ObjectFormatError) return new LarchError('OBJECT_CORRUPT', `file ${id}: ${err.message}`, { data: { kind: 'file', id, path } });
  return null;
}

/**
 * A whole .filez object: its header and content, inflated in one call. The inflate stops at the
 * header's size (maxOutputLength), so a stream longer than its header is not inflated to the end.
 * @throws ObjectFormatError: a cut or oversized header, not a regular file, a damaged stream,
 * bytes after it, a content of another size than the header's
 */
function inflateArchiveObject(bytes: Buffer): { header: FileHeader & { type: 'reg' }; content: Buffer } {
  const start = 4 + archiveHeaderLength(bytes);
  if (bytes.length < start) throw new ObjectFormatError(TRUNCATED_HEADER);
  const header = decodeFileHeader(Uint8Array.from(bytes.subarray(4, start)));
  if (header.type !== 'reg') throw new ObjectFormatError(`a ${header.type} has no content to read`);
  let result: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    result = inflateRawSync(bytes.subarray(start), { info: true, maxOutputLength: Math.max(1, header.size) }) as unknown as typeof result;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new ObjectFormatError(`its content is longer than its header's ${header.size} bytes`);
    throw new ObjectFormatError(`compressed content is damaged: ${(err as Error).message}`);
  }
  const trailing = bytes.length - start - result.engine.bytesWritten;
  if (trailing > 0) throw new ObjectFormatError(`${trailing} bytes follow the end of the compressed content`);
  if (result.buffer.length !== header.size) throw new ObjectFormatError(`has ${result.buffer.length} bytes, its header says ${header.size}`);
  return { header, content: result.buffer };
}

/** The header length a .filez object starts with (u32 big-endian), from its first 4 bytes. @throws ObjectFormatError */
function archiveHeaderLength(first: Uint8Array): number {
  if (first.length < 4) throw new ObjectFormatError('truncated before its header');
  const length = Buffer.from(first.buffer, first.byteOffset, 4).readUInt32BE(0);
  if (length > MAX_FILE_HEADER_BYTES) throw new ObjectFormatError(`header length ${length} is over the 1 MiB limit`);
  return length;
}

/**
 * Inflates the raw DEFLATE stream that starts at `start` and must end exactly at the end of
 * the file: trailing bytes make the object corrupt. An error on either side destroys both
 * streams, so the file handle is always closed.
 */
async function* inflateExact(path: string, start: number): AsyncIterable<Uint8Array> {
  const source = await openReadStream(path, start);
  const inflate = createInflateRaw();
  pipeline(source, inflate, () => {});
  try {
    yield* inflate;
  } catch (err) {
    const code = String((err as NodeJS.ErrnoException).code ?? '');
    if (code.startsWith('Z_') || code.startsWith('ERR_ZLIB')) throw new LarchError('OBJECT_CORRUPT', `'${path}': compressed content is damaged: ${(err as Error).message}`, { data: { path } });
    throw err;
  }
  const { size } = await stat(path);
  if (inflate.bytesWritten !== size - start) {
    throw new LarchError('OBJECT_CORRUPT', `'${path}': ${size - start - inflate.bytesWritten} bytes follow the end of the compressed content`, { data: { path } });
  }
}

/** Opens the stream only when iteration starts, so an unread content() leaks no file handle. */
async function* lazyStream(make: () => Promise<AsyncIterable<Uint8Array>>): AsyncIterable<Uint8Array> {
  yield* await make();
}
