/**
 * Idle memory of `larch daemon` (the Bun binary): connected to a real Mosquitto on loopback,
 * policy check, one status report a minute, nothing to do. Sampled from /proc every few seconds
 * (RSS, PSS, peak RSS), beside two floors measured in the same run:
 * - a Bun binary compiled here from a one-line program that only keeps a timer (the runtime's
 *   own cost, which no larch change can remove);
 * - mosquitto_sub (a C MQTT client) subscribed to one topic (what a minimal C agent costs).
 *
 *   node --import tsx bench/daemon-idle.ts [--smoke] [--seconds N] [--json]
 *
 * --smoke: 20 s, a status report every 5 s (CI). Default: 300 s, the daemon's default report
 * interval of 60 s, so the samples cover five reports and their garbage collections.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { freePort } from '../test/helpers.ts';
import { ROOT } from './corpus.ts';

const BIN = join(ROOT, 'dist', 'larch');
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';
const REF = 'bench/idle';

interface Memory {
  rssMiB: number;
  /** Shared pages counted once per process sharing them (larch serve runs the same binary here). */
  pssMiB: number;
  /** Pages only this process has (Private_Clean + Private_Dirty): what it alone costs. */
  privateMiB: number;
  peakMiB: number;
}
interface Series {
  name: string;
  samples: Memory[];
  /** Mean RSS of the first and the last third of the samples: growth shows as last > first. */
  firstThirdMiB: number;
  lastThirdMiB: number;
  meanRssMiB: number;
  meanPssMiB: number;
  meanPrivateMiB: number;
  peakMiB: number;
}

function fail(message: string): never {
  console.error(`bench/daemon-idle: ${message}`);
  process.exit(1);
}

function larch(args: string[]): string {
  const r = spawnSync(BIN, args, { encoding: 'utf8' });
  if (r.status !== 0) fail(`larch ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function kib(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rssMiB: kib(status, 'VmRSS') / 1024, pssMiB: kib(rollup, 'Pss') / 1024, privateMiB: (kib(rollup, 'Private_Clean') + kib(rollup, 'Private_Dirty')) / 1024, peakMiB: kib(status, 'VmHWM') / 1024 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sample(name: string, child: ChildProcess, seconds: number, everyMs: number): Promise<Series> {
  const samples: Memory[] = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (child.exitCode !== null) fail(`${name} exited ${child.exitCode} while sampled`);
    samples.push(memoryOf(child.pid!));
    await sleep(everyMs);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const third = Math.max(1, Math.floor(samples.length / 3));
  return {
    name,
    samples,
    firstThirdMiB: mean(samples.slice(0, third).map((s) => s.rssMiB)),
    lastThirdMiB: mean(samples.slice(-third).map((s) => s.rssMiB)),
    meanRssMiB: mean(samples.map((s) => s.rssMiB)),
    meanPssMiB: mean(samples.map((s) => s.pssMiB)),
    meanPrivateMiB: mean(samples.map((s) => s.privateMiB)),
    peakMiB: Math.max(...samples.map((s) => s.peakMiB)),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, seconds: { type: 'string' }, json: { type: 'boolean', default: false } } });
  const seconds = values.seconds ? Number(values.seconds) : values.smoke ? 20 : 300;
  const statusInterval = values.smoke ? 5 : 60;
  if (!existsSync(BIN)) fail(`${BIN} is missing: run 'npm run build' first`);
  const work = mkdtempSync(join(tmpdir(), 'larch-bench-idle-'));
  const children: ChildProcess[] = [];
  try {
    // A broker, a vendor repo with one small commit, and a device provisioned from it.
    const port = await freePort();
    writeFileSync(join(work, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\nuser root\nlog_type error\n`);
    const broker = spawn(MOSQUITTO, ['-c', join(work, 'mosquitto.conf')], { stdio: 'ignore' });
    children.push(broker);
    const url = `mqtt://127.0.0.1:${port}`;
    larch(['keygen', '--out', join(work, 'vendor')]);
    larch(['init', '--repo', join(work, 'repo'), '--mode', 'archive']);
    mkdirSync(join(work, 'tree/usr/bin'), { recursive: true });
    mkdirSync(join(work, 'tree/etc'), { recursive: true });
    writeFileSync(join(work, 'tree/usr/bin/app'), 'app\n');
    writeFileSync(join(work, 'tree/etc/os-release'), 'NAME=bench\n');
    larch(['commit', '--repo', join(work, 'repo'), '-b', REF, '--tree', join(work, 'tree'), '--version', '1', '--sign-key', join(work, 'vendor.key')]);
    larch(['publish', '--repo', join(work, 'repo'), '--sign-key', join(work, 'vendor.key')]);
    const serve = spawn(BIN, ['serve', '--repo', join(work, 'repo'), '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(serve);
    const serveUrl = await new Promise<string>((resolve) => {
      let out = '';
      serve.stdout!.on('data', (d) => {
        out += d;
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) resolve(m[1]);
      });
    });
    const dev = join(work, 'device');
    larch(['provision', '--sysroot', dev, '--repo-url', serveUrl, '--ref', REF, '--keys', join(work, 'vendor.pub')]);
    larch(['sim-boot', '--sysroot', dev]);

    // The daemon, connected: wait for its first status.
    const sub = mqtt.connect(url, { protocolVersion: 5 });
    const statuses: number[] = [];
    await new Promise<void>((resolve, reject) => {
      sub.once('connect', () => sub.subscribe('larch/v1/device/idle/status', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
      sub.once('error', reject);
    });
    sub.on('message', () => statuses.push(Date.now()));
    const daemon = spawn(BIN, ['daemon', '--sysroot', dev, '--mqtt', url, '--device-id', 'idle', '--policy', 'check', '--status-interval', String(statusInterval)], { stdio: 'ignore' });
    children.push(daemon);
    for (let i = 0; i < 300 && statuses.length === 0; i++) await sleep(100);
    if (statuses.length === 0) fail('the daemon sent no status within 30 s');
    await sleep(2000); // start-up settles

    // The floors.
    writeFileSync(join(work, 'floor.js'), 'setInterval(() => {}, 60_000);\n');
    const bun = join(ROOT, 'node_modules', '.bin', 'bun');
    const built = spawnSync(bun, ['build', '--compile', join(work, 'floor.js'), '--outfile', join(work, 'floor')], { encoding: 'utf8' });
    if (built.status !== 0) fail(`bun build --compile of the floor program: ${built.stderr}`);
    const floor = spawn(join(work, 'floor'), [], { stdio: 'ignore' });
    children.push(floor);
    const csub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', 'larch/v1/device/idle/status', '-V', 'mqttv5'], { stdio: 'ignore' });
    csub.on('error', (err: NodeJS.ErrnoException) => fail(err.code === 'ENOENT' ? 'mosquitto_sub not found: install Debian\'s mosquitto-clients (the C client this benchmark compares with)' : `mosquitto_sub: ${err.message}`));
    children.push(csub);
    await sleep(1000);

    const everyMs = values.smoke ? 1000 : 5000;
    const before = statuses.length;
    const [d, f, c] = await Promise.all([sample('larch daemon (Bun binary)', daemon, seconds, everyMs), sample('Bun runtime floor (timer only)', floor, seconds, everyMs), sample('mosquitto_sub (C client)', csub, seconds, everyMs)]);
    const reports = statuses.length - before;
    sub.end(true);

    const rows = [d, f, c];
    const line = (cells: string[]) => cells.map((x, i) => (i === 0 ? x.padEnd(32) : x.padStart(11))).join(' ');
    console.error(`idle memory over ${seconds} s (${d.samples.length} samples; the daemon sent ${reports} status reports, one every ${statusInterval} s)`);
    console.error(line(['process', 'RSS MiB', 'private', 'PSS', 'peak RSS', 'RSS 1st 1/3', 'last 1/3']));
    for (const r of rows) console.error(line([r.name, r.meanRssMiB.toFixed(1), r.meanPrivateMiB.toFixed(1), r.meanPssMiB.toFixed(1), r.peakMiB.toFixed(1), r.firstThirdMiB.toFixed(1), r.lastThirdMiB.toFixed(1)]));
    console.error(`daemon / Bun floor: ${(d.meanRssMiB / f.meanRssMiB).toFixed(2)}x RSS; above the floor: ${(d.meanRssMiB - f.meanRssMiB).toFixed(1)} MiB`);
    if (reports < Math.floor(seconds / statusInterval) - 1) fail(`expected about ${Math.floor(seconds / statusInterval)} status reports, got ${reports}`);
    if (values.json) console.log(JSON.stringify({ seconds, statusIntervalS: statusInterval, reports, rows: rows.map(({ samples, ...r }) => r) }, null, 2));
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
