/**
 * The object model: file headers, dirtrees, dirmetas and commits, their canonical
 * encodings and validation. Pure: bytes and values in and out. See docs/formats.md.
 */
import { type CborValue, compareBytes, decodeCanonical, encodeCanonical, mapGet } from './cbor.ts';
import { sha256 } from '../_hash.ts';

/** A SHA-256 object id as 64 lowercase hex characters. */
export type ObjectId = string;
export type ObjectKind = 'file' | 'dirtree' | 'dirmeta' | 'commit';

export const ID_RE = /^[0-9a-f]{64}$/;
/** Metadata objects larger than this are refused before they are read (as OSTREE_MAX_METADATA_SIZE). */
export const MAX_METADATA_BYTES = 64 * 1024 * 1024;
/** A file header (with its xattrs) larger than this is refused. */
export const MAX_FILE_HEADER_BYTES = 1024 * 1024;
const MAX_NAME_BYTES = 255;
const MAX_TARGET_BYTES = 4095;

export type Xattrs = [name: Uint8Array, value: Uint8Array][];

/** What a file object is apart from its content: part of its identity. */
export type FileHeader =
  | { type: 'reg'; mode: number; uid: number; gid: number; size: number; xattrs: Xattrs }
  | { type: 'lnk'; mode: number; uid: number; gid: number; target: Uint8Array; xattrs: Xattrs }
  | { type: 'fifo'; mode: number; uid: number; gid: number; xattrs: Xattrs };

export interface DirMeta {
  mode: number;
  uid: number;
  gid: number;
  xattrs: Xattrs;
}

export interface DirTreeFile {
  name: Uint8Array;
  file: ObjectId;
  /**
   * The file's content length in bytes (0 for a symlink or FIFO), in a format-2 dirtree;
   * undefined in a format-1 one. Signed through the commit, so a pull can stop at it.
   */
  size?: number;
}
export interface DirTreeDir {
  name: Uint8Array;
  tree: ObjectId;
  meta: ObjectId;
}
export interface DirTree {
  files: DirTreeFile[];
  dirs: DirTreeDir[];
}

export interface Commit {
  root: { tree: ObjectId; meta: ObjectId };
  parent: ObjectId | null;
  /** Seconds since the Unix epoch, UTC. */
  timestamp: number;
  version: string;
  subject: string;
  body: string;
  metadata: Map<string, CborValue>;
}

export const idToBytes = (id: ObjectId): Uint8Array => Uint8Array.from(Buffer.from(id, 'hex'));
export const bytesToId = (bytes: Uint8Array): ObjectId => Buffer.from(bytes).toString('hex');

/** Thrown by decoders for malformed objects; callers add which object it was. */
export class ObjectFormatError extends Error {
  override name = 'ObjectFormatError';
}

const fail = (message: string): never => {
  throw new ObjectFormatError(message);
};

function sortXattrs(xattrs: Xattrs): Xattrs {
  return [...xattrs].sort((a, b) => compareBytes(a[0], b[0]));
}

function encodeXattrs(xattrs: Xattrs): CborValue {
  return sortXattrs(xattrs).map(([n, v]) => [n, v]);
}

function decodeXattrs(value: CborValue | undefined): Xattrs {
  if (!Array.isArray(value)) return fail('xattrs is not an array');
  const out: Xattrs = [];
  for (const item of value) {
    if (!Array.isArray(item) || item.length !== 2 || !(item[0] instanceof Uint8Array) || !(item[1] instanceof Uint8Array)) fail('xattr entry is not [name, value]');
    const [name, val] = item as [Uint8Array, Uint8Array];
    if (name.length === 0 || name.includes(0)) fail('xattr name is empty or has a NUL byte');
    if (out.length > 0 && compareBytes(out[out.length - 1][0], name) >= 0) fail('xattrs are not sorted or repeat a name');
    out.push([name, val]);
  }
  return out;
}

function uint(value: CborValue | undefined, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) return fail(`${what} is not an integer in 0..${max}`);
  return value;
}

function text(value: CborValue | undefined, what: string): string {
  if (typeof value !== 'string') return fail(`${what} is not a text string`);
  return value;
}

function idField(value: CborValue | undefined, what: string): ObjectId {
  if (!(value instanceof Uint8Array) || value.length !== 32) return fail(`${what} is not a 32-byte id`);
  return bytesToId(value);
}

function checkKeys(map: CborValue, keys: string[], what: string): Map<CborValue, CborValue> {
  if (!(map instanceof Map)) return fail(`${what} is not a CBOR map`);
  const have = [...map.keys()].map(String).sort().join(',');
  const want = [...keys].sort().join(',');
  if (have !== want) fail(`${what} has keys {${have}}, expected {${want}}`);
  return map;
}

function decodeStrict(bytes: Uint8Array, what: string): CborValue {
  const value = decodeCanonical(bytes);
  if (value === undefined) fail(`${what} is not canonical CBOR`);
  return value as CborValue;
}

// ---- file header -----------------------------------------------------------
// CBOR map: {"type": "reg"|"lnk"|"fifo", "mode": uint (permission bits 0..0o7777),
// "uid": uint, "gid": uint, "xattrs": [[bstr name, bstr value]...] sorted by name,
// and "size": uint (reg) or "target": bstr (lnk)}. The file's id is
// SHA-256(header bytes ‖ content bytes); content is empty for lnk and fifo.

const isUint = (n: number, max: number) => Number.isSafeInteger(n) && n >= 0 && n <= max;

/** Why a directory's (or any entry's) mode, owner and xattrs cannot be stored, or null. */
export function dirMetaProblem(m: DirMeta): string | null {
  if (!isUint(m.mode, 0o7777)) return `mode ${m.mode} is not in 0..0o7777`;
  if (!isUint(m.uid, 0xffffffff) || !isUint(m.gid, 0xffffffff)) return 'uid or gid is not in 0..2^32-1';
  for (const [name] of m.xattrs) if (name.length === 0 || name.includes(0)) return 'an xattr name is empty or has a NUL byte';
  return null;
}

/**
 * Why a file header cannot be stored, or null when it can. Writers check this so that nothing
 * is ever written that a reader would refuse (the decoder applies the same rules).
 */
export function fileHeaderProblem(h: FileHeader): string | null {
  const common = dirMetaProblem(h);
  if (common) return common;
  if (h.type === 'reg' && !isUint(h.size, Number.MAX_SAFE_INTEGER)) return `size ${h.size} is not a valid size`;
  if (h.type === 'lnk') {
    if (h.mode !== 0o777) return 'a symlink mode must be 0777';
    if (h.target.length === 0 || h.target.length > MAX_TARGET_BYTES || h.target.includes(0)) return `symlink target is empty, longer than ${MAX_TARGET_BYTES} bytes or has a NUL byte`;
  }
  return null;
}

export function encodeFileHeader(h: FileHeader): Uint8Array {
  const base = { type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, xattrs: encodeXattrs(h.xattrs) };
  if (h.type === 'reg') return encodeCanonical({ ...base, size: h.size });
  if (h.type === 'lnk') return encodeCanonical({ ...base, target: h.target });
  return encodeCanonical(base);
}

export function decodeFileHeader(bytes: Uint8Array): FileHeader {
  if (bytes.length > MAX_FILE_HEADER_BYTES) fail('file header is larger than 1 MiB');
  const map = decodeStrict(bytes, 'file header');
  const type = mapGet(map, 'type');
  const common = (extra: string[]) => {
    const m = checkKeys(map, ['type', 'mode', 'uid', 'gid', 'xattrs', ...extra], 'file header');
    return {
      mode: uint(m.get('mode'), 'mode', 0o7777),
      uid: uint(m.get('uid'), 'uid', 0xffffffff),
      gid: uint(m.get('gid'), 'gid', 0xffffffff),
      xattrs: decodeXattrs(m.get('xattrs')),
      m,
    };
  };
  if (type === 'reg') {
    const { m, ...rest } = common(['size']);
    return { type, ...rest, size: uint(m.get('size'), 'size') };
  }
  if (type === 'lnk') {
    const { m, ...rest } = common(['target']);
    const target = m.get('target');
    if (!(target instanceof Uint8Array) || target.length === 0 || target.length > MAX_TARGET_BYTES || target.includes(0)) fail('symlink target is empty, too long or has a NUL byte');
    if (rest.mode !== 0o777) fail('a symlink mode must be 0777');
    return { type, ...rest, target: target as Uint8Array };
  }
  if (type === 'fifo') {
    const { m: _m, ...rest } = common([]);
    return { type, ...rest };
  }
  return fail(`file type ${JSON.stringify(type)} is not reg, lnk or fifo`);
}

/** A bare repo's `.xattrs` sidecar: canonical CBOR of the sorted [name, value] list. */
export function encodeXattrList(xattrs: Xattrs): Uint8Array {
  return encodeCanonical(encodeXattrs(xattrs));
}

export function decodeXattrList(bytes: Uint8Array): Xattrs {
  return decodeXattrs(decodeStrict(bytes, 'xattrs sidecar'));
}

// ---- dirmeta ---------------------------------------------------------------
// CBOR map {"mode": uint (permission bits), "uid": uint, "gid": uint, "xattrs": [...]}.

export function encodeDirMeta(m: DirMeta): Uint8Array {
  return encodeCanonical({ mode: m.mode, uid: m.uid, gid: m.gid, xattrs: encodeXattrs(m.xattrs) });
}

export function decodeDirMeta(bytes: Uint8Array): DirMeta {
  const m = checkKeys(decodeStrict(bytes, 'dirmeta'), ['mode', 'uid', 'gid', 'xattrs'], 'dirmeta');
  return {
    mode: uint(m.get('mode'), 'mode', 0o7777),
    uid: uint(m.get('uid'), 'uid', 0xffffffff),
    gid: uint(m.get('gid'), 'gid', 0xffffffff),
    xattrs: decodeXattrs(m.get('xattrs')),
  };
}

// ---- dirtree ---------------------------------------------------------------
// CBOR map {"files": [[bstr name, bstr(32) file id]...], "dirs": [[bstr name,
// bstr(32) dirtree id, bstr(32) dirmeta id]...]}, each list sorted by name bytes;
// a name appears at most once across both lists. Format 2 adds each file's content
// length: [bstr name, bstr(32) file id, uint size]. One dirtree uses one shape.

/** The dirtree formats: 1 lists files as [name, id], 2 as [name, id, size]. */
export type DirTreeFormat = 1 | 2;
export const DIRTREE_FORMATS: DirTreeFormat[] = [1, 2];

/** Why a name cannot be a directory entry, or null when it can. */
export function badNameReason(name: Uint8Array): string | null {
  if (name.length === 0) return 'empty name';
  if (name.length > MAX_NAME_BYTES) return 'name longer than 255 bytes';
  if (name.length === 1 && name[0] === 0x2e) return "name '.'";
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return "name '..'";
  if (name.includes(0x2f)) return "name contains '/'";
  if (name.includes(0)) return 'name contains a NUL byte';
  return null;
}

export function encodeDirTree(t: DirTree): Uint8Array {
  const files = [...t.files].sort((a, b) => compareBytes(a.name, b.name));
  const dirs = [...t.dirs].sort((a, b) => compareBytes(a.name, b.name));
  const sized = files.filter((f) => f.size !== undefined).length;
  // Writers never mix the shapes, since every reader refuses a dirtree that does.
  if (sized !== 0 && sized !== files.length) throw new Error('encodeDirTree: some file entries have a size and some do not');
  return encodeCanonical({
    files: files.map((f) => (f.size === undefined ? [f.name, idToBytes(f.file)] : [f.name, idToBytes(f.file), f.size])),
    dirs: dirs.map((d) => [d.name, idToBytes(d.tree), idToBytes(d.meta)]),
  });
}

/**
 * Decodes a dirtree. Entry names are NOT validated here so that fsck can report every
 * bad name; use validateDirTree before acting on one.
 */
export function decodeDirTree(bytes: Uint8Array): DirTree {
  const m = checkKeys(decodeStrict(bytes, 'dirtree'), ['files', 'dirs'], 'dirtree');
  const files = m.get('files');
  const dirs = m.get('dirs');
  if (!Array.isArray(files) || !Array.isArray(dirs)) return fail('dirtree files/dirs is not an array');
  const shape = files.length > 0 && Array.isArray(files[0]) ? files[0].length : 2;
  return {
    files: files.map((e) => {
      if (!Array.isArray(e) || (e.length !== 2 && e.length !== 3) || !(e[0] instanceof Uint8Array)) return fail('dirtree file entry is not [name, id] or [name, id, size]');
      if (e.length !== shape) return fail('dirtree mixes [name, id] and [name, id, size] file entries');
      const entry: DirTreeFile = { name: e[0] as Uint8Array, file: idField(e[1], 'file id') };
      if (e.length === 3) entry.size = uint(e[2], 'file size');
      return entry;
    }),
    dirs: dirs.map((e) => {
      if (!Array.isArray(e) || e.length !== 3 || !(e[0] instanceof Uint8Array)) return fail('dirtree dir entry is not [name, tree, meta]');
      return { name: e[0] as Uint8Array, tree: idField(e[1], 'dirtree id'), meta: idField(e[2], 'dirmeta id') };
    }),
  };
}

/** Lists what is wrong with a dirtree's names: bad names, unsorted or repeated entries. */
export function validateDirTree(t: DirTree): { name: Uint8Array; problem: string }[] {
  const problems: { name: Uint8Array; problem: string }[] = [];
  for (const list of [t.files, t.dirs]) {
    for (let i = 0; i < list.length; i++) {
      const reason = badNameReason(list[i].name);
      if (reason) problems.push({ name: list[i].name, problem: reason });
      if (i > 0 && compareBytes(list[i - 1].name, list[i].name) >= 0) problems.push({ name: list[i].name, problem: 'entries not sorted or repeated' });
    }
  }
  const fileNames = new Set(t.files.map((f) => Buffer.from(f.name).toString('latin1')));
  for (const d of t.dirs) {
    if (fileNames.has(Buffer.from(d.name).toString('latin1'))) problems.push({ name: d.name, problem: 'name is both a file and a directory' });
  }
  return problems;
}

// ---- commit ----------------------------------------------------------------
// CBOR map {"root": [bstr(32) dirtree, bstr(32) dirmeta], "parent": bstr(32) | null,
// "timestamp": uint seconds, "version": tstr, "subject": tstr, "body": tstr,
// "metadata": map of tstr -> any canonical value}.

export function encodeCommit(c: Commit): Uint8Array {
  return encodeCanonical({
    root: [idToBytes(c.root.tree), idToBytes(c.root.meta)],
    parent: c.parent === null ? null : idToBytes(c.parent),
    timestamp: c.timestamp,
    version: c.version,
    subject: c.subject,
    body: c.body,
    metadata: c.metadata as Map<CborValue, CborValue>,
  });
}

export function decodeCommit(bytes: Uint8Array): Commit {
  const m = checkKeys(decodeStrict(bytes, 'commit'), ['root', 'parent', 'timestamp', 'version', 'subject', 'body', 'metadata'], 'commit');
  const root = m.get('root');
  if (!Array.isArray(root) || root.length !== 2) fail('commit root is not [dirtree, dirmeta]');
  const parent = m.get('parent');
  const metadata = m.get('metadata');
  if (!(metadata instanceof Map) || [...metadata.keys()].some((k) => typeof k !== 'string')) fail('commit metadata is not a map with text keys');
  return {
    root: { tree: idField((root as CborValue[])[0], 'root dirtree'), meta: idField((root as CborValue[])[1], 'root dirmeta') },
    parent: parent === null ? null : idField(parent, 'parent'),
    timestamp: uint(m.get('timestamp'), 'timestamp'),
    version: text(m.get('version'), 'version'),
    subject: text(m.get('subject'), 'subject'),
    body: text(m.get('body'), 'body'),
    metadata: metadata as Map<string, CborValue>,
  };
}

/** The id of a metadata object: SHA-256 of its canonical bytes. */
export function metadataId(bytes: Uint8Array): ObjectId {
  return sha256(bytes);
}

/** The file extension an object kind has in a repo (see docs/formats.md). */
export function objectExtension(kind: ObjectKind, mode: 'bare' | 'bare-user' | 'archive'): string {
  if (kind === 'file') return mode === 'archive' ? 'filez' : 'file';
  return kind;
}
