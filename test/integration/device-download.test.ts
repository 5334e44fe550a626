/**
 * Downloads that hang are bounded (through the Bun binary): `check` and `upgrade` against a server that accepts
 * connections and never answers give up after `--timeout SECONDS` (and the daemon after
 * daemon.conf `timeout_s`) with an error naming the server and the limit, instead of after
 * minutes of retries; and the progress bar of an object-by-object pull counts bytes.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { REF, type Test, startServe, vendor } from '../device-helpers.ts';
import { BIN, larch, larchOk, listenLoopback, tempDir } from '../helpers.ts';
import { startBroker, startDaemon } from '../mqtt-helpers.ts';

/** A loopback server that accepts every connection and never sends a byte. Resolves with its URL. */
async function silentServer(t: Test): Promise<string> {
  // Accepts every connection and never reads or writes.
  const port = await listenLoopback(t, createServer(() => {}));
  return `http://127.0.0.1:${port}/`;
}

/** A device provisioned from a vendor (over HTTP, or through `broker` and a responder), then pointed at `url`. */
async function deviceAt(t: Test, url: string, broker?: string): Promise<string> {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  if (broker) await startServe(t, v.repo, join(v.dir, 'responder.log'), ['--mqtt', broker]);
  await larchOk(['provision', '--sysroot', dev, ...(broker ? ['--mqtt-url', broker] : ['--repo-url', v.url]), '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const configPath = join(dev, 'larch/config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  writeFileSync(configPath, JSON.stringify({ ...config, remote: { ...config.remote, url } }));
  return dev;
}

t.test('check and upgrade --timeout against a server that never answers', async (t) => {
  const url = await silentServer(t);
  const dev = await deviceAt(t, url);
  for (const cmd of ['check', 'upgrade']) {
    const started = Date.now();
    const r = await larch([cmd, '--sysroot', dev, '--timeout', '2', '--json']);
    const seconds = (Date.now() - started) / 1000;
    t.ok(seconds < 10, `${cmd} gave up after ${seconds.toFixed(1)} s (limit 2 s; the request stall timeout alone is 30 s)`);
    t.equal(r.code, 9, `${cmd}: exit 9 (IO)`);
    t.match(r.json?.error, { code: 'IO', data: { reason: 'timeout', timeout_s: 2, url } }, `${cmd}: the error says timeout, the limit and the server`);
    t.match(r.json?.error?.message, new RegExp(`${url}.*within 2 s`), `${cmd}: the message names the server and the limit`);
  }
  const bad = await larch(['check', '--sysroot', dev, '--timeout', '0', '--json']);
  t.equal(bad.json?.error?.code, 'USAGE', '--timeout 0 is refused');
});

t.test('check --timeout over MQTT, through a broker where no responder answers', async (t) => {
  const first = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const silent = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const dev = await deviceAt(t, silent.url, first.url);
  const started = Date.now();
  const r = await larch(['check', '--sysroot', dev, '--timeout', '3', '--json']);
  const seconds = (Date.now() - started) / 1000;
  t.ok(seconds < 10, `check gave up after ${seconds.toFixed(1)} s (limit 3 s; a request is asked again for 120 s without it)`);
  t.match(r.json?.error, { code: 'IO', data: { reason: 'timeout', timeout_s: 3 } }, 'the error says timeout and the limit');
  t.match(r.json?.error?.message, new RegExp(`127\\.0\\.0\\.1:${silent.port}.*within 3 s`), 'and names the broker');
});

t.test('daemon.conf timeout_s bounds the daemon\'s checks', async (t) => {
  const url = await silentServer(t);
  const dev = await deviceAt(t, url);
  writeFileSync(join(dev, 'larch/daemon.conf'), 'timeout_s = 2\n');
  const started = Date.now();
  const d = startDaemon(t, dev, ['--policy', 'check', '--check-interval', '1']);
  const deadline = Date.now() + 20_000;
  while (!/within 2 s/.test(d.stderr())) {
    if (Date.now() > deadline || d.child.exitCode !== null) throw new Error(`the daemon did not report the timeout: ${d.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = (Date.now() - started) / 1000;
  t.ok(seconds < 15, `the daemon's check gave up after ${seconds.toFixed(1)} s`);
  t.match(d.stderr(), new RegExp(`IO: ${url}: no complete answer within 2 s`), 'the daemon logs the server and the limit');
  await d.stop();
});

/** The amounts a progress line showed, in bytes ("download  1.5 MiB  ..." -> 1572864). */
function drawnAmounts(tty: string): number[] {
  const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
  return [...tty.matchAll(/download {2}([\d.]+) (B|KiB|MiB|GiB)\b/g)].map((m) => Number(m[1]) * units[m[2]]);
}

/** Provisions a device from a slow vendor (over HTTP, or MQTT with `mqtt`) under script(1) and checks the bar's amounts. */
async function progressCounts(t: Test, mqtt: boolean): Promise<void> {
  // A slow server (200 kB/s per response; 20 kB/s per chunk, of which 8 are in flight), so the bar draws several times during the pull.
  const broker = mqtt ? await startBroker(t, tempDir(t, 'larch-mosquitto-')) : null;
  const v = await vendor(t, { serveArgs: ['--rate', broker ? '20000' : '200000', ...(broker ? ['--mqtt', broker.url] : [])] });
  await v.release(1);
  const objectsDir = join(v.repo, 'objects');
  const files = readdirSync(objectsDir).flatMap((d) => readdirSync(join(objectsDir, d)).filter((f) => f.endsWith('.filez')).map((f) => join(objectsDir, d, f)));
  const fileBytes = files.reduce((n, f) => n + statSync(f).size, 0);
  const dev = join(tempDir(t), 'device');
  // provision pulls v1 object by object (no delta): under script(1), stderr is a terminal.
  const remote = broker ? ['--mqtt-url', broker.url] : ['--repo-url', v.url];
  const argv = [BIN, 'provision', '--sysroot', dev, ...remote, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot'];
  const r = spawnSync('script', ['-qec', argv.map((a) => `'${a}'`).join(' '), '/dev/null'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '120' } });
  t.equal(r.status, 0, `provision ran under script(1) (${r.stderr})`);
  const amounts = drawnAmounts(r.stdout);
  t.ok(amounts.length >= 2, `the bar was drawn ${amounts.length} times`);
  const most = Math.max(...amounts);
  // Objects counted as bytes would show at most a few dozen "B"; the last draw may come before the last chunks.
  t.ok(most >= (mqtt ? 65536 : fileBytes / 2), `it counted bytes: up to ${most} of the ${fileBytes} bytes of ${files.length} file objects (not ${files.length} objects)`);
  t.ok(most <= fileBytes * 1.1 + 65536, 'and no more than were downloaded');
  // The bar's last draw is the final amount (drawn when the pull is done, not left at the last 100 ms tick).
  const last = amounts.at(-1)!;
  t.ok(last >= fileBytes * 0.95, `the last draw shows the whole download: ${last} of ${fileBytes} bytes`);
}

t.test('the progress bar of an object-by-object pull counts bytes, not objects', (t) => progressCounts(t, false));
t.test('the same over MQTT', (t) => progressCounts(t, true));
