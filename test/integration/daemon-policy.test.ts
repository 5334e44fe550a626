/**
 * The reboot half of policy apply-and-reboot, with `larch daemon` (the Bun binary), a private
 * Mosquitto and `larch serve`: reboot_strategy periodic waits for its weekly window (also after
 * a daemon restart) and reboots when it opens; fleet_lock reboots one device at a time through
 * a FleetLock server and gives the slot back after a healthy boot; /metrics scraped from a
 * running daemon. The FleetLock server is the small one in test/fleetlock-server.ts: no
 * FleetLock server (Airlock, FLUO) is packaged in Debian.
 */
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { REF, type Test, type Vendor, status, vendor } from '../device-helpers.ts';
import { larchOk, tempDir, waitUntil } from '../helpers.ts';
import { type Received, freePort, recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { startFleetLock } from '../fleetlock-server.ts';

const statusTopic = (id: string) => `larch/v1/device/${id}/status`;
const online = (id: string) => (m: Received) => m.topic === statusTopic(id) && m.json?.online === true;
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** The window text for a start time (UTC, minutes) and a length. */
const windowText = (start: Date, minutes: number) => `${DAYS[start.getUTCDay()]} ${start.toISOString().slice(11, 16)} ${minutes}m`;

async function device(t: Test, v: Vendor, name: string, conf: string): Promise<string> {
  const dev = join(tempDir(t), name);
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  writeFileSync(join(dev, 'larch/daemon.conf'), `policy = "apply-and-reboot"\ndevice_id = "${name}"\n${conf}`);
  return dev;
}

const journal = (dev: string) => readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const rebootRequested = (dev: string) => existsSync(join(dev, 'larch/daemon/reboot-requested.json'));

function scrape(port: number, path = '/metrics'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    })
      .on('error', reject)
      .end();
  });
}

/** A sample's value from exposition text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('periodic: staged at once, the reboot waits for the window, across a restart, until it opens', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  // A window six hours away: not open now.
  const far = new Date(Math.floor(Date.now() / 60_000) * 60_000 + 6 * 3600_000);
  const dev = await device(t, v, 'dev-win', `mqtt_url = "${broker.url}"\nreboot_strategy = "periodic"\nreboot_windows = ["${windowText(far, 60)}"]  # UTC\n`);
  const rec = await recorder(t, broker.url, [statusTopic('dev-win')]);
  let d = startDaemon(t, dev, []);
  await rec.waitFor(online('dev-win'), 20_000, 'online');
  const v2 = await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const waiting = await rec.waitFor((m) => m.topic === statusTopic('dev-win') && m.json?.update?.reboot_wait === 'window', 60_000, 'waiting for the window');
  t.match(waiting.json, { pending: { version: '2', commit: v2 }, update: { state: 'staged', reboot_wait: 'window', reboot_at: far.toISOString() } });
  t.notOk(rebootRequested(dev), 'no reboot before the window');
  // The log line and the status message travel apart (a pipe, the broker): the status may be read first.
  await waitUntil(() => /waiting for the reboot window/.test(d.stderr()), 10_000, 'the daemon to log the wait');
  t.match(d.stderr(), /waiting for the reboot window '[^']+' \(/, 'the daemon logs the window it waits for');

  // Restarted (the staged update is still there): it waits again, now for a window that opens
  // at the next minute (or the one after, so that the wait is seen), then reboots in it.
  await d.stop();
  const nowMs = Date.now();
  let soonMs = Math.ceil(nowMs / 60_000) * 60_000;
  if (soonMs - nowMs < 15_000) soonMs += 60_000;
  const soon = new Date(soonMs);
  writeFileSync(join(dev, 'larch/daemon.conf'), readFileSync(join(dev, 'larch/daemon.conf'), 'utf8').replace(/reboot_windows = .*/, `reboot_windows = ["${windowText(far, 60)}", "${windowText(soon, 5)}"]`));
  const since = rec.messages.length;
  d = startDaemon(t, dev, []);
  const again = await rec.waitFor((m) => rec.messages.indexOf(m) >= since && m.topic === statusTopic('dev-win') && m.json?.update?.reboot_wait === 'window', 20_000, 'waiting again after the restart');
  t.equal(again.json.update.reboot_at, soon.toISOString(), 'the nearer window');
  t.notOk(rebootRequested(dev));
  await waitUntil(() => rebootRequested(dev), soonMs - Date.now() + 20_000, 'the reboot in the window');
  const requested = JSON.parse(readFileSync(join(dev, 'larch/daemon/reboot-requested.json'), 'utf8'));
  t.ok(Date.parse(requested.time) >= soonMs, `rebooted at ${requested.time}, not before the window (${soon.toISOString()})`);
  const entry = journal(dev).find((e) => e.event === 'reboot' && e.data?.strategy === 'periodic');
  t.match(entry, { data: { version: '2', commit: v2, slot: 'B', window: windowText(soon, 5) }, message: /rebooting into version 2 \(slot B\).*reboot window .* is open/ }, 'journaled with the window');
  await rec.waitFor((m) => m.topic === statusTopic('dev-win') && m.json?.update?.state === 'rebooting' && m.json.update.reboot_wait === null, 10_000, 'state rebooting');
  // The "reboot": it boots v2.
  await d.stop();
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match(await status(dev), { booted: { version: '2', good: true } });
});

t.test('fleet_lock: one slot, two devices reboot one after the other; /metrics while waiting', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const fl = await startFleetLock(t, 1);
  const ports = [await freePort(), await freePort()];
  const ids = ['dev-l1', 'dev-l2'];
  const devs = await Promise.all(ids.map((id, i) => device(t, v, id, `mqtt_url = "${broker.url}"\nreboot_strategy = "fleet_lock"\nfleet_lock_url = "${fl.url}"\nfleet_lock_group = "workers"\nfleet_lock_retry_s = 1\nmetrics_listen = "127.0.0.1:${ports[i]}"\n`)));
  const rec = await recorder(t, broker.url, ids.map(statusTopic));
  const daemons = devs.map((dev) => startDaemon(t, dev, []));
  for (const id of ids) await rec.waitFor(online(id), 20_000, `${id} online`);
  // At start each device, booted on a good slot, tells the server it is in steady state.
  await waitUntil(() => ids.every((id) => fl.requests.some((r) => r.op === '/v1/steady-state' && r.id === id && r.status === 200)), 10_000, 'steady-state at start');

  const before = await scrape(ports[0]!);
  t.equal(before.status, 200);
  t.equal(before.type, 'text/plain; version=0.0.4; charset=utf-8');
  t.match(before.body, /^# HELP larch_info .*\n# TYPE larch_info gauge\nlarch_info\{version="1",commit="[0-9a-f]{64}",slot="A",ref="os\/stable"\} 1\n/);
  t.equal(sample(before.body, 'larch_mqtt_connected'), 1);
  t.equal(sample(before.body, 'larch_boot_tries_left{slot="A"}'), (await status(devs[0]!)).boot.slots.A.tries_left);
  t.equal((await scrape(ports[0]!, '/other')).status, 404);

  const v2 = await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  // Both stage; the first to ask gets the slot and reboots, the other waits for the lock.
  await waitUntil(() => devs.some(rebootRequested), 60_000, 'one reboot');
  const first = devs.findIndex(rebootRequested);
  const second = 1 - first;
  const waiting = await rec.waitFor((m) => m.topic === statusTopic(ids[second]!) && m.json?.update?.reboot_wait === 'lock' && m.json.update.lock?.attempts >= 2, 30_000, 'the other device waiting for the lock');
  t.match(waiting.json, { pending: { version: '2', commit: v2 }, update: { state: 'staged', lock: { reason: /HTTP 409 failed_lock/ } } });
  t.notOk(rebootRequested(devs[second]!), 'the second device has not rebooted');
  t.same([...fl.holders.get('workers')!], [ids[first]], 'the first device holds the only slot');
  t.match(journal(devs[first]!).find((e) => e.event === 'reboot' && e.data?.strategy === 'fleet_lock'), { data: { version: '2', group: 'workers', fleet_lock_url: fl.url }, message: /FleetLock slot granted/ });

  const m = (await scrape(ports[second]!)).body;
  t.equal(sample(m, 'larch_update_state{state="staged"}'), 1, 'metrics: staged');
  t.equal(sample(m, 'larch_reboot_waiting{reason="lock"}'), 1, 'metrics: waiting for the lock');
  t.equal(sample(m, 'larch_updates_total{result="staged"}'), 1);
  t.ok(sample(m, 'larch_downloaded_bytes_total')! > 0, 'metrics: bytes downloaded');
  t.ok(Math.abs(sample(m, 'larch_last_check_timestamp_seconds')! - Date.now() / 1000) < 120, 'metrics: a recent check');
  t.equal(sample(m, 'larch_pending'), 1);

  // The first device "reboots" into v2 (boot-check marks it good) and its daemon starts again:
  // steady-state gives the slot back, and the second device takes it.
  await daemons[first]!.stop();
  await larchOk(['sim-boot', '--sysroot', devs[first]!]);
  t.match(await status(devs[first]!), { booted: { version: '2', good: true } });
  const releaseAt = fl.requests.length;
  daemons[first] = startDaemon(t, devs[first]!, []);
  await waitUntil(() => rebootRequested(devs[second]!), 30_000, 'the second reboot');
  const after = fl.requests.slice(releaseAt).filter((r) => r.status === 200).map((r) => `${r.op} ${r.id}`);
  t.same(after.slice(0, 2), [`/v1/steady-state ${ids[first]}`, `/v1/pre-reboot ${ids[second]}`], 'released, then granted to the other device');
  t.same([...fl.holders.get('workers')!], [ids[second]]);
  t.notOk(fl.requests.some((r) => r.status === 400), 'every request was well formed');
});

t.test('immediate reboots at once, periodic at once inside a window; a rollback ends a lock wait', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const fl = await startFleetLock(t, 1);
  fl.holders.set('default', new Set(['someone-else']));
  const now = await device(t, v, 'dev-now', `mqtt_url = "${broker.url}"\n`);
  const open = await device(t, v, 'dev-open', `mqtt_url = "${broker.url}"\nreboot_strategy = "periodic"\nreboot_windows = "Mon-Sun 00:00 24h"\n`);
  const held = await device(t, v, 'dev-held', `mqtt_url = "${broker.url}"\nreboot_strategy = "fleet_lock"\nfleet_lock_url = "${fl.url}"\nfleet_lock_retry_s = 1\n`);
  const rec = await recorder(t, broker.url, ['dev-now', 'dev-open', 'dev-held'].map(statusTopic));
  for (const dev of [now, open, held]) startDaemon(t, dev, []);
  for (const id of ['dev-now', 'dev-open', 'dev-held']) await rec.waitFor(online(id), 20_000, `${id} online`);
  await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  await waitUntil(() => rebootRequested(now) && rebootRequested(open), 60_000, 'both reboots');
  t.match(journal(now).find((e) => e.event === 'reboot' && e.data?.strategy), { data: { strategy: 'immediate', version: '2' } }, 'immediate (the default)');
  t.match(journal(open).find((e) => e.event === 'reboot' && e.data?.strategy), { data: { strategy: 'periodic', window: 'Mon-Sun 00:00 24h' } }, 'periodic, inside its window');
  await rec.waitFor((m) => m.topic === statusTopic('dev-held') && m.json?.update?.reboot_wait === 'lock' && m.json.update.lock?.attempts >= 1, 30_000, 'waiting for the lock');
  t.notOk(rebootRequested(held));
  // The operator rolls the staged update back: nothing to reboot into, the wait ends.
  const r = await larchOk(['command', '--mqtt', broker.url, '--device', 'dev-held', '--sign-key', `${v.key}.key`, '--wait', '20', '--json', 'rollback']);
  t.match(r.json.result, { result: 'ok', cmd: 'rollback' });
  const ended = await rec.waitFor((m) => m.topic === statusTopic('dev-held') && m.json?.pending === null && m.json.update?.reboot_wait === null, 20_000, 'the wait over');
  t.equal(ended.json.update.lock, null);
  const asked = fl.requests.filter((x) => x.op === '/v1/pre-reboot').length;
  await new Promise((res) => setTimeout(res, 2500));
  t.equal(fl.requests.filter((x) => x.op === '/v1/pre-reboot').length, asked, 'no more pre-reboot requests');
  t.notOk(rebootRequested(held), 'no reboot');
  t.same([...fl.holders.get('default')!], ['someone-else']);
});
