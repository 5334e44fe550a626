/**
 * A simulated fleet on real brokers (issue 22, stage 4 in part): N devices, each a real MQTT 5
 * session (mqtt.js) with its last will, a retained status built by the daemon's own
 * statusMessage(), the announcement subscription and its command topic, spread over worker
 * processes; one Mosquitto, or two bridged (devices split over both, `larch serve --dashboard` on
 * the first). Measured: connect time, broker CPU and RSS, messages per second, the time from an
 * announcement to every device's "booted good" status as the fleet view counts it, serve's RSS
 * with N records, and the fleet API's answer time and size.
 *
 * The release is real: a vendor repo made by dist/larch (keygen, init, v1 and v2 commits, a signed
 * delta of about --delta-kib KiB, publish), served as static files by nginx (one worker). A device
 * "takes" an announced v2 after a random 0..--jitter s: it publishes `downloading`, GETs /summary,
 * /summary.sig, the delta's envelope and every part (each part's sha256 checked against the
 * superblock), then after a random 0-2 s "reboot" publishes booted good on v2 (or fell back, for
 * --fail-pct of them). HTTP is node's fetch (undici): one keep-alive pool per worker, at most
 * --http-conns requests in flight per worker. Also measured: the time to every download done,
 * nginx's bytes under /deltas/ against devices x delta size, summary bytes, nginx CPU and RSS,
 * requests per second at peak, and the dashboard's load time (headless Chromium, 1280x900).
 *
 * Commands are real: each device vets what arrives on its cmd topic with the agent's own
 * vetCommand (the vendor key's signature, this device, fresh, nonce not used before: a nonce set
 * per device) and answers on cmd/result (QoS 1): `check` with ok and the daemon's output shape
 * ({available, booted, update}), anything else with error "not simulated", refusals as refused.
 * After the rollout the coordinator sends --commands signed `check`s to random devices with
 * sendCommand() (as `larch command` does), --command-conc at a time: round trip p50/p99/max and
 * failures; then one `pin` (error expected) and one replayed nonce (refused expected). A
 * signature check costs about 1.3 ms and every payload differs (its nonce): nothing is cached.
 *
 * The brokers run with sys_interval 1: the coordinator reads their $SYS counters (messages
 * received and sent: every MQTT packet; publish messages received, sent and dropped) and reports
 * mean and peak per second over the rollout window, and drops (a smoke run fails on any).
 * Mosquitto 2.0.11's publish/messages/received skips retained PUBLISHes (its mask 0xF5 keeps the
 * retain bit), so with retained statuses it reads near 0: messages/received is the figure.
 * Not simulated: applying the delta, reboots, the agent's own logic, announcement signatures.
 *
 *   node --import tsx bench/fleet-sim.ts [--devices N] [--workers W] [--bridge] [--fail-pct P]
 *        [--delta-kib K] [--jitter S] [--http-conns C] [--dashboard-loads L] [--commands N]
 *        [--command-conc C] [--json] [--smoke]
 */
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { vetCommand } from '../src/agent/daemon/commands.ts';
import { IDLE_UPDATE, statusMessage } from '../src/agent/daemon/status-message.ts';
import type { Status } from '../src/agent/status.ts';
import { decodeEnvelope, decodeSuperblock } from '../src/delta/format.ts';
import { listDeltaNames } from '../src/delta/source.ts';
import { type CommandResult, DEFAULT_CLOCK_SKEW_S, commandResultTopic, commandTopic } from '../src/mqtt/format.ts';
import { sendCommand } from '../src/server/mqtt-publisher.ts';
import { readPublicKey, readSecretKey } from '../src/store/sign.ts';
import { launchChromium } from '../test/browser.ts';
import { freePort, waitUntil } from '../test/helpers.ts';
import { ROOT } from './corpus.ts';

const BIN = join(ROOT, 'dist', 'larch');
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';
const REF = 'os/stable';

function status(id: string, version: string, commit: string, seq: number, extra: Partial<Status> = {}, update: Partial<typeof IDLE_UPDATE> = {}): string {
  const s = { ref: REF, booted: { slot: 'a', version, commit, good: true, tries_left: null }, pending: null, rollback: null, boot: { rescue: false, order: ['a', 'b'], last_good: 'a' }, pinned: [], last_boot: null, last_update: null, failed_releases: [], ...extra } as unknown as Status;
  return JSON.stringify(statusMessage(s, { device: id, seq, started: '2026-12-06T00:00:00.000Z', policy: 'apply', update: { ...IDLE_UPDATE, ...update }, lastError: null }, new Date()));
}

// ---- worker: one process holding its share of the devices ---------------------------------

interface WorkerArgs {
  urls: string[];
  ids: string[];
  failPct: number;
  v1: string;
  v2: string;
  /** nginx's base URL and the delta's directory name under deltas/. */
  http: string;
  delta: string;
  jitterS: number;
  httpConns: number;
  /** The vendor's public key (.pub): the one key trusted for commands. */
  pubKey: string;
}

/** What a worker reports once each of its devices has downloaded (or failed to). */
interface WorkerStats {
  devices: number;
  downloads: number;
  failures: number;
  errors: string[];
  bytes: number;
  requests: number;
  /** Date.now() of the last download done. */
  lastDone: number;
}

async function worker(): Promise<void> {
  const { urls, ids, failPct, v1, v2, http, delta, jitterS, httpConns, pubKey } = JSON.parse(process.argv[3]) as WorkerArgs;
  const trusted = [await readPublicKey(pubKey)];
  // Per device: the nonces it ran (the agent's nonce log), and what it booted (for check's answer).
  const nonces = new Map<string, Set<string>>();
  const booted = new Map<string, { version: string; commit: string; failedHere: boolean }>();
  const clients: MqttClient[] = [];
  let connected = 0;
  const seqs = new Map<string, number>();
  const taken = new Set<string>();
  const send = (c: MqttClient, id: string, body: string) => c.publish(`larch/v1/device/${id}/status`, body, { qos: 0, retain: true });

  // HTTP: node's fetch (one undici keep-alive pool per origin), at most httpConns requests in flight.
  let inFlight = 0;
  const waiting: (() => void)[] = [];
  const acquire = () => (inFlight < httpConns ? (inFlight++, Promise.resolve()) : new Promise<void>((r) => waiting.push(r)));
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else inFlight--;
  };
  const stats: WorkerStats = { devices: ids.length, downloads: 0, failures: 0, errors: [], bytes: 0, requests: 0, lastDone: 0 };
  const get = async (path: string): Promise<Buffer> => {
    await acquire();
    try {
      const r = await fetch(new URL(path, http));
      const body = Buffer.from(await r.arrayBuffer());
      stats.requests++;
      stats.bytes += body.length;
      if (!r.ok) throw new Error(`GET /${path}: HTTP ${r.status}`);
      return body;
    } finally {
      release();
    }
  };
  // The envelope is the same for every device: decoded once per worker.
  let parts: { size: number; sha256: string }[] | null = null;
  const download = async () => {
    await get('summary');
    await get('summary.sig');
    const envelope = await get(`deltas/${delta}/envelope`);
    parts ??= decodeSuperblock(decodeEnvelope(envelope).superblock).parts.map((p) => ({ size: p.size, sha256: p.sha256 }));
    for (const [i, p] of parts.entries()) {
      const b = await get(`deltas/${delta}/part-${i}`);
      if (b.length !== p.size) throw new Error(`part-${i}: ${b.length} bytes, the superblock says ${p.size}`);
      if (createHash('sha256').update(b).digest('hex') !== p.sha256) throw new Error(`part-${i}: sha256 mismatch`);
    }
  };
  const settled = () => {
    if (stats.downloads + stats.failures === ids.length) process.send!({ stats });
  };

  // A command, vetted as the agent does (vetCommand: signature by a trusted key, this device,
  // fresh, nonce unused); `check` answered in the daemon's shape (update.ts CheckResult), the
  // rest with an error. Every payload differs (its nonce), so a signature cache would never hit.
  const answerCommand = async (c: MqttClient, id: string, payload: Buffer) => {
    const used = nonces.get(id)!;
    const v = await vetCommand(payload, { trusted, deviceId: id, clockSkewS: DEFAULT_CLOCK_SKEW_S, used: (n) => used.has(n), nowS: Math.floor(Date.now() / 1000) });
    const r: Omit<CommandResult, 'format' | 'device' | 'time'> = v.ok ? { nonce: v.command.nonce, cmd: v.command.cmd, result: 'error', code: 'INTERNAL', message: `command '${v.command.cmd}' failed: not simulated` } : { nonce: v.nonce, cmd: v.cmd, result: 'refused', reason: v.reason, message: v.message };
    if (v.ok) {
      used.add(v.command.nonce);
      if (v.command.cmd === 'check') {
        const b = booted.get(id)!;
        const update = b.commit === v2 ? null : { commit: v2, version: '2', timestamp: 1, bytes: null, via: 'delta', failed_here: b.failedHere ? { commit: v2, version: '2', reason: 'fell-back' } : null, barrier: false, older: false };
        r.result = 'ok';
        delete r.code;
        r.message = `ran command 'check' (signed by ${v.signedBy.join(', ')})`;
        r.output = { available: update !== null && !b.failedHere, booted: { slot: b.commit === v2 ? 'b' : 'a', commit: b.commit, version: b.version }, update };
      }
    }
    const full: CommandResult = { format: 1, device: id, ...r, time: new Date().toISOString() };
    c.publish(commandResultTopic(id), JSON.stringify(full), { qos: 1 });
  };

  await Promise.all(
    ids.map(
      (id, i) =>
        new Promise<void>((resolve) => {
          const u = new URL(urls[i % urls.length]);
          const c = mqtt.connect({ host: u.hostname, port: Number(u.port), protocolVersion: 5, clientId: id, keepalive: 300, reconnectPeriod: 5000, connectTimeout: 120_000, will: { topic: `larch/v1/device/${id}/status`, payload: Buffer.from(JSON.stringify({ format: 1, online: false, device: id })), qos: 1, retain: true } });
          clients.push(c);
          c.once('connect', () => {
            connected++;
            seqs.set(id, 1);
            nonces.set(id, new Set());
            booted.set(id, { version: '1', commit: v1, failedHere: false });
            c.subscribe([`larch/v1/announce/${REF}`, `larch/v1/device/${id}/cmd`], { qos: 1 });
            send(c, id, status(id, '1', v1, 1));
            resolve();
          });
          c.on('message', (topic, payload) => {
            if (topic === commandTopic(id)) return void answerCommand(c, id, payload);
            if (!topic.startsWith('larch/v1/announce/')) return;
            let a: { commit?: string; version?: string };
            try {
              a = JSON.parse(JSON.parse(payload.toString()).body);
            } catch {
              return;
            }
            // Once per device (a reconnect gets the retained announcement again).
            if (a.commit !== v2 || taken.has(id)) return;
            taken.add(id);
            const announced = { ref: REF, commit: v2, version: '2', rollout: 100, created: 1, selected: true, position: 0 };
            const next = () => seqs.set(id, seqs.get(id)! + 1).get(id)!;
            // A stable share fails: the id's hash decides, as a rollout position does.
            const fails = (parseInt(id.replace(/\D/g, '') || '0', 10) * 2654435761) % 100 < failPct;
            setTimeout(async () => {
              send(c, id, status(id, '1', v1, next(), {}, { state: 'downloading', announced }));
              try {
                await download();
              } catch (err) {
                stats.failures++;
                if (stats.errors.length < 5) stats.errors.push(`${id}: ${(err as Error).message}`);
                settled();
                return;
              }
              stats.downloads++;
              stats.lastDone = Date.now();
              settled();
              // The "reboot" into v2, then its outcome.
              setTimeout(() => {
                if (fails) booted.set(id, { version: '1', commit: v1, failedHere: true });
                else booted.set(id, { version: '2', commit: v2, failedHere: false });
                if (fails) send(c, id, status(id, '1', v1, next(), { failed_releases: [{ commit: v2, version: '2', time: new Date().toISOString(), reason: 'fell-back', failed_checks: ['10-services'] }], last_boot: { time: new Date().toISOString(), slot: 'b', healthy: false, fell_back: true, outcome: 'fell back' } } as unknown as Partial<Status>));
                else send(c, id, status(id, '2', v2, next()));
              }, Math.random() * 2000);
            }, Math.random() * jitterS * 1000);
          });
        }),
    ),
  );
  process.send!({ connected });
  process.on('message', (m: { stop?: boolean }) => {
    if (!m.stop) return;
    for (const c of clients) c.end(true);
    process.exit(0);
  });
}

// ---- the run -------------------------------------------------------------------------------

interface ProcSample {
  cpuS: number;
  rssMiB: number;
}

function proc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  return { cpuS: ticks / 100, rssMiB: Math.round(rss * 10) / 10 };
}

async function startMosquitto(dir: string, name: string, bridgeTo?: number): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const conf = join(dir, `${name}.conf`);
  const lines = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'max_queued_messages 100000', 'log_dest none', 'sys_interval 1'];
  if (bridgeTo) lines.push(`connection ${name}-bridge`, `address 127.0.0.1:${bridgeTo}`, 'topic larch/v1/device/# out 0', 'topic larch/v1/announce/# in 1', 'bridge_protocol_version mqttv50', 'cleansession true');
  writeFileSync(conf, lines.join('\n') + '\n');
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('sh', ['-c', `ss -ltn 'sport = :${port}' | grep -q LISTEN`]).status === 0) return { child, port };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`mosquitto ${name} did not listen on ${port}`);
}

async function rollouts(url: string): Promise<any> {
  return (await fetch(new URL('/api/fleet/rollouts', url))).json();
}

/** The process and its children (nginx: master and worker). */
function procTree(pid: number): ProcSample {
  const pids = [pid];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (Number(readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  const all = pids.map(proc);
  return { cpuS: all.reduce((s, p) => s + p.cpuS, 0), rssMiB: Math.round(all.reduce((s, p) => s + p.rssMiB, 0) * 10) / 10 };
}

function larch(args: string[]): string {
  const r = spawnSync(BIN, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`larch ${args.slice(0, 2).join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A vendor repo with v1, v2 (v2 adds deltaKiB of random data) and the signed delta v1 -> v2, published. */
async function vendorRepo(dir: string, deltaKiB: number): Promise<{ repo: string; key: string; v1: string; v2: string; delta: string; deltaBytes: number; parts: number }> {
  const repo = join(dir, 'repo');
  const key = join(dir, 'vendor');
  larch(['keygen', '--out', key]);
  larch(['init', '--repo', repo, '--mode', 'archive']);
  const app = randomBytes(64 * 1024);
  const commits: string[] = [];
  for (const v of [1, 2]) {
    const tree = join(dir, `tree-${v}`);
    mkdirSync(join(tree, 'etc'), { recursive: true });
    mkdirSync(join(tree, 'usr/bin'), { recursive: true });
    mkdirSync(join(tree, 'usr/share/doc/app'), { recursive: true });
    writeFileSync(join(tree, 'etc/os-release'), `NAME=larch-fleet-sim\nVERSION=${v}\n`);
    writeFileSync(join(tree, 'usr/bin/app'), app);
    writeFileSync(join(tree, 'usr/share/doc/app/README'), `the simulated fleet's OS, version ${v}\n`);
    if (v === 2) {
      mkdirSync(join(tree, 'usr/lib/app'), { recursive: true });
      writeFileSync(join(tree, 'usr/lib/app/data.bin'), randomBytes(deltaKiB * 1024));
    }
    const out = larch(['commit', '--repo', repo, '-b', REF, '--tree', tree, '--version', String(v), '--subject', `v${v}`, '--sign-key', `${key}.key`, '--owner', '0:0', '--timestamp', String(1_700_000_000 + v * 1000), '--json']);
    commits.push(JSON.parse(out).commit);
  }
  const [v1, v2] = commits;
  larch(['delta', 'generate', '--repo', repo, '--from', v1, '--to', v2, '--sign-key', `${key}.key`]);
  larch(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
  const [delta] = await listDeltaNames(repo);
  if (delta !== `${v1}-${v2}`) throw new Error(`the repo's delta is ${delta}, not ${v1}-${v2}`);
  const files = readdirSync(join(repo, 'deltas', delta));
  const deltaBytes = files.reduce((s, f) => s + statSync(join(repo, 'deltas', delta, f)).size, 0);
  return { repo, key, v1, v2, delta, deltaBytes, parts: files.filter((f) => f.startsWith('part-')).length };
}

/** nginx (Debian's), one worker, serving root as static files on 127.0.0.1; log: its access log. */
async function startNginx(dir: string, root: string): Promise<{ child: ChildProcess; url: string; log: string }> {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  const log = join(dir, 'access.log');
  writeFileSync(
    conf,
    `user root;
daemon off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')};
events { worker_connections 4096; }
http {
  log_format sim '$msec $remote_addr "$request" $status $body_bytes_sent $request_time';
  access_log ${log} sim;
  sendfile on;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  types { application/octet-stream summary sig filez commit dirtree dirmeta; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`,
  );
  const child = spawn('nginx', ['-c', conf, '-p', dir], { stdio: 'ignore' });
  await waitUntil(() => existsSync(join(dir, 'nginx.pid')) && spawnSync('sh', ['-c', `ss -ltn 'sport = :${port}' | grep -q LISTEN`]).status === 0, 20_000, 'nginx to listen');
  return { child, url: `http://127.0.0.1:${port}/`, log };
}

/** nginx's access log, summed: bytes under /deltas/ and of the summary, statuses, peak requests per second. */
function readAccessLog(log: string): { requests: number; deltaBytes: number; summaryBytes: number; non200: number; peakReqPerS: number } {
  const perSecond = new Map<number, number>();
  const r = { requests: 0, deltaBytes: 0, summaryBytes: 0, non200: 0, peakReqPerS: 0 };
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const m = /^(\d+)\.\d+ \S+ "\S+ (\S+) [^"]*" (\d+) (\d+) \S+$/.exec(line);
    if (!m) continue;
    r.requests++;
    perSecond.set(Number(m[1]), (perSecond.get(Number(m[1])) ?? 0) + 1);
    if (m[3] !== '200') r.non200++;
    if (m[2].startsWith('/deltas/')) r.deltaBytes += Number(m[4]);
    else if (m[2] === '/summary' || m[2] === '/summary.sig') r.summaryBytes += Number(m[4]);
  }
  r.peakReqPerS = Math.max(0, ...perSecond.values());
  return r;
}

/** Opens the dashboard in headless Chromium (1280x900): navigation start to data-ready="synced" (ms), and the rows it shows. */
async function dashboardLoads(serveUrl: string, loads: number): Promise<{ readyMs: number[]; apiDoneMs: number[]; rows: number; upperBound: boolean }> {
  const browser = await launchChromium();
  const readyMs: number[] = [];
  const apiDoneMs: number[] = [];
  let rows = 0;
  let upperBound = false;
  try {
    for (let i = 0; i < loads; i++) {
      const page = await browser.open(`${serveUrl}fleet/`, 1280, 900);
      await page.waitFor(`location.pathname.startsWith('/fleet')`, 30_000);
      // performance.now() counts from the navigation's start; a MutationObserver catches the moment
      // the page sets data-ready (negative: it was already set when the observer came, an upper bound).
      const ms = await page.evaluate<number>(
        `new Promise((r) => { const ok = () => document.body && document.body.dataset.ready === 'synced'; if (ok()) return r(-performance.now()); new MutationObserver((_, o) => { if (ok()) { o.disconnect(); r(performance.now()); } }).observe(document.documentElement, { attributes: true, subtree: true, childList: true }); setTimeout(() => r(NaN), 120000); })`,
      );
      readyMs.push(Math.round(Math.abs(ms)));
      if (ms < 0) upperBound = true;
      apiDoneMs.push(Math.round(await page.evaluate<number>(`(performance.getEntriesByType('resource').find((e) => e.name.includes('/api/fleet/devices')) || { responseEnd: NaN }).responseEnd`)));
      rows = await page.evaluate<number>(`document.querySelectorAll('#devices tbody tr').length`);
    }
  } finally {
    await browser.close();
  }
  return { readyMs, apiDoneMs, rows, upperBound };
}

/** The broker's $SYS counters (cumulative; Mosquitto publishes each one every sys_interval when it changed), sampled as they arrive. */
const SYS_COUNTERS = ['messages/received', 'messages/sent', 'publish/messages/received', 'publish/messages/sent', 'publish/messages/dropped'] as const;
type SysSamples = Record<(typeof SYS_COUNTERS)[number], { t: number; v: number }[]>;

async function watchSys(url: string, name: string): Promise<{ samples: SysSamples; client: MqttClient }> {
  const samples = Object.fromEntries(SYS_COUNTERS.map((k) => [k, []])) as unknown as SysSamples;
  const client = mqtt.connect(url, { protocolVersion: 5, clientId: `bench-sys-${name}` });
  await new Promise((r) => client.once('connect', r));
  client.on('message', (topic, payload) => {
    const k = topic.slice('$SYS/broker/'.length) as keyof SysSamples;
    if (samples[k]) samples[k].push({ t: Date.now(), v: Number(payload.toString()) });
  });
  await new Promise((r) => client.subscribe(SYS_COUNTERS.map((k) => `$SYS/broker/${k}`), { qos: 0 }, r));
  return { samples, client };
}

/**
 * A counter over the rollout window [t0, t0 + windowMs] (samples read until t1, which leaves the
 * last second's sample time to arrive): its growth from the last sample before t0 (the broker
 * quiet by then) to the last one by t1; the mean, that growth over the window; the peak, the
 * largest growth between two consecutive samples per second (the first interval counted from
 * t0 - 1 s at the earliest: a counter idle before t0 is published only when it changes).
 */
function sysRate(xs: { t: number; v: number }[], t0: number, windowMs: number, t1: number): { mean: number; peak: number; total: number } {
  const before = xs.filter((x) => x.t <= t0).at(-1) ?? xs[0];
  const inside = xs.filter((x) => x.t > t0 && x.t <= t1);
  if (!before || inside.length === 0) return { mean: 0, peak: 0, total: 0 };
  let peak = 0;
  let prev = { t: Math.max(before.t, t0 - 1000), v: before.v };
  for (const x of inside) {
    if (x.t > prev.t) peak = Math.max(peak, ((x.v - prev.v) * 1000) / (x.t - prev.t));
    prev = x;
  }
  const total = inside.at(-1)!.v - before.v;
  return { mean: Math.round((total * 1000) / Math.max(1, windowMs)), peak: Math.round(peak), total };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  if (process.argv[2] === '--worker') return worker();
  const { values } = parseArgs({
    options: {
      devices: { type: 'string', default: '1000' },
      workers: { type: 'string', default: '4' },
      bridge: { type: 'boolean' },
      'fail-pct': { type: 'string', default: '0' },
      'delta-kib': { type: 'string', default: '256' },
      jitter: { type: 'string', default: '2' },
      'http-conns': { type: 'string', default: '64' },
      'dashboard-loads': { type: 'string', default: '3' },
      commands: { type: 'string', default: '100' },
      'command-conc': { type: 'string', default: '4' },
      smoke: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const smoke = values.smoke === true;
  const n = smoke ? 200 : Number(values.devices);
  const w = smoke ? 2 : Number(values.workers);
  const bridge = smoke ? false : values.bridge === true;
  const deltaKiB = smoke ? 64 : Number(values['delta-kib']);
  const loads = smoke ? 1 : Number(values['dashboard-loads']);
  const failPct = Number(values['fail-pct']);
  const jitterS = Number(values.jitter);
  const httpConns = Number(values['http-conns']);
  const nCommands = smoke ? 20 : Number(values.commands);
  const commandConc = Number(values['command-conc']);
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: node scripts/build.mjs`);
  const tStart = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'larch-fleet-sim-'));
  const children: ChildProcess[] = [];
  const problems: string[] = [];
  let nginxChild: ChildProcess | undefined;
  // A stuck smoke run (a worker that died, a broker that never answers) fails instead of hanging.
  if (smoke)
    setTimeout(() => {
      process.stderr.write('FAIL: the smoke run did not finish in 120 s\n');
      for (const ch of children) ch.kill(ch === nginxChild ? 'SIGTERM' : 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      process.exit(1);
    }, 120_000).unref();
  try {
    const vendor = await vendorRepo(dir, deltaKiB);
    const nginx = await startNginx(dir, vendor.repo);
    children.push(nginx.child);
    nginxChild = nginx.child;
    const a = await startMosquitto(dir, 'a');
    children.push(a.child);
    const b = bridge ? await startMosquitto(dir, 'b', a.port) : null;
    if (b) children.push(b.child);
    const urls = [`mqtt://127.0.0.1:${a.port}`, ...(b ? [`mqtt://127.0.0.1:${b.port}`] : [])];
    const sys = await Promise.all(urls.map((u, i) => watchSys(u, i ? 'b' : 'a')));
    const serve = spawn(BIN, ['serve', '--repo', vendor.repo, '--mqtt', urls[0], '--dashboard', '--dashboard-max-devices', String(n + 100), '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(serve);
    const serveUrl = await new Promise<string>((resolve) => {
      let out = '';
      serve.stdout!.on('data', (d) => {
        out += d;
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) resolve(m[1]);
      });
    });
    const brokerBefore = proc(a.child.pid!);
    const bridgeBefore = b ? proc(b.child.pid!) : null;
    const nginxBefore = procTree(nginx.child.pid!);
    const t0 = Date.now();
    const ids = Array.from({ length: n }, (_, i) => `sim-${String(i).padStart(6, '0')}`);
    const workers = Array.from({ length: w }, (_, k) =>
      fork(new URL(import.meta.url).pathname, ['--worker', JSON.stringify({ urls, ids: ids.filter((_, i) => i % w === k), failPct, v1: vendor.v1, v2: vendor.v2, http: nginx.url, delta: vendor.delta, jitterS, httpConns, pubKey: `${vendor.key}.pub` } satisfies WorkerArgs)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' }),
    );
    children.push(...workers);
    const stats: WorkerStats[] = [];
    for (const wk of workers) wk.on('message', (m: { stats?: WorkerStats }) => m.stats && stats.push(m.stats));
    await Promise.all(workers.map((wk) => new Promise((r) => wk.once('message', r))));
    const connectS = (Date.now() - t0) / 1000;
    // The view has every device once it counts them all.
    const deadline = (s: number) => Date.now() + s * 1000;
    let until = deadline(smoke ? 60 : 600);
    while ((await rollouts(serveUrl))[0]?.counts.devices !== n) {
      if (Date.now() > until) throw new Error('not every device reached the fleet view');
      await new Promise((r) => setTimeout(r, 250));
    }
    const inViewS = (Date.now() - t0) / 1000;
    // Announce v2 to everyone (retained), as larch announce does (the simulated devices do not check signatures).
    const pub = mqtt.connect(urls[0], { protocolVersion: 5, clientId: 'bench-announcer' });
    await new Promise((r) => pub.once('connect', r));
    // The $SYS baseline: counters as they are once the connections' traffic is counted and
    // published (sys_interval 1), so that none of it lands in the rollout window.
    await new Promise((r) => setTimeout(r, 2200));
    const workersBefore = workers.reduce((s, wk) => s + proc(wk.pid!).cpuS, 0);
    const tA = Date.now();
    pub.publish(`larch/v1/announce/${REF}`, JSON.stringify({ body: JSON.stringify({ type: 'announce', format: 1, ref: REF, commit: vendor.v2, version: '2', timestamp: 1, summary_serial: 1, rollout: 100, created: Math.floor(tA / 1000) }), sigs: [] }), { qos: 1, retain: true });
    let c: any;
    until = deadline(smoke ? 60 : 600);
    for (;;) {
      c = (await rollouts(serveUrl))[0]?.counts;
      if (c && c.good + c.fell_back === n) break;
      if (stats.length === w && stats.some((s) => s.failures > 0)) break;
      if (Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const tEnd = Date.now();
    const rolloutS = (tEnd - tA) / 1000;
    // The $SYS counters of the second that ends the rollout window: Mosquitto's sys_interval
    // ticks on whole seconds of its main loop, so the next sample can take up to 2 s.
    await new Promise((r) => setTimeout(r, 2500));
    const sysRates = sys.map((x) => Object.fromEntries(SYS_COUNTERS.map((k) => [k, sysRate(x.samples[k], tA, tEnd - tA, tEnd + 2200)])) as Record<(typeof SYS_COUNTERS)[number], ReturnType<typeof sysRate>>);
    if (!(c && c.good + c.fell_back === n)) problems.push(`the view counts ${c ? c.good + c.fell_back : 0} outcomes of ${n}`);
    await waitUntil(() => stats.length === w, 30_000, 'every worker to report its downloads').catch((e) => problems.push(e.message));
    const brokerAfter = proc(a.child.pid!);
    const bridgeAfter = b ? proc(b.child.pid!) : null;
    const nginxAfter = procTree(nginx.child.pid!);
    const workersCpuS = workers.reduce((s, wk) => s + proc(wk.pid!).cpuS, 0) - workersBefore;
    const downloads = stats.reduce((s, x) => s + x.downloads, 0);
    const failures = stats.reduce((s, x) => s + x.failures, 0);
    for (const x of stats) for (const e of x.errors) problems.push(`download failed: ${e}`);
    if (downloads !== n) problems.push(`${downloads} downloads of ${n}`);
    const access = readAccessLog(nginx.log);
    const bytesRatio = downloads ? access.deltaBytes / (downloads * vendor.deltaBytes) : 0;
    if (Math.abs(bytesRatio - 1) > 0.05) problems.push(`nginx bytes under /deltas/ / (downloads x delta size) = ${bytesRatio.toFixed(3)}`);
    if (access.non200) problems.push(`${access.non200} nginx answers other than 200`);
    const tApi = Date.now();
    const body = Buffer.from(await (await fetch(new URL('/api/fleet/devices', serveUrl))).arrayBuffer());
    const apiMs = Date.now() - tApi;
    const gz = await fetch(new URL('/api/fleet/devices', serveUrl), { headers: { 'Accept-Encoding': 'gzip' } });
    const gzBytes = Number(gz.headers.get('content-length'));
    await gz.arrayBuffer();
    const serveRss = proc(serve.pid!).rssMiB;
    const workerRss = Math.round(workers.reduce((s, wk) => s + proc(wk.pid!).rssMiB, 0) * 10) / 10;
    // Signed `check` commands to random devices, as `larch command` sends them (sendCommand: a
    // fresh client each, QoS 1, waiting for the answer on cmd/result), commandConc at a time, each
    // through the broker its device is on. Round trip: sendCommand's call to its return.
    const signKeys = [await readSecretKey(`${vendor.key}.key`)];
    const brokerOf = (i: number) => urls[Math.floor(i / w) % urls.length];
    const cmdMs: number[] = [];
    const cmdFailures: string[] = [];
    let nextCmd = 0;
    const tCmd = Date.now();
    await Promise.all(
      Array.from({ length: Math.min(commandConc, nCommands) }, async () => {
        while (nextCmd < nCommands) {
          nextCmd++;
          const i = Math.floor(Math.random() * n);
          const t = performance.now();
          try {
            const { result: r } = await sendCommand({ signKeys, mqtt: { url: brokerOf(i) }, device: ids[i], cmd: 'check', waitMs: 10_000 });
            cmdMs.push(performance.now() - t);
            const out = r?.output as { available?: unknown; booted?: { commit?: string } } | undefined;
            if (r?.result !== 'ok' || typeof out?.available !== 'boolean' || !out.booted?.commit) cmdFailures.push(`${ids[i]}: ${r?.result} ${r?.message}`);
          } catch (err) {
            cmdFailures.push(`${ids[i]}: ${(err as Error).message}`);
          }
        }
      }),
    );
    const cmdWallS = (Date.now() - tCmd) / 1000;
    // The device side's refusals, once each: a command not simulated, and a replayed nonce.
    const other = await sendCommand({ signKeys, mqtt: { url: brokerOf(0) }, device: ids[0], cmd: 'pin', waitMs: 10_000 }).catch((e) => ({ result: { result: (e as Error).message } as Partial<CommandResult> }));
    if (other.result?.result !== 'error') problems.push(`'pin' answered ${other.result?.result}, not error (not simulated)`);
    const nonce = randomBytes(24).toString('base64url');
    const again = () => sendCommand({ signKeys, mqtt: { url: brokerOf(1) }, device: ids[1], cmd: 'check', nonce, waitMs: 10_000 }).catch((e) => ({ result: { result: (e as Error).message } as Partial<CommandResult> }));
    const first = await again();
    const replay = await again();
    if (first.result?.result !== 'ok' || replay.result?.result !== 'refused' || replay.result.reason !== 'replayed') problems.push(`a replayed check answered ${replay.result?.result} ${replay.result?.reason ?? ''} (first ${first.result?.result})`);
    for (const f of cmdFailures.slice(0, 5)) problems.push(`command failed: ${f}`);
    if (cmdFailures.length) problems.push(`${cmdFailures.length} of ${nCommands} commands failed`);
    const pct = (xs: number[], p: number) => (xs.length ? Math.round([...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]) : null);
    const dropped = sys.reduce((s, x) => s + (x.samples['publish/messages/dropped'].at(-1)?.v ?? 0), 0);
    if (dropped > 0) problems.push(`the broker(s) dropped ${dropped} publish messages`);
    const page = await dashboardLoads(serveUrl, loads);
    if (page.rows !== n) problems.push(`the dashboard shows ${page.rows} rows, not ${n}`);
    if (page.readyMs.some((x) => !Number.isFinite(x))) problems.push('the dashboard never set data-ready="synced"');
    const lastDone = Math.max(0, ...stats.map((s) => s.lastDone));
    const result = {
      devices: n,
      brokers: urls.length,
      workers: w,
      http_conns_per_worker: httpConns,
      delta_bytes: vendor.deltaBytes,
      delta_parts: vendor.parts,
      connect_s: connectS,
      all_in_view_s: inViewS,
      rollout_to_all_s: rolloutS,
      rollout_to_all_downloaded_s: lastDone ? (lastDone - tA) / 1000 : null,
      rollout_counts: { good: c?.good ?? 0, fell_back: c?.fell_back ?? 0 },
      downloads,
      download_failures: failures,
      http_requests: access.requests,
      http_peak_requests_per_s: access.peakReqPerS,
      nginx_delta_bytes: access.deltaBytes,
      delta_bytes_ratio: Math.round(bytesRatio * 1000) / 1000,
      nginx_summary_bytes: access.summaryBytes,
      client_bytes: stats.reduce((s, x) => s + x.bytes, 0),
      nginx_cpu_s: round2(nginxAfter.cpuS - nginxBefore.cpuS),
      nginx_rss_mib: nginxAfter.rssMiB,
      broker_cpu_s: round2(brokerAfter.cpuS - brokerBefore.cpuS),
      broker_rss_mib: brokerAfter.rssMiB,
      ...(bridgeBefore && bridgeAfter ? { broker_b_cpu_s: round2(bridgeAfter.cpuS - bridgeBefore.cpuS), broker_b_rss_mib: bridgeAfter.rssMiB } : {}),
      // Two statuses per device in the rollout (downloading, then the outcome).
      rollout_statuses_per_s: Math.round((2 * n) / rolloutS),
      // The brokers' own counts ($SYS, sys_interval 1) over the rollout window: every MQTT packet
      // (messages_*: PUBLISH, PUBACK, SUBSCRIBE, PINGREQ ...) and PUBLISH only (publish_*), per second.
      ...Object.fromEntries(
        sysRates.flatMap((r, i) => {
          const p = i ? 'broker_b_' : 'broker_';
          return [
            [`${p}msgs_received_per_s`, r['messages/received']],
            [`${p}msgs_sent_per_s`, r['messages/sent']],
            [`${p}publish_received_per_s`, r['publish/messages/received']],
            [`${p}publish_sent_per_s`, r['publish/messages/sent']],
          ];
        }),
      ),
      broker_publish_dropped: dropped,
      commands: nCommands,
      command_concurrency: commandConc,
      command_failures: cmdFailures.length,
      command_rtt_ms: { p50: pct(cmdMs, 50), p99: pct(cmdMs, 99), max: cmdMs.length ? Math.round(Math.max(...cmdMs)) : null },
      commands_wall_s: cmdWallS,
      command_not_simulated_answer: other.result?.result ?? null,
      command_replay_answer: replay.result ? `${replay.result.result}${replay.result.reason ? ` (${replay.result.reason})` : ''}` : null,
      serve_rss_mib: serveRss,
      api_devices_ms: apiMs,
      api_devices_bytes: body.length,
      api_devices_gzip_bytes: gzBytes,
      dashboard_ready_ms: page.readyMs,
      dashboard_ready_median_ms: median(page.readyMs),
      dashboard_devices_answer_ms: page.apiDoneMs,
      ...(page.upperBound ? { dashboard_ready_upper_bound: true } : {}),
      dashboard_rows: page.rows,
      // The simulated devices' side of the rollout: MQTT, fetch, sha256 (all workers).
      worker_rollout_cpu_s: round2(workersCpuS),
      worker_rss_mib: workerRss,
      wall_s: (Date.now() - tStart) / 1000,
    };
    if (smoke && result.wall_s > 90) problems.push(`the smoke run took ${result.wall_s} s (limit 90)`);
    pub.end(true);
    for (const x of sys) x.client.end(true);
    for (const wk of workers) wk.send({ stop: true });
    process.stderr.write(Object.entries(result).map(([k, v]) => `${k.padEnd(32)} ${typeof v === 'object' ? JSON.stringify(v) : v}`).join('\n') + '\n');
    if (values.json) console.log(JSON.stringify({ ...result, problems }));
    for (const p of problems) process.stderr.write(`FAIL: ${p}\n`);
    if (problems.length) process.exitCode = 1;
  } finally {
    // nginx's master stops its worker on SIGTERM (a SIGKILL would leave the worker behind).
    for (const ch of children) ch.kill(ch === nginxChild ? 'SIGTERM' : 'SIGKILL');
    if (nginxChild && nginxChild.exitCode === null) await new Promise((r) => { nginxChild!.once('exit', r); setTimeout(r, 5000); });
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
