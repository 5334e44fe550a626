/**
 * The chunk responder: answers byte-range requests for an archive repo's files over MQTT
 * (docs/formats.md §13.8) so a device with no HTTP path can update. Stateless: every request
 * opens, reads and closes its file, so several responders (processes or machines) share the
 * load through the shared subscription $share/larch/larch/v1/fetch and any of them can answer
 * the next chunk of a file another one started.
 */
import { randomBytes } from 'node:crypto';
import { open, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { MqttClient } from 'mqtt';
import { type MqttSettings, connectPersistent, endClient } from '../mqtt/connect.ts';
import { FETCH_SHARED_SUBSCRIPTION, FETCH_TOPIC, type FetchResponse, decodeRequest, encodeResponse, isReplyTopic, isValidCorrelation } from '../mqtt/fetch.ts';

export interface ResponderLogEntry {
  time: string;
  transport: 'mqtt';
  responder: string;
  path: string | null;
  offset: number | null;
  length: number | null;
  status: FetchResponse['status'] | 'dropped';
  bytes: number;
  size: number | null;
  ms: number;
}

export interface ResponderOptions {
  root: string;
  mqtt: Omit<MqttSettings, 'clientId'> & { clientId?: string };
  onLog?: (e: ResponderLogEntry) => void;
  log?: (line: string) => void;
  /** Send at most this many bytes per second per response (simulates a slow link). */
  rateBytesPerSecond?: number;
  /** startResponder resolves once subscribed, or after this long with the broker away (default 10 s). */
  waitMs?: number;
}

export interface Responder {
  clientId: string;
  client: MqttClient;
  close(): Promise<void>;
}

/** Connects (reconnecting forever) and answers requests until closed. */
export async function startResponder(opts: ResponderOptions): Promise<Responder> {
  const clientId = opts.mqtt.clientId ?? `larch-responder-${randomBytes(6).toString('hex')}`;
  const log = opts.log ?? (() => {});
  const rootReal = await realpath(opts.root);
  // Nothing awaited between the connect and the listeners below: a 'connect' that came first
  // would leave the responder connected and never subscribed (answering nothing).
  const client = await connectPersistent({ ...opts.mqtt, clientId, clean: true }, log);
  // A clean session: subscribe on every connect (after a broker restart too).
  let subscribed: () => void = () => {};
  const firstSubscription = new Promise<void>((resolve) => (subscribed = resolve));
  const subscribe = () =>
    client.subscribe(FETCH_SHARED_SUBSCRIPTION, { qos: 1 }, (err) => {
      if (err) log(`mqtt: subscribe ${FETCH_SHARED_SUBSCRIPTION}: ${err.message}`);
      else subscribed();
    });
  client.on('connect', subscribe);
  if (client.connected) subscribe();
  client.on('message', (topic, payload, packet) => {
    if (topic !== FETCH_TOPIC) return;
    const started = Date.now();
    const props = packet.properties ?? {};
    const responseTopic = props.responseTopic;
    const correlation = props.correlationData;
    const entry = (e: Partial<ResponderLogEntry>): ResponderLogEntry => ({ time: new Date().toISOString(), transport: 'mqtt', responder: clientId, path: null, offset: null, length: null, status: 'dropped', bytes: 0, size: null, ms: Date.now() - started, ...e });
    // Without a reply topic of ours there is nobody to answer (and no other topic is ever written).
    if (typeof responseTopic !== 'string' || !isReplyTopic(responseTopic) || !isValidCorrelation(correlation)) {
      opts.onLog?.(entry({}));
      return;
    }
    void answer(payload).then(async ({ response, path, offset, length }) => {
      if (opts.rateBytesPerSecond && response.status === 'ok') await new Promise((r) => setTimeout(r, Math.round((response.bytes.length * 1000) / opts.rateBytesPerSecond!)));
      client.publish(responseTopic, Buffer.from(encodeResponse(response)), { qos: 1, properties: { correlationData: correlation } }, (err) => {
        if (err) log(`mqtt: answer to ${responseTopic}: ${err.message}`);
      });
      opts.onLog?.(entry({ path, offset, length, status: response.status, bytes: response.status === 'ok' ? response.bytes.length : 0, size: response.status === 'ok' ? response.size : null }));
    });
  });

  async function answer(payload: Uint8Array): Promise<{ response: FetchResponse; path: string | null; offset: number | null; length: number | null }> {
    const req = decodeRequest(payload);
    if ('error' in req) return { response: { status: req.status, message: req.error }, path: null, offset: null, length: null };
    const at = { path: req.path, offset: req.offset, length: req.length };
    let real: string;
    try {
      real = await realpath(join(rootReal, req.path));
    } catch {
      return { response: { status: 'not-found', message: `${req.path}: no such file` }, ...at };
    }
    // A symlink inside the repo must not lead out of it.
    if (!real.startsWith(rootReal + sep)) return { response: { status: 'not-found', message: `${req.path}: no such file` }, ...at };
    try {
      const fh = await open(real, 'r');
      try {
        const st = await fh.stat();
        if (!st.isFile()) return { response: { status: 'not-found', message: `${req.path}: no such file` }, ...at };
        const n = Math.max(0, Math.min(req.length, st.size - req.offset));
        const bytes = Buffer.alloc(n);
        let got = 0;
        while (got < n) {
          const r = await fh.read(bytes, got, n - got, req.offset + got);
          if (r.bytesRead === 0) break;
          got += r.bytesRead;
        }
        return { response: { status: 'ok', size: st.size, offset: req.offset, bytes: bytes.subarray(0, got) }, ...at };
      } finally {
        await fh.close();
      }
    } catch (err) {
      return { response: { status: 'error', message: `${req.path}: ${(err as Error).message}` }, ...at };
    }
  }

  // Started once subscribed (or, with the broker away, after waitMs: it keeps reconnecting).
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([firstSubscription, new Promise<void>((resolve) => (timer = setTimeout(resolve, opts.waitMs ?? 10_000)))]);
  clearTimeout(timer);
  return { clientId, client, close: () => endClient(client) };
}
