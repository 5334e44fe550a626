/**
 * Test set-up for MQTT: a real Mosquitto on a free loopback port with a config the test writes
 * (never the system service), a recording subscriber, and `larch daemon` (the Bun binary) as a
 * child process.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { BIN, freePort } from './helpers.ts';

export { freePort };
import type { Test } from './device-helpers.ts';

/** Debian installs it in /usr/sbin, which is not on every user's PATH. */
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';


/** A test CA and the certificates it signed (PEM files in dir), made with the openssl tool. */
export interface TestPki {
  ca: string;
  /** For 127.0.0.1 (subjectAltName IP), as the broker presents it. */
  server: { cert: string; key: string };
  /** A client certificate with this common name (the broker's user name with use_identity_as_username). */
  client(cn: string): { cert: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
}

/** A CA valid for a day, a server certificate for 127.0.0.1, and client certificates on demand. */
export function makePki(dir: string, caName = 'larch-test-ca'): TestPki {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const p = (name: string) => join(dir, name);
  openssl(['req', '-x509', ...ec, '-keyout', p(`${caName}.key`), '-out', p(`${caName}.pem`), '-subj', `/CN=${caName}`, '-days', '1'], dir);
  const issue = (name: string, cn: string, ext: string) => {
    writeFileSync(p(`${name}.ext`), ext);
    openssl(['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${caName}.pem`), '-CAkey', p(`${caName}.key`), '-CAcreateserial', '-out', p(`${name}.pem`), '-days', '1', '-extfile', p(`${name}.ext`)], dir);
    return { cert: p(`${name}.pem`), key: p(`${name}.key`) };
  };
  const server = issue(`${caName}-server`, '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  return { ca: p(`${caName}.pem`), server, client: (cn) => issue(`${caName}-client-${cn}`, cn, 'extendedKeyUsage=clientAuth\n') };
}

export interface Broker {
  url: string;
  port: number;
  dir: string;
  child: ChildProcess;
  /** Stops it (SIGTERM, waits for exit). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same config (and persistence file). */
  start(): Promise<void>;
}

/**
 * Mosquitto on 127.0.0.1:PORT. With `users`, anonymous clients are refused and these logins are
 * accepted. With `tls`, the listener speaks TLS only and wants a client certificate signed by the
 * CA, whose common name is the user name; `acl` lines then say what each user may do.
 */
export async function startBroker(t: Test, dir: string, opts: BrokerOptions = {}): Promise<Broker> {
  // Another test process may take freePort's port before mosquitto binds it: start() waits until
  // the port is bound by this mosquitto's pid, and mosquitto exits when it cannot bind; then
  // another port is tried.
  for (let attempt = 1; ; attempt++) {
    const broker = brokerOn(await freePort(), dir, opts);
    const bound = await broker.start().then(
      () => true,
      (err) => {
        broker.child?.kill('SIGKILL'); // it never listened: not left running
        return attempt >= 5 ? Promise.reject(err) : false;
      },
    );
    if (bound) {
      t.teardown(() => broker.stop());
      return broker;
    }
    if (attempt >= 5) throw new Error(`mosquitto could not keep a port in ${attempt} attempts`);
  }
}

interface BrokerOptions {
  users?: Record<string, string>;
  tls?: TestPki;
  acl?: string[];
  sysIntervalS?: number;
  quiet?: boolean;
}

function brokerOn(port: number, dir: string, opts: BrokerOptions): Broker {
  const conf = join(dir, 'mosquitto.conf');
  const lines = [`listener ${port} 127.0.0.1`, 'persistence true', `persistence_location ${dir}/`, `log_dest file ${join(dir, 'mosquitto.log')}`, `log_type ${opts.quiet ? 'error' : 'all'}`, 'user root'];
  // As docs/fleet.md recommends: without it, each chunk answer waits ~40 ms for a delayed ACK (bench/mqtt-fetch.ts).
  lines.push('set_tcp_nodelay true');
  // $SYS/broker/... counters (messages received and sent), every this many seconds.
  if (opts.sysIntervalS) lines.push(`sys_interval ${opts.sysIntervalS}`);
  if (opts.tls) {
    lines.push(`cafile ${opts.tls.ca}`, `certfile ${opts.tls.server.cert}`, `keyfile ${opts.tls.server.key}`, 'require_certificate true', 'use_identity_as_username true', 'allow_anonymous false');
  }
  if (opts.acl) {
    writeFileSync(join(dir, 'acl'), opts.acl.join('\n') + '\n');
    lines.push(`acl_file ${join(dir, 'acl')}`);
  }
  if (opts.tls) {
    // TLS and client certificates are the login.
  } else if (opts.users) {
    const pw = join(dir, 'passwords');
    writeFileSync(pw, '');
    for (const [u, p] of Object.entries(opts.users)) {
      const r = spawnSync('mosquitto_passwd', ['-b', pw, u, p]);
      if (r.status !== 0) throw new Error(`mosquitto_passwd: ${r.stderr}`);
    }
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else {
    lines.push('allow_anonymous true');
  }
  writeFileSync(conf, lines.join('\n') + '\n');
  const broker: Broker = {
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    dir,
    child: null as unknown as ChildProcess,
    async start() {
      broker.child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      broker.child.stderr!.on('data', (d) => (err += d));
      for (let i = 0; i < 200; i++) {
        if (listensOn(port, broker.child.pid!) && (await canConnect(port))) return;
        if (broker.child.exitCode !== null) throw new Error(`mosquitto exited ${broker.child.exitCode}: ${err}`);
        await sleep(50);
      }
      throw new Error(`mosquitto did not listen on ${port}: ${err}`);
    },
    async stop() {
      const c = broker.child;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    },
  };
  return broker;
}

/** Whether process pid listens on 127.0.0.1:port (ss names the owner of each listening socket). */
function listensOn(port: number, pid: number): boolean {
  const r = spawnSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes(`pid=${pid},`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Received {
  topic: string;
  payload: Buffer;
  retain: boolean;
  json: any;
}

/** A subscriber that records every message; `waitFor` resolves with the first message matching. */
export interface Recorder {
  client: MqttClient;
  messages: Received[];
  on(topic: string): Received[];
  waitFor(pred: (m: Received) => boolean, timeoutMs?: number, what?: string): Promise<Received>;
  publish(topic: string, payload: Uint8Array | string, opts?: { retain?: boolean }): Promise<void>;
}

export async function recorder(t: Test, url: string, topics: string[], auth: { username?: string; password?: string; ca?: string; cert?: string; key?: string } = {}): Promise<Recorder> {
  const u = new URL(url);
  const { ca, cert, key, ...login } = auth;
  const tls = u.protocol === 'mqtts:' ? { ca: ca && readFileSync(ca), cert: cert && readFileSync(cert), key: key && readFileSync(key), rejectUnauthorized: true } : {};
  const client = mqtt.connect({ host: u.hostname, port: Number(u.port), protocol: u.protocol === 'mqtts:' ? 'mqtts' : 'mqtt', protocolVersion: 5, clientId: `rec-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 200, ...login, ...tls });
  t.teardown(() => new Promise<void>((r) => client.end(true, {}, () => r())));
  const messages: Received[] = [];
  const waiters: { pred: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];
  client.on('message', (topic, payload, packet) => {
    let json: any;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      json = undefined;
    }
    const m = { topic, payload, retain: packet.retain, json };
    messages.push(m);
    for (const w of [...waiters]) if (w.pred(m)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(m);
    }
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => client.subscribe(topics, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    client.once('error', reject);
  });
  return {
    client,
    messages,
    on: (topic) => messages.filter((m) => m.topic === topic),
    waitFor(pred, timeoutMs = 20_000, what = 'a message') {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (m: Received) => (clearTimeout(timer), resolve(m)) };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${messages.length} messages: ${messages.slice(-5).map((m) => `${m.topic} ${m.payload.toString().slice(0, 200)}`).join('\n')}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    publish: (topic, payload, opts = {}) => new Promise((resolve, reject) => client.publish(topic, Buffer.from(payload), { qos: 1, retain: opts.retain ?? false }, (err) => (err ? reject(err) : resolve()))),
  };
}

export interface DaemonProcess {
  child: ChildProcess;
  stderr(): string;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill9(): Promise<void>;
}

export function startDaemon(t: Test, sysroot: string, args: string[]): DaemonProcess {
  const child = spawn(BIN, ['daemon', '--sysroot', sysroot, '--jitter', '0', '--poll-interval-ms', '100', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const wait = () => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once('exit', () => r())));
  const p: DaemonProcess = {
    child,
    stderr: () => err,
    async stop() {
      child.kill('SIGTERM');
      await wait();
    },
    async kill9() {
      child.kill('SIGKILL');
      await wait();
    },
  };
  t.teardown(() => p.kill9());
  return p;
}
