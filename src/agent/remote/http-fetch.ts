/**
 * HTTP downloads for flaky links: resume with Range (appending to what a file already holds),
 * retry with exponential backoff and jitter on network errors and 5xx, abort a transfer that
 * stalls or crawls (slow retrieval), and never accept more bytes than the caller allows
 * (endless data). `downloadFile` for parts and objects, `fetchBytes` for small files.
 *
 * node:http / node:https rather than global fetch: Bun 1.4.5's fetch dropped the bytes it had
 * already received when the server closed mid-body (0 of 50,000 delivered, measured), which
 * would make every resume start over; node:http delivers them on Node and Bun alike.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { LarchError } from '../../errors.ts';
import { parseContentRange } from '../../protocol/range.ts';
import { type Sink, intoFile, intoMemory } from './download-sink.ts';
import type { DownloadProgress, DownloadResult, FileFetcher } from './fetcher.ts';

export interface FetchOptions {
  /** Consecutive failed requests that brought no new byte before giving up (default 5). */
  attempts?: number;
  /** Requests in all, whatever progress each made (default 200); busy answers (below) not counted. */
  maxRequests?: number;
  /** First retry delay; doubles per failure up to backoffMaxMs, with jitter (defaults 500 ms, 30 s). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** No byte (or no response) for this long aborts the request, which is then retried (default 30 s). */
  stallTimeoutMs?: number;
  /**
   * Fewer than bytesPerSecond on average over windowMs aborts the request as too slow (default
   * 1024 B/s over 30 s, as curl's --speed-limit/--speed-time; bytesPerSecond 0 turns it off).
   * A request aborted as too slow or stalled counts as a failure even if it brought bytes, so a
   * server trickling below the minimum is given up after `attempts` of them.
   */
  lowSpeed?: { bytesPerSecond: number; windowMs: number };
  /**
   * A 503 or 429 with Retry-After (a busy server, `larch serve --max-downloads`) is waited out
   * and asked again, not counted as a failure, for at most this long in all (default 1 h).
   */
  busyMaxMs?: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Injectable for tests: jitter source and the sleep between retries. */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface DownloadOptions extends FetchOptions {
  /** More bytes than this are refused, whatever the server says (endless data). */
  maxBytes: number;
  /** The size the file must have (from signed metadata); a server announcing another size is refused. */
  expectedSize?: number;
  onProgress?: (p: DownloadProgress) => void;
}

/** A failure worth retrying (network error, 5xx, stall, short body). */
class RetryableError extends Error {}

/** The response stalled or crawled below the minimum speed: retried, but never counted as progress. */
class SlowError extends RetryableError {}

/** The server asked to come back later (503/429 with Retry-After). */
class BusyError extends RetryableError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}

/** Retry-After: seconds or an HTTP date (RFC 9110 §10.2.3); null when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | null {
  if (value === undefined) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

const MAX_REDIRECTS = 5;
/** The minimum-speed rule unless the caller sets one (--min-speed, --min-speed-time). */
export const DEFAULT_MIN_SPEED = { bytesPerSecond: 1024, windowMs: 30_000 };
const DEFAULTS = { busyMaxMs: 3_600_000, attempts: 5, maxRequests: 200, backoffInitialMs: 500, backoffMaxMs: 30_000, stallTimeoutMs: 30_000, lowSpeed: DEFAULT_MIN_SPEED };


/**
 * Downloads url into dest, resuming from dest's current length (a previous run's partial
 * download) with `Range: bytes=N-`. dest holds exactly the file when this resolves.
 * @throws NOT_FOUND (404/410), INVALID_INPUT (over maxBytes, or another size than expected),
 *   IO (gave up: data.url, data.requests, data.receivedBytes), NO_SPACE
 * @example await downloadFile(`${base}deltas/${name}/part-0`, join(dir, 'part-0'), { maxBytes: part.size, expectedSize: part.size })
 */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions): Promise<DownloadResult> {
  return intoFile(dest, (sink) => transfer(url, sink, opts));
}

/**
 * Fetches a small file into memory, refusing more than maxBytes.
 * @throws NOT_FOUND, INVALID_INPUT, IO, as downloadFile
 */
export async function fetchBytes(url: string, opts: Omit<DownloadOptions, 'onProgress'>): Promise<Uint8Array> {
  return intoMemory((sink) => transfer(url, sink, opts));
}

/** The retry loop around single requests. Returns the number of requests made. */
async function transfer(url: string, sink: Sink, opts: DownloadOptions): Promise<number> {
  const o = { ...DEFAULTS, ...opts };
  const sleep = opts.sleep ?? ((ms: number) => abortableSleep(ms, opts.signal));
  const random = opts.random ?? Math.random;
  if (o.expectedSize !== undefined && o.expectedSize > o.maxBytes) throw new RangeError('expectedSize is over maxBytes');
  let failures = 0;
  let requests = 0;
  let busyMs = 0;
  let busyAnswers = 0;
  let etag: string | undefined;
  let lastError = '';
  for (;;) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    const limit = o.expectedSize ?? o.maxBytes;
    if (sink.size() > limit) await sink.truncate();
    if (o.expectedSize !== undefined && sink.size() === o.expectedSize) return requests;
    if (requests - busyAnswers >= o.maxRequests) break;
    requests++;
    const before = sink.size();
    let slow = false;
    try {
      const r = await requestOnce(url, sink, o, etag);
      etag = r.etag ?? etag;
      if (r.complete) return requests;
      // The server ignored or refused the range, or answered for another version: start over now.
      etag = undefined;
      await sink.truncate();
      continue;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason; // the caller's deadline: no retry
      if (!(err instanceof RetryableError)) throw err;
      lastError = err.message;
      slow = err instanceof SlowError;
      if (err instanceof BusyError && busyMs < o.busyMaxMs) {
        // Asked to wait: not a failure, and not counted against maxRequests. Up to twice the
        // asked time, so devices turned away together do not all come back in the same second.
        busyAnswers++;
        const wait = Math.min(Math.max(err.retryAfterMs, 100) * (1 + random()), 300_000);
        busyMs += wait;
        await sleep(Math.round(wait));
        continue;
      }
    }
    // A request that brought bytes resets the count: a flaky link that keeps making progress gets there.
    // A trickle below the minimum speed is no progress, whatever it brought.
    failures = sink.size() > before && !slow ? 1 : failures + 1;
    if (failures >= o.attempts) break;
    const delay = Math.min(o.backoffMaxMs, o.backoffInitialMs * 2 ** (failures - 1));
    await sleep(Math.round(delay / 2 + (random() * delay) / 2));
  }
  throw new LarchError('IO', `download '${url}': ${lastError || 'no complete response'} (gave up after ${requests} request(s))`, {
    hint: 'check the network and the server; running the command again resumes where it stopped',
    data: { url, requests, received_bytes: sink.size() },
  });
}

/**
 * One GET (following redirects). Resolves complete: true when the sink holds the whole file,
 * false when it must be emptied and fetched again from byte 0.
 * @throws RetryableError, LarchError
 */
async function requestOnce(url: string, sink: Sink, o: DownloadOptions & typeof DEFAULTS, etag: string | undefined): Promise<{ complete: boolean; etag?: string }> {
  const offset = sink.size();
  let target = url;
  for (let redirects = 0; ; redirects++) {
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity', 'User-Agent': 'larch', ...o.headers };
    if (offset > 0) {
      headers.Range = `bytes=${offset}-`;
      if (etag) headers['If-Range'] = etag;
    }
    const res = await get(target, headers, o);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
      res.resume();
      if (redirects >= MAX_REDIRECTS) throw new LarchError('IO', `download '${url}': more than ${MAX_REDIRECTS} redirects`, { data: { url } });
      const next = new URL(res.headers.location, target);
      // Same origin only (scheme, host, port): the device talks to the server its config names,
      // and an https remote is never taken to plain http or to a host nobody configured.
      if (next.origin !== new URL(target).origin) {
        throw new LarchError('IO', `download '${url}': the server redirects to another origin (${next.origin}); refused`, {
          hint: 'set the remote URL to where the files are (larch provision --repo-url, or larch/config.json remote.url); redirects are followed within the same scheme, host and port only',
          data: { url, location: next.toString(), reason: 'redirect' },
        });
      }
      target = next.toString();
      continue;
    }
    try {
      return await readResponse(url, res, sink, offset, o);
    } finally {
      res.destroy();
    }
  }
}

async function readResponse(url: string, res: IncomingMessage, sink: Sink, offset: number, o: DownloadOptions & typeof DEFAULTS): Promise<{ complete: boolean; etag?: string }> {
  const status = res.statusCode ?? 0;
  const etag = typeof res.headers.etag === 'string' ? res.headers.etag : undefined;
  if (status === 404 || status === 410) throw new LarchError('NOT_FOUND', `download '${url}': the server has no such file (HTTP ${status})`, { hint: 'check the remote URL; the vendor may not have published this file', data: { url, status } });
  if (status === 416 && offset > 0) {
    // Our copy is as long as the file (or longer): done if the server says exactly that.
    const total = /^bytes \*\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''));
    return { complete: total !== null && Number(total[1]) === offset && (o.expectedSize === undefined || o.expectedSize === offset) };
  }
  const retryAfter = status === 503 || status === 429 ? parseRetryAfter(res.headers['retry-after']) : null;
  if (retryAfter !== null) throw new BusyError(`server busy (HTTP ${status}, Retry-After ${res.headers['retry-after']})`, retryAfter);
  if (status >= 500 || status === 408 || status === 429) throw new RetryableError(`server answered HTTP ${status}`);
  if (status !== 200 && status !== 206) throw new LarchError('IO', `download '${url}': server answered HTTP ${status}`, { data: { url, status } });
  // No larch file is HTML: this is a captive portal, a proxy's or a CDN's error page.
  const type = String(res.headers['content-type'] ?? '');
  if (/^\s*text\/html\b/i.test(type)) {
    throw new LarchError('INVALID_INPUT', `download '${url}': the server answered a web page (Content-Type ${type}), not a larch file`, {
      hint: 'a captive portal, a proxy or a misconfigured server answers for the remote; check the remote URL and the network',
      data: { url, content_type: type, reason: 'content-type' },
    });
  }
  let total: number | null;
  if (status === 206) {
    const cr = parseContentRange(res.headers['content-range']);
    // A 206 for another range than ours would splice bytes into the wrong place.
    if (offset === 0 || cr === null || cr.start !== offset) return { complete: false };
    total = cr.size;
  } else {
    if (offset > 0) await sink.truncate(); // the server ignored Range: take the whole file
    const length = res.headers['content-length'];
    total = length !== undefined && /^\d+$/.test(length) ? Number(length) : null;
  }
  const limit = o.expectedSize ?? o.maxBytes;
  if (o.expectedSize !== undefined && total !== null && total !== o.expectedSize) {
    throw new LarchError('INVALID_INPUT', `download '${url}': the server's file is ${total} bytes, not the ${o.expectedSize} the signed metadata says`, { data: { url, expected: o.expectedSize, actual: total } });
  }
  if (total !== null && total > o.maxBytes) throw tooLarge(url, o.maxBytes);
  if (total !== null) sink.expect?.(total);
  o.onProgress?.({ url, receivedBytes: sink.size(), totalBytes: total });
  const watch = watchSpeed(res, o);
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        res.destroy();
        reject(err);
      };
      res.on('data', (chunk: Buffer) => {
        if (failed) return;
        watch.saw(chunk.length);
        try {
          if (sink.size() + chunk.length > limit) {
            sink.write(chunk.subarray(0, limit - sink.size()));
            if (o.expectedSize === undefined) throw tooLarge(url, o.maxBytes);
            throw new LarchError('INVALID_INPUT', `download '${url}': the server sent more than the ${o.expectedSize} bytes the signed metadata says`, { data: { url, expected: o.expectedSize } });
          }
          sink.write(chunk);
        } catch (err) {
          return fail(err);
        }
        o.onProgress?.({ url, receivedBytes: sink.size(), totalBytes: total });
      });
      res.on('error', (err) => fail(err instanceof RetryableError ? err : watch.reason() ? new SlowError(watch.reason()!) : new RetryableError(`connection lost after ${sink.size()} of ${total ?? '?'} bytes: ${err.message}`)));
      res.on('end', () => resolve());
      // 'close' without 'end': cut off (Bun may close without an error).
      res.on('close', () => (res.complete ? resolve() : fail(watch.reason() ? new SlowError(watch.reason()!) : new RetryableError(`connection closed after ${sink.size()} of ${total ?? '?'} bytes`))));
    });
  } catch (err) {
    if (err instanceof LarchError || err instanceof RetryableError) throw err;
    throw err; // ENOSPC and other write errors: not the network's fault
  } finally {
    watch.stop();
  }
  if (watch.reason()) throw new SlowError(watch.reason()!);
  if (total !== null && sink.size() !== total) throw new RetryableError(`connection closed after ${sink.size()} of ${total} bytes`);
  return { complete: true, etag };
}

const tooLarge = (url: string, max: number) =>
  new LarchError('INVALID_INPUT', `download '${url}': the server sent more than ${max} bytes`, { hint: 'the server or something between is sending endless data; nothing past the limit was kept', data: { url, max_bytes: max, reason: 'too-large' } });

/** Sends the request and waits for the response head, within the stall timeout. */
function get(url: string, headers: Record<string, string>, o: DownloadOptions & typeof DEFAULTS): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return reject(new LarchError('INVALID_INPUT', `'${url}' is not a URL`, { data: { url } }));
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return reject(new LarchError('INVALID_INPUT', `'${url}': only http and https URLs are supported`, { data: { url } }));
    const req = (parsed.protocol === 'https:' ? httpsRequest : httpRequest)(parsed, { method: 'GET', headers, signal: o.signal });
    const timer = setTimeout(() => req.destroy(new SlowError(`stalled: no response within ${o.stallTimeoutMs} ms`)), o.stallTimeoutMs);
    req.on('response', (res) => {
      clearTimeout(timer);
      resolve(res);
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      if (o.signal?.aborted) return reject(o.signal.reason);
      reject(err instanceof RetryableError ? err : new RetryableError((err as NodeJS.ErrnoException).code ?? err.message));
    });
    req.end();
  });
}

/** Aborts a response that stalls (no byte for stallTimeoutMs) or crawls (below lowSpeed over its window). */
function watchSpeed(res: IncomingMessage, o: DownloadOptions & typeof DEFAULTS) {
  let why: string | null = null;
  let lastByteAt = Date.now();
  let windowStart = Date.now();
  let windowBytes = 0;
  const abort = (reason: string) => {
    why = reason;
    res.destroy(new SlowError(reason));
  };
  const tick = setInterval(() => {
    const now = Date.now();
    if (now - lastByteAt >= o.stallTimeoutMs) return abort(`stalled: no byte for ${o.stallTimeoutMs} ms`);
    const { bytesPerSecond, windowMs } = o.lowSpeed;
    if (bytesPerSecond > 0 && now - windowStart >= windowMs) {
      if (windowBytes < (bytesPerSecond * windowMs) / 1000) return abort(`too slow: ${Math.round((windowBytes * 1000) / (now - windowStart))} bytes/s, under ${bytesPerSecond} over ${windowMs} ms (slow retrieval)`);
      windowStart = now;
      windowBytes = 0;
    }
  }, Math.max(10, Math.min(1000, Math.floor(o.stallTimeoutMs / 4))));
  return {
    saw(n: number) {
      lastByteAt = Date.now();
      windowBytes += n;
    },
    reason: () => why,
    stop: () => clearInterval(tick),
  };
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Joins a base URL and a repo-relative path (the base may or may not end with '/'). */
export function remoteUrl(baseUrl: string, path: string): string {
  return baseUrl.endsWith('/') ? baseUrl + path : `${baseUrl}/${path}`;
}

/**
 * The HTTP fetcher: BASE/PATH with this module's resume, retries and slow-retrieval limits
 * (fetch: the minimum speed and the rest of FetchOptions, for every request).
 */
export function httpFetcher(baseUrl: string, fetch: FetchOptions = {}): FileFetcher {
  return {
    url: baseUrl,
    where: (path) => remoteUrl(baseUrl, path),
    fetchBytes: (path, o) => fetchBytes(remoteUrl(baseUrl, path), { ...fetch, ...o }),
    downloadFile: (path, dest, o) => downloadFile(remoteUrl(baseUrl, path), dest, { ...fetch, ...o }),
    exchange: (signal, fn) => fn(signal ? httpFetcher(baseUrl, { ...fetch, signal }) : httpFetcher(baseUrl, fetch)),
  };
}
