/**
 * Updates over MQTT only, with a real Mosquitto on loopback and `larch serve --mqtt` (the Bun
 * binary) as the chunk responder: a device provisioned with only a broker URL provisions,
 * upgrades and boots the new version, then its daemon takes the next one from an announcement
 * (chunks, apply, boot, all in its retained status); it resumes across a broker restart mid-transfer without
 * asking again for chunks it holds (counted in the responder's log), and a killed upgrade resumes
 * each part from the bytes on disk; two responders share the requests through the shared
 * subscription.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, status, vendor } from '../device-helpers.ts';
import { BIN, larchOk, rejectsCode, tempDir, waitUntil } from '../helpers.ts';
import { type Broker, recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { DEFAULT_WINDOW, MqttFetcher } from '../../src/agent/remote/mqtt-fetch.ts';

interface Responder {
  child: ChildProcess;
  log: string;
  entries(): any[];
  /** What the responder printed on stderr (for failure messages). */
  stderr(): string;
}

/** `larch serve --repo R --mqtt URL` with its own log; resolves once it printed its line. */
async function startResponderProc(t: Test, repo: string, broker: Broker, log: string, extra: string[] = []): Promise<Responder> {
  const child = spawn(BIN, ['serve', '--repo', repo, '--port', '0', '--log', log, '--json', '--mqtt', broker.url, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('"mqtt"')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`larch serve exited ${code}`)));
  });
  const entries = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []).filter((e) => e.transport === 'mqtt');
  // The "mqtt" line comes once the broker acknowledged the subscription: a first request finds it.
  return { child, log, entries, stderr: () => stderr };
}

async function setup(t: Test): Promise<{ v: Vendor; broker: Broker }> {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  return { v, broker };
}

async function mqttDevice(t: Test, v: Vendor, broker: Broker, name: string, r?: Responder): Promise<string> {
  const dev = join(tempDir(t), name);
  const p = await larchOk(['provision', '--sysroot', dev, '--mqtt-url', broker.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot', '--json']).catch((err: Error) => {
    // What the responder saw and said, to tell a lost request from a dead responder.
    const seen = r ? `; responder exit=${r.child.exitCode} answered ${r.entries().length}: ${JSON.stringify(r.entries().slice(-3))}; stderr: ${r.stderr().slice(-800)}` : '';
    throw new Error(`${err.message}${seen}`);
  });
  t.equal(p.json.version, '1', 'provisioned v1 over MQTT');
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

t.test('a device with only an MQTT URL provisions and upgrades end to end', async (t) => {
  const { v, broker } = await setup(t);
  const r = await startResponderProc(t, v.repo, broker, join(v.dir, 'responder.log'));
  const dev = await mqttDevice(t, v, broker, 'dev-mqtt');
  t.match(JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8')).remote, { kind: 'mqtt', url: broker.url }, 'the device config names the broker only');
  t.ok(r.entries().some((e) => e.path === 'summary' && e.status === 'ok'), 'the summary came over MQTT');

  await v.release(2, { files: { 'usr/share/blob': randomBytes(300 * 1024) } });
  const check = await larchOk(['check', '--sysroot', dev, '--json']);
  t.match(check.json, { available: true, update: { version: '2', via: 'delta' } });
  const up = await larchOk(['upgrade', '--sysroot', dev, '--json']);
  t.match(up.json, { result: 'staged', to: { version: '2' }, download: { via: 'delta' } });
  t.ok(up.json.download.bytes > 300 * 1024 * 0.9, `downloaded the delta: ${up.json.download.bytes} bytes`);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const s = await status(dev);
  t.match(s.booted, { version: '2' }, 'v2 booted');
  t.equal(readFileSync(join(dev, 'larch/config.json'), 'utf8').includes('http'), false, 'no HTTP URL anywhere in the config');
  const parts = r.entries().filter((e) => /^deltas\/.*\/part-\d+$/.test(e.path));
  t.ok(parts.length >= 5, `delta parts came in chunks: ${parts.length} requests`);
  t.ok(parts.every((e) => e.bytes <= 64 * 1024), 'no chunk over 64 KiB');

  // The daemon on the same device: an announcement, chunks through the broker, apply, boot, and
  // every step in its retained status.
  const rec = await recorder(t, broker.url, ['larch/v1/device/dev-mqtt/status']);
  startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-mqtt', '--policy', 'apply']);
  await rec.waitFor((m) => m.json?.online === true && m.json.version === '2', 20_000, 'the daemon online on v2');
  const v3 = await v.release(3, { files: { 'usr/share/blob': randomBytes(200 * 1024) } });
  const asked = r.entries().length;
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const staged = await rec.waitFor((m) => m.json?.update?.state === 'staged', 60_000, 'v3 staged by the daemon');
  t.match(staged.json, { version: '2', pending: { version: '3', commit: v3 } }, 'the status shows v3 pending');
  const v3Parts = r.entries().slice(asked).filter((e) => /^deltas\/.*\/part-\d+$/.test(e.path) && e.status === 'ok');
  t.ok(v3Parts.length >= 3, `the daemon took v3's delta in chunks from the responder: ${v3Parts.length} answers`);
  await larchOk(['sim-boot', '--sysroot', dev]);
  // The simulated boot changes the sysroot under the running daemon, which reports it.
  await rec.waitFor((m) => m.json?.version === '3' && m.json.boot?.state === 'good', 20_000, 'v3 booted and good in the status');

  // The HTTP side served nothing to this device.
  const http = existsSync(join(v.dir, 'access.log')) ? readFileSync(join(v.dir, 'access.log'), 'utf8') : '';
  t.equal(http.includes('/deltas/'), false, 'no delta over HTTP');
});

t.test('refusals: paths outside the repo, bad requests, unknown files', async (t) => {
  const { v, broker } = await setup(t);
  await startResponderProc(t, v.repo, broker, join(v.dir, 'responder.log'));
  const f = new MqttFetcher({ url: broker.url }, { requestTimeoutMs: 3000, stallTimeoutMs: 6000, attempts: 2 });
  const summary = await f.session(() => f.fetchBytes('summary', { maxBytes: 1 << 20 }));
  t.equal(Buffer.compare(Buffer.from(summary), readFileSync(join(v.repo, 'summary'))), 0, 'the summary, byte for byte');
  await rejectsCode(t, f.session(() => f.fetchBytes('summary.sig.nope', { maxBytes: 100 })), 'NOT_FOUND', 'a path devices may not fetch is not found');
  await rejectsCode(t, f.session(() => f.fetchBytes('../../../etc/passwd', { maxBytes: 1 << 20 })), 'NOT_FOUND', 'no path traversal');
  await rejectsCode(t, f.session(() => f.fetchBytes('config', { maxBytes: 1 << 20 })), 'NOT_FOUND', 'repo files devices do not need are not served');
  await rejectsCode(t, f.session(() => f.fetchBytes('summary', { maxBytes: 10 })), 'INVALID_INPUT', 'a file over maxBytes is refused');
  await rejectsCode(t, f.session(() => f.fetchBytes('summary', { maxBytes: 1 << 20, expectedSize: 5 })), 'INVALID_INPUT', 'another size than the signed one is refused');
});

t.test(`a file comes in order with up to ${DEFAULT_WINDOW} requests in flight, byte for byte`, async (t) => {
  const { v, broker } = await setup(t);
  await startResponderProc(t, v.repo, broker, join(v.dir, 'responder.log'));
  await v.release(2, { files: { 'usr/share/blob': randomBytes(1024 * 1024) } });
  const deltaDir = readdirSync(join(v.repo, 'deltas'))[0];
  const path = `deltas/${deltaDir}/part-0`;
  const want = readFileSync(join(v.repo, path));
  let asked = 0;
  let received = 0;
  let peak = 0;
  const offsets: number[] = [];
  const f = new MqttFetcher({ url: broker.url }, { onRequest: (_p, offset) => (offsets.push(offset), asked++, (peak = Math.max(peak, asked - received))) });
  const dest = join(tempDir(t), 'part-0');
  await f.session(() => f.downloadFile(path, dest, { maxBytes: 1 << 30, expectedSize: want.length, onProgress: (p) => (received = Math.ceil(p.receivedBytes / (64 * 1024))) }));
  t.equal(Buffer.compare(readFileSync(dest), want), 0, `${want.length} bytes, byte for byte`);
  t.equal(peak, DEFAULT_WINDOW, `at most ${DEFAULT_WINDOW} requests in flight, and that many once going (peak ${peak})`);
  t.same(offsets, offsets.map((_, i) => i * 64 * 1024), `each chunk asked once, in order (${offsets.length} requests)`);
});

t.test('resumes across a broker restart without asking again for chunks it holds', async (t) => {
  const { v, broker } = await setup(t);
  const r = await startResponderProc(t, v.repo, broker, join(v.dir, 'responder.log'), ['--rate', String(256 * 1024)]);
  const dev = await mqttDevice(t, v, broker, 'dev-resume', r);
  const size = 2 * 1024 * 1024;
  await v.release(2, { files: { 'usr/share/blob': randomBytes(size) } });
  const before = r.entries().length;
  const child = spawn(BIN, ['upgrade', '--sysroot', dev, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  const partEntries = () => r.entries().slice(before).filter((e) => /\/part-\d+$/.test(e.path ?? ''));
  await waitUntil(() => partEntries().length >= 8, 60_000, 'eight chunk answers');
  const heldBefore = partEntries().length;
  t.ok(heldBefore >= 8 && heldBefore < 30, `restart mid-transfer (after ${heldBefore} chunk answers)`);
  // The broker's exit is the outage: it closes every connection and the requests in flight go
  // unanswered. How long it stays down adds nothing, so it starts again at once (start() returns
  // when it listens).
  await broker.stop();
  await broker.start();
  const watch = setInterval(() => t.comment(`after restart: ${partEntries().length} chunk answers`), 5000);
  const code = await exited;
  clearInterval(watch);
  t.equal(code, 0, `upgrade completed after the restart: ${err.slice(-500)}`);
  t.match(JSON.parse(out), { result: 'staged', to: { version: '2' }, download: { via: 'delta' } });

  // Per part file: every offset asked at most twice (once more for the requests in flight at the
  // restart, DEFAULT_WINDOW of them), and never an offset below what was already held. One
  // request may also time out (a request sent again while the responder is still reconnecting
  // reaches no one), and that one may be a chunk already asked again: at most one offset asked
  // three times (seen once in a full run: offset 524288, 4 repeats in all).
  const byPath = new Map<string, number[]>();
  for (const e of partEntries()) byPath.set(e.path, [...(byPath.get(e.path) ?? []), e.offset]);
  let repeats = 0;
  let sent = 0;
  let thrice = 0;
  for (const [path, offsets] of byPath) {
    const seen = new Map<number, number>();
    for (const o of offsets) seen.set(o, (seen.get(o) ?? 0) + 1);
    for (const [o, n] of seen) {
      t.ok(n <= 3, `${path} offset ${o} asked ${n} times`);
      if (n === 3) thrice++;
      repeats += n - 1;
    }
  }
  t.ok(thrice <= 1, `at most one offset asked a third time (after a timeout): ${thrice}`);
  for (const e of partEntries()) sent += e.bytes;
  t.ok(repeats <= DEFAULT_WINDOW + 1, `at most the ${DEFAULT_WINDOW} chunks in flight (and one timed out) asked again: ${repeats} repeats over ${partEntries().length} requests`);
  t.ok(sent <= size * 1.05 + (DEFAULT_WINDOW + 1) * 64 * 1024, `bytes sent ${sent} ≈ the delta (${size} of random data), not twice`);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match((await status(dev)).booted, { version: '2' }, 'v2 booted');
});

t.test('two responders share the requests through the shared subscription', async (t) => {
  const { v, broker } = await setup(t);
  const a = await startResponderProc(t, v.repo, broker, join(v.dir, 'a.log'));
  const b = await startResponderProc(t, v.repo, broker, join(v.dir, 'b.log'));
  const dev = await mqttDevice(t, v, broker, 'dev-shared');
  await v.release(2, { files: { 'usr/share/blob': randomBytes(1024 * 1024) } });
  await larchOk(['upgrade', '--sysroot', dev, '--json']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match((await status(dev)).booted, { version: '2' }, 'v2 booted');
  const na = a.entries().filter((e) => e.status === 'ok').length;
  const nb = b.entries().filter((e) => e.status === 'ok').length;
  t.ok(na > 0 && nb > 0, `both answered: ${na} and ${nb}`);
  const ids = new Set([...a.entries(), ...b.entries()].map((e) => e.responder));
  t.equal(ids.size, 2, 'two responder ids in the logs');
  // Each chunk request answered once: none went to both.
  const keys = [...a.entries(), ...b.entries()].filter((e) => /\/part-\d+$/.test(e.path ?? '')).map((e) => `${e.path}@${e.offset}`);
  t.equal(new Set(keys).size, keys.length, `each of ${keys.length} requests answered by one responder`);
});

t.test('the daemon of an MQTT-only device: announcement, chunks, apply, sim-boot, status report', async (t) => {
  const { v, broker } = await setup(t);
  const r = await startResponderProc(t, v.repo, broker, join(v.dir, 'responder.log'));
  const dev = await mqttDevice(t, v, broker, 'dev-daemon');
  const topic = 'larch/v1/device/dev-daemon/status';
  const rec = await recorder(t, broker.url, [topic]);
  startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-daemon', '--policy', 'apply']);
  await rec.waitFor((m) => m.topic === topic && m.json?.online === true, 20_000, 'online');
  const v2 = await v.release(2, { files: { 'usr/share/blob': randomBytes(200 * 1024) } });
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const staged = await rec.waitFor((m) => m.topic === topic && m.json?.pending?.version === '2', 60_000, 'the staged update in the status');
  t.match(staged.json, { online: true, version: '1', pending: { version: '2', commit: v2 } });
  t.ok(r.entries().some((e) => /\/part-\d+$/.test(e.path ?? '') && e.status === 'ok'), 'the delta came from the responder');
  await larchOk(['sim-boot', '--sysroot', dev]);
  const booted = await rec.waitFor((m) => m.topic === topic && m.json?.version === '2' && m.json.boot?.state === 'good', 15_000, 'booted v2 in the status');
  t.match(booted.json, { pending: null, rollback: { version: '1' } });
});

t.test('a killed upgrade resumes each part from the bytes it holds', async (t) => {
  const { v, broker } = await setup(t);
  const r = await startResponderProc(t, v.repo, broker, join(v.dir, 'responder.log'), ['--rate', String(256 * 1024)]);
  const dev = await mqttDevice(t, v, broker, 'dev-kill');
  await v.release(2, { files: { 'usr/share/blob': randomBytes(1536 * 1024) } });
  const before = r.entries().length;
  const child = spawn(BIN, ['upgrade', '--sysroot', dev, '--json'], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const parts = () => r.entries().slice(before).filter((e) => /\/part-\d+$/.test(e.path ?? ''));
  // What the run holds in its download directory: each part file's bytes.
  const dl = join(dev, 'larch/download');
  const holding = () => {
    const held = new Map<string, number>();
    for (const d of existsSync(dl) ? readdirSync(dl) : []) for (const f of readdirSync(join(dl, d))) if (f.startsWith('part-')) held.set(`deltas/${d}/${f}`, statSync(join(dl, d, f), { throwIfNoEntry: false })?.size ?? 0);
    return held;
  };
  // Killed once a part is partly on disk: answers sent may still be on their way to it.
  await waitUntil(() => parts().length >= 6 && [...holding().values()].some((n) => n > 0), 60_000, 'six chunk answers and a part partly on disk');
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  // Answers still in flight for the killed run may land in the log after `mark` below: they are
  // for offsets at or past what it held (it writes each part in order), so cannot spoil the check.
  const held = holding();
  const partial = [...held].filter(([, n]) => n > 0);
  t.ok(partial.length > 0, `a part was partly downloaded: ${partial.map(([p, n]) => `${p.split('/').pop()} ${n}`).join(', ')}`);
  const mark = r.entries().length;
  const again = await larchOk(['upgrade', '--sysroot', dev, '--json']);
  t.match(again.json, { result: 'staged', to: { version: '2' } });
  const second = r.entries().slice(mark).filter((e) => held.has(e.path));
  for (const [path, n] of held) {
    const offsets = second.filter((e) => e.path === path).map((e) => e.offset);
    t.ok(offsets.every((o) => o >= n), `${path.split('/').pop()}: the second run asked nothing below the ${n} bytes held (first offset ${offsets[0]})`);
  }
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match((await status(dev)).booted, { version: '2' }, 'v2 booted');
});
