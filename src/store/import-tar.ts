/**
 * Imports a tar archive (plain or gzip, read as a stream) into a transaction. Entries are
 * taken in order; hard links must name an earlier entry (as tar writes them). Names are taken
 * as raw bytes, from ustar/GNU headers or from pax records (GNU tar writes non-UTF-8 names
 * there as raw bytes, though POSIX says UTF-8).
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { type MDir, addFile, ensureDir, newDir } from './mtree.ts';
import type { DirMeta, FileHeader, ObjectId, Xattrs } from './object.ts';
import type { ImportOptions } from './import-dir.ts';
import type { Transaction } from './transaction.ts';

const DEFAULT_DIR: Omit<DirMeta, 'uid' | 'gid'> = { mode: 0o755, xattrs: [] };

/** Splits a tar path into components, refusing absolute escapes and '..'. */
export function splitTarPath(raw: Buffer): Buffer[] | 'root' {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= raw.length; i++) {
    if (i === raw.length || raw[i] === 0x2f) {
      const part = raw.subarray(start, i);
      start = i + 1;
      if (part.length === 0 || (part.length === 1 && part[0] === 0x2e)) continue;
      if (part.length === 2 && part[0] === 0x2e && part[1] === 0x2e) throw new LarchError('INVALID_INPUT', `tar entry '${quash(raw.toString('utf8'))}' has a '..' component`, { data: { reason: 'dotdot', path: quash(raw.toString('utf8')) } });
      parts.push(Buffer.from(part));
    }
  }
  return parts.length === 0 ? 'root' : parts;
}

/** pax records as raw bytes: "LEN KEY=VALUE\n" (POSIX pax, "pax Extended Header"). */
export function decodePaxRecords(buf: Uint8Array): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let rest = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  while (rest.length > 0) {
    const space = rest.indexOf(0x20);
    const len = space > 0 ? Number.parseInt(rest.subarray(0, space).toString('latin1'), 10) : NaN;
    if (!Number.isSafeInteger(len) || len <= space + 1 || len > rest.length) break;
    const record = rest.subarray(space + 1, len - 1);
    const eq = record.indexOf(0x3d);
    // Keys as latin1 (one char per byte) so xattr names that are not UTF-8 survive too.
    if (eq > 0) out.set(record.subarray(0, eq).toString('latin1'), Buffer.from(record.subarray(eq + 1)));
    rest = rest.subarray(len);
  }
  return out;
}

const RAW_PAX = Symbol('raw pax records');
type PaxWithRaw = Record<string, string> & { [RAW_PAX]?: Map<string, Buffer> };

/**
 * tar-stream decodes pax values as UTF-8, which loses names and xattr values that are not
 * UTF-8 (GNU tar writes them as raw bytes). This wraps the extractor's header decoding so each
 * entry's pax object also carries the records as raw bytes.
 */
function keepRawPax(extract: tar.Extract): void {
  const inner = extract as unknown as { _decodeLongHeader(buf: Buffer): void; _header: { type: string }; _pax: PaxWithRaw | null };
  const original = inner._decodeLongHeader.bind(inner);
  let globalRaw = new Map<string, Buffer>();
  inner._decodeLongHeader = (buf: Buffer) => {
    original(buf);
    if (inner._header.type === 'pax-global-header') globalRaw = decodePaxRecords(buf);
    if (inner._header.type === 'pax-header' && inner._pax) inner._pax[RAW_PAX] = new Map([...globalRaw, ...decodePaxRecords(buf)]);
  };
}

function paxXattrs(raw: Map<string, Buffer> | undefined): Xattrs {
  const out: Xattrs = [];
  for (const [k, v] of raw ?? []) {
    if (k.startsWith('SCHILY.xattr.')) out.push([Uint8Array.from(Buffer.from(k.slice(13), 'latin1')), Uint8Array.from(v)]);
  }
  return out;
}

/** An entry's bytes. @throws INVALID_INPUT when the archive ends or breaks inside the entry */
async function* entryChunks(entry: AsyncIterable<unknown>, tarPath: string, where: string): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of entry) yield chunk as Uint8Array;
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${where}: the archive ends or breaks inside this entry`, { data: { path: tarPath }, cause: err });
  }
}

async function openTar(path: string): Promise<Readable> {
  const fh = await open(path, 'r').catch((err) => {
    throw fromSystemError(err, 'read tar', path);
  });
  const magic = Buffer.alloc(2);
  await fh.read(magic, 0, 2, 0);
  await fh.close();
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (magic[0] !== 0x1f || magic[1] !== 0x8b) return file;
  // Destroying the gunzip stream (a malformed archive) must close the file too: piping alone left
  // one open descriptor per refused .tar.gz (found by fuzzing).
  const gunzip = createGunzip();
  gunzip.on('close', () => file.destroy());
  file.on('error', (err) => gunzip.destroy(err));
  return file.pipe(gunzip);
}

/** @throws INVALID_INPUT for a malformed archive or path, UNSUPPORTED_FILE_TYPE for devices */
export async function importTar(txn: Transaction, tarPath: string, opts: ImportOptions): Promise<MDir> {
  const owner = (h: tar.Header) => opts.owner ?? { uid: h.uid ?? 0, gid: h.gid ?? 0 };
  const root = newDir({ ...DEFAULT_DIR, ...(opts.owner ?? { uid: 0, gid: 0 }) });
  const byPath = new Map<string, { id: ObjectId; size: number }>();
  const extract = tar.extract({ filenameEncoding: "latin1" } as Parameters<typeof tar.extract>[0]);
  keepRawPax(extract);
  const input = await openTar(tarPath);
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);

  const parentOf = (parts: Buffer[], where: string): MDir => {
    let dir = root;
    for (const part of parts.slice(0, -1)) dir = ensureDir(dir, part, { ...DEFAULT_DIR, ...(opts.owner ?? { uid: 0, gid: 0 }) }, where);
    return dir;
  };

  try {
    for await (const entry of extract) {
      const h = entry.header;
      const raw = (h as { pax?: PaxWithRaw }).pax?.[RAW_PAX];
      const rawName = raw?.get('path') ?? Buffer.from(h.name, 'latin1');
      const where = `${tarPath}: '${quash(rawName.toString('utf8'), 200)}'`;
      const parts = splitTarPath(rawName);
      const base = { mode: (h.mode ?? 0o644) & 0o7777, ...owner(h), xattrs: opts.xattrs ? paxXattrs(raw) : [] };
      if (h.type === 'directory') {
        if (parts === 'root') Object.assign(root.meta, base);
        else {
          const dir = ensureDir(parentOf(parts, where), parts[parts.length - 1], base, where);
          Object.assign(dir.meta, base);
        }
        entry.resume();
        continue;
      }
      if (parts === 'root') throw new LarchError('INVALID_INPUT', `${where}: a non-directory entry names the root`, { data: { path: where } });
      const key = Buffer.concat(parts.flatMap((p) => [p, Buffer.from('/')])).toString('latin1');
      let id: ObjectId;
      let size = 0;
      if (h.type === 'file' || h.type === 'contiguous-file') {
        size = h.size ?? 0;
        // Read through its async iterator: node:stream pipeline() over the entry itself (a streamx
        // stream) never learnt that a truncated archive had failed it, and the import waited
        // forever (found by fuzzing).
        id = await txn.writeFile({ type: 'reg', ...base, size: h.size ?? 0 }, { stream: entryChunks(entry, tarPath, where) }, where);
      } else if (h.type === 'symlink' || h.type === 'link') {
        const rawLink = raw?.get('linkpath') ?? Buffer.from(h.linkname ?? '', 'latin1');
        entry.resume();
        if (h.type === 'symlink') {
          id = await txn.writeFile({ type: 'lnk', ...base, mode: 0o777, target: Uint8Array.from(rawLink) } as FileHeader, undefined, where);
        } else {
          const target = splitTarPath(rawLink);
          const found = target === 'root' ? undefined : byPath.get(Buffer.concat(target.flatMap((p) => [p, Buffer.from('/')])).toString('latin1'));
          if (!found) throw new LarchError('INVALID_INPUT', `${where}: hard link to '${quash(rawLink.toString('utf8'))}', which is not an earlier file in the archive`, { data: { path: where, link_target: rawLink.toString('utf8') } });
          ({ id, size } = found);
        }
      } else if (h.type === 'fifo') {
        entry.resume();
        id = await txn.writeFile({ type: 'fifo', ...base }, undefined, where);
      } else {
        entry.resume();
        throw new LarchError('UNSUPPORTED_FILE_TYPE', `${where} is a ${h.type} entry, which a larch tree cannot hold`, { data: { path: where } });
      }
      byPath.set(key, { id, size });
      addFile(parentOf(parts, where), parts[parts.length - 1], id, size, where);
    }
  } catch (err) {
    input.destroy();
    if (err instanceof LarchError) throw err;
    // Errors with an errno come from the filesystem (zlib's Z_* errors carry one too, but are
    // about the archive); the rest come from the tar parser.
    const code = String((err as NodeJS.ErrnoException).code ?? '');
    if ((err as NodeJS.ErrnoException).errno !== undefined && !code.startsWith('Z_')) throw fromSystemError(err, 'read tar', tarPath);
    throw new LarchError('INVALID_INPUT', `'${tarPath}' is not a readable tar archive: ${quash((err as Error).message, 200)}`, { data: { path: tarPath }, cause: err });
  }
  return root;
}
