/**
 * A tar stream, entry by entry, with what tar-stream decodes lossily kept as raw bytes: names,
 * link targets and xattrs from pax records (GNU tar writes non-UTF-8 names there as raw bytes,
 * though POSIX says UTF-8). Shared by the tar import (import-tar.ts) and the OCI layer import
 * (oci/import.ts), so both read a header the same way.
 */
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import type { Xattrs } from './object.ts';

/** One entry. Its bytes must be read (chunks) or skipped before the next entry comes. */
export interface TarEntry {
  header: tar.Header;
  /** The path as raw bytes: the pax `path` record, else the header's name. */
  name: Buffer;
  /** A link's target as raw bytes: the pax `linkpath` record, else the header's linkname. */
  linkName: Buffer;
  /** pax `SCHILY.xattr.NAME` records (what GNU tar and containers/storage write), names and values raw. */
  xattrs: Xattrs;
  /** The entry's bytes. @throws INVALID_INPUT (`where` named) when the archive ends or breaks inside it */
  chunks(where: string): AsyncGenerator<Uint8Array>;
  skip(): void;
}

export interface TarReadOptions {
  /** Names the archive in messages: `'rootfs.tar'`, `layer 2/4 (sha256:3f1a…)`. */
  where: string;
  /** The file read, for system errors. */
  path: string;
  /** Added to the data of a refusal. */
  data?: Record<string, unknown>;
}

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

type AsyncIterableEntry = AsyncIterable<unknown> & { header: tar.Header; resume(): void };

const RAW_PAX = Symbol('raw pax records');
type PaxWithRaw = Record<string, string> & { [RAW_PAX]?: Map<string, Buffer> };

/**
 * tar-stream decodes pax values as UTF-8, which loses names and xattr values that are not UTF-8.
 * This wraps the extractor's header decoding so each entry's pax object also carries the records
 * as raw bytes.
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

/**
 * The entries of the tar that `input` streams. The input is destroyed when the reader stops
 * early. @throws INVALID_INPUT for a malformed archive (data.reason `not-a-tar`); a LarchError
 * that destroyed the input (a decompressor's cap) as it is; system errors as fromSystemError's.
 */
export async function* tarEntries(input: Readable, opts: TarReadOptions): AsyncGenerator<TarEntry> {
  const extract = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  keepRawPax(extract);
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);
  const it = (extract as unknown as AsyncIterable<AsyncIterableEntry>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: IteratorResult<AsyncIterableEntry>;
      try {
        next = await it.next();
      } catch (err) {
        throw readFailure(err, opts);
      }
      if (next.done) return;
      const entry = next.value;
      const h = entry.header;
      const raw = (h as { pax?: PaxWithRaw }).pax?.[RAW_PAX];
      // tar-stream applies pax path, linkpath and size, not uid and gid (ids past 2097151 are pax-only).
      for (const key of ['uid', 'gid'] as const) {
        const v = raw?.get(key)?.toString('latin1');
        if (v !== undefined && /^\d{1,15}$/.test(v)) h[key] = Number(v);
      }
      yield {
        header: h,
        name: raw?.get('path') ?? Buffer.from(h.name, 'latin1'),
        linkName: raw?.get('linkpath') ?? Buffer.from(h.linkname ?? '', 'latin1'),
        xattrs: paxXattrs(raw),
        chunks: (where) => entryChunks(entry, where, opts),
        skip: () => entry.resume(),
      };
    }
  } finally {
    input.destroy();
  }
}

/**
 * An entry's bytes, read through its async iterator: node:stream pipeline() over the entry
 * itself (a streamx stream) never learnt that a truncated archive had failed it, and the import
 * waited forever (found by fuzzing).
 */
async function* entryChunks(entry: AsyncIterable<unknown>, where: string, opts: TarReadOptions): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of entry) yield chunk as Uint8Array;
  } catch (err) {
    if (err instanceof LarchError) throw err;
    throw new LarchError('INVALID_INPUT', `${where}: the archive ends or breaks inside this entry`, { data: { reason: 'not-a-tar', path: opts.path, ...opts.data }, cause: err });
  }
}

function readFailure(err: unknown, opts: TarReadOptions): unknown {
  if (err instanceof LarchError) return err;
  // Errors with an errno come from the filesystem (zlib's Z_* errors carry one too, but are about
  // the archive); the rest come from the tar parser.
  const code = String((err as NodeJS.ErrnoException).code ?? '');
  if ((err as NodeJS.ErrnoException).errno !== undefined && !code.startsWith('Z_')) return fromSystemError(err, 'read tar', opts.path);
  return new LarchError('INVALID_INPUT', `${opts.where} is not a readable tar archive: ${quash((err as Error).message, 200)}`, { data: { reason: 'not-a-tar', path: opts.path, ...opts.data }, cause: err });
}
