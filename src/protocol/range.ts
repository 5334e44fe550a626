/**
 * HTTP Range header parsing for one byte range (RFC 9110 §14.1.2). Pure.
 *
 *   bytes=A-B   bytes A..B inclusive (B clipped to the end)
 *   bytes=A-    from A to the end
 *   bytes=-N    the last N bytes
 */

export type RangeResult =
  /** Serve the whole file (no Range, a syntax the server ignores, or several ranges). */
  | { kind: 'full' }
  /** Serve bytes start..end inclusive with 206. */
  | { kind: 'partial'; start: number; end: number }
  /** 416 Range Not Satisfiable. */
  | { kind: 'unsatisfiable' };

const ONE = /^bytes=(\d*)-(\d*)$/;

/**
 * Decides what to send for a Range header and a file of `size` bytes. A malformed header and a
 * multi-range request are answered with the whole file, as RFC 9110 allows a server to do.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'full' };
  const m = ONE.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'full' };
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (!Number.isSafeInteger(suffix)) return { kind: 'full' };
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const last = m[2] === '' ? Infinity : Number(m[2]);
  // last < start is a syntax error (the header is ignored); a start past the end is unsatisfiable.
  if (!Number.isSafeInteger(start) || (last !== Infinity && !Number.isSafeInteger(last)) || last < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end: Math.min(last, size - 1) };
}

/** Parses a Content-Range response header `bytes A-B/SIZE` (SIZE may be `*`); null when malformed. */
export function parseContentRange(header: string | undefined): { start: number; end: number; size: number | null } | null {
  const m = header === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim());
  if (!m) return null;
  const [start, end] = [Number(m[1]), Number(m[2])];
  const size = m[3] === '*' ? null : Number(m[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start || (size !== null && (!Number.isSafeInteger(size) || end >= size))) return null;
  return { start, end, size };
}
