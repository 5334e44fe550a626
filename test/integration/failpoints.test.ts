/**
 * Every failpoint of every command that changes state: each command runs once
 * with LARCH_FAILPOINT_LOG to learn the points it passes and how often, then once per (point, hit)
 * on a fresh copy of its starting device with LARCH_FAILPOINT=point:hit. Each run must die by
 * SIGKILL there; after it the device must boot a complete, verified deployment, status and fsck
 * must pass, /var and the admin's /etc must be untouched, and the command run again must reach
 * its end state. The random-moment kills (crash.test.ts, device-crash.test.ts) stay as a second line.
 * Also: a sysroot names itself only in boot/fw_env.config, so a `cp -a` copy with that file
 * rewritten is a device of its own (what every case here relies on).
 */
import t from 'tap';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { makePool } from '../../src/_pool.ts';
import { FAILPOINT_NAMES, type Failpoint } from '../../src/failpoint.ts';
import { SCENARIOS, type Scenario, checkDevice, learnFailpoints, makeWorld, runScenario } from '../failpoint-helpers.ts';
import { copySysroot } from '../device-helpers.ts';
import { diffSnapshots, larchOk, sh, snapshotTree, tempDir } from '../helpers.ts';

/**
 * Which hits of a point passed n times are tried: all of up to four, else the first two and the
 * last two (the ends of a loop are where the order matters: a transaction renames its signatures
 * and commit objects last, a prune unlinks commits first).
 */
function hitsToTry(n: number): number[] {
  return n <= 4 ? Array.from({ length: n }, (_, i) => i + 1) : [1, 2, n - 1, n];
}

const started = Date.now();
const w = await makeWorld(t);
const setupMs = Date.now() - started;

/** Files under dev that hold dev's absolute path (contents, and symlink targets). */
function namesItself(dev: string): string[] {
  const inFiles = sh(`grep -rlF --binary-files=text -e '${dev}/' '${dev}' || true`).split('\n').filter(Boolean);
  const links = sh(`find '${dev}' -type l -lname '${dev}/*'`).split('\n').filter(Boolean);
  return [...inFiles, ...links].map((p) => p.slice(dev.length + 1)).sort();
}

t.test('a sysroot holds its own absolute path only in boot/fw_env.config; a copy with that file rewritten is a separate device', async (t) => {
  for (const name of ['v1', 'staged', 'booting', 'both', 'garbage'] as const) {
    t.same(namesItself(w.setups[name].dev), ['boot/fw_env.config'], `${name}: only boot/fw_env.config names the sysroot`);
  }
  const original = w.setups.v1.dev;
  const before = await snapshotTree(original, { owners: true });
  const copy = copySysroot(original, join(tempDir(t), 'copy'));
  t.same(sh(`grep -rlF --binary-files=text -e '${original}/' '${copy}' || true`), '', 'the copy does not name the original');
  await larchOk(['upgrade', '--sysroot', copy]);
  await larchOk(['sim-boot', '--sysroot', copy]);
  t.match((await larchOk(['status', '--sysroot', copy, '--json'])).json.booted, { slot: 'B', commit: w.commits.v3, good: true }, 'the copy upgraded, rebooted and confirmed release 3');
  t.same(diffSnapshots(before, await snapshotTree(original, { owners: true })), [], 'the original is unchanged, its env included');
  t.same(namesItself(copy), ['boot/fw_env.config'], 'after an upgrade and a boot, still only boot/fw_env.config names the copy');
});

t.test('every failpoint of every state-changing command leaves a device that boots, checks out and recovers', async (t) => {
  const scratch = tempDir(t, 'larch-fp-cases-');
  const cases: { scenario: Scenario; point: Failpoint; hit: number; of: number }[] = [];
  const passed = new Set<Failpoint>();
  let pairs = 0;
  for (const scenario of SCENARIOS) {
    const points = await learnFailpoints(scenario, w, scratch);
    t.ok(points.size > 0, `${scenario.name}: passes failpoints (${[...points].map(([p, n]) => `${p}${n > 1 ? ` x${n}` : ''}`).join(', ')})`);
    pairs += points.size;
    for (const [point, n] of points) {
      if (scenario.only && !scenario.only.test(point)) continue;
      passed.add(point);
      for (const hit of hitsToTry(n)) cases.push({ scenario, point, hit, of: n });
    }
    if (scenario.name === 'upgrade') {
      for (const p of ['delta::after-part-download', 'update::after-download', 'update::after-mark-unbootable', 'deploy::after-checkout', 'deploy::after-etc-merge', 'update::after-bootenv-write'] as Failpoint[]) {
        t.ok(points.has(p), `upgrade over a delta passes ${p}`);
      }
    }
  }
  // sim-boot::after-bootloader makes the 'booting' device (makeWorld): boot-check's starting state.
  // The systemd-boot store's points (bootenv::after-bls-*) are passed only on a systemd-boot
  // device: test/integration/systemd-boot.test.ts kills at each of their hits.
  t.same(FAILPOINT_NAMES.filter((p) => !passed.has(p) && p !== 'sim-boot::after-bootloader' && !p.startsWith('bootenv::after-bls-')), [], 'every listed failpoint is passed by some command');

  const pool = makePool(2);
  let n = 0;
  await Promise.all(
    cases.map((c) =>
      pool(async () => {
        const label = `${c.scenario.name} at ${c.point}:${c.hit}/${c.of}`;
        const setup = w.setups[c.scenario.from];
        const dev = join(scratch, `case-${++n}`);
        if (c.scenario.from !== 'fresh') copySysroot(setup.dev, dev);
        const killed = await runScenario(c.scenario, dev, w, { LARCH_FAILPOINT: `${c.point}:${c.hit}` });
        t.equal(killed.signal, 'SIGKILL', `${label}: killed there (exit ${killed.code}: ${killed.stderr.trim()})`);
        await checkDevice(t, dev, w, setup, `${label}, killed`);
        const again = await runScenario(c.scenario, dev, w);
        t.equal(again.code, 0, `${label}: the command run again succeeds (${again.stderr.trim()})`);
        await c.scenario.done(t, dev, w, `${label}, run again`);
        rmSync(dev, { recursive: true, force: true });
      }),
    ),
  );
  const cpu = process.cpuUsage();
  t.comment(`${pairs} (failpoint, command) pairs over ${SCENARIOS.length} commands (${passed.size} distinct failpoints of ${FAILPOINT_NAMES.length}); ${cases.length} kills checked; setup ${(setupMs / 1000).toFixed(1)} s, total ${((Date.now() - started) / 1000).toFixed(1)} s (this process: ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU)`);
});
