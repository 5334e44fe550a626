/**
 * The fleet test: N simulated devices (sysroots in temp dirs, copies of one
 * provisioned device) run as in-process agents (src/agent/daemon/daemon.ts, the code `larch daemon`
 * runs) in this one process, against one Mosquitto and one `larch serve --max-downloads CAP`.
 * - Rollout 25%: exactly the devices whose stable position is below 25 stage the update, and
 *   that is a quarter of the fleet within three binomial standard deviations (±9.2 points for
 *   200; the positions are a hash of the id);
 *   100%: all do.
 * - The HTTP server sent about devices × delta size bytes of deltas (within 5%): every device
 *   took the delta once, none fetched full objects.
 * - Never more than CAP delta bodies in flight (from the access log); the others got 503 with
 *   Retry-After and came back.
 * It prints the agents' memory and the broker's message counts ($SYS). N is 200 (the issue's
 * size); LARCH_FLEET_DEVICES=N for another size.
 */
import t from 'tap';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Sysroot } from '../../src/agent/sysroot.ts';
import { readStatus } from '../../src/agent/status.ts';
import { rolloutPosition } from '../../src/mqtt/rollout.ts';
import { vendor } from '../device-helpers.ts';
import { provisionPrototype, startFleet } from '../fleet-helpers.ts';
import { larchOk, tempDir } from '../helpers.ts';
import { recorder, startBroker } from '../mqtt-helpers.ts';

const N = Number(process.env.LARCH_FLEET_DEVICES ?? 200);
/** Delta bodies the server sends at once. */
const CAP = 8;
/** Each delta body takes about 0.3 s at this rate, so a rollout wave queues on the cap. */
const RATE = 1_000_000;
const MiB = 1024 * 1024;

t.test(`a fleet of ${N} in-process agents: rollout 25% then 100%, downloads capped at ${CAP}`, { timeout: 900_000 }, async (t) => {
  const v = await vendor(t, { serveArgs: ['--max-downloads', String(CAP), '--rate', String(RATE)] });
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'), { sysIntervalS: 1, quiet: true });
  const root = tempDir(t);
  const proto = await provisionPrototype(root, { repoUrl: v.url, keyPub: `${v.key}.pub` });
  const ids = Array.from({ length: N }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);
  const statusTopic = (id: string) => `larch/v1/device/${id}/status`;
  const rec = await recorder(t, broker.url, ['larch/v1/device/+/status', '$SYS/broker/messages/+', '$SYS/broker/publish/messages/+']);
  /** Waits for a status of the device; a timeout names the device's last status and log lines. */
  const waitStatus = async (id: string, pred: (json: any) => boolean, timeoutMs: number, what: string) => {
    try {
      return await rec.waitFor((m) => m.topic === statusTopic(id) && m.json !== undefined && pred(m.json), timeoutMs, `${id} ${what}`);
    } catch (err) {
      const mine = logs.filter((l) => l.startsWith(`${id}: `));
      throw new Error(`${(err as Error).message}\n${id}'s last status: ${JSON.stringify(rec.on(statusTopic(id)).at(-1)?.json)}\n${id}'s log (${mine.length} lines):\n${mine.slice(-20).join('\n')}`);
    }
  };
  const sys = (name: string) => Number(rec.messages.filter((m) => m.topic === `$SYS/broker/${name}`).at(-1)?.payload.toString() ?? NaN);

  global.gc?.();
  const mem0 = process.memoryUsage();
  const started = Date.now();
  // Copies of proto in root/ID (each with its own U-Boot env), an in-process agent each, policy apply: staged, no reboot.
  const fleet = await startFleet(t, { ids, root, proto, repoUrl: v.url, keyPub: `${v.key}.pub`, mqttUrl: broker.url, policy: 'apply', jitterS: 2, pollIntervalMs: 1000, retryIntervalS: 5 });
  const logs = fleet.logs;
  for (const id of ids) await waitStatus(id, (s) => s.online === true, 60_000, 'online');
  // Each agent checks the summary once soon after it starts (within jitterS). A first check that
  // came after v2's release but before its announcement would take v2 whatever the rollout (a
  // release never announced is taken, docs/fleet.md): seen once in CI, a device at position 41.5
  // staged at 25%. So v2 is released only once every agent has made that check.
  for (const id of ids) await waitStatus(id, (s) => s.update?.state === 'up-to-date', 60_000, 'checked once');
  global.gc?.();
  const mem1 = process.memoryUsage();
  t.comment(`${N} agents online in ${((Date.now() - started) / 1000).toFixed(1)} s; per agent: ${((mem1.rss - mem0.rss) / N / MiB).toFixed(2)} MiB RSS, ${((mem1.heapUsed - mem0.heapUsed) / N / 1024).toFixed(0)} KiB JS heap (all agents in one process: total RSS ${(mem1.rss / MiB).toFixed(0)} MiB)`);

  // v2 carries 256 KiB of new data: the delta is about that.
  await v.release(2, { files: { 'usr/share/fleet/blob': randomBytes(256 * 1024) } });
  const deltaDir = join(v.repo, 'deltas', readdirSync(join(v.repo, 'deltas'))[0]);
  const deltaSize = readdirSync(deltaDir).reduce((n, f) => n + statSync(join(deltaDir, f)).size, 0);
  const early = ids.filter((id) => rolloutPosition(id) < 25);
  const late = ids.filter((id) => rolloutPosition(id) >= 25);
  // The positions are a hash of the id: the share below 25 is binomial; three standard deviations.
  const tolerance = 3 * Math.sqrt((0.25 * 0.75) / N);
  t.ok(Math.abs(early.length / N - 0.25) <= tolerance, `${early.length} of ${N} (${((100 * early.length) / N).toFixed(1)}%) placed below 25: a quarter within ±${(100 * tolerance).toFixed(1)} points`);
  type Entry = { path: string; status: number; bytes: number; time: string; ms: number; sendMs?: number };
  const access = (): Entry[] => readFileSync(join(v.dir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const before = access().length;
  const since = () => access().slice(before);
  const deltaBytes = () => since().filter((e) => e.path.startsWith('/deltas/')).reduce((n, e) => n + e.bytes, 0);

  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '25']);
  for (const id of early) await waitStatus(id, (s) => s.update?.state === 'staged', 300_000, 'staged');
  for (const id of late) await waitStatus(id, (s) => s.update?.state === 'waiting-rollout', 60_000, 'waits');
  const staged25 = ids.filter((id) => rec.on(statusTopic(id)).some((m) => m.json?.pending?.version === '2'));
  const odd = [...early.filter((id) => !staged25.includes(id)), ...staged25.filter((id) => !early.includes(id))];
  t.same(staged25, early, `rollout 25%: exactly the ${early.length} devices placed below 25 staged, no other${odd.length ? `; ${odd.join(' ')}: ${JSON.stringify(odd.map((id) => rec.on(statusTopic(id)).slice(-2).map((m) => m.json)))} ${logs.filter((l) => odd.some((id) => l.startsWith(id))).join('\n')}` : ''}`);
  t.ok(Math.abs(deltaBytes() - early.length * deltaSize) <= 0.05 * early.length * deltaSize, `at 25%: ${deltaBytes()} delta bytes sent ≈ ${early.length} × ${deltaSize}`);

  const wave = Date.now();
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '100']);
  for (const id of late) await waitStatus(id, (s) => s.pending?.version === '2', 600_000, 'staged at 100%');
  const waveS = (Date.now() - wave) / 1000;
  const inB = ids.filter((id) => existsSync(join(root, id, 'larch/deploy/B.json')) && JSON.parse(readFileSync(join(root, id, 'larch/deploy/B.json'), 'utf8')).version === '2');
  t.equal(inB.length, N, `at 100%: all ${N} devices have v2 deployed in slot B`);
  const pendingInOwnEnv = (await Promise.all(ids.map((id) => readStatus(new Sysroot(join(root, id)))))).filter((s) => s.pending?.version === '2').length;
  t.equal(pendingInOwnEnv, N, `each device's own env (boot/uboot.env) boots v2 next`);

  const total = deltaBytes();
  t.ok(Math.abs(total - N * deltaSize) <= 0.05 * N * deltaSize, `HTTP sent ${total} bytes of deltas ≈ ${N} devices × ${deltaSize} (${(total / (N * deltaSize)).toFixed(3)}×)`);
  // A device reads the target's commit object (.commit, .sig) before it downloads (the agent it
  // needs, its ref and release); any other object would be a fallback to the object pull.
  const objectsFetched = since().filter((e) => e.path.startsWith('/objects/') && !/\.(commit|sig)$/.test(e.path));
  t.equal(objectsFetched.length, 0, `no device fell back to fetching objects${objectsFetched.length ? ` (${objectsFetched.slice(0, 3).map((e) => e.path).join(', ')} ...)` : ''}`);
  // Each body from its first byte to its last (time is when the request came; sendMs ends at ms).
  const bodies = since()
    .filter((e) => e.path.startsWith('/deltas/') && e.status >= 200 && e.status < 300 && e.bytes > 0)
    .map((e) => [Date.parse(e.time) + e.ms - e.sendMs!, Date.parse(e.time) + e.ms] as const);
  const peak = Math.max(...bodies.map(([start]) => bodies.filter(([s, e]) => s <= start && start < e).length));
  const turnedAway = since().filter((e) => e.status === 503).length;
  t.ok(peak <= CAP, `at most ${CAP} delta bodies in flight at once (peak ${peak}; ${turnedAway} requests turned away with 503)`);
  await new Promise((r) => setTimeout(r, 1500)); // one more $SYS round
  global.gc?.();
  const mem2 = process.memoryUsage();
  t.comment(`100% wave: ${late.length} devices in ${waveS.toFixed(1)} s; RSS after the update ${(mem2.rss / MiB).toFixed(0)} MiB (${((mem2.rss - mem0.rss) / N / MiB).toFixed(2)} MiB per agent)`);
  t.comment(`agent log lines: ${logs.length}${logs.length ? `, e.g. ${logs.slice(0, 5).join(' | ')}` : ''}`);
  // A failed attempt is tried again (retry_interval_s, here 5 s): the fleet still converges, but each one is worth reading.
  const failures = logs.filter((l) => / failed \(attempt \d+\); trying again/.test(l));
  t.comment(`attempts that failed and were tried again: ${failures.length}${failures.length ? `:\n${logs.filter((l) => /daemon: [A-Z_]+: /.test(l)).join('\n')}` : ''}`);
  t.comment(`broker: ${sys('messages/received')} messages received, ${sys('messages/sent')} sent (${sys('publish/messages/received')} / ${sys('publish/messages/sent')} PUBLISH); the recorder saw ${rec.messages.filter((m) => !m.topic.startsWith('$SYS')).length} status messages`);
});
