/**
 * Connecting to the broker with mqtt.js: URL to options (plain or TLS, username/password, client
 * certificates), reconnect with exponential backoff, and one-shot connects for the CLI tools.
 * larch never runs a broker; any MQTT 5 broker (Mosquitto, EMQX, HiveMQ) serves.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect, type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { LarchError, fromSystemError, quash } from '../errors.ts';

export interface MqttSettings {
  url: string;
  clientId: string;
  username?: string;
  passwordFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  keepaliveS?: number;
  /** false: a persistent session (subscriptions and queued QoS 1 messages survive a disconnect). */
  clean?: boolean;
  sessionExpiryS?: number;
  will?: { topic: string; payload: Uint8Array; retain: boolean; qos: 0 | 1 };
}

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 60_000;

/** mqtt://, mqtts:// (TLS), tcp:// and ssl:// URLs; the WHATWG parser (mqtt.js's url.parse is deprecated). */
export async function clientOptions(s: MqttSettings): Promise<IClientOptions> {
  let url: URL;
  try {
    url = new URL(s.url);
  } catch {
    throw new LarchError('USAGE', `'${quash(s.url)}' is not an MQTT URL`, { hint: 'use mqtt://HOST[:1883] or mqtts://HOST[:8883]', data: { url: s.url } });
  }
  const tls = url.protocol === 'mqtts:' || url.protocol === 'ssl:';
  if (!tls && url.protocol !== 'mqtt:' && url.protocol !== 'tcp:') throw new LarchError('USAGE', `'${quash(s.url)}': unsupported scheme '${url.protocol}'`, { hint: 'use mqtt:// or mqtts://', data: { url: s.url, scheme: url.protocol } });
  const read = async (path: string | undefined, what: string) => (path === undefined ? undefined : readFile(path).catch((err) => Promise.reject(fromSystemError(err, `read ${what}`, path))));
  const password = s.passwordFile !== undefined ? (await read(s.passwordFile, 'MQTT password file'))!.toString('utf8').replace(/\r?\n$/, '') : url.password ? decodeURIComponent(url.password) : undefined;
  const opts: IClientOptions = {
    protocol: tls ? 'mqtts' : 'mqtt',
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : tls ? 8883 : 1883,
    protocolVersion: 5,
    clientId: s.clientId,
    clean: s.clean ?? true,
    keepalive: s.keepaliveS ?? 30,
    reconnectPeriod: BACKOFF_MIN_MS,
    connectTimeout: 10_000,
    username: s.username ?? (url.username ? decodeURIComponent(url.username) : undefined),
    password,
    properties: s.clean === false ? { sessionExpiryInterval: s.sessionExpiryS ?? 7 * 86400 } : undefined,
    will: s.will ? { topic: s.will.topic, payload: Buffer.from(s.will.payload), retain: s.will.retain, qos: s.will.qos } : undefined,
  };
  if (tls) {
    opts.ca = checkPem(await read(s.caFile, 'CA certificate'), 'CA certificate', s.caFile);
    opts.cert = checkPem(await read(s.certFile, 'client certificate'), 'client certificate', s.certFile);
    opts.key = checkPem(await read(s.keyFile, 'client key'), 'client key', s.keyFile);
    opts.rejectUnauthorized = true;
    // servername: mqtt.js sets it from a host name, and leaves it out for an IP (RFC 6066).
  }
  return opts;
}

/**
 * A TLS file that is not what it claims is refused naming the file, before mqtt.js's first connect
 * would throw an OpenSSL error from inside the client (an internal error, not a hint).
 * @throws INVALID_INPUT
 */
function checkPem(bytes: Buffer | undefined, what: 'CA certificate' | 'client certificate' | 'client key', path: string | undefined): Buffer | undefined {
  if (bytes === undefined) return undefined;
  try {
    if (what === 'client key') createPrivateKey(bytes);
    else new X509Certificate(bytes);
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${path}: not a PEM ${what}: ${(err as Error).message}`, { hint: `give the ${what} in PEM form (openssl x509 -in F -text / openssl pkey -in F show what a file holds)`, data: { path } });
  }
  return bytes;
}

/**
 * A long-lived client: reconnects forever, waiting 1 s, 2 s, 4 s ... up to 60 s (with +-20%
 * jitter, so a fleet does not come back in one wave after a broker restart), reset on connect.
 */
export async function connectPersistent(s: MqttSettings, log: (line: string) => void): Promise<MqttClient> {
  const opts = await clientOptions(s);
  const client = connect(opts);
  let delay = BACKOFF_MIN_MS;
  client.on('connect', () => {
    delay = BACKOFF_MIN_MS;
    client.options.reconnectPeriod = delay;
    disableNagle(client);
  });
  client.on('close', () => {
    client.options.reconnectPeriod = Math.round(delay * (0.8 + Math.random() * 0.4));
    delay = Math.min(BACKOFF_MAX_MS, delay * 2);
  });
  client.on('error', (err) => log(`mqtt: ${err.message}`));
  return client;
}

/**
 * Sends each packet at once. With Nagle's algorithm on, the tail of a packet that does not fill
 * a TCP segment waits for the peer's (delayed) acknowledgement: measured about 40 ms per chunk
 * answer on loopback (bench/mqtt-fetch.ts), the same in every direction of request/response.
 */
function disableNagle(client: MqttClient): void {
  try {
    (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
  } catch {
    // A transport without the option (a WebSocket stream): only slower, never a reason to fail.
  }
}

/** Connects once (no retries) for a CLI tool. @throws IO when the broker cannot be reached or refuses */
export async function connectOnce(s: MqttSettings, timeoutMs = 10_000): Promise<MqttClient> {
  const opts = { ...(await clientOptions(s)), reconnectPeriod: 0, connectTimeout: timeoutMs };
  const client = connect(opts);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => fail(err.message);
    const onClose = () => fail('connection closed');
    const done = () => {
      clearTimeout(timer);
      client.off('error', onError);
      client.off('close', onClose);
    };
    const fail = (why: string) => {
      done();
      client.end(true);
      reject(new LarchError('IO', `MQTT broker ${quash(s.url)}: ${why}`, { hint: 'check the URL, that the broker runs, and the credentials', data: { url: s.url } }));
    };
    const timer = setTimeout(() => fail(`no connection within ${timeoutMs} ms`), timeoutMs);
    client.once('connect', () => {
      done();
      disableNagle(client);
      client.on('error', () => {}); // later errors surface as failed publishes
      resolve(client);
    });
    client.on('error', onError);
    client.on('close', onClose);
  });
}

/** Publishes and waits for the broker's acknowledgement (QoS 1). @throws IO */
export function publishAcked(client: MqttClient, topic: string, payload: Uint8Array, opts: IClientPublishOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    client.publish(topic, Buffer.from(payload), opts, (err) => (err ? reject(new LarchError('IO', `publish to ${quash(topic)}: ${err.message}`, { data: { topic } })) : resolve()));
  });
}

export function endClient(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.end(false, {}, () => resolve()));
}
