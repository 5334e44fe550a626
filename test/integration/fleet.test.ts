/**
 * Fleet skeleton (issue 6 part 2, point 4 in small): N simulated devices (sysroots in temp dirs,
 * copies of one provisioned device) run as in-process agents (src/agent/daemon.ts) against one
 * Mosquitto and one `larch serve`. Rollout 25%: exactly the devices placed below 25 stage the
 * update; 100%: all do; the HTTP server sent about devices × delta bytes. N defaults to 24
 * (LARCH_FLEET_DEVICES=200 for the full-size run, not part of the regular suite yet).
 */
import t from 'tap';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon } from '../../src/agent/daemon.ts';
import { mergerFor } from '../../src/agent/etc-merger.ts';
import { DEFAULT_DAEMON_CONFIG } from '../../src/agent/policy.ts';
import { httpRemote } from '../../src/agent/remote-http.ts';
import { Sysroot } from '../../src/agent/sysroot.ts';
import { rolloutPosition } from '../../src/mqtt/rollout.ts';
import { REF, vendor } from '../device-helpers.ts';
import { larchOk, tempDir } from '../helpers.ts';
import { recorder, startBroker } from '../mqtt-helpers.ts';

const N = Number(process.env.LARCH_FLEET_DEVICES ?? 24);

t.test(`a fleet of ${N} in-process agents: rollout 25% then 100%`, async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const root = tempDir(t);
  const proto = join(root, 'proto');
  await larchOk(['provision', '--sysroot', proto, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', proto]);
  const ids = Array.from({ length: N }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);
  const statusTopic = (id: string) => `larch/v1/device/${id}/status`;
  const rec = await recorder(t, broker.url, ['larch/v1/device/+/status']);
  const rss0 = process.memoryUsage().rss;
  const daemons: Daemon[] = [];
  for (const id of ids) {
    const dir = join(root, id);
    cpSync(proto, dir, { recursive: true, verbatimSymlinks: true });
    const d = new Daemon({ sysroot: new Sysroot(dir), config: { ...DEFAULT_DAEMON_CONFIG, policy: 'apply', mqttUrl: broker.url, jitterS: 2, pollIntervalMs: 500 }, deviceId: id, remote: httpRemote(v.url), merger: mergerFor(), log: () => {}, reboot: async () => {} });
    daemons.push(d);
    await d.start();
  }
  t.teardown(() => Promise.all(daemons.map((d) => d.stop())));
  for (const id of ids) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.online === true, 30_000, `${id} online`);
  t.comment(`rss per agent: ${((process.memoryUsage().rss - rss0) / N / 1024 / 1024).toFixed(1)} MiB (all agents in this process)`);

  await v.release(2);
  const early = ids.filter((id) => rolloutPosition(id) < 25);
  const late = ids.filter((id) => rolloutPosition(id) >= 25);
  t.comment(`${early.length} of ${N} placed below 25`);
  const logBytes = () => readFileSync(join(v.dir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.path.includes('/deltas/') && e.path.includes('/part-')).reduce((n, e) => n + e.bytes, 0);
  const before = logBytes();
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '25']);
  for (const id of early) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.update?.state === 'staged', 120_000, `${id} staged`);
  for (const id of late) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.update?.state === 'waiting-rollout', 60_000, `${id} waits`);
  const staged25 = ids.filter((id) => rec.on(statusTopic(id)).some((m) => m.json?.pending?.version === '2'));
  t.same(staged25.sort(), [...early].sort(), `rollout 25%: exactly the ${early.length} devices placed below 25 staged (expected about ${N / 4})`);
  const deltaBytes = (logBytes() - before) / Math.max(1, early.length);

  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '100']);
  for (const id of late) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.pending?.version === '2', 120_000, `${id} staged at 100%`);
  const total = logBytes() - before;
  t.ok(Math.abs(total - N * deltaBytes) <= 0.05 * N * deltaBytes + 1, `HTTP sent ${total} bytes of delta parts ≈ ${N} × ${Math.round(deltaBytes)}`);
  t.comment(`broker messages seen by the recorder: ${rec.messages.length}`);
});
