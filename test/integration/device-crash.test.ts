/**
 * kill -9 of `larch upgrade` at 30 random moments (download, verification, checkout, /etc
 * merge, boot files, env writes): after each, sim-boot boots a complete, verified deployment,
 * and a new upgrade completes. Between rounds the device goes back to v1 and drops v2's objects
 * (deploy --allow-downgrade, cleanup --rollback), so every round downloads again.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { REF, type Test, deploymentDiff, status, vendor } from '../device-helpers.ts';
import { BIN, diffSnapshots, larchOk, prng, snapshotTree, tempDir } from '../helpers.ts';

const ROUNDS = 30;

/** Runs `larch ARGS` and SIGKILLs it after ms (or lets it finish first); resolves with how it ended (and, finished, its exit code and stderr). */
function runAndKill(args: string[], ms: number): Promise<{ how: 'killed' | 'finished'; code: number | null; stderr: string; elapsedMs: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ how: signal === 'SIGKILL' ? 'killed' : 'finished', code, stderr, elapsedMs: Date.now() - started });
    });
  });
}

/** The deployment's /usr equals a fresh checkout of its commit (the rest is /etc merge and /var). */
async function assertDeploymentIntact(t: Test, dev: string, slot: string, commit: string, round: number): Promise<void> {
  t.same(await deploymentDiff(dev, slot, commit, join(tempDir(t), 'checkout')), [], `round ${round}: booted slot ${slot} is exactly commit ${commit.slice(0, 12)}, /usr and vendor /etc`);
}

t.test(`kill -9 during upgrade at ${ROUNDS} random moments`, async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const v2 = await v.release(2, { files: { 'usr/share/big/blob': randomBytes(3 * 1024 * 1024) } });
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--version', '1', '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const varBefore = await snapshotTree(join(dev, 'var'));

  await larchOk(['upgrade', '--sysroot', dev]);
  const reset = async () => {
    if ((await status(dev)).booted?.commit !== v1) {
      await larchOk(['deploy', v1, '--allow-downgrade', '--sysroot', dev]);
      await larchOk(['sim-boot', '--sysroot', dev]);
    }
    await larchOk(['cleanup', '--rollback', '--sysroot', dev]);
    const s = await status(dev);
    t.equal(s.booted.commit, v1, 'reset: v1 booted');
    t.equal(s.pending, null, 'reset: nothing staged');
  };
  await larchOk(['sim-boot', '--sysroot', dev]);
  await reset();
  // How long an upgrade takes in the state every round starts from (after a reset, which may
  // leave v2's objects in the repo: then it is shorter than the first one), so the kills land
  // across all of it. The shorter of two, so a slow one on a loaded machine does not push the
  // kills past the end.
  const timings: number[] = [];
  for (let i = 0; i < 2; i++) {
    const started = Date.now();
    await larchOk(['upgrade', '--sysroot', dev]);
    timings.push(Date.now() - started);
    await larchOk(['sim-boot', '--sysroot', dev]);
    await reset();
  }
  let fullMs = Math.min(...timings);
  t.comment(`an upgrade takes ${timings.join(' and ')} ms here`);

  const random = prng(20261122);
  const outcomes = { killed: 0, finished: 0 };
  for (let round = 1; round <= ROUNDS; round++) {
    const ms = Math.floor(random() * fullMs * 0.9);
    const run = await runAndKill(['upgrade', '--sysroot', dev], ms);
    outcomes[run.how]++;
    if (run.how === 'finished') {
      t.equal(run.code, 0, `round ${round}: an upgrade that finished before its kill succeeded (${run.stderr.trim()})`);
      // The machine got faster than when it was measured (a load that ended): later kills aim inside the shorter run.
      if (run.code === 0 && run.elapsedMs < fullMs) fullMs = run.elapsedMs;
    }
    const boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
    t.ok(boot.check.healthy, `round ${round} (kill at ${ms} ms): the booted deployment is healthy`);
    t.ok([v1, v2].includes(boot.check.commit), `round ${round}: booted v1 or v2, a complete deployment`);
    await assertDeploymentIntact(t, dev, boot.slot, boot.check.commit, round);
    // A new upgrade completes (or there is nothing left to do when v2 already booted).
    const up = (await larchOk(['upgrade', '--sysroot', dev, '--json'])).json;
    t.ok(['staged', 'no-update'].includes(up.result), `round ${round}: upgrade again: ${up.result}`);
    if (up.result === 'staged') await larchOk(['sim-boot', '--sysroot', dev]);
    t.equal((await status(dev)).booted.commit, v2, `round ${round}: v2 booted in the end`);
    await reset();
  }
  t.ok(outcomes.killed >= ROUNDS / 2, `most rounds were really killed mid-upgrade (${outcomes.killed} killed, ${outcomes.finished} finished first)`);
  const fsck = await larchOk(['fsck', '--repo', join(dev, 'larch/repo'), '--json']);
  t.same(fsck.json.problems, [], 'the device repo is consistent after all the kills');
  t.same(diffSnapshots(varBefore, await snapshotTree(join(dev, 'var'))), [], '/var untouched by all of it');
});
