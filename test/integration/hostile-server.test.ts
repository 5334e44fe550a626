/**
 * Untrusted networks are bounded. A small HTTP server in the test serves a real
 * vendor repo and lies about one file per case (endless bodies, oversized objects, a trickle, a
 * stall, wrong lengths, redirects to another host, a web page instead of a larch file). Each
 * case runs the Bun agent (`larch check` / `larch upgrade`) against a provisioned device under
 * GNU time and checks: a clear error (exit code, error code, a message naming what was wrong),
 * a bounded time (with short limits: --timeout, --min-speed, --min-speed-time), a peak RSS under
 * 160 MiB, and the device unchanged (still booted on its verified commit; `status` works).
 * (test/integration/hostile.test.ts is about hostile repos on disk; this one about the network.)
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { join, normalize } from 'node:path';
import { REF, type Test, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, listenLoopback, tempDir, waitUntil } from '../helpers.ts';
import { recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { statusTopic } from '../../src/mqtt/format.ts';

const MiB = 1024 * 1024;
/** The peak RSS every case is held to, whatever the server sends. */
const MAX_RSS_KIB = 160 * 1024;
/** Short limits, so that every case ends in seconds: --timeout 20, and 1024 B/s over 2 s. */
const LIMITS = ['--timeout', '20', '--min-speed', '1024', '--min-speed-time', '2'];

/** Handles a request in its own (lying) way and returns true, or returns false: served honestly. */
type Lie = (path: string, req: IncomingMessage, res: ServerResponse) => boolean;

interface HostileServer {
  url: string;
  port: number;
  /** The lie of the case running now (null: an honest server). */
  lie: Lie | null;
}

/** Serves the files under root (an archive repo) on loopback, except where `lie` says otherwise. */
async function hostileServer(t: Test, root: string): Promise<HostileServer> {
  const hs: HostileServer = { url: '', port: 0, lie: null };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    if (hs.lie?.(path, req, res)) return;
    const file = join(root, normalize(path.replace(/^mirror\//, '')));
    if (!file.startsWith(root) || !existsSync(file) || path === '') {
      res.writeHead(404).end();
      return;
    }
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
  });
  hs.port = await listenLoopback(t, server);
  hs.url = `http://127.0.0.1:${hs.port}/`;
  return hs;
}

/**
 * Sends random bytes for as long as the client reads them: as fast as it takes them, or
 * `rate` bytes/s in ten pieces a second (then `limit` bytes at most: a Content-Length it set).
 */
function endless(res: ServerResponse, headers: Record<string, string | number> = {}, rate?: number, limit = Infinity): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', ...headers });
  const chunk = randomBytes(64 * 1024);
  let closed = false;
  let sent = 0;
  res.on('close', () => (closed = true));
  const pump = () => {
    if (rate !== undefined) {
      const piece = Math.min(Math.max(1, Math.round(rate / 10)), limit - sent);
      if (closed || piece <= 0) return;
      for (let at = 0; at < piece; at += chunk.length) res.write(chunk.subarray(0, Math.min(chunk.length, piece - at)));
      sent += piece;
      setTimeout(pump, 100);
      return;
    }
    while (!closed) if (!res.write(chunk)) return void res.once('drain', pump);
  };
  pump();
}

/** Sends n random bytes with their Content-Length (an oversized object). */
function oversized(res: ServerResponse, n: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
  const chunk = randomBytes(MiB);
  let left = n;
  const pump = () => {
    while (left > 0) {
      const piece = chunk.subarray(0, Math.min(left, chunk.length));
      left -= piece.length;
      if (!res.write(piece)) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => (left = 0));
  pump();
}

/** A raw response written to the socket: a head and body that need not agree. */
function raw(res: ServerResponse, head: string, body: Uint8Array, then: 'end' | 'destroy'): void {
  const socket = res.socket!;
  socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n${head}\r\n`);
  socket.write(body, () => (then === 'end' ? socket.end() : socket.destroy()));
}

interface Case {
  name: string;
  cmd: 'check' | 'upgrade';
  /** Deltas answered 404, so that upgrade fetches the commit object by object. */
  objects?: boolean;
  lie: (s: HostileServer, file: (path: string) => Buffer) => Lie;
  /** Extra or overriding limits. */
  args?: string[];
  exit: number;
  code?: string;
  message: RegExp;
  /** Seconds the case may take at most (the limits above, the retries and backoff inside them). */
  seconds: number;
  /** The vendor repo's dirtree format (default 2: file sizes are signed; 1: they are not). */
  dirtreeFormat?: 1 | 2;
}

const on = (match: (path: string) => boolean, act: (res: ServerResponse, path: string, req: IncomingMessage) => void): Lie => (path, req, res) => {
  if (!match(path)) return false;
  act(res, path, req);
  return true;
};
const is = (name: string) => (path: string) => path === name;
const ext = (e: string) => (path: string) => path.startsWith('objects/') && path.endsWith(`.${e}`);

const CASES: Case[] = [
  { name: 'endless summary', cmd: 'check', lie: () => on(is('summary'), (res) => endless(res)), exit: 4, code: 'INVALID_INPUT', message: /summary': the server sent more than 16777216 bytes/, seconds: 10 },
  { name: 'summary of 16 MiB (the cap), not the signed one', cmd: 'check', lie: () => on(is('summary'), (res) => oversized(res, 16 * MiB)), exit: 6, code: 'SIGNATURE_INVALID', message: /summary does not match its signature/, seconds: 15 },
  { name: 'summary announcing 1 GiB', cmd: 'check', lie: () => on(is('summary'), (res) => oversized(res, 1024 * MiB)), exit: 4, code: 'INVALID_INPUT', message: /summary': the server sent more than 16777216 bytes/, seconds: 10 },
  { name: 'endless commit', cmd: 'upgrade', objects: true, lie: () => on(ext('commit'), (res) => endless(res)), exit: 4, code: 'INVALID_INPUT', message: /\.commit': the server sent more than 4194304 bytes/, seconds: 10 },
  { name: 'commit of 63 MiB', cmd: 'upgrade', objects: true, lie: () => on(ext('commit'), (res) => oversized(res, 63 * MiB)), exit: 4, code: 'INVALID_INPUT', message: /\.commit': the server sent more than 4194304 bytes/, seconds: 10 },
  { name: 'endless dirtree', cmd: 'upgrade', objects: true, lie: () => on(ext('dirtree'), (res) => endless(res)), exit: 4, code: 'INVALID_INPUT', message: /\.dirtree': the server sent more than 16777216 bytes/, seconds: 15 },
  // A format-1 tree signs no file sizes: the 4 GiB cap and the deadline bound a file object. Paced at 4 MiB/s to spare the disk.
  { name: 'endless file object (4 MiB/s)', cmd: 'upgrade', objects: true, dirtreeFormat: 1, args: ['--timeout', '6'], lie: () => on(ext('filez'), (res) => endless(res, {}, 4 * MiB)), exit: 9, code: 'IO', message: /no complete answer within 6 s \(the --timeout limit\)/, seconds: 15 },
  // A format-2 tree signs each file's size: the download stops at the .filez bound of it.
  { name: 'endless file object, format-2 tree', cmd: 'upgrade', objects: true, lie: () => on(ext('filez'), (res) => endless(res)), exit: 4, code: 'INVALID_INPUT', message: /^file [0-9a-f]{64} from '[^']*\.filez' is longer than its signed size allows: the tree says \d+ bytes of content, so at most \d+ bytes as \.filez/, seconds: 10 },
  { name: 'trickle at 70 B/s', cmd: 'check', lie: (_s, file) => on(is('summary'), (res) => endless(res, { 'content-length': file('summary').length }, 70, file('summary').length)), exit: 9, code: 'IO', message: /summary': too slow: \d+ bytes\/s, under 1024 over 2000 ms .*gave up after 5 request/, seconds: 30 },
  { name: 'stalled: headers, then nothing', cmd: 'check', lie: (_s, file) => on(is('summary'), (res) => res.writeHead(200, { 'content-length': file('summary').length }).flushHeaders()), exit: 9, code: 'IO', message: /summary': stalled: no byte for 2000 ms .*gave up after 5 request/, seconds: 30 },
  { name: 'Content-Length larger than the body', cmd: 'check', lie: (_s, file) => on(is('summary'), (res) => raw(res, `Content-Length: ${file('summary').length + 1000}\r\n`, file('summary'), 'destroy')), exit: 9, code: 'IO', message: /summary': connection (closed|lost) after \d+ of \d+ bytes/, seconds: 20 },
  { name: 'Content-Length smaller than the body', cmd: 'check', lie: (_s, file) => on(is('summary'), (res) => raw(res, `Content-Length: ${file('summary').length - 100}\r\n`, file('summary'), 'end')), exit: 6, code: 'SIGNATURE_INVALID', message: /summary does not match its signature/, seconds: 10 },
  { name: 'redirect to another host', cmd: 'check', lie: (s) => on(is('summary'), (res) => res.writeHead(302, { location: `http://localhost:${s.port}/mirror/summary` }).end()), exit: 9, code: 'IO', message: /summary': the server redirects to another origin \(http:\/\/localhost:\d+\); refused/, seconds: 10 },
  { name: 'a web page instead of the summary', cmd: 'check', lie: () => on(is('summary'), (res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<html><body>Please log in to use this network</body></html>')), exit: 4, code: 'INVALID_INPUT', message: /summary': the server answered a web page \(Content-Type text\/html; charset=utf-8\), not a larch file/, seconds: 10 },
];

/** A vendor with releases 1 and 2 (a delta between), and a device booted on 1 whose remote is the hostile server. */
async function deviceBehind(t: Test, dirtreeFormat: 1 | 2 = 2) {
  const v = await vendor(t, { initArgs: ['--dirtree-format', String(dirtreeFormat)] });
  const v1 = await v.release(1);
  const hs = await hostileServer(t, v.repo);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', hs.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2);
  return { v, v1, v2, hs, dev };
}

const noDeltas: Lie = (path, _req, res) => {
  if (!path.startsWith('deltas/')) return false;
  res.writeHead(404).end();
  return true;
};

t.test('a lying server: each case ends with a clear error, in bounded time and memory, the device unchanged', async (t) => {
  const main = await deviceBehind(t);
  const { v1, v2, hs, dev } = main;
  const table: string[] = [];
  // The device of the format-1 cases, behind a vendor whose trees sign no file sizes (made once, when first needed).
  const outer = t;
  let format1: Awaited<ReturnType<typeof deviceBehind>> | null = null;

  for (const c of CASES) {
    await t.test(c.name, async (t) => {
      if (c.dirtreeFormat === 1) format1 ??= await deviceBehind(outer, 1);
      const { v, v1, hs, dev } = c.dirtreeFormat === 1 ? format1! : main;
      const file = (path: string) => readFileSync(join(v.repo, path));
      const lie = c.lie(hs, file);
      hs.lie = c.objects ? (p, q, r) => noDeltas(p, q, r) || lie(p, q, r) : lie;
      const started = Date.now();
      const r = await larch([c.cmd, '--sysroot', dev, '--json', ...LIMITS, ...(c.args ?? [])], { peakRss: true });
      const seconds = (Date.now() - started) / 1000;
      hs.lie = null;
      const rss = r.peakRssKiB! / 1024;
      table.push(`${c.name.padEnd(48)} ${c.cmd.padEnd(8)} exit ${r.code}  ${seconds.toFixed(1).padStart(5)} s  ${rss.toFixed(1).padStart(6)} MiB`);
      t.equal(r.code, c.exit, `exit ${c.exit} (${r.json?.error?.message ?? r.stderr.trim()})`);
      t.equal(r.json?.error?.code, c.code, `error ${c.code}`);
      t.match(r.json?.error?.message, c.message, 'the message names the file and what was wrong');
      t.ok(seconds < c.seconds, `ended in ${seconds.toFixed(1)} s (bound ${c.seconds} s)`);
      t.ok(r.peakRssKiB! < MAX_RSS_KIB, `peak RSS ${rss.toFixed(1)} MiB, under 160 MiB`);
      const s = await status(dev);
      t.equal(s.booted?.commit, v1, 'still booted on its verified commit');
      t.equal(s.pending, null, 'nothing staged');
    });
  }

  await t.test('endless delta part: the delta is given up at its signed size, the objects bring the update', async (t) => {
    hs.lie = on((p) => /^deltas\/.*\/part-0$/.test(p), (res) => endless(res));
    const started = Date.now();
    const r = await larch(['upgrade', '--sysroot', dev, '--json', ...LIMITS], { peakRss: true });
    const seconds = (Date.now() - started) / 1000;
    hs.lie = null;
    const rss = r.peakRssKiB! / 1024;
    table.push(`${'endless delta part (falls back to objects)'.padEnd(48)} upgrade  exit ${r.code}  ${seconds.toFixed(1).padStart(5)} s  ${rss.toFixed(1).padStart(6)} MiB`);
    t.equal(r.code, 0, `upgrade succeeds (${r.stderr.trim()})`);
    t.match(r.json?.download, { via: 'objects', fallback: { reason: 'truncated', code: 'INVALID_INPUT', message: /part-0': the server sent more than the \d+ bytes the signed metadata says/ } }, 'the delta part is refused past its signed size, and the objects are pulled');
    t.ok(seconds < 20, `ended in ${seconds.toFixed(1)} s`);
    t.ok(r.peakRssKiB! < MAX_RSS_KIB, `peak RSS ${rss.toFixed(1)} MiB, under 160 MiB`);
    const s = await status(dev);
    t.equal(s.booted?.commit, v1, 'still booted on its verified commit');
    t.equal(s.pending?.commit, v2, 'the update is staged');
  });

  await t.test('a redirect within the same origin is followed', async (t) => {
    hs.lie = on(is('summary'), (res) => res.writeHead(302, { location: '/mirror/summary' }).end());
    const r = await larch(['check', '--sysroot', dev, '--json', ...LIMITS]);
    hs.lie = null;
    t.equal(r.code, 0, `check succeeds (${r.stderr.trim()})`);
    t.equal(r.json?.update?.commit, v2, 'and reads the summary where it was sent');
  });

  t.comment(`peak RSS of the Bun agent per case (GNU time %M), limits ${LIMITS.join(' ')}:\n${table.join('\n')}`);
});

t.test('the daemon keeps publishing its status and answers a rollback while a server trickles', async (t) => {
  const { v, v1, v2, hs, dev } = await deviceBehind(t);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.equal((await status(dev)).pending?.commit, v2, 'an update is staged (the rollback will cancel it)');
  const summary = readFileSync(join(v.repo, 'summary'));
  const rate = 10;
  let trickling = 0;
  hs.lie = on(is('summary'), (res) => {
    trickling = trickling || Date.now();
    endless(res, { 'content-length': summary.length }, rate, summary.length);
  });
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  // A slow link within the rules (no minimum speed): the check goes on for summary.length / rate seconds.
  writeFileSync(join(dev, 'larch/daemon.conf'), `policy = "check"\ndevice_id = "dev-slow"\nmqtt_url = "${broker.url}"\nstatus_interval_s = 1\ncheck_interval_s = 1\nmin_speed = 0\ntimeout_s = 600\n`);
  const rec = await recorder(t, broker.url, [statusTopic('dev-slow')]);
  const daemon = startDaemon(t, dev, []);
  const trickleS = summary.length / rate;
  await waitUntil(() => trickling !== 0, 20_000, 'the daemon asking for the summary');
  const seq0 = Math.max(0, ...rec.messages.map((m) => m.json?.seq ?? 0));
  const later = await rec.waitFor((m) => m.json?.seq >= seq0 + 3, 10_000, 'three status messages during the trickle');
  t.ok(Date.now() - trickling < trickleS * 1000, `status messages ${seq0 + 1}..${later.json.seq} arrived while the summary trickles (${summary.length} bytes at ${rate} B/s: ${trickleS.toFixed(0)} s)`);
  const asked = Date.now();
  const r = await larch(['command', '--mqtt', broker.url, '--device', 'dev-slow', '--sign-key', `${v.key}.key`, '--wait', '20', '--json', 'rollback']);
  const answeredS = (Date.now() - asked) / 1000;
  t.match(r.json?.result, { result: 'ok', cmd: 'rollback' }, `the rollback is answered (${r.stderr.trim()})`);
  t.ok(Date.now() - trickling < trickleS * 1000, `in ${answeredS.toFixed(1)} s, before the trickle would have ended`);
  if (r.json?.result?.result !== 'ok') t.comment(`daemon log:\n${daemon.stderr()}`);
  const s = await status(dev);
  t.equal(s.pending, null, 'the staged update is cancelled');
  t.equal(s.booted?.commit, v1, 'still booted on its verified commit');
});
