/**
 * Pure: a deterministic tar encoder (POSIX ustar, with pax extended headers where ustar cannot
 * say it), for the layer and the oci-archive export-oci writes (docs/oci.md "Export"). Our own
 * because tar-stream's packer writes pax values as UTF-8 strings, which would corrupt a binary
 * xattr such as security.capability; here names, link targets and xattrs are raw bytes in and
 * raw bytes out. The same entries always give the same bytes: no user or group names, one given
 * mtime, pax headers named after the entry (GNU tar puts its pid there).
 */
import type { Xattrs } from '../store/object.ts';

export const BLOCK = 512;
/** The end of an archive: two zero blocks (no record padding, as Go's archive/tar). */
export const TAR_END = new Uint8Array(2 * BLOCK);

export interface TarEntryHeader {
  /** The path as raw bytes, without a leading '/'; a directory's ends in '/'. */
  path: Uint8Array;
  type: 'file' | 'hardlink' | 'symlink' | 'directory' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  /** Content bytes that follow (regular files only). */
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** A symlink's target, or the path a hard link names. */
  linkName?: Uint8Array;
  xattrs?: Xattrs;
}

const TYPEFLAG: Record<TarEntryHeader['type'], number> = { file: 0x30, hardlink: 0x31, symlink: 0x32, directory: 0x35, fifo: 0x36 };

/** The largest value an octal field of `width` bytes holds (width - 1 digits and a NUL). */
const maxOctal = (width: number) => 8 ** (width - 1) - 1;

function putOctal(block: Buffer, offset: number, width: number, value: number): void {
  block.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'latin1');
}

/** Splits a path into ustar's prefix (155) and name (100) at a '/', or null when it cannot. */
function splitUstar(path: Buffer): { prefix: Buffer; name: Buffer } | null {
  if (path.length <= 100) return { prefix: Buffer.alloc(0), name: path };
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== 0x2f) continue;
    // A directory's trailing '/' is part of the name, never the split.
    if (i === path.length - 1) continue;
    if (i <= 155 && path.length - i - 1 <= 100) return { prefix: path.subarray(0, i), name: path.subarray(i + 1) };
  }
  return null;
}

/** One pax record, "LEN KEY=VALUE\n", LEN counting its own digits. */
export function paxRecord(key: string | Uint8Array, value: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(' '), Buffer.from(key as Uint8Array), Buffer.from('='), Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function ustarBlock(h: { name: Buffer; prefix: Buffer; mode: number; uid: number; gid: number; size: number; mtime: number; typeflag: number; linkName: Buffer }): Buffer {
  const b = Buffer.alloc(BLOCK);
  h.name.copy(b, 0, 0, Math.min(h.name.length, 100));
  putOctal(b, 100, 8, h.mode);
  putOctal(b, 108, 8, h.uid);
  putOctal(b, 116, 8, h.gid);
  putOctal(b, 124, 12, h.size);
  putOctal(b, 136, 12, h.mtime);
  b.fill(0x20, 148, 156);
  b[156] = h.typeflag;
  h.linkName.copy(b, 157, 0, Math.min(h.linkName.length, 100));
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  putOctal(b, 329, 8, 0);
  putOctal(b, 337, 8, 0);
  h.prefix.copy(b, 345, 0, Math.min(h.prefix.length, 155));
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** The zero bytes that pad `size` bytes of content to a whole block. */
export const padding = (size: number) => new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK);

/**
 * The header blocks of one entry: a pax header first when a field does not fit ustar (a long or
 * non-ASCII path or target, a large id or size, xattrs), then the ustar header. The content (size
 * bytes) and its padding follow, written by the caller.
 */
export function encodeHeader(e: TarEntryHeader): Buffer {
  const path = Buffer.from(e.path);
  const link = Buffer.from(e.linkName ?? new Uint8Array(0));
  const records: Buffer[] = [];
  const ascii = (b: Buffer) => b.every((c) => c >= 0x20 && c < 0x7f);
  const split = ascii(path) ? splitUstar(path) : null;
  if (split === null) records.push(paxRecord('path', path));
  if (link.length > 100 || !ascii(link)) records.push(paxRecord('linkpath', link));
  if (e.uid > maxOctal(8)) records.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if (e.gid > maxOctal(8)) records.push(paxRecord('gid', Buffer.from(String(e.gid))));
  if (e.size > maxOctal(12)) records.push(paxRecord('size', Buffer.from(String(e.size))));
  for (const [name, value] of e.xattrs ?? []) records.push(paxRecord(Buffer.concat([Buffer.from('SCHILY.xattr.'), Buffer.from(name)]), value));
  const fields = {
    mode: e.mode & 0o7777,
    uid: Math.min(e.uid, maxOctal(8)),
    gid: Math.min(e.gid, maxOctal(8)),
    size: e.size > maxOctal(12) ? 0 : e.size,
    mtime: Math.min(e.mtime, maxOctal(12)),
    typeflag: TYPEFLAG[e.type],
    linkName: link.length > 100 || !ascii(link) ? Buffer.alloc(0) : link,
  };
  const main = ustarBlock({ ...fields, ...(split ?? { prefix: Buffer.alloc(0), name: fallbackName(path) }) });
  if (records.length === 0) return main;
  const pax = Buffer.concat(records);
  const paxHeader = ustarBlock({ name: Buffer.concat([Buffer.from('PaxHeaders/'), fallbackName(path)]).subarray(0, 100), prefix: Buffer.alloc(0), mode: 0o644, uid: 0, gid: 0, size: pax.length, mtime: fields.mtime, typeflag: 0x78, linkName: Buffer.alloc(0) });
  return Buffer.concat([paxHeader, pax, padding(pax.length), main]);
}

/** What a reader that ignores pax sees: the path's last component, ASCII-safe, at most 99 bytes. */
function fallbackName(path: Buffer): Buffer {
  const dir = path[path.length - 1] === 0x2f;
  const parts = path.toString('latin1').split('/').filter((p) => p !== '');
  const base = (parts[parts.length - 1] ?? '.').replace(/[^\x20-\x7e]/g, '_').slice(0, 98);
  return Buffer.from(dir ? `${base}/` : base, 'latin1');
}
