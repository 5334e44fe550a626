/**
 * `larch export-oci`: a commit as an OCI image of one layer (docs/oci.md "Export"). The layer is
 * the commit's tree in a deterministic tar (tar-write.ts): a pre-order walk, each directory's
 * entries in raw-byte order, every mtime the commit's time, the second and later paths of one
 * regular-file object written as hard links to the first. Each object is checked against its id
 * as it streams, so a corrupt object is never exported. Compression is Debian's gzip or zstd
 * (one encoder, so Node and Bun write the same bytes). Blobs are written first (temp + rename),
 * index.json last and atomically: a killed export leaves the layout as it was plus unreferenced
 * blobs, which image-layout.md allows; an oci-archive appears whole or not at all.
 */
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { writeFileAtomic } from '../_durable.ts';
import { spawnFailure, stderrTail } from '../_run.ts';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { ARCHITECTURE_KEY } from '../store/binding.ts';
import { encodeFileHeader, type ObjectId, validateDirTree } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import { MAX_TREE_DEPTH, childPath, pathText } from '../store/walk.ts';
import { ociArchitecture } from './commit-metadata.ts';
import { type BlobRef, type ExportedCommit, OCI_LAYOUT, type Platform, imageConfig, imageIndex, imageManifest } from './image-json.ts';
import { MEDIA, blobPath } from './manifest.ts';
import { TAG } from './reference.ts';
import { TAR_END, type TarEntryHeader, encodeHeader, padding } from './tar-write.ts';

export type ExportCompression = 'gzip' | 'zstd' | 'none';

export interface ExportOptions {
  rev: string;
  /** A name ending in .tar: an oci-archive; else an OCI layout directory (made, or added to). */
  out: string;
  tag?: string;
  compression?: ExportCompression;
  level?: number;
  /** OS/ARCH[/VARIANT] when the commit records no larch.architecture. */
  platform?: string;
  /** Carry the commit (object and signatures) in the config's labels; default true. */
  commitLabel?: boolean;
}

export interface ExportResult {
  commit: ObjectId;
  path: string;
  format: 'oci-layout' | 'oci-archive';
  tag: string;
  manifest_digest: string;
  config_digest: string;
  layer: { media_type: string; digest: string; size: number; diff_id: string; unpacked_bytes: number; entries: number };
  bytes: number;
}

const LAYER_MEDIA: Record<ExportCompression, string> = { gzip: MEDIA.layerGzip, zstd: MEDIA.layerZstd, none: MEDIA.layer };
const DEFAULT_LEVEL: Record<ExportCompression, number> = { gzip: 6, zstd: 3, none: 0 };

const usage = (message: string, data: Record<string, unknown>) => new LarchError('USAGE', `export-oci: ${message}`, { data });

/** The image's platform: --platform, else the commit's larch.architecture. @throws USAGE */
function platformOf(flag: string | undefined, architecture: unknown): Platform {
  if (flag !== undefined) {
    const m = /^linux\/([a-z0-9]+)(?:\/([a-z0-9]+))?$/.exec(flag);
    if (!m) throw usage(`--platform '${quash(flag, 60)}' is not linux/ARCH[/VARIANT]`, { option: 'platform', value: flag });
    return { architecture: m[1], ...(m[2] ? { variant: m[2] } : {}) };
  }
  const p = typeof architecture === 'string' ? ociArchitecture(architecture) : null;
  if (p === null) throw usage(`the commit records no architecture an image can name (larch.architecture: ${architecture === undefined ? 'none' : quash(String(architecture), 40)}): give --platform linux/ARCH`, { option: 'platform', architecture: architecture ?? null });
  return p;
}

/** @throws USAGE, NOT_FOUND, EXISTS, OBJECT_MISSING, OBJECT_CORRUPT, HOSTILE_TREE, NO_SPACE, TOOL_MISSING */
export async function exportImage(repo: Repo, opts: ExportOptions): Promise<ExportResult> {
  const tag = opts.tag ?? 'latest';
  if (!TAG.test(tag)) throw usage(`--tag '${quash(tag, 140)}' is not a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})`, { option: 'tag', value: tag });
  const compression = opts.compression ?? 'gzip';
  const level = opts.level ?? DEFAULT_LEVEL[compression];
  const id = await repo.resolveRev(opts.rev);
  const commit = await repo.readCommit(id);
  const platform = platformOf(opts.platform, commit.metadata.get(ARCHITECTURE_KEY));
  const labels = commit.metadata.get('larch.oci.labels');
  const exported: ExportedCommit = {
    id,
    version: commit.version,
    timestamp: commit.timestamp,
    labels: labels instanceof Map ? Object.fromEntries([...labels].filter(([, v]) => typeof v === 'string')) : labels && typeof labels === 'object' ? Object.fromEntries(Object.entries(labels).filter(([, v]) => typeof v === 'string')) : {},
    object: opts.commitLabel === false ? null : await repo.readMetadataBytes('commit', id),
    signatures: opts.commitLabel === false ? null : await repo.readSignatures(id),
  };
  const archive = opts.out.endsWith('.tar');
  if (archive && (await exists(opts.out))) throw new LarchError('EXISTS', `export-oci: '${opts.out}' exists`, { hint: 'remove it, or give another --out', data: { path: opts.out } });
  // An archive's blobs go to a directory beside it first, then into the archive.
  const layout = archive ? await mkdtemp(join(dirname(opts.out), `.${basename(opts.out)}.tmp-`)) : opts.out;
  try {
    const existing = archive ? null : await openLayout(layout);
    await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
    const stats = { unpacked_bytes: 0, entries: 0 };
    const diffHash = createHash('sha256');
    const plain = async function* (): AsyncGenerator<Uint8Array> {
      for await (const chunk of layerTar(repo, commit.root, commit.timestamp, stats)) {
        diffHash.update(chunk);
        stats.unpacked_bytes += chunk.length;
        yield chunk;
      }
    };
    const layer = await writeBlob(layout, compressed(plain(), compression, level), LAYER_MEDIA[compression]);
    const diffId = `sha256:${diffHash.digest('hex')}`;
    const config = await writeBlob(layout, [Buffer.from(imageConfig(exported, platform, diffId))], MEDIA.config);
    const manifest = await writeBlob(layout, [Buffer.from(imageManifest(exported, config, layer))], MEDIA.manifest);
    const index = imageIndex(existing, manifest, tag, platform);
    await writeFile(join(layout, 'oci-layout'), OCI_LAYOUT);
    let bytes: number;
    if (archive) {
      await writeFile(join(layout, 'index.json'), index);
      bytes = await writeArchive(layout, [layer, config, manifest], opts.out, commit.timestamp);
    } else {
      await writeFileAtomic(join(layout, 'index.json'), index);
      bytes = layer.size + config.size + manifest.size;
    }
    return {
      commit: id,
      path: opts.out,
      format: archive ? 'oci-archive' : 'oci-layout',
      tag,
      manifest_digest: manifest.digest,
      config_digest: config.digest,
      layer: { media_type: layer.mediaType, digest: layer.digest, size: layer.size, diff_id: diffId, ...stats },
      bytes,
    };
  } catch (err) {
    throw fromSystemError(err, 'export to', opts.out);
  } finally {
    if (archive) await rm(layout, { recursive: true, force: true });
  }
}

const exists = (p: string) => lstat(p).then(() => true, () => false);

/** An existing layout's index.json, null for a new directory. @throws EXISTS for a directory or file that is no layout */
async function openLayout(dir: string): Promise<{ manifests?: unknown[] } | null> {
  const st = await stat(dir).catch(() => null);
  if (st === null) return null;
  const notLayout = () => new LarchError('EXISTS', `export-oci: '${dir}' exists and is not an OCI layout (no oci-layout file)`, { hint: 'give a new directory, an existing layout, or a name ending in .tar', data: { path: dir } });
  if (!st.isDirectory()) throw notLayout();
  if (!(await exists(join(dir, 'oci-layout')))) {
    if ((await readdir(dir)).length > 0) throw notLayout();
    return null;
  }
  const text = await readFile(join(dir, 'index.json'), 'utf8').catch(() => '{}');
  try {
    return JSON.parse(text);
  } catch {
    throw new LarchError('INVALID_INPUT', `export-oci: '${join(dir, 'index.json')}' is not JSON`, { data: { path: join(dir, 'index.json') } });
  }
}

/** Streams chunks into blobs/sha256/ under their digest (temp + rename). */
async function writeBlob(layout: string, chunks: AsyncIterable<Uint8Array> | Uint8Array[], mediaType: string): Promise<BlobRef> {
  const tmp = join(layout, 'blobs', 'sha256', `.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
  const hash = createHash('sha256');
  let size = 0;
  const counted = async function* () {
    for await (const c of chunks) {
      hash.update(c);
      size += c.length;
      yield c;
    }
  };
  try {
    await pipeline(Readable.from(counted()), createWriteStream(tmp, { flags: 'wx' }));
    const digest = `sha256:${hash.digest('hex')}`;
    await rename(tmp, join(layout, blobPath(digest)));
    return { mediaType, digest, size };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The tar through Debian's gzip (-n: no name, no time) or zstd, or as it is. */
async function* compressed(tar: AsyncIterable<Uint8Array>, compression: ExportCompression, level: number): AsyncGenerator<Uint8Array> {
  if (compression === 'none') return yield* tar;
  const [cmd, args] = compression === 'gzip' ? ['gzip', ['-n', `-${level}`, '-c']] : ['zstd', ['-q', '-c', `-${level}`, '-T1', '--no-progress']];
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const spawned = new Promise<void>((resolve, reject) => {
    child.on('spawn', resolve);
    child.on('error', (err: NodeJS.ErrnoException) => reject(spawnFailure(cmd, err, { purpose: `to compress the layer (--compression ${compression})` })));
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await spawned;
  const feeding = pipeline(Readable.from(tar), child.stdin);
  feeding.catch(() => child.kill());
  try {
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) yield chunk;
    await feeding;
    const code = await exited;
    if (code !== 0) throw new LarchError('IO', `export-oci: ${cmd} exited ${code}: ${stderrTail(stderr)}`, { data: { tool: cmd, code } });
  } finally {
    child.kill();
  }
}

/** The commit's tree as a tar stream (see the file comment). */
async function* layerTar(repo: Repo, root: { tree: ObjectId; meta: ObjectId }, mtime: number, stats: { entries: number }): AsyncGenerator<Uint8Array> {
  const firstPath = new Map<ObjectId, Buffer>();
  const entry = (h: TarEntryHeader) => {
    stats.entries++;
    return encodeHeader(h);
  };
  const rootMeta = await repo.readDirMeta(root.meta);
  yield entry({ path: Buffer.from('./'), type: 'directory', mode: rootMeta.mode, uid: rootMeta.uid, gid: rootMeta.gid, size: 0, mtime, xattrs: rootMeta.xattrs });
  const visit = async function* (path: Buffer, tree: ObjectId, depth: number): AsyncGenerator<Uint8Array> {
    if (depth > MAX_TREE_DEPTH) throw new LarchError('HOSTILE_TREE', `tree is deeper than ${MAX_TREE_DEPTH} levels at '${pathText(path)}'`, { data: { path: pathText(path) } });
    const dt = await repo.readDirTree(tree);
    const problems = validateDirTree(dt);
    if (problems.length > 0) throw new LarchError('HOSTILE_TREE', `dirtree ${tree} at '${pathText(path)}' is unsafe: ${problems[0].problem}`, { data: { tree, path: pathText(path) } });
    const children = [...dt.files.map((f) => ({ name: Buffer.from(f.name), file: f })), ...dt.dirs.map((d) => ({ name: Buffer.from(d.name), dir: d }))].sort((a, b) => Buffer.compare(a.name, b.name));
    for (const c of children) {
      const p = childPath(path, c.name);
      if ('dir' in c) {
        const meta = await repo.readDirMeta(c.dir.meta);
        yield entry({ path: Buffer.concat([p, Buffer.from('/')]), type: 'directory', mode: meta.mode, uid: meta.uid, gid: meta.gid, size: 0, mtime, xattrs: meta.xattrs });
        yield* visit(p, c.dir.tree, depth + 1);
        continue;
      }
      const fid = c.file.file;
      const stored = await repo.readFile(fid);
      const h = stored.header;
      const base = { path: p, mode: h.mode, uid: h.uid, gid: h.gid, mtime, xattrs: h.xattrs };
      const first = firstPath.get(fid);
      if (h.type === 'reg' && first !== undefined) {
        yield entry({ ...base, type: 'hardlink', size: 0, linkName: first });
        continue;
      }
      if (h.type === 'lnk') {
        yield entry({ ...base, type: 'symlink', size: 0, linkName: h.target });
      } else if (h.type === 'fifo') {
        yield entry({ ...base, type: 'fifo', size: 0 });
      } else {
        firstPath.set(fid, p);
        yield entry({ ...base, type: 'file', size: h.size });
        // Checked as it streams: a corrupt object fails the export, never lands in an image.
        const hash = createHash('sha256').update(encodeFileHeader(h));
        let n = 0;
        for await (const chunk of stored.content()) {
          n += chunk.length;
          if (n > h.size) break;
          hash.update(chunk);
          yield chunk;
        }
        if (n !== h.size || hash.digest('hex') !== fid) throw new LarchError('OBJECT_CORRUPT', `file ${fid} ('${pathText(p)}') does not hash to its id`, { hint: "'larch fsck' lists the damage; pull or commit the tree again", data: { kind: 'file', id: fid, path: pathText(p) } });
        yield padding(h.size);
      }
    }
  };
  yield* visit(Buffer.alloc(0), root.tree, 0);
  yield TAR_END;
}

/** The layout's files as one tar (an oci-archive), written beside `out` and renamed to it. */
async function writeArchive(layout: string, blobs: BlobRef[], out: string, mtime: number): Promise<number> {
  const tmp = `${out}.tmp-${process.pid}`;
  let size = 0;
  const chunks = async function* (): AsyncGenerator<Uint8Array> {
    const dir = (name: string) => encodeHeader({ path: Buffer.from(name), type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime });
    const file = async function* (name: string, path: string): AsyncGenerator<Uint8Array> {
      const st = await stat(path);
      yield encodeHeader({ path: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, size: st.size, mtime });
      yield* createReadStream(path) as AsyncIterable<Buffer>;
      yield padding(st.size);
    };
    yield* file('oci-layout', join(layout, 'oci-layout'));
    yield* file('index.json', join(layout, 'index.json'));
    yield dir('blobs/');
    yield dir('blobs/sha256/');
    for (const b of [...blobs].sort((x, y) => (x.digest < y.digest ? -1 : 1))) yield* file(blobPath(b.digest), join(layout, blobPath(b.digest)));
    yield TAR_END;
  };
  const counted = async function* () {
    for await (const c of chunks()) {
      size += c.length;
      yield c;
    }
  };
  try {
    await pipeline(Readable.from(counted()), createWriteStream(tmp, { flags: 'wx' }));
    const fh = await open(tmp, 'r');
    await fh.sync();
    await fh.close();
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return size;
}
