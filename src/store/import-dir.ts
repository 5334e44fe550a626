/** Imports a directory on disk into a transaction as file objects and an MTree. */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { makePool } from '../_pool.ts';
import { type MDir, addFile, ensureDir, newDir } from './mtree.ts';
import type { FileHeader, Xattrs } from './object.ts';
import type { Transaction } from './transaction.ts';
import { readTreeXattrs } from './xattrs.ts';

export interface ImportOptions {
  /** Read xattrs (needs getfattr). */
  xattrs: boolean;
  /** Record every file and directory with this owner instead of the one on disk (as ostree --owner-uid/gid). */
  owner?: { uid: number; gid: number };
}

type Stats = Awaited<ReturnType<typeof lstat>>;

const SLASH = Buffer.from('/');
const join = (dir: Buffer, name: Buffer) => Buffer.concat([dir, SLASH, name]);
const show = (p: Buffer) => quash(p.toString('utf8'), 200);

/** @throws UNSUPPORTED_FILE_TYPE for device nodes and sockets, naming the path; NOT_FOUND, IO */
export async function importDirectory(txn: Transaction, root: string, opts: ImportOptions): Promise<MDir> {
  const rootBuf = Buffer.from(root.replace(/\/+$/, '') || '/');
  const xattrMap = opts.xattrs ? await readTreeXattrs(rootBuf.toString('utf8')) : new Map<string, Xattrs>();
  const xattrsOf = (p: Buffer): Xattrs => xattrMap.get(p.toString('latin1')) ?? [];
  const owner = (st: Stats) => opts.owner ?? { uid: Number(st.uid), gid: Number(st.gid) };
  const pool = makePool(8);

  const statOf = async (p: Buffer) => {
    try {
      return await lstat(p);
    } catch (err) {
      throw fromSystemError(err, 'read', show(p));
    }
  };
  const rootStat = await statOf(rootBuf);
  if (!rootStat.isDirectory()) throw new LarchError('INVALID_INPUT', `'${root}' is not a directory`, { data: { path: root } });
  const tree = newDir({ mode: Number(rootStat.mode) & 0o7777, ...owner(rootStat), xattrs: xattrsOf(rootBuf) });

  const walk = async (dirPath: Buffer, dir: MDir): Promise<void> => {
    let names: Buffer[];
    try {
      names = (await readdir(dirPath, { encoding: 'buffer' })) as Buffer[];
    } catch (err) {
      throw fromSystemError(err, 'read directory', show(dirPath));
    }
    const jobs: Promise<void>[] = [];
    for (const name of names) {
      const p = join(dirPath, name);
      jobs.push(
        (async () => {
          const st = await statOf(p);
          const base = { mode: Number(st.mode) & 0o7777, ...owner(st), xattrs: xattrsOf(p) };
          const where = show(p);
          if (st.isDirectory()) {
            await walk(p, ensureDir(dir, name, base, where));
            return;
          }
          let header: FileHeader;
          if (st.isFile()) header = { type: 'reg', ...base, size: Number(st.size) };
          else if (st.isSymbolicLink()) header = { type: 'lnk', ...base, mode: 0o777, target: Uint8Array.from(await readlink(p, { encoding: 'buffer' })) };
          else if (st.isFIFO()) header = { type: 'fifo', ...base };
          else {
            const kind = st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'of an unknown type';
            throw new LarchError('UNSUPPORTED_FILE_TYPE', `'${where}' is ${kind}, which a larch tree cannot hold`, { data: { path: where } });
          }
          const id = await pool(() => txn.writeFile(header, header.type === 'reg' ? { path: p } : undefined, `'${where}'`));
          addFile(dir, name, id, where);
        })(),
      );
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  };
  await walk(rootBuf, tree);
  return tree;
}
