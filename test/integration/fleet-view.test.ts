/**
 * `larch serve --mqtt URL --dashboard` (issue 22, stage 1: the fleet view's state and JSON API):
 * a real Mosquitto, devices simulated on the MQTT side only (retained statuses built by the
 * daemon's own builder, last wills, journal lines, command results, a signed announcement by
 * `larch announce`), and the API read over HTTP. The API must say what the broker holds: every
 * device, its version and state, the rollout's counts; after a restart of serve, the same from the
 * retained statuses alone. Access is loopback-only by default; R/fleet and R/api are never files.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { IDLE_UPDATE, statusMessage } from '../../src/agent/daemon/status-message.ts';
import type { Status } from '../../src/agent/status.ts';
import { type TapTest, BIN, ROOT, larch, larchOk, missingTools, tempDir, testNeeding, waitUntil } from '../helpers.ts';
import { launchChromium } from '../browser.ts';
import { startBroker } from '../mqtt-helpers.ts';

const V1 = '1'.repeat(64);
const V2 = '2'.repeat(64);

function device(id: string, booted: { version: string; commit: string }, extra: Partial<Status> = {}, update: Partial<typeof IDLE_UPDATE> = {}): Record<string, unknown> {
  const s = { ref: 'os/stable', booted: { slot: 'a', ...booted, good: true, tries_left: null }, pending: null, rollback: null, boot: { rescue: false, order: ['a', 'b'], last_good: 'a' }, pinned: [], last_boot: null, last_update: null, failed_releases: [], ...extra } as unknown as Status;
  return statusMessage(s, { device: id, seq: 1, started: '2026-12-06T00:00:00.000Z', policy: 'apply', update: { ...IDLE_UPDATE, ...update }, lastError: null }, new Date());
}

function connectClient(t: TapTest, url: string, id: string, will?: { topic: string; payload: Buffer }): Promise<MqttClient> {
  const u = new URL(url);
  const client = mqtt.connect({ host: u.hostname, port: Number(u.port), protocolVersion: 5, clientId: id, reconnectPeriod: 0, ...(will ? { will: { ...will, qos: 1, retain: true } } : {}) });
  t.teardown(() => new Promise<void>((r) => client.end(true, {}, () => r())));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

const publish = (c: MqttClient, topic: string, body: unknown, retain: boolean) => new Promise<void>((resolve, reject) => c.publish(topic, JSON.stringify(body), { qos: 1, retain }, (err) => (err ? reject(err) : resolve())));

function startServe(t: TapTest, args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(BIN, ['serve', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Waits for the exit: serve writes its snapshot into R as it stops, and R is removed after.
  t.teardown(() => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise<void>((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  })));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"url":"([^"]+)"/.exec(out);
      if (m) resolve({ child, url: m[1] });
    });
    child.on('exit', (code) => reject(new Error(`larch serve exited ${code}`)));
  });
}

const getJson = async (url: string) => {
  const r = await fetch(url);
  return { status: r.status, body: await r.json() as any, etag: r.headers.get('etag') };
};

/**
 * A fleet mid-rollout on the broker: 12 devices (6 on v2 booted good, 2 fell back from v2, one
 * naming its failed check, 1 staged, 1 downloading, 1 not moved, 1 gone: its will is all the
 * broker keeps), a device lying about its id and an invalid one.
 */
async function publishFleet(t: TapTest, url: string): Promise<{ pub: MqttClient; devices: [string, Record<string, unknown>][] }> {
  const devices: [string, Record<string, unknown>][] = [];
  for (let i = 0; i < 6; i++) devices.push([`gw-good-${i}`, device(`gw-good-${i}`, { version: '2', commit: V2 })]);
  devices.push(['gw-fb-0', device('gw-fb-0', { version: '1', commit: V1 }, { failed_releases: [{ commit: V2, version: '2', time: 't', reason: 'fell-back', failed_checks: ['10-services'] }], last_boot: { time: 't', slot: 'b', healthy: false, fell_back: true, outcome: 'fell back' } } as unknown as Partial<Status>)]);
  devices.push(['gw-fb-1', device('gw-fb-1', { version: '1', commit: V1 }, { failed_releases: [{ commit: V2, version: '2', time: 't', reason: 'tries-exhausted', failed_checks: [] }] } as unknown as Partial<Status>)]);
  devices.push(['gw-staged', device('gw-staged', { version: '1', commit: V1 }, { pending: { slot: 'b', version: '2', commit: V2, good: false, tries_left: 3 } } as unknown as Partial<Status>)]);
  const announced = { ref: 'os/stable', commit: V2, version: '2', rollout: 60, created: 1, selected: true, position: 10 };
  devices.push(['gw-dl', device('gw-dl', { version: '1', commit: V1 }, {}, { state: 'downloading', announced, progress: { done: 5, total: 50 } })]);
  devices.push(['gw-idle', device('gw-idle', { version: '1', commit: V1 })]);
  devices.push(['gw-gone', device('gw-gone', { version: '1', commit: V1 })]);
  const pub = await connectClient(t, url, 'sim-publisher');
  for (const [id, status] of devices) await publish(pub, `larch/v1/device/${id}/status`, status, true);
  // gw-gone drops off: its will replaces the retained status.
  const gone = await connectClient(t, url, 'gw-gone-session', { topic: 'larch/v1/device/gw-gone/status', payload: Buffer.from(JSON.stringify({ format: 1, online: false, device: 'gw-gone' })) });
  gone.stream.destroy();
  await publish(pub, 'larch/v1/device/../status', { format: 1, device: '..' }, true);
  await publish(pub, 'larch/v1/device/gw-liar/status', { format: 1, device: 'gw-good-0', version: '9' }, true);

  return { pub, devices };
}

const announceV2 = (pub: MqttClient) => publish(pub, 'larch/v1/announce/os/stable', { body: JSON.stringify({ type: 'announce', format: 1, ref: 'os/stable', commit: V2, version: '2', timestamp: 1, summary_serial: 1, rollout: 60, created: 1_765_000_000 }), sigs: [] }, true);

t.test('the fleet view says what the broker holds, and says it again after a restart', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const broker = await startBroker(t, tempDir(t));

  const usage = await larch(['serve', '--repo', repo, '--dashboard', '--json']);
  t.same([usage.code, usage.json?.error?.code], [2, 'USAGE'], '--dashboard without --mqtt: the view has nothing to read');

  const { pub, devices } = await publishFleet(t, broker.url);

  const serve = await startServe(t, ['--repo', repo, '--mqtt', broker.url, '--dashboard']);
  const api = (path: string) => getJson(new URL(path, serve.url).toString());
  await waitUntil(async () => (await api('/api/fleet/rollouts')).body[0]?.synced === true, 30_000, 'the fleet view to sync');
  // Journal lines are live (not retained): one sent now is seen.
  await publish(pub, 'larch/v1/device/gw-fb-0/journal', { format: 1, device: 'gw-fb-0', seq: 7, time: 't', event: 'fallback', message: 'fell back to slot a: 10-services failed' }, false);
  await waitUntil(async () => (await api('/api/fleet/devices?q=gw-fb-0')).body[0]?.journal.length === 1, 10_000, 'the journal line');
  const list = (await api('/api/fleet/devices')).body as any[];
  t.same(list.map((d) => d.device_id), devices.map(([id]) => id).sort(), 'every device the broker holds, sorted; the invalid id and the device naming another are dropped');
  const byId = Object.fromEntries(list.map((d) => [d.device_id, d]));
  t.same([byId['gw-good-0'].version, byId['gw-good-0'].state], ['2', 'booted-good']);
  t.same([byId['gw-fb-0'].state, byId['gw-fb-0'].journal.map((l: any) => l.event)], ['fell-back', ['fallback']], 'a fallback, with its journal line');
  t.same([byId['gw-staged'].state, byId['gw-dl'].state, byId['gw-dl'].progress], ['staged', 'downloading', { done: 5, total: 50 }]);
  t.same([byId['gw-gone'].online, byId['gw-gone'].version], [false, null], 'the will: offline (a will carries no version, and serve never saw the status before it)');
  const filtered = (await api('/api/fleet/devices?state=fell-back')).body.map((d: any) => d.device_id);
  t.same(filtered, ['gw-fb-0', 'gw-fb-1'], '?state= filters');
  t.same((await api('/api/fleet/devices?q=gw-good-&version=2')).body.length, 6, '?q= and ?version= filter');

  // No announcement yet: the rollout has no release in flight.
  let rollouts = (await api('/api/fleet/rollouts')).body;
  t.same(rollouts.map((r: any) => [r.ref, r.release]), [['os/stable', null]]);
  // Announce v2 at 60% (retained). The view shows what devices were told; devices verify the signatures.
  await announceV2(pub);
  await waitUntil(async () => (await api('/api/fleet/rollouts')).body[0]?.release !== null, 10_000, 'the announcement');
  rollouts = (await api('/api/fleet/rollouts')).body;
  const r = rollouts[0];
  t.same(r.announced, { version: '2', commit: V2, rollout: 60, created_s: 1_765_000_000 });
  t.same(r.counts, { devices: 11, online: 11, not_moved: 1, downloading: 1, staged: 1, trying: 0, good: 6, fell_back: 2, failed: 0, took: 9, decided: 8, failure_pct: 25 }, 'the counts of the release in flight (gw-gone: no ref known, so not counted)');
  t.same(r.fallbacks_by_check.map((f: any) => [f.check, f.devices]), [['(none reported)', 1], ['10-services', 1]]);
  t.same(r.dropped, { messages: 1, devices: 0 }, "the body naming another device is counted as dropped (the invalid topic never matches a device)");

  // ETag and 304; HEAD; unknown API; method.
  const first = await fetch(new URL('/api/fleet/devices', serve.url));
  const etag = first.headers.get('etag')!;
  t.equal((await fetch(new URL('/api/fleet/devices', serve.url), { headers: { 'If-None-Match': etag } })).status, 304, 'unchanged: 304');
  t.equal((await api('/api/nothing')).status, 404);
  t.equal((await fetch(new URL('/api/fleet/devices', serve.url), { method: 'POST' })).status, 405);
  t.equal((await fetch(new URL('/api/fleet/devices', serve.url), { headers: { 'Accept-Encoding': 'gzip' } })).headers.get('content-encoding'), 'gzip', 'gzip when asked');

  // Files named like the view's state are never served.
  mkdirSync(join(repo, 'api'));
  writeFileSync(join(repo, 'api', 'x.json'), '{}');
  t.equal((await fetch(new URL('/api/x.json', serve.url))).status, 404, 'R/api is not served (the API says no such API)');
  mkdirSync(join(repo, 'fleet'), { recursive: true });
  writeFileSync(join(repo, 'fleet', 'x.json'), '{}');
  t.equal((await fetch(new URL('/fleet/x.json', serve.url))).status, 404, 'R/fleet is not served');

  // A restart: the view comes back from the retained statuses, and from its snapshot what the broker no longer has.
  serve.child.kill('SIGTERM');
  await new Promise((r) => serve.child.once('exit', r));
  t.ok(existsSync(join(repo, 'fleet', 'devices.json')), 'serve wrote its snapshot when it stopped');
  await new Promise<void>((resolve, reject) => pub.publish('larch/v1/device/gw-idle/status', Buffer.alloc(0), { qos: 1, retain: true }, (err) => (err ? reject(err) : resolve())));
  const again = await startServe(t, ['--repo', repo, '--mqtt', broker.url, '--dashboard']);
  const api2 = (path: string) => getJson(new URL(path, again.url).toString());
  await waitUntil(async () => (await api2('/api/fleet/rollouts')).body[0]?.synced === true, 30_000, 'the restarted view to sync');
  t.same((await api2('/api/fleet/rollouts')).body[0].counts, { ...r.counts, online: 10 }, 'after a restart: the same counts (gw-idle, gone from the broker, counted offline)');
  const idle = (await api2('/api/fleet/devices?q=gw-idle')).body[0];
  t.same([idle.version, idle.source, idle.online], ['1', 'snapshot', false], "a device whose retained status is gone: its last known state, from the snapshot");
  t.equal((await api2('/api/fleet/devices?q=gw-good-0')).body[0].source, 'live', 'the others: live again');

  // Only loopback by default; --dashboard-allow can shut it too.
  const closed = await startServe(t, ['--repo', repo, '--mqtt', broker.url, '--dashboard', '--dashboard-allow', '10.0.0.0/8']);
  const denied = await fetch(new URL('/api/fleet/devices', closed.url));
  t.same([denied.status, ((await denied.json()) as any).error.code], [403, 'FORBIDDEN'], 'an address outside --dashboard-allow gets 403');
  t.equal((await fetch(new URL('/summary', closed.url))).status, 404, 'files are served as before (R has no summary: 404, not 403)');
});

t.test('the fleet page in headless Chromium: the counts per version and state, on a desktop and a phone', { timeout: 180_000 }, async (t) => {
  await testNeeding(t, 'chromium', missingTools(['chromium']).length > 0 && 'missing chromium (Debian package chromium)', { timeout: 180_000 }, async (t) => {
    const dir = tempDir(t);
    const repo = join(dir, 'repo');
    await larchOk(['init', '--repo', repo, '--mode', 'archive']);
    const broker = await startBroker(t, tempDir(t));
    const { pub } = await publishFleet(t, broker.url);
    await announceV2(pub);
    const serve = await startServe(t, ['--repo', repo, '--mqtt', broker.url, '--dashboard']);
    const fleetUrl = new URL('/fleet/', serve.url).toString();
    const rollouts = (await getJson(new URL('/api/fleet/rollouts', serve.url).toString())).body;
    const browser = await launchChromium();
    t.teardown(() => browser.close());
    const artifacts = join(ROOT, 'test-results', 'fleet-dashboard');
    mkdirSync(artifacts, { recursive: true });
    for (const [name, width, height] of [['desktop', 1280, 900], ['phone', 390, 844]] as const) {
      const page = await browser.open(fleetUrl, width, height);
      await page.waitFor(`document.body.dataset.ready === 'synced' && document.querySelector('[data-version="2"]')`);
      const bars = await page.evaluate<Record<string, Record<string, string>>>(`Object.fromEntries([...document.querySelectorAll('.version')].map((e) => [e.dataset.version, { ...e.dataset }]))`);
      const api = (await getJson(new URL('/api/fleet/rollouts', serve.url).toString())).body[0];
      const v2 = api.versions.find((v: any) => v.version === '2');
      t.same([bars['2'].bootedGood, bars['2'].fellBack, bars['2'].staged, bars['2'].downloading].map(Number), [v2.booted_good, v2.fell_back, v2.staged, v2.downloading], `${name}: the v2 bar counts what the API says (6 good, 2 fell back, 1 staged, 1 downloading)`);
      t.same(Number(bars['1'].bootedGood), api.versions.find((v: any) => v.version === '1').booted_good, `${name}: and the v1 bar`);
      const counts = await page.evaluate<Record<string, string>>(`Object.fromEntries([...document.querySelectorAll('[data-count]')].map((e) => [e.dataset.count, e.querySelector('b').textContent]))`);
      t.same({ took: Number(counts.took), good: Number(counts.good), fell_back: Number(counts.fell_back), failure_pct: Number(counts.failure_pct) }, { took: rollouts[0].counts.took, good: rollouts[0].counts.good, fell_back: rollouts[0].counts.fell_back, failure_pct: rollouts[0].counts.failure_pct }, `${name}: the rollout's counts`);
      const rows = await page.evaluate<[string, string][]>(`[...document.querySelectorAll('#devices tbody tr')].map((r) => [r.dataset.device, r.dataset.state])`);
      const apiDevices = (await getJson(new URL('/api/fleet/devices', serve.url).toString())).body.map((d: any) => [d.device_id, d.state]);
      t.same(rows, apiDevices, `${name}: the device table, one row per device with its state`);
      const checks = await page.evaluate<string[]>(`[...document.querySelectorAll('.fallbacks tr[data-check]')].map((r) => r.dataset.check)`);
      t.same(checks.sort(), ['(none reported)', '10-services'], `${name}: fallbacks by failed check`);
      const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      t.ok(overflow <= 0, `${name}: nothing wider than the screen (the table scrolls in its own box; overflow ${overflow} px)`);
      const png = await page.screenshot();
      t.ok(png.subarray(1, 4).toString() === 'PNG' && png.length > 5000, `${name}: a screenshot (${png.length} bytes)`);
      writeFileSync(join(artifacts, `${name}.png`), png);
    }
  });
});
