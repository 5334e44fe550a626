/**
 * Compatibility is declared, not hoped for (issue 16, must-show 2), and the periodic summary
 * check (defect "freeze through the broker"), with the Bun binary:
 * - a commit whose larch.min_agent_version is above the running agent is refused before
 *   anything is written (data.reason agent-too-old), naming the barrier to go through first;
 * - with a barrier in the summary, a device two releases behind is offered the barrier, and
 *   `larch daemon` (policy apply, sim-boot between) goes through it, then to the head by itself;
 * - a fresh daemon whose broker holds a replayed older announcement still stages the release the
 *   summary offers (checked at start and every check_interval_s by default), and its status
 *   says when it last checked.
 */
import t from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, expectFail, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir, waitUntil } from '../helpers.ts';
import { recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { VERSION } from '../../src/version.ts';

async function device(t: Test, v: Vendor, name: string, conf: string): Promise<string> {
  const dev = join(tempDir(t), name);
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--version', '1']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  writeFileSync(join(dev, 'larch/daemon.conf'), `policy = "apply"\ndevice_id = "${name}"\n${conf}`);
  return dev;
}

const commitPath = (dev: string, id: string) => join(dev, 'larch/repo/objects', id.slice(0, 2), `${id.slice(2)}.commit`);

t.test('agent-too-old names the barrier; the daemon goes through the barrier, then to the head', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v, 'dev-barrier', 'check_interval_s = 1\n');
  const v2 = await v.release(2);
  t.match((await larchOk(['barrier', 'add', '--repo', v.repo, '--ref', REF, '2', '--json'])).json, { ref: REF, barriers: [{ commit: v2, version: '2' }] });
  // v3 needs an agent no device runs: only a barrier release (shipping it) can lead there.
  // (No deltas from v2 on: no device can use one from v3, which none installs.)
  const v3 = await v.release(3, { commitArgs: ['--metadata', 'larch.min_agent_version=99.0'], delta: false });
  t.match((await larchOk(['barrier', 'list', '--repo', v.repo, '--json'])).json, { refs: { [REF]: [{ version: '2' }] } });
  const unreadable = await larch(['commit', '--repo', v.repo, '-b', 'os/other', '--tree', join(v.dir, 'v1'), '--version', 'x', '--metadata', 'larch.min_agent_version=soon', '--json']);
  expectFail(t, unreadable, 'INVALID_INPUT', 'a min_agent_version that is not a version');

  const offer = (await larchOk(['check', '--sysroot', dev, '--json'])).json;
  t.match(offer, { available: true, update: { version: '2', commit: v2, barrier: true } }, 'check offers the barrier, not the head');
  const refused = await larch(['deploy', '--sysroot', dev, '3', '--json']);
  expectFail(t, refused, 'REFUSED', 'deploy of a commit needing a newer agent');
  t.match(refused.json.error, { message: /needs larch 99\.0 or newer; this agent is larch .*update to version 2 \(a barrier release\) first/, data: { reason: 'agent-too-old', required: '99.0', agent: VERSION, commit: v3, barrier: { version: '2', commit: v2 } } });
  t.notOk(existsSync(commitPath(dev, v3)), 'nothing of v3 was written');
  t.equal((await status(dev)).pending, null, 'nothing staged');

  const v4 = await v.release(4, { delta: false });
  // The daemon (periodic check every second) stages the barrier, not the head...
  let d = startDaemon(t, dev, []);
  await waitUntil(async () => (await status(dev)).pending?.version === '2', 30_000, 'the barrier staged');
  await d.stop();
  t.match(await status(dev), { pending: { commit: v2 } });
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match(await status(dev), { booted: { version: '2', good: true } }, 'booted the barrier good');
  // ...and once it runs the barrier, the head.
  d = startDaemon(t, dev, []);
  await waitUntil(async () => (await status(dev)).pending?.version === '4', 30_000, 'the head staged');
  await d.stop();
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match(await status(dev), { booted: { version: '4', commit: v4, good: true } }, 'at the head');
  t.notOk(existsSync(commitPath(dev, v3)), 'v3 was never fetched');
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: false, update: null });
});

t.test('a replayed older announcement does not keep a fresh daemon from the release its summary offers', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const topic = `larch/v1/announce/${REF}`;
  const rec = await recorder(t, broker.url, [topic, 'larch/v1/device/dev-replay/status']);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const old = await rec.waitFor((m) => m.topic === topic && m.payload.length > 0, 10_000, 'the v1 announcement');
  const v2 = await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  // Someone with write access to the broker puts the old, validly signed announcement back.
  await rec.publish(topic, old.payload, { retain: true });
  // Default daemon.conf: no check_interval_s.
  const dev = await device(t, v, 'dev-replay', `mqtt_url = "${broker.url}"\n`);
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { update: { version: '2' } }, 'larch check shows v2');
  startDaemon(t, dev, []);
  await waitUntil(async () => (await status(dev)).pending?.commit === v2, 30_000, 'v2 staged by the periodic check');
  const s = await rec.waitFor((m) => m.topic === 'larch/v1/device/dev-replay/status' && m.json?.online === true && m.json.last_check !== null, 20_000, 'a status with last_check');
  t.ok(Math.abs(Date.parse(s.json.last_check) - Date.now()) < 60_000, `last_check is recent (${s.json.last_check})`);
  t.equal(s.json.stale, false, 'not stale');
});
