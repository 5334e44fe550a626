/**
 * A simulated fleet on real brokers (issue 22, stage 4 in part): N devices, each a real MQTT 5
 * session (mqtt.js) with its last will, a retained status built by the daemon's own
 * statusMessage(), the announcement subscription and its command topic, spread over worker
 * processes; one Mosquitto, or two bridged (devices split over both, `larch serve --dashboard` on
 * the first). Measured: connect time, broker CPU and RSS, messages per second, the time from an
 * announcement to every device's "booted good" status as the fleet view counts it, serve's RSS
 * with N records, and the fleet API's answer time and size.
 *
 * What is simulated: a device "takes" an announced release by publishing downloading, then
 * booted-good statuses (or fell-back for --fail-pct of them) after a random 0-2 s; it downloads
 * nothing (the HTTP side at scale is the fleet test's and bench/agent-delta's).
 *
 *   node --import tsx bench/fleet-sim.ts [--devices N] [--workers W] [--bridge] [--fail-pct P] [--json]
 */
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { IDLE_UPDATE, statusMessage } from '../src/agent/daemon/status-message.ts';
import type { Status } from '../src/agent/status.ts';
import { freePort } from '../test/helpers.ts';
import { ROOT } from './corpus.ts';

const BIN = join(ROOT, 'dist', 'larch');
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';
const V1 = '1'.repeat(64);
const V2 = '2'.repeat(64);
const REF = 'os/stable';

function status(id: string, version: string, commit: string, seq: number, extra: Partial<Status> = {}, update: Partial<typeof IDLE_UPDATE> = {}): string {
  const s = { ref: REF, booted: { slot: 'a', version, commit, good: true, tries_left: null }, pending: null, rollback: null, boot: { rescue: false, order: ['a', 'b'], last_good: 'a' }, pinned: [], last_boot: null, last_update: null, failed_releases: [], ...extra } as unknown as Status;
  return JSON.stringify(statusMessage(s, { device: id, seq, started: '2026-12-06T00:00:00.000Z', policy: 'apply', update: { ...IDLE_UPDATE, ...update }, lastError: null }, new Date()));
}

// ---- worker: one process holding its share of the devices ---------------------------------

async function worker(): Promise<void> {
  const { urls, ids, failPct } = JSON.parse(process.argv[3]) as { urls: string[]; ids: string[]; failPct: number };
  const clients: MqttClient[] = [];
  let connected = 0;
  const seqs = new Map<string, number>();
  const send = (c: MqttClient, id: string, body: string) => c.publish(`larch/v1/device/${id}/status`, body, { qos: 0, retain: true });
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
            c.subscribe([`larch/v1/announce/${REF}`, `larch/v1/device/${id}/cmd`], { qos: 1 });
            send(c, id, status(id, '1', V1, 1));
            resolve();
          });
          c.on('message', (topic, payload) => {
            if (!topic.startsWith('larch/v1/announce/')) return;
            let a: { commit?: string; version?: string };
            try {
              a = JSON.parse(JSON.parse(payload.toString()).body);
            } catch {
              return;
            }
            if (a.commit !== V2) return;
            const announced = { ref: REF, commit: V2, version: '2', rollout: 100, created: 1, selected: true, position: 0 };
            const next = () => seqs.set(id, seqs.get(id)! + 1).get(id)!;
            send(c, id, status(id, '1', V1, next(), {}, { state: 'downloading', announced }));
            // A stable share fails: the id's hash decides, as a rollout position does.
            const fails = (parseInt(id.replace(/\D/g, '') || '0', 10) * 2654435761) % 100 < failPct;
            setTimeout(() => {
              if (fails) send(c, id, status(id, '1', V1, next(), { failed_releases: [{ commit: V2, version: '2', time: new Date().toISOString(), reason: 'fell-back', failed_checks: ['10-services'] }], last_boot: { time: new Date().toISOString(), slot: 'b', healthy: false, fell_back: true, outcome: 'fell back' } } as unknown as Partial<Status>));
              else send(c, id, status(id, '2', V2, next()));
            }, Math.random() * 2000);
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
  const lines = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'max_queued_messages 100000', 'log_dest none'];
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

async function main(): Promise<void> {
  if (process.argv[2] === '--worker') return worker();
  const { values } = parseArgs({ options: { devices: { type: 'string', default: '1000' }, workers: { type: 'string', default: '4' }, bridge: { type: 'boolean' }, 'fail-pct': { type: 'string', default: '0' }, json: { type: 'boolean' } } });
  const n = Number(values.devices);
  const w = Number(values.workers);
  const failPct = Number(values['fail-pct']);
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: node scripts/build.mjs`);
  const dir = mkdtempSync(join(tmpdir(), 'larch-fleet-sim-'));
  const children: ChildProcess[] = [];
  try {
    const a = await startMosquitto(dir, 'a');
    children.push(a.child);
    const b = values.bridge ? await startMosquitto(dir, 'b', a.port) : null;
    if (b) children.push(b.child);
    const urls = [`mqtt://127.0.0.1:${a.port}`, ...(b ? [`mqtt://127.0.0.1:${b.port}`] : [])];
    const repo = join(dir, 'repo');
    spawnSync(BIN, ['init', '--repo', repo, '--mode', 'archive']);
    const serve = spawn(BIN, ['serve', '--repo', repo, '--mqtt', urls[0], '--dashboard', '--dashboard-max-devices', String(n + 100), '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
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
    const t0 = Date.now();
    const ids = Array.from({ length: n }, (_, i) => `sim-${String(i).padStart(6, '0')}`);
    const workers = Array.from({ length: w }, (_, k) => fork(new URL(import.meta.url).pathname, ['--worker', JSON.stringify({ urls, ids: ids.filter((_, i) => i % w === k), failPct })], { execArgv: ['--import', 'tsx'], stdio: 'inherit' }));
    children.push(...workers);
    await Promise.all(workers.map((wk) => new Promise((r) => wk.once('message', r))));
    const connectS = (Date.now() - t0) / 1000;
    // The view has every device once it counts them all.
    while ((await rollouts(serveUrl))[0]?.counts.devices !== n) await new Promise((r) => setTimeout(r, 250));
    const inViewS = (Date.now() - t0) / 1000;
    // Announce v2 to everyone (retained), as larch announce does (the simulated devices do not check signatures).
    const pub = mqtt.connect(urls[0], { protocolVersion: 5, clientId: 'bench-announcer' });
    await new Promise((r) => pub.once('connect', r));
    const tA = Date.now();
    pub.publish(`larch/v1/announce/${REF}`, JSON.stringify({ body: JSON.stringify({ type: 'announce', format: 1, ref: REF, commit: V2, version: '2', timestamp: 1, summary_serial: 1, rollout: 100, created: Math.floor(tA / 1000) }), sigs: [] }), { qos: 1, retain: true });
    let c: any;
    for (;;) {
      c = (await rollouts(serveUrl))[0]?.counts;
      if (c && c.good + c.fell_back === n) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const rolloutS = (Date.now() - tA) / 1000;
    const brokerAfter = proc(a.child.pid!);
    const bridgeAfter = b ? proc(b.child.pid!) : null;
    const tApi = Date.now();
    const body = Buffer.from(await (await fetch(new URL('/api/fleet/devices', serveUrl))).arrayBuffer());
    const apiMs = Date.now() - tApi;
    const gz = await fetch(new URL('/api/fleet/devices', serveUrl), { headers: { 'Accept-Encoding': 'gzip' } });
    const gzBytes = Number(gz.headers.get('content-length'));
    await gz.arrayBuffer();
    const result = {
      devices: n,
      brokers: urls.length,
      workers: w,
      connect_s: connectS,
      all_in_view_s: inViewS,
      rollout_to_all_s: rolloutS,
      rollout_counts: { good: c.good, fell_back: c.fell_back },
      broker_cpu_s: Math.round((brokerAfter.cpuS - brokerBefore.cpuS) * 100) / 100,
      broker_rss_mib: brokerAfter.rssMiB,
      ...(bridgeBefore && bridgeAfter ? { broker_b_cpu_s: Math.round((bridgeAfter.cpuS - bridgeBefore.cpuS) * 100) / 100, broker_b_rss_mib: bridgeAfter.rssMiB } : {}),
      // Two statuses per device in the rollout (downloading, then the outcome).
      rollout_statuses_per_s: Math.round((2 * n) / rolloutS),
      serve_rss_mib: proc(serve.pid!).rssMiB,
      api_devices_ms: apiMs,
      api_devices_bytes: body.length,
      api_devices_gzip_bytes: gzBytes,
      worker_rss_mib: Math.round(workers.reduce((s, wk) => s + proc(wk.pid!).rssMiB, 0) * 10) / 10,
    };
    pub.end(true);
    for (const wk of workers) wk.send({ stop: true });
    console.log(values.json ? JSON.stringify(result) : Object.entries(result).map(([k, v]) => `${k.padEnd(24)} ${typeof v === 'object' ? JSON.stringify(v) : v}`).join('\n'));
  } finally {
    for (const ch of children) ch.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
