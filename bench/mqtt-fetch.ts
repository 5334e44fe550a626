/**
 * Fetching one file over MQTT (chunk requests to a `larch serve --mqtt` responder through a real
 * Mosquitto) against HTTP (`larch serve`), across a link with a round-trip delay: how much the
 * requests in flight (MqttFetchOptions.window) buy back of what a round trip per chunk costs.
 *
 * The delay comes from a TCP proxy in this process that holds every chunk of bytes for half
 * the round trip in each direction (order kept), in front of the broker and of the HTTP
 * server alike; loopback otherwise. Bandwidth is not limited: the numbers show the latency
 * cost alone. The fetcher is MqttFetcher, the code devices run, in this process.
 *
 * Each setting runs against Mosquitto as installed (Nagle's algorithm on its sockets) and with
 * `set_tcp_nodelay true`: with Nagle, the tail of every answer waits for a delayed ACK.
 *
 *   node --import tsx bench/mqtt-fetch.ts [--smoke] [--mib N] [--rtt MS,...] [--window N,...] [--json]
 *
 * Default: an 8 MiB file, round trips 0, 20 and 100 ms, windows 1, 4 and 8.
 * --smoke (CI): 1 MiB, 20 ms, windows 1 and 8.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MqttFetcher } from '../src/agent/remote/mqtt-fetch.ts';
import { freePort } from '../test/helpers.ts';
import { ROOT } from './corpus.ts';

const BIN = join(ROOT, 'dist', 'larch');
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';
const MiB = 1024 * 1024;

function fail(message: string): never {
  console.error(`bench/mqtt-fetch: ${message}`);
  process.exit(1);
}

function larch(args: string[]): string {
  const r = spawnSync(BIN, args, { encoding: 'utf8' });
  if (r.status !== 0) fail(`larch ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A TCP proxy to 127.0.0.1:target that delays every chunk by oneWayMs in each direction. */
async function delayProxy(target: number, oneWayMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const forward = (from: Socket, to: Socket) => {
    from.on('data', (d) => (oneWayMs > 0 ? setTimeout(() => to.destroyed || to.write(d), oneWayMs) : to.write(d)));
    from.on('close', () => setTimeout(() => to.destroy(), oneWayMs));
    from.on('error', () => {});
  };
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) sockets.add(s);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what}: nothing within 20 s: ${out}`)), 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    child.on('exit', (code) => reject(new Error(`${what} exited ${code}: ${out}`)));
  });
}

function httpGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`HTTP ${res.statusCode} for ${url}`))));
      res.on('error', reject);
    }).on('error', reject);
  });
}

function peakRssMiB(pid: number | undefined): number {
  const status = pid ? readFileSync(`/proc/${pid}/status`, 'utf8') : '';
  const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Row {
  /** Mosquitto's set_tcp_nodelay. */
  nodelay: boolean;
  rttMs: number;
  transport: 'http' | 'mqtt';
  window: number | null;
  seconds: number;
  mibPerS: number;
  requests: number | null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' }, mib: { type: 'string' }, rtt: { type: 'string' }, window: { type: 'string' }, json: { type: 'boolean' } } });
  const list = (s: string | undefined, d: number[]) => (s ? s.split(',').map(Number) : d);
  const mib = Number(values.mib ?? (values.smoke ? 1 : 8));
  const rtts = list(values.rtt, values.smoke ? [20] : [0, 20, 100]);
  const windows = list(values.window, values.smoke ? [1, 8] : [1, 4, 8]);
  if (!existsSync(BIN)) fail(`${BIN} is missing: run 'node scripts/build.mjs linux-x64' first`);

  const work = mkdtempSync(join(tmpdir(), 'larch-bench-mqtt-'));
  const children: ChildProcess[] = [];
  try {
    // A repo with one commit holding one file of random bytes: its object is what is fetched.
    const repo = join(work, 'repo');
    const tree = join(work, 'tree');
    mkdirSync(join(tree, 'usr/share'), { recursive: true });
    writeFileSync(join(tree, 'usr/share/blob'), randomBytes(mib * MiB));
    larch(['init', '--repo', repo, '--mode', 'archive']);
    larch(['commit', '--repo', repo, '--branch', 'bench/fetch', '--tree', tree, '--version', '1', '--no-xattrs']);
    const objects = readdirSync(join(repo, 'objects'), { recursive: true, encoding: 'utf8' }).filter((p) => p.endsWith('.filez'));
    const path = `objects/${objects.sort((a, b) => statSync(join(repo, 'objects', b)).size - statSync(join(repo, 'objects', a)).size)[0]}`;
    const size = statSync(join(repo, path)).size;

    const rows: Row[] = [];
    let responderPeakMiB = 0;
    for (const nodelay of [false, true]) {
      const brokerPort = await freePort();
      const conf = join(work, `mosquitto-${nodelay}.conf`);
      writeFileSync(conf, `listener ${brokerPort} 127.0.0.1\nallow_anonymous true\nuser root\nlog_type error\n${nodelay ? 'set_tcp_nodelay true\n' : ''}`);
      const broker = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
      children.push(broker);
      await new Promise((r) => setTimeout(r, 300));
      const serve = spawn(BIN, ['serve', '--repo', repo, '--port', '0', '--log', join(work, 'access.log'), '--json', '--mqtt', `mqtt://127.0.0.1:${brokerPort}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(serve);
      const httpPort = Number(/127\.0\.0\.1:(\d+)/.exec(await waitForLine(serve, /"url":"http:\/\/127\.0\.0\.1:\d+/, 'larch serve'))![1]);
      await new Promise((r) => setTimeout(r, 500)); // the responder's shared subscription is in place

      for (const rttMs of rtts) {
        const mqttProxy = await delayProxy(brokerPort, rttMs / 2);
        const httpProxy = await delayProxy(httpPort, rttMs / 2);
        let started = Date.now();
        const got = await httpGet(`http://127.0.0.1:${httpProxy.port}/${path}`);
        if (got !== size) fail(`HTTP sent ${got} of ${size} bytes`);
        let s = (Date.now() - started) / 1000;
        rows.push({ nodelay, rttMs, transport: 'http', window: null, seconds: s, mibPerS: size / MiB / s, requests: 1 });
        for (const window of windows) {
          let requests = 0;
          const f = new MqttFetcher({ url: `mqtt://127.0.0.1:${mqttProxy.port}` }, { window, onRequest: () => requests++ });
          const dest = join(work, `fetched-${rttMs}-${window}`);
          started = Date.now();
          await f.session(() => f.downloadFile(path, dest, { maxBytes: 1 << 30, expectedSize: size }));
          s = (Date.now() - started) / 1000;
          if (statSync(dest).size !== size) fail(`MQTT window ${window}: got ${statSync(dest).size} of ${size} bytes`);
          rmSync(dest);
          rows.push({ nodelay, rttMs, transport: 'mqtt', window, seconds: s, mibPerS: size / MiB / s, requests });
        }
        await mqttProxy.close();
        await httpProxy.close();
      }
      responderPeakMiB = Math.max(responderPeakMiB, peakRssMiB(serve.pid));
      serve.kill('SIGKILL');
      broker.kill('SIGKILL');
    }
    const thisPeakMiB = process.resourceUsage().maxRSS / 1024;
    if (values.json) {
      console.log(JSON.stringify({ bytes: size, rows, responderPeakMiB, fetcherProcessPeakMiB: thisPeakMiB }, null, 2));
      return;
    }
    console.log(`bench/mqtt-fetch: one ${(size / MiB).toFixed(2)} MiB object, 64 KiB chunks over MQTT (Mosquitto, larch serve --mqtt) against one HTTP GET (larch serve), through a proxy adding the round trip`);
    console.log('mosquitto        rtt ms  transport  window  seconds   MiB/s  requests  vs HTTP');
    for (const r of rows) {
      const http = rows.find((h) => h.nodelay === r.nodelay && h.rttMs === r.rttMs && h.transport === 'http')!;
      console.log(`${(r.nodelay ? 'set_tcp_nodelay' : 'as installed').padEnd(15)}  ${String(r.rttMs).padStart(6)}  ${r.transport.padEnd(9)}  ${String(r.window ?? '-').padStart(6)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.mibPerS.toFixed(2).padStart(6)}  ${String(r.requests).padStart(8)}  ${(r.seconds / http.seconds).toFixed(2)}x`);
    }
    console.log(`peak RSS: responder (larch serve --mqtt) ${responderPeakMiB.toFixed(1)} MiB; this process (the fetcher, Node) ${thisPeakMiB.toFixed(1)} MiB`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => fail((err as Error).stack ?? String(err)),
);
