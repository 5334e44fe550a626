/**
 * Imports a tar archive (plain or gzip, read as a stream) into a transaction. Entries are
 * taken in order; hard links must name an earlier entry (as tar writes them). Names, link
 * targets and xattrs are raw bytes (tar-entries.ts).
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type * as tar from 'tar-stream';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { type MDir, addFile, ensureDir, newDir } from './mtree.ts';
import type { DirMeta, FileHeader, ObjectId } from './object.ts';
import { splitTarPath, tarEntries } from './tar-entries.ts';
import type { ImportOptions } from './import-dir.ts';
import type { Transaction } from './transaction.ts';

const DEFAULT_DIR: Omit<DirMeta, 'uid' | 'gid'> = { mode: 0o755, xattrs: [] };

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
  const parentOf = (parts: Buffer[], where: string): MDir => {
    let dir = root;
    for (const part of parts.slice(0, -1)) dir = ensureDir(dir, part, { ...DEFAULT_DIR, ...(opts.owner ?? { uid: 0, gid: 0 }) }, where);
    return dir;
  };

  for await (const entry of tarEntries(await openTar(tarPath), { where: `'${tarPath}'`, path: tarPath })) {
    const h = entry.header;
    const where = `${tarPath}: '${quash(entry.name.toString('utf8'), 200)}'`;
    const parts = splitTarPath(entry.name);
    const base = { mode: (h.mode ?? 0o644) & 0o7777, ...owner(h), xattrs: opts.xattrs ? entry.xattrs : [] };
    if (h.type === 'directory') {
      if (parts === 'root') Object.assign(root.meta, base);
      else {
        const dir = ensureDir(parentOf(parts, where), parts[parts.length - 1], base, where);
        Object.assign(dir.meta, base);
      }
      entry.skip();
      continue;
    }
    if (parts === 'root') throw new LarchError('INVALID_INPUT', `${where}: a non-directory entry names the root`, { data: { path: where } });
    const key = Buffer.concat(parts.flatMap((p) => [p, Buffer.from('/')])).toString('latin1');
    let id: ObjectId;
    let size = 0;
    if (h.type === 'file' || h.type === 'contiguous-file') {
      size = h.size ?? 0;
      id = await txn.writeFile({ type: 'reg', ...base, size: h.size ?? 0 }, { stream: entry.chunks(where) }, where);
    } else if (h.type === 'symlink' || h.type === 'link') {
      entry.skip();
      if (h.type === 'symlink') {
        id = await txn.writeFile({ type: 'lnk', ...base, mode: 0o777, target: Uint8Array.from(entry.linkName) } as FileHeader, undefined, where);
      } else {
        const target = splitTarPath(entry.linkName);
        const found = target === 'root' ? undefined : byPath.get(Buffer.concat(target.flatMap((p) => [p, Buffer.from('/')])).toString('latin1'));
        if (!found) throw new LarchError('INVALID_INPUT', `${where}: hard link to '${quash(entry.linkName.toString('utf8'))}', which is not an earlier file in the archive`, { data: { path: where, link_target: entry.linkName.toString('utf8') } });
        ({ id, size } = found);
      }
    } else if (h.type === 'fifo') {
      entry.skip();
      id = await txn.writeFile({ type: 'fifo', ...base }, undefined, where);
    } else {
      entry.skip();
      throw new LarchError('UNSUPPORTED_FILE_TYPE', `${where} is a ${h.type} entry, which a larch tree cannot hold`, { data: { path: where } });
    }
    byPath.set(key, { id, size });
    addFile(parentOf(parts, where), parts[parts.length - 1], id, size, where);
  }
  return root;
}
