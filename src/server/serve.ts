/**
 * `larch serve`: a small static file server (node:http) for an archive repo, for development
 * and small fleets. GET and HEAD, one byte range per request, ETag and Last-Modified; no
 * directory listings, nothing outside the repo (no `..`, no symlink that leads out). Every
 * request gets one access-log line (JSON) with the exact byte range and the bytes written, so
 * tests can prove a resumed download never re-sent a byte. Bigger fleets put the same files on
 * any web server or CDN.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { open, realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { parseRange } from '../protocol/range.ts';

export interface AccessLogEntry {
  time: string;
  remote: string;
  method: string;
  path: string;
  status: number;
  /** First and last byte offsets of the body that was due (inclusive), or null when no body. */
  range: [number, number] | null;
  /** Body bytes actually handed to the socket and flushed (less than the range when cut off). */
  bytes: number;
  /** Size of the file, when one was found. */
  size: number | null;
  ms: number;
  /** Of ms, the time from the first body byte handed to the socket to the last one flushed. */
  sendMs?: number;
}

export interface ServeOptions {
  /** Directory served at '/'. */
  root: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  onLog?: (entry: AccessLogEntry) => void;
  /** Sends at most this many bytes per second per response (to simulate slow links). */
  rateBytesPerSecond?: number;
  /**
   * Fault injection for tests: after this many body bytes of a response, close the connection
   * (a graceful FIN after those bytes were flushed, as when a link drops between packets).
   */
  cutAfterBytes?: number;
  /**
   * At most this many file bodies (deltas, objects: everything but the summary) in flight at
   * once; a request over the cap gets 503 with Retry-After, which devices honour. Caps the
   * server's upload bandwidth and disk reads when a rollout wakes many devices at once.
   */
  maxDownloads?: number;
  /** Seconds in the Retry-After of a 503 for the cap (default 2). */
  retryAfterS?: number;
  /**
   * Answers a request before the file server (the fleet view's API): true when it did;
   * `log(status, bytes)` fills the request's access-log line.
   */
  routes?: (req: IncomingMessage, res: ServerResponse, log: (status: number, bytes: number) => void) => boolean;
}

/** Top-level names of R never served as files: the fleet view's state (R/fleet) and its API. */
export const RESERVED_NAMES = ['fleet', 'api'];

export interface RunningServer {
  url: string;
  port: number;
  /** Stops accepting, ends every open connection, and resolves when the server is closed. */
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.pub': 'text/plain; charset=utf-8',
};
const CHUNK = 64 * 1024;

/** Starts serving; resolves once the socket listens. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const root = await realpath(opts.root);
  const sockets = new Set<Socket>();
  const state = { stopping: false, downloads: 0 };
  const server: Server = createServer((req, res) => {
    const started = Date.now();
    const entry: AccessLogEntry = { time: new Date(started).toISOString(), remote: req.socket.remoteAddress ?? '', method: req.method ?? '', path: req.url ?? '', status: 0, range: null, bytes: 0, size: null, ms: 0 };
    // Logged just before the response ends (so a client that has its bytes finds the line), once.
    let logged = false;
    const log = () => {
      if (logged) return;
      logged = true;
      entry.ms = Date.now() - started;
      opts.onLog?.(entry);
    };
    handle(root, req, res, entry, { ...opts, state }, log)
      .catch(() => {
        if (!res.headersSent) send(res, entry, 500, 'internal error\n', {}, log);
        else res.destroy();
      })
      .finally(log);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/`,
    port,
    // Responses in flight stop at their next chunk with a graceful close (every flushed byte
    // reaches the client, so the log stays exact); idle keep-alive sockets close at once, and
    // anything still open after 2 s is destroyed.
    close: () =>
      new Promise<void>((resolve) => {
        state.stopping = true;
        server.close(() => resolve());
        server.closeIdleConnections?.();
        const force = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 2000);
        force.unref();
      }),
  };
}

function send(res: ServerResponse, entry: AccessLogEntry, status: number, text: string, headers: Record<string, string>, log: () => void): void {
  entry.status = status;
  log();
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
  res.end(entry.method === 'HEAD' ? undefined : text);
}

/** The file a URL path names inside root, or null: `..`, `.`, NUL and backslashes are refused before the filesystem is asked. */
export function resolveUrlPath(root: string, urlPath: string): string | null {
  const pathOnly = urlPath.split('?')[0].split('#')[0];
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathOnly);
  } catch {
    return null;
  }
  if (!decoded.startsWith('/') || decoded.includes('\0') || decoded.includes('\\')) return null;
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '..' || s === '.')) return null;
  return join(root, ...segments);
}

type HandleOptions = ServeOptions & { state: { stopping: boolean; downloads: number } };

async function handle(root: string, req: IncomingMessage, res: ServerResponse, entry: AccessLogEntry, opts: HandleOptions, log: () => void): Promise<void> {
  const routed = opts.routes?.(req, res, (status, bytes) => {
    entry.status = status;
    entry.bytes = bytes;
    log();
  });
  if (routed) return;
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, entry, 405, 'only GET and HEAD\n', { Allow: 'GET, HEAD' }, log);
  const candidate = resolveUrlPath(root, req.url ?? '/');
  if (candidate === null) return send(res, entry, 400, 'bad path\n', {}, log);
  if (RESERVED_NAMES.includes(candidate.slice(root.length + 1).split(sep)[0])) return send(res, entry, 404, 'not found\n', {}, log);
  // The real path must stay inside the root: a symlink in the repo that leads out is not followed.
  const real = await realpath(candidate).catch(() => null);
  if (real === null || (real !== root && !real.startsWith(root + sep))) return send(res, entry, 404, 'not found\n', {}, log);
  const st = await stat(real).catch(() => null);
  if (st === null || !st.isFile()) return send(res, entry, 404, 'not found\n', {}, log);
  entry.size = st.size;
  const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}-${st.ino.toString(16)}"`;
  const headers: Record<string, string> = {
    'Content-Type': CONTENT_TYPES[extname(real)] ?? 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: etag,
    'Last-Modified': st.mtime.toUTCString(),
    // The summary changes on every publish; objects and deltas never change under a name.
    'Cache-Control': /(^|\/)summary(\.sig)?$/.test(real) ? 'no-cache' : 'max-age=31536000, immutable',
  };
  if (req.headers['if-none-match'] === etag) {
    entry.status = 304;
    log();
    res.writeHead(304, headers);
    res.end();
    return;
  }
  // If-Range: a range of a file that changed since the client's copy would splice two versions.
  const ifRange = req.headers['if-range'];
  const rangeHeader = ifRange === undefined || ifRange === etag || ifRange === headers['Last-Modified'] ? req.headers.range : undefined;
  const range = parseRange(rangeHeader, st.size);
  if (range.kind === 'unsatisfiable') return send(res, entry, 416, 'range not satisfiable\n', { 'Content-Range': `bytes */${st.size}`, ETag: etag }, log);
  const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, st.size - 1];
  const capped = opts.maxDownloads !== undefined && req.method === 'GET' && st.size > 0 && headers['Cache-Control'] !== 'no-cache';
  if (capped && opts.state.downloads >= opts.maxDownloads!) {
    return send(res, entry, 503, 'busy: too many downloads at once, retry later\n', { 'Retry-After': String(opts.retryAfterS ?? 2) }, log);
  }
  entry.status = range.kind === 'partial' ? 206 : 200;
  if (range.kind === 'partial') headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
  headers['Content-Length'] = String(end - start + 1);
  res.writeHead(entry.status, headers);
  if (req.method === 'HEAD' || st.size === 0) {
    log();
    res.end();
    return;
  }
  entry.range = [start, end];
  if (capped) opts.state.downloads++;
  try {
    await sendBody(real, start, end, res, entry, opts, log);
  } finally {
    if (capped) opts.state.downloads--;
  }
}

/** Streams bytes start..end, counting what was flushed; honours the rate limit and the cut fault. */
async function sendBody(path: string, start: number, end: number, res: ServerResponse, entry: AccessLogEntry, opts: HandleOptions, log: () => void): Promise<void> {
  const fh = await open(path, 'r');
  const buffer = Buffer.allocUnsafe(CHUNK);
  const began = Date.now();
  const sent = () => (entry.sendMs = Date.now() - began);
  let closed = false;
  res.on('close', () => (closed = true));
  try {
    for (let pos = start; pos <= end && !closed; ) {
      // With a rate limit, small writes (20 per second) keep the flow smooth rather than bursty.
      let want = Math.min(opts.rateBytesPerSecond ? Math.max(1, Math.floor(opts.rateBytesPerSecond / 20)) : CHUNK, CHUNK, end - pos + 1);
      if (opts.cutAfterBytes !== undefined) want = Math.min(want, opts.cutAfterBytes - entry.bytes);
      if (want <= 0 || opts.state.stopping) {
        // The fault: a graceful close after the flushed bytes, so the client keeps every one of them.
        sent();
        log();
        res.socket?.end();
        return;
      }
      const { bytesRead } = await fh.read(buffer, 0, want, pos);
      if (bytesRead === 0) break; // the file shrank under us: the client sees a short body
      // A copy: the buffer is reused for the next read while this write may still be queued.
      // Counted once flushed; a connection closed meanwhile may never call back, hence the race with 'close'.
      const ok = await new Promise<boolean>((resolve) => {
        const onClose = () => resolve(false);
        res.once('close', onClose);
        res.write(Buffer.from(buffer.subarray(0, bytesRead)), (err) => {
          res.off('close', onClose);
          resolve(!err);
        });
      });
      if (!ok) return;
      entry.bytes += bytesRead;
      pos += bytesRead;
      if (opts.rateBytesPerSecond) {
        const dueMs = (entry.bytes / opts.rateBytesPerSecond) * 1000 - (Date.now() - began);
        if (dueMs > 0) await new Promise((r) => setTimeout(r, dueMs));
      }
    }
    sent();
    log();
    if (!closed) res.end();
  } finally {
    await fh.close();
  }
}
