/**
 * The bundle file (`.larchb`, docs/formats.md §8.7): a remote in one file, for air-gapped devices
 * and USB sticks. It holds the files a device would fetch from a repo over HTTP (the summary and
 * its signature, the trust chain, the listed deltas) under their repo paths, so the device reads
 * it through the same checks as any remote. Pure: framing and index only; the index is not signed
 * (trust comes from summary.sig and what the summary names), it only maps names to bytes.
 *
 *   "LARCHBDL" (8 ASCII) ‖ u32be format = 1 ‖ u32be N ‖ index (canonical CBOR, N bytes) ‖ data
 *   index = {"format": 1, "files": [[path: tstr, offset: uint, size: uint, sha256: bstr(32)], ...]}
 *
 * Files are sorted by path (bytewise), each path once; offsets are relative to the start of data,
 * in order, contiguous (no gap, no overlap), and the last ends at the end of the file.
 */
import { LarchError } from '../errors.ts';
import { type CborValue, decodeCanonical, encodeCanonical } from '../store/cbor.ts';

export const BUNDLE_MAGIC = 'LARCHBDL';
export const BUNDLE_FORMAT = 1;
/** Magic, format and the index length. */
export const BUNDLE_HEADER_BYTES = 16;
export const MAX_BUNDLE_INDEX_BYTES = 1024 * 1024;
export const MAX_BUNDLE_FILES = 4096;

export interface BundleFile {
  /** The repo path the file has on a server (summary, deltas/FROM-TO/part-0, ...). */
  path: string;
  /** From the start of the data, which follows the index. */
  offset: number;
  size: number;
  /** SHA-256 of the file's bytes, hex. */
  sha256: string;
}

export interface BundleIndex {
  /** Where the data starts in the bundle file. */
  dataOffset: number;
  files: BundleFile[];
}

const ID = '[0-9a-f]{64}';
const NUMBER = '(?:0|[1-9][0-9]{0,8})';
/** The repo paths a bundle may hold: what a device fetches to upgrade (the target's commit object and signatures are read before its delta). */
const PATH = new RegExp(`^(?:summary|summary\\.sig|trust/[1-9][0-9]{0,8}\\.cbor|objects/[0-9a-f]{2}/[0-9a-f]{62}\\.(?:commit|sig)|deltas/(?:${ID}|empty)-${ID}/(?:envelope|part-${NUMBER}))$`);

export function isBundlePath(path: string): boolean {
  return PATH.test(path);
}

function invalid(reason: string, message: string, data: Record<string, unknown> = {}): LarchError {
  return new LarchError('INVALID_INPUT', `bundle: ${message}`, { hint: "make the bundle again with 'larch bundle create'; a file damaged on the stick is copied again", data: { reason, ...data } });
}

/** Is this the start of a bundle? (A one-file delta starts with LARCHDLT.) Pure. */
export function isBundle(head: Uint8Array): boolean {
  return head.length >= 8 && Buffer.from(head.subarray(0, 8)).toString('latin1') === BUNDLE_MAGIC;
}

/**
 * The bundle's header and index, from its first bytes and its total size. Needs
 * BUNDLE_HEADER_BYTES, then (bundleIndexLength) that many more.
 * @throws INVALID_INPUT, data.reason not-a-bundle | bundle-format | bundle-index | bundle-path | too-large
 */
export function decodeBundleIndex(head: Uint8Array, fileSize: number): BundleIndex {
  const n = bundleIndexLength(head);
  if (head.length < BUNDLE_HEADER_BYTES + n) throw invalid('bundle-index', `the index is cut short (${head.length - BUNDLE_HEADER_BYTES} of ${n} bytes)`);
  const dataOffset = BUNDLE_HEADER_BYTES + n;
  if (dataOffset > fileSize) throw invalid('bundle-index', `the index (${n} bytes) runs past the end of the file (${fileSize} bytes)`);
  const value = decodeCanonical(head.subarray(BUNDLE_HEADER_BYTES, dataOffset));
  if (!(value instanceof Map) || value.size !== 2 || value.get('format') !== BUNDLE_FORMAT || !Array.isArray(value.get('files'))) throw invalid('bundle-index', 'the index is not canonical CBOR {"format": 1, "files": [...]}');
  const entries = value.get('files') as CborValue[];
  if (entries.length > MAX_BUNDLE_FILES) throw invalid('too-large', `${entries.length} files, more than ${MAX_BUNDLE_FILES}`);
  const files: BundleFile[] = [];
  let next = 0;
  for (const [i, e] of entries.entries()) {
    if (!Array.isArray(e) || e.length !== 4 || typeof e[0] !== 'string' || !isUint(e[1]) || !isUint(e[2]) || !(e[3] instanceof Uint8Array) || e[3].length !== 32) {
      throw invalid('bundle-index', `file entry ${i} is not [path, offset, size, sha256 (32 bytes)]`);
    }
    const [path, offset, size] = e as [string, number, number];
    if (!isBundlePath(path)) throw invalid('bundle-path', `file entry ${i} has the path '${path.slice(0, 200)}', which is no file a device fetches`, { path: path.slice(0, 200) });
    if (i > 0 && Buffer.compare(Buffer.from(files[i - 1]!.path), Buffer.from(path)) >= 0) throw invalid('bundle-index', `file entries are not sorted by path, or a path is there twice ('${files[i - 1]!.path}', '${path}')`);
    if (offset !== next) throw invalid('bundle-index', `'${path}' starts at ${offset}, but the files before end at ${next} (a gap or an overlap)`, { path });
    next = offset + size;
    if (dataOffset + next > fileSize) throw invalid('bundle-index', `'${path}' (${size} bytes at ${offset}) runs past the end of the file`, { path });
    files.push({ path, offset, size, sha256: Buffer.from(e[3] as Uint8Array).toString('hex') });
  }
  if (dataOffset + next !== fileSize) throw invalid('bundle-index', `${fileSize - dataOffset - next} bytes after the last file`);
  for (const required of ['summary', 'summary.sig']) if (!files.some((f) => f.path === required)) throw invalid('bundle-index', `no '${required}' in the bundle`, { path: required });
  return { dataOffset, files };
}

/**
 * The index length N from the first BUNDLE_HEADER_BYTES bytes.
 * @throws INVALID_INPUT (not-a-bundle, bundle-format, too-large)
 */
export function bundleIndexLength(head: Uint8Array): number {
  if (!isBundle(head)) throw invalid('not-a-bundle', `the file does not start with ${BUNDLE_MAGIC}`);
  if (head.length < BUNDLE_HEADER_BYTES) throw invalid('bundle-index', `the header is cut short (${head.length} of ${BUNDLE_HEADER_BYTES} bytes)`);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const format = view.getUint32(8);
  if (format !== BUNDLE_FORMAT) throw invalid('bundle-format', `format ${format}; this larch reads format ${BUNDLE_FORMAT} (a newer larch made it?)`, { format });
  const n = view.getUint32(12);
  if (n > MAX_BUNDLE_INDEX_BYTES) throw invalid('too-large', `an index of ${n} bytes, more than ${MAX_BUNDLE_INDEX_BYTES}`);
  return n;
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * The header and index of a bundle holding these files (in any order; sorted here), each with
 * its bytes' SHA-256 (hex). The data is the files' bytes in the returned order. Pure.
 * @throws Error on a path a bundle may not hold, or a path twice (a bug in the caller)
 */
export function encodeBundleIndex(files: { path: string; size: number; sha256: string }[]): { header: Uint8Array; order: string[] } {
  const sorted = [...files].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  let offset = 0;
  const entries: CborValue[] = [];
  for (const [i, f] of sorted.entries()) {
    if (!isBundlePath(f.path)) throw new Error(`bundle: '${f.path}' is no file a device fetches`);
    if (i > 0 && sorted[i - 1]!.path === f.path) throw new Error(`bundle: '${f.path}' twice`);
    entries.push([f.path, offset, f.size, Uint8Array.from(Buffer.from(f.sha256, 'hex'))]);
    offset += f.size;
  }
  const index = encodeCanonical(new Map<CborValue, CborValue>([['format', BUNDLE_FORMAT], ['files', entries]]));
  const header = new Uint8Array(BUNDLE_HEADER_BYTES + index.length);
  header.set(Buffer.from(BUNDLE_MAGIC, 'latin1'), 0);
  const view = new DataView(header.buffer);
  view.setUint32(8, BUNDLE_FORMAT);
  view.setUint32(12, index.length);
  header.set(index, BUNDLE_HEADER_BYTES);
  return { header, order: sorted.map((f) => f.path) };
}
