/**
 * The MQTT fetcher: for devices whose only path to the vendor is the broker. The archive repo's
 * files (summary, deltas, objects) are fetched in chunks from `larch serve --mqtt` responders
 * (docs/formats.md §13.8) into the same download directory layout as over HTTP, and checked by
 * the same code (remote.ts and pull.ts: signed summary, part sizes and SHA-256, commit signatures).
 *
 * Resume: a part is continued from the length its file already has, whichever responder
 * answers; a request that gets no answer (broker restarted, responder gone) is sent again when
 * the client reconnects and after a timeout, and a chunk already written is never asked again.
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { LarchError, quash } from '../../errors.ts';
import { type MqttSettings, connectPersistent, endClient } from '../../mqtt/connect.ts';
import { DEFAULT_CHUNK_BYTES, FETCH_TOPIC, type FetchResponse, decodeResponse, encodeRequest, replyTopic } from '../../mqtt/fetch.ts';
import { type Sink, intoFile, intoMemory } from './download-sink.ts';
import type { DownloadProgress, DownloadResult, FileFetcher } from './fetcher.ts';

export interface MqttFetchOptions {
  /** Bytes asked for per request (default 64 KiB). */
  chunkBytes?: number;
  /**
   * Requests in flight at once for one file (default 8: 512 KiB, a 40 Mbit/s link's worth over a
   * 100 ms round trip). One at a time, the round trip bounds the rate: 0.6 MiB/s at 100 ms
   * against 4.3 MiB/s with 8 (bench/mqtt-fetch.ts).
   */
  window?: number;
  /**
   * A request without an answer is asked again after 8 times the recent answer time, at least
   * 2 s and at most this (default 30 s); at once after a reconnect.
   */
  requestTimeoutMs?: number;
  /** Give up when no byte arrived for this long (default 120 s), or after attempts refusals in a row. */
  stallTimeoutMs?: number;
  /** Error answers in a row before giving up (default 10). */
  attempts?: number;
  /** The broker must accept the connection within this long (default 30 s). */
  connectTimeoutMs?: number;
  /** Called with each request sent (tests count them). */
  onRequest?: (path: string, offset: number) => void;
}

export const DEFAULT_WINDOW = 8;

/** A request sent and its outcome (never rejects: a failure is an outcome). */
interface InFlight {
  offset: number;
  length: number;
  outcome: Promise<{ r: FetchResponse } | { err: Error }>;
}

/** One connection's request/response: correlation data to match answers, resend on reconnect. */
class ChunkClient {
  private pending = new Map<string, { payload: Uint8Array; resolve: (r: FetchResponse) => void; timer: NodeJS.Timeout; reject: (e: Error) => void; sentAt: number }>();
  readonly reply: string;
  /** Smoothed answer time (ms), for the resend timeout. */
  private rtt = 500;
  /** Closed with its session: no request is sent any more. */
  private closed = false;
  constructor(
    readonly client: MqttClient,
    clientId: string,
    private o: Required<Omit<MqttFetchOptions, 'onRequest'>> & Pick<MqttFetchOptions, 'onRequest'>,
  ) {
    this.reply = replyTopic(clientId);
    client.on('message', (topic, payload, packet) => {
      if (topic !== this.reply) return;
      const c = packet.properties?.correlationData;
      if (!c) return;
      const p = this.pending.get(Buffer.from(c).toString('hex'));
      if (!p) return; // an answer to a request already answered (sent twice)
      let r: FetchResponse;
      try {
        r = decodeResponse(payload);
      } catch {
        return; // malformed: the timeout asks again
      }
      this.pending.delete(Buffer.from(c).toString('hex'));
      clearTimeout(p.timer);
      this.rtt = 0.8 * this.rtt + 0.2 * (Date.now() - p.sentAt);
      p.resolve(r);
    });
    // After a reconnect (broker restart), whatever was asked and not answered is asked again.
    client.on('connect', () => {
      client.subscribe(this.reply, { qos: 1 }, () => {
        for (const [key, p] of this.pending) {
          p.sentAt = Date.now();
          this.send(key, p.payload);
        }
      });
    });
  }

  private send(key: string, payload: Uint8Array): void {
    this.client.publish(FETCH_TOPIC, Buffer.from(payload), { qos: 1, properties: { responseTopic: this.reply, correlationData: Buffer.from(key, 'hex') } }, () => {});
  }

  /** One request, answered or timed out (rejects with a plain Error: the caller retries). */
  request(path: string, offset: number, length: number): Promise<FetchResponse> {
    const key = randomBytes(12).toString('hex');
    const payload = encodeRequest({ path, offset, length });
    this.o.onRequest?.(path, offset);
    const waitMs = Math.round(Math.min(this.o.requestTimeoutMs, Math.max(2000, 8 * this.rtt)));
    if (this.closed) return Promise.reject(new Error('closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new Error(`no answer within ${waitMs} ms`));
      }, waitMs);
      this.pending.set(key, { payload, resolve, reject, timer, sentAt: Date.now() });
      if (this.client.connected) this.send(key, payload);
      // not connected: sent by the 'connect' handler
    });
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('closed'));
    }
    this.pending.clear();
  }
}

/**
 * A FileFetcher over MQTT (remote.kind 'mqtt' in the device config; the URL names the broker).
 * Connects once per exchange (fetchSummary, pull, history) and ends the connection afterwards,
 * so no connection outlives a CLI command.
 */
export class MqttFetcher implements FileFetcher {
  private o: Required<Omit<MqttFetchOptions, 'onRequest'>> & Pick<MqttFetchOptions, 'onRequest'>;
  private cc: ChunkClient | null = null;
  constructor(
    private settings: Omit<MqttSettings, 'clientId'> & { clientId?: string },
    opts: MqttFetchOptions = {},
  ) {
    this.o = { chunkBytes: opts.chunkBytes ?? DEFAULT_CHUNK_BYTES, window: Math.max(1, opts.window ?? DEFAULT_WINDOW), requestTimeoutMs: opts.requestTimeoutMs ?? 30_000, stallTimeoutMs: opts.stallTimeoutMs ?? 120_000, attempts: opts.attempts ?? 10, connectTimeoutMs: opts.connectTimeoutMs ?? 30_000, onRequest: opts.onRequest };
  }

  get url(): string {
    return this.settings.url;
  }

  exchange<T>(signal: AbortSignal | undefined, fn: (f: FileFetcher) => Promise<T>): Promise<T> {
    return this.session(() => fn(this), signal);
  }

  where(path: string): string {
    const u = new URL(this.settings.url);
    u.username = '';
    u.password = '';
    return `${u.origin === 'null' ? `${u.protocol}//${u.host}` : u.origin}/${path}`;
  }

  /**
   * Runs fn with a connected client, ending the connection afterwards. When signal aborts, the
   * session ends at once with its reason (the transfers in it stop at their next step).
   */
  async session<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.cc) return fn();
    const clientId = this.settings.clientId ?? `larch-fetch-${randomBytes(6).toString('hex')}`;
    const client = await connectPersistent({ ...this.settings, clientId, clean: true }, () => {});
    this.cc = new ChunkClient(client, clientId, this.o);
    const bound = <U>(p: Promise<U>) => (signal ? untilAborted(p, signal) : p);
    try {
      await bound(new Promise<void>((resolve, reject) => {
        if (client.connected) return resolve();
        const timer = setTimeout(() => reject(new LarchError('IO', `MQTT broker ${quash(this.settings.url)}: no connection within ${this.o.connectTimeoutMs} ms`, { hint: 'check the URL, that the broker runs, and the credentials', data: { url: this.settings.url } })), this.o.connectTimeoutMs);
        client.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
      }));
      return await bound(fn());
    } finally {
      this.cc.close();
      this.cc = null;
      await endClient(client);
    }
  }

  async fetchBytes(path: string, opts: { maxBytes: number; expectedSize?: number }): Promise<Uint8Array> {
    return intoMemory((sink) => this.transfer(path, sink, opts));
  }

  async downloadFile(path: string, dest: string, opts: { maxBytes: number; expectedSize?: number; onProgress?: (p: DownloadProgress) => void }): Promise<DownloadResult> {
    return intoFile(dest, (sink) => this.transfer(path, sink, opts));
  }

  /**
   * Chunk by chunk from the sink's length to the file's end, up to `window` requests in flight
   * once the file's size is known (the first answer says it). Chunks are written in order; an
   * answer that fails is asked again alone, the ones behind it kept. Returns the requests made.
   */
  private async transfer(path: string, sink: Sink, opts: { maxBytes: number; expectedSize?: number; onProgress?: (p: DownloadProgress) => void }): Promise<number> {
    return this.session(async () => {
      const cc = this.cc!;
      const where = this.where(path);
      if (opts.expectedSize !== undefined && sink.size() > opts.expectedSize) await sink.truncate();
      // Already whole (by its signed size; the caller checks the checksum): nothing to ask.
      if (opts.expectedSize !== undefined && sink.size() === opts.expectedSize) return 0;
      let requests = 0;
      let failures = 0;
      let lastProgress = Date.now();
      let total: number | null = opts.expectedSize ?? null;
      let window: InFlight[] = [];
      const ended = () => this.cc !== cc; // the session ended (a deadline): stop asking
      const ask = (offset: number, length: number): InFlight => {
        requests++;
        return { offset, length, outcome: cc.request(path, offset, length).then((r) => ({ r }), (err: Error) => ({ err })) };
      };
      /** Keeps the window full: the next chunks after the last one asked, up to the file's end. */
      const fill = () => {
        const limit = total ?? opts.maxBytes + 1;
        const depth = total === null ? 1 : this.o.window;
        let next = window.length > 0 ? window.at(-1)!.offset + window.at(-1)!.length : sink.size();
        while (window.length < depth && (window.length === 0 || next < limit)) {
          const length = Math.max(1, Math.min(this.o.chunkBytes, limit - next));
          window.push(ask(next, length));
          next += length;
        }
      };
      /** Starts over from what the sink holds (the answers in flight are dropped when they come). */
      const restart = () => (window = []);
      for (;;) {
        if (ended()) throw new LarchError('IO', `fetch '${where}' over MQTT: the session ended`, { data: { url: where } });
        fill();
        const head = window[0];
        const o = await head.outcome;
        const offset = sink.size();
        if ('err' in o) {
          if (Date.now() - lastProgress >= this.o.stallTimeoutMs) throw new LarchError('IO', `fetch '${where}' over MQTT: no answer for ${Math.round((Date.now() - lastProgress) / 1000)} s (${o.err.message}; held ${offset} bytes)`, { hint: 'is a responder (larch serve --mqtt) connected to the broker? run the command again to resume', data: { url: where, requests, received_bytes: offset } });
          window[0] = ask(head.offset, head.length);
          continue;
        }
        const r = o.r;
        if (r.status === 'not-found') throw new LarchError('NOT_FOUND', `fetch '${where}': the responder has no such file`, { hint: 'check the remote; the vendor may not have published this file', data: { url: where } });
        if (r.status === 'bad-request') throw new LarchError('INVALID_INPUT', `fetch '${where}' over MQTT: the responder refused the request: ${quash(r.message)}`, { data: { url: where, status: r.status } });
        if (r.status !== 'ok') {
          if (++failures >= this.o.attempts) throw new LarchError('IO', `fetch '${where}' over MQTT: responder answered ${r.status}: ${quash(r.message)}`, { data: { url: where, status: r.status } });
          window[0] = ask(head.offset, head.length);
          continue;
        }
        if (opts.expectedSize !== undefined && r.size !== opts.expectedSize) throw new LarchError('INVALID_INPUT', `fetch '${where}': the responder's file is ${r.size} bytes, not the ${opts.expectedSize} the signed metadata says`, { data: { url: where, expected: opts.expectedSize, actual: r.size } });
        if (r.size > opts.maxBytes) throw new LarchError('INVALID_INPUT', `fetch '${where}': the file is ${r.size} bytes, more than the ${opts.maxBytes} accepted`, { data: { url: where, max_bytes: opts.maxBytes, reason: 'too-large' } });
        if (total !== null && r.size !== total) restart(); // the file changed size: the chunks behind were cut for the old one
        total = r.size;
        if (r.offset !== offset || head.offset !== offset) {
          if (++failures >= this.o.attempts) throw new LarchError('IO', `fetch '${where}' over MQTT: answers for another range (${r.offset}, asked ${offset})`, { data: { url: where } });
          restart(); // not our range: ask again
          continue;
        }
        if (offset > r.size) {
          await sink.truncate(); // our copy is longer than the file: another version; start over
          restart();
          continue;
        }
        if (r.bytes.length !== Math.min(head.length, r.size - offset)) {
          if (++failures >= this.o.attempts) throw new LarchError('IO', `fetch '${where}' over MQTT: short answers (${r.bytes.length} bytes at ${offset})`, { data: { url: where } });
          restart();
          continue;
        }
        failures = 0;
        lastProgress = Date.now();
        sink.write(r.bytes);
        if (window[0] === head) window.shift();
        opts.onProgress?.({ url: where, receivedBytes: sink.size(), totalBytes: r.size });
        if (sink.size() === r.size) return requests;
      }
    });
  }
}

/** Rejects with the signal's reason when it aborts first. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
