/**
 * The layers of a resolved image into one tree (docs/design/issue-21-oci.md §4.3): each layer's
 * blob streams through its digest check, the decompressor (with its caps) and the diff_id check
 * into the tar reader, and each entry's bytes go straight into the transaction as an object while
 * LayerTree keeps the merged names. A refusal anywhere throws before a commit exists; objects of
 * files a later layer replaced are unstaged at the end (Transaction.discardFiles).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { LarchError, quash } from '../errors.ts';
import type { FileHeader, ObjectId, Xattrs } from '../store/object.ts';
import { type TarEntry, tarEntries } from '../store/tar-entries.ts';
import type { Transaction } from '../store/transaction.ts';
import { decompress } from './decompress.ts';
import { LayerTree, classifyPath, splitPath } from './layer-tree.ts';
import { type LayerRef, openLayer } from './source.ts';

/** The most tar entries read in one import, over all layers. */
export const MAX_ENTRIES = 20_000_000;
/** The most bytes of a file captured for the commit's metadata (a dpkg status). */
const MAX_CAPTURE_BYTES = 64 * 1024 * 1024;

/** xattrs no imported tree keeps (umoci's rules): labels and overlayfs's own state of the build machine. */
export function droppedXattr(name: Uint8Array): boolean {
  const n = Buffer.from(name).toString('latin1');
  return n === 'security.selinux' || n === 'system.nfs4_acl' || n.startsWith('trusted.overlay.') || n.startsWith('user.overlay.');
}

export interface ImportOptions {
  owner?: { uid: number; gid: number };
  /** Keep xattrs (--no-xattrs: false). */
  xattrs: boolean;
  maxUnpackedBytes: number;
  /** Paths ('/'-joined) whose content is wanted back when they survive (the dpkg status for larch.packages). */
  capture?: string[];
}

export interface LayerReport {
  digest: string | null;
  diff_id: string;
  media_type: string | null;
  size: number;
  unpacked_bytes: number;
  entries: number;
}

export interface ImportCounts {
  whiteouts: number;
  opaque_dirs: number;
  hardlinks: number;
  dropped: { xattrs: number; devices: number; aufs: number };
}

export interface ImportResult {
  tree: LayerTree;
  layers: LayerReport[];
  counts: ImportCounts;
  /** Captured paths still in the tree at the end, with their bytes. */
  captured: Map<string, Buffer>;
}

const IMPLICIT = { mode: 0o755, xattrs: [] as Xattrs };

/** A LarchError of a layer, its message and data saying which layer. */
function inLayer(err: unknown, where: string, data: Record<string, unknown>): unknown {
  if (!(err instanceof LarchError) || err.message.startsWith(where)) return err;
  return new LarchError(err.code, `${where}: ${err.message}`, { hint: err.hint, data: { ...(err.data ?? {}), ...data }, cause: err.cause });
}

/** @throws INVALID_INPUT, UNSUPPORTED_FILE_TYPE, NO_SPACE, TOOL_MISSING (zstd on Node) */
export async function importLayers(txn: Transaction, layers: LayerRef[], opts: ImportOptions): Promise<ImportResult> {
  const tree = new LayerTree({ ...IMPLICIT, ...(opts.owner ?? { uid: 0, gid: 0 }) });
  const counts: ImportCounts = { whiteouts: 0, opaque_dirs: 0, hardlinks: 0, dropped: { xattrs: 0, devices: 0, aufs: 0 } };
  const captures = new Map<string, { id: ObjectId; bytes: Buffer }>();
  const reports: LayerReport[] = [];
  let unpacked = 0;
  let entriesRead = 0;
  for (const [i, layer] of layers.entries()) {
    const where = `layer ${i + 1}/${layers.length} (${layer.digest ?? quash(layer.path, 120)})`;
    const data = { layer: i + 1, layer_digest: layer.digest };
    tree.beginLayer();
    const report: LayerReport = { digest: layer.digest, diff_id: layer.diffId, media_type: layer.mediaType, size: layer.size, unpacked_bytes: 0, entries: 0 };
    try {
      const plainHash = createHash('sha256');
      let plainEnded = false;
      const plain = async function* () {
        for await (const chunk of decompress(openLayer(layer, where), layer.compression, { maxBytes: opts.maxUnpackedBytes - unpacked, where })) {
          plainHash.update(chunk);
          report.unpacked_bytes += chunk.length;
          yield chunk;
        }
        plainEnded = true;
      };
      for await (const entry of tarEntries(Readable.from(plain()), { where, path: layer.path, data })) {
        if (++entriesRead > MAX_ENTRIES) throw new LarchError('INVALID_INPUT', `the image has more than ${MAX_ENTRIES} entries`, { data: { reason: 'too-many-entries' } });
        report.entries++;
        await applyEntry(txn, tree, entry, { ...opts, counts, captures, left: opts.maxUnpackedBytes - unpacked - report.unpacked_bytes });
      }
      // The tar reader ends when its input does, so the blob and the plain tar were read to the end and checked.
      if (!plainEnded) throw new Error(`${where}: the tar reader stopped before the layer's end`);
      const diffId = `sha256:${plainHash.digest('hex')}`;
      if (diffId !== layer.diffId) throw new LarchError('INVALID_INPUT', `its plain tar is ${diffId}, not the config's diff_id ${layer.diffId}`, { data: { reason: 'digest-mismatch', expected: layer.diffId, actual: diffId } });
    } catch (err) {
      // A damaged stream is most often a blob that is not the one named: say so when it is.
      throw inLayer((await blobMismatch(layer)) ?? err, where, data);
    }
    unpacked += report.unpacked_bytes;
    reports.push(report);
  }
  const captured = new Map<string, Buffer>();
  for (const [path, { id, bytes }] of captures) if (tree.fileAt(Buffer.from(path, 'latin1'))?.id === id) captured.set(path, bytes);
  return { tree, layers: reports, counts, captured };
}

interface EntryContext extends ImportOptions {
  counts: ImportCounts;
  captures: Map<string, { id: ObjectId; bytes: Buffer }>;
  /** Plain bytes the image may still unpack to. */
  left: number;
}

async function applyEntry(txn: Transaction, tree: LayerTree, entry: TarEntry, ctx: EntryContext): Promise<void> {
  const h = entry.header;
  const path = entry.name;
  const shown = quash(path.toString('utf8'), 200);
  const kind = classifyPath(path);
  if (kind.kind !== 'entry') {
    entry.skip();
    if (kind.kind === 'skip') ctx.counts.dropped.aufs++;
    else {
      if (kind.kind === 'opaque') ctx.counts.opaque_dirs++;
      else ctx.counts.whiteouts++;
      tree.whiteout(path);
    }
    return;
  }
  const xattrs = entry.xattrs.filter(([name]) => {
    const keep = ctx.xattrs && !droppedXattr(name);
    if (!keep) ctx.counts.dropped.xattrs++;
    return keep;
  });
  const base = { mode: (h.mode ?? 0o644) & 0o7777, ...(ctx.owner ?? { uid: h.uid ?? 0, gid: h.gid ?? 0 }), xattrs };
  const where = `entry '${shown}'`;
  switch (h.type) {
    case 'directory':
      entry.skip();
      tree.add({ path, type: 'dir', meta: base });
      return;
    case 'file':
    case 'contiguous-file': {
      const size = h.size ?? 0;
      if (!Number.isSafeInteger(size) || size > ctx.left) throw new LarchError('INVALID_INPUT', `${where} declares ${size} bytes; the image may unpack to ${ctx.maxUnpackedBytes} in all (--max-unpacked-size)`, { data: { reason: 'entry-size', path: shown, size } });
      const name = splitPath(path).map((p) => Buffer.from(p).toString('latin1')).join('/');
      const capture = ctx.capture?.includes(name) && size <= MAX_CAPTURE_BYTES ? ([] as Buffer[]) : null;
      const chunks = entry.chunks(where);
      const stream = capture === null ? chunks : tee(chunks, capture);
      const id = await txn.writeFile({ type: 'reg', ...base, size }, { stream }, where);
      if (capture !== null) ctx.captures.set(name, { id, bytes: Buffer.concat(capture) });
      tree.add({ path, type: 'reg', id, size });
      return;
    }
    case 'symlink': {
      entry.skip();
      const id = await txn.writeFile({ type: 'lnk', ...base, mode: 0o777, target: Uint8Array.from(entry.linkName) } as FileHeader, undefined, where);
      tree.add({ path, type: 'lnk', id, size: 0, linkName: entry.linkName.toString('utf8') });
      return;
    }
    case 'link':
      entry.skip();
      ctx.counts.hardlinks++;
      tree.add({ path, type: 'hardlink', target: entry.linkName });
      return;
    case 'fifo': {
      entry.skip();
      const id = await txn.writeFile({ type: 'fifo', ...base }, undefined, where);
      tree.add({ path, type: 'fifo', id, size: 0 });
      return;
    }
    case 'character-device':
    case 'block-device': {
      entry.skip();
      // Device nodes of the image's /dev are the build's: a device makes its own.
      const parts = splitPath(path);
      if (parts.length > 1 && Buffer.from(parts[0]).toString('latin1') === 'dev') {
        ctx.counts.dropped.devices++;
        return;
      }
      const whiteoutLike = h.type === 'character-device' && h.devmajor === 0 && h.devminor === 0;
      throw new LarchError('UNSUPPORTED_FILE_TYPE', `${where} is a ${h.type}, which a larch tree cannot hold`, {
        hint: whiteoutLike ? 'a 0:0 character device is an overlayfs whiteout: this layer is an overlay upper directory, not an OCI layer (which marks deletions with .wh. files)' : undefined,
        data: { reason: 'device', path: shown },
      });
    }
    default:
      entry.skip();
      throw new LarchError('UNSUPPORTED_FILE_TYPE', `${where} is a ${h.type} entry, which a larch tree cannot hold`, { data: { reason: h.type === 'gnu-sparse' ? 'sparse' : 'type', path: shown } });
  }
}

/** The digest refusal of a layer whose blob is not the one its descriptor names, else null. */
async function blobMismatch(layer: LayerRef): Promise<LarchError | null> {
  if (layer.digest === null) return null;
  try {
    for await (const _ of openLayer(layer, 'blob')) void _;
    return null;
  } catch (err) {
    return err instanceof LarchError && err.data?.reason === 'digest-mismatch' ? err : null;
  }
}

async function* tee(chunks: AsyncIterable<Uint8Array>, into: Buffer[]): AsyncGenerator<Uint8Array> {
  for await (const c of chunks) {
    into.push(Buffer.from(c));
    yield c;
  }
}
