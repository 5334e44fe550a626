/**
 * An image archive (an oci-archive or a docker-archive tar, plain or compressed) unpacked into a
 * private directory under the repo's tmp/, so the import reads it as it reads a layout: members by
 * name, each a regular file. Member names are checked as layer paths are ('..' refused); nothing
 * of the archive is ever written anywhere but that directory, under names larch makes up.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { splitTarPath, tarEntries } from '../store/tar-entries.ts';
import { MAGIC, decompress } from './decompress.ts';
import type { Compression } from './manifest.ts';

/** The most members an archive may hold (an image of 256 layers holds a few hundred). */
const MAX_MEMBERS = 100_000;

/** The compression of a file by its first bytes: gzip, zstd, else none. */
export async function sniffCompression(path: string): Promise<Compression> {
  const fh = await open(path, 'r').catch((err) => {
    throw fromSystemError(err, 'read', path);
  });
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    for (const kind of ['gzip', 'zstd'] as const) if (MAGIC[kind].length <= bytesRead && MAGIC[kind].every((x, i) => b[i] === x)) return kind;
    return 'none';
  } finally {
    await fh.close();
  }
}

export interface UnpackedArchive {
  /** The file holding member `name` (links followed), or null when the archive has none. */
  member(name: string): string | null;
}

function refuse(message: string, data: Record<string, unknown>): LarchError {
  return new LarchError('INVALID_INPUT', message, { data: { reason: 'archive-member', ...data } });
}

/** A member name as the archive's own path ('./x//y' is 'x/y'). @throws INVALID_INPUT dotdot */
function memberName(raw: Buffer): string {
  const parts = splitTarPath(raw);
  return parts === 'root' ? '' : parts.map((p) => p.toString('utf8')).join('/');
}

/**
 * Unpacks the archive at `path` into `dir` (which exists and is empty).
 * @throws INVALID_INPUT not-a-tar, archive-member (a duplicate, a link leaving the archive, a device), dotdot, unpacked-size
 */
export async function unpackArchive(path: string, dir: string, opts: { maxBytes: number }): Promise<UnpackedArchive> {
  const compression = await sniffCompression(path);
  const where = `archive '${path}'`;
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  const input = compression === 'none' ? file : Readable.from(decompress(file, compression, { maxBytes: opts.maxBytes, where }));
  const files = new Map<string, string>();
  const links = new Map<string, string>();
  let n = 0;
  for await (const entry of tarEntries(input, { where, path })) {
    const h = entry.header;
    const name = memberName(entry.name);
    const shown = quash(name, 200);
    if (h.type === 'directory' || name === '') {
      entry.skip();
      continue;
    }
    if (files.has(name) || links.has(name)) throw refuse(`${where} holds '${shown}' twice`, { path: shown });
    if (++n > MAX_MEMBERS) throw refuse(`${where} holds more than ${MAX_MEMBERS} members`, {});
    if (h.type === 'file' || h.type === 'contiguous-file') {
      const out = join(dir, `m${n}`);
      await pipeline(entry.chunks(`${where}: '${shown}'`), createWriteStream(out, { flags: 'wx' })).catch((err) => {
        throw fromSystemError(err, 'unpack', out);
      });
      files.set(name, out);
    } else if (h.type === 'symlink' || h.type === 'link') {
      entry.skip();
      const target = entry.linkName.toString('utf8');
      // A symlink is relative to its own directory (docker save links duplicate layers so); a hard link names a member.
      const base = h.type === 'symlink' ? name.split('/').slice(0, -1).join('/') : '';
      if (target.startsWith('/')) throw refuse(`${where}: '${shown}' links to '${quash(target, 200)}', outside the archive`, { path: shown });
      const joined = base === '' ? target : `${base}/${target}`;
      const resolved: string[] = [];
      for (const part of joined.split('/')) {
        if (part === '' || part === '.') continue;
        if (part === '..') {
          if (resolved.length === 0) throw refuse(`${where}: '${shown}' links to '${quash(target, 200)}', outside the archive`, { path: shown });
          resolved.pop();
        } else resolved.push(part);
      }
      links.set(name, resolved.join('/'));
    } else {
      entry.skip();
      throw refuse(`${where}: '${shown}' is a ${h.type} entry, which no image archive holds`, { path: shown });
    }
  }
  return {
    member(name) {
      let at = name;
      // A few hops at most: docker save links a layer to another's once.
      for (let hops = 0; hops < 8; hops++) {
        const f = files.get(at);
        if (f !== undefined) return f;
        const next = links.get(at);
        if (next === undefined) return null;
        at = next;
      }
      return null;
    },
  };
}
