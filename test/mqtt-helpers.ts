/**
 * Test set-up for MQTT: a real Mosquitto on a free loopback port with a config the test writes
 * (never the system service), a recording subscriber, and `larch daemon` (the Bun binary) as a
 * child process.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { BIN } from './helpers.ts';
import type { Test } from './device-helpers.ts';

/** Debian installs it in /usr/sbin, which is not on every user's PATH. */
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
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

/** Mosquitto on 127.0.0.1:PORT. With `users`, anonymous clients are refused and these logins are accepted. */
export async function startBroker(t: Test, dir: string, opts: { users?: Record<string, string> } = {}): Promise<Broker> {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const lines = [`listener ${port} 127.0.0.1`, 'persistence true', `persistence_location ${dir}/`, `log_dest file ${join(dir, 'mosquitto.log')}`, 'log_type all', 'user root'];
  if (opts.users) {
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
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    child: null as unknown as ChildProcess,
    async start() {
      broker.child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      broker.child.stderr!.on('data', (d) => (err += d));
      for (let i = 0; i < 100; i++) {
        if (await canConnect(port)) return;
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
  await broker.start();
  t.teardown(() => broker.stop());
  return broker;
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

export async function recorder(t: Test, url: string, topics: string[], auth: { username?: string; password?: string } = {}): Promise<Recorder> {
  const u = new URL(url);
  const client = mqtt.connect({ host: u.hostname, port: Number(u.port), protocol: 'mqtt', protocolVersion: 5, clientId: `rec-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 200, ...auth });
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
