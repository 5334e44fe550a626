/**
 * larch cancel (issue 20, must-show 3): during a slow download and during staging it leaves the
 * booted slot, the other slot, the boot env and the config as they were, and the next upgrade
 * completes; past the point of no return it unstages what was staged; the daemon's job stops too
 * and is not retried for the same release. The moments are chosen, not guessed: a download is
 * cancelled once its first bytes are on disk (serve --rate makes it last), staging at a named
 * failpoint where LARCH_PAUSEPOINT holds the command until the request comes.
 */
import t from 'tap';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, startServe, status, vendor } from '../device-helpers.ts';
import { BIN, diffSnapshots, larch, larchOk, snapshotTree, tempDir, waitUntil } from '../helpers.ts';
import { startDaemon } from '../mqtt-helpers.ts';

/** 20 kB/s: release 2's 1 MiB of noise takes about 50 s, so a cancel always finds it running. */
const SLOW = ['--rate', '20000'];

function pointTo(dev: string, from: string, to: string): void {
  const path = join(dev, 'larch/config.json');
  writeFileSync(path, readFileSync(path, 'utf8').replaceAll(from, to));
}

/** A file of the download directory with bytes in it: the delta's transfer is under way. */
function downloading(dev: string): boolean {
  const dir = join(dev, 'larch/download');
  if (!existsSync(dir)) return false;
  return readdirSync(dir, { recursive: true }).some((f) => {
    const st = statSync(join(dir, String(f)), { throwIfNoEntry: false });
    return st !== undefined && st.isFile() && st.size > 0;
  });
}

interface Running {
  child: ChildProcess;
  exit: Promise<{ code: number | null; json: any; stderr: string }>;
}

function run(args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(BIN, [...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; json: any; stderr: string }>((resolve) =>
    child.on('exit', (code) => {
      let json: any = null;
      try {
        json = JSON.parse(out);
      } catch {}
      resolve({ code, json, stderr: err });
    }),
  );
  return { child, exit };
}

/** What must not change: the deployments, the boot partition (env, boot files), config.json and the refs. */
async function deviceState(dev: string) {
  const s = await status(dev);
  return {
    status: { booted: s.booted, pending: s.pending, deployments: s.deployments, following: s.following },
    boot: await snapshotTree(join(dev, 'boot')),
    // A summary read raises its floors (summary_serial, summary_trust_version: monotone): no change of what boots.
    config: JSON.stringify(JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8'), (k, v) => (k.startsWith('summary_') ? undefined : v))),
    refs: (await larchOk(['refs', '--repo', join(dev, 'larch/repo'), '--json'])).json,
  };
}

async function sameState(t: Test, before: Awaited<ReturnType<typeof deviceState>>, dev: string, what: string): Promise<void> {
  const after = await deviceState(dev);
  t.same(after.status, before.status, `${what}: status (booted, pending, deployments) as before`);
  t.same(diffSnapshots(before.boot, after.boot), [], `${what}: the boot partition (env, boot files) as before`);
  t.equal(after.config, before.config, `${what}: config.json as before`);
  t.same(after.refs, before.refs, `${what}: the repo's refs as before`);
  t.notOk(existsSync(join(dev, 'larch/lock.owner')), `${what}: no lock.owner left`);
  t.notOk(existsSync(join(dev, 'larch/cancel.json')), `${what}: no cancel.json left`);
}

t.test('cancel during a download, during staging, past the point of no return; then the upgrades complete', async (t) => {
  const v = await vendor(t, { serveArgs: SLOW });
  const fast = await startServe(t, v.repo, join(v.dir, 'fast.log'));
  await v.release(1);
  const dir = tempDir(t);
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', fast, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2, { files: { 'usr/lib/noise': randomBytes(1 << 20) } });

  t.match((await larchOk(['cancel', '--sysroot', dev, '--json'])).json, { result: 'idle', pid: null }, 'nothing running: idle, exit 0');
  // A holder that died (kill -9, power cut) leaves lock.owner naming a process that is gone.
  const dead = spawnSync('true').pid;
  writeFileSync(join(dev, 'larch/lock.owner'), JSON.stringify({ pid: dead, start_ticks: 1, boot_id: 'x', lock_id: 'y', command: 'larch upgrade', started: new Date().toISOString() }));
  t.match((await larchOk(['cancel', '--sysroot', dev, '--json'])).json, { result: 'idle' }, 'a dead holder: idle');

  await t.test('during a slow download', async (t) => {
    pointTo(dev, fast, v.url);
    const before = await deviceState(dev);
    const up = run(['upgrade', '--sysroot', dev]);
    await waitUntil(() => downloading(dev), 60_000, 'the first bytes of the delta on disk');
    const c = await larchOk(['cancel', '--sysroot', dev, '--json']);
    t.match(c.json, { result: 'cancelled', phase: 'download', command: 'larch upgrade', pid: up.child.pid }, 'cancelled in the download');
    const r = await up.exit;
    t.equal(r.code, 9, 'the upgrade exits 9 (IO)');
    t.match(r.json?.error?.data, { reason: 'cancelled', phase: 'download' });
    pointTo(dev, v.url, fast);
    await sameState(t, { ...before, config: before.config.replaceAll(v.url, fast) }, dev, 'after the cancel');
    t.match((await status(dev)).last_update, { action: 'upgrade', result: 'cancelled' }, 'last_update says cancelled');
    const journal = (await larchOk(['history', '--sysroot', dev, '--json'])).json as { event: string; data?: any }[];
    t.match(journal.filter((e) => e.event === 'cancel').map((e) => e.data), [{ phase: 'download' }, { result: 'cancelled', phase: 'download' }], 'journaled by both sides');
    t.ok(downloading(dev), 'the part downloaded so far is kept for the next upgrade');
    t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { commit: v2 } }, 'the next upgrade completes');
    t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });
  });

  await t.test('during staging: the other slot keeps its deployment', async (t) => {
    const v3 = await v.release(3);
    const before = await deviceState(dev);
    const slotA = await snapshotTree(join(dev, 'larch/deploy/A'));
    const log = join(dir, 'points-1');
    const up = run(['upgrade', '--sysroot', dev], { LARCH_PAUSEPOINT: 'deploy::after-checkout', LARCH_FAILPOINT_LOG: log });
    await waitUntil(() => existsSync(log) && readFileSync(log, 'utf8').includes('deploy::after-checkout'), 60_000, 'the upgrade at deploy::after-checkout');
    t.ok(existsSync(join(dev, 'larch/deploy/A.tmp/usr')), 'the new tree is checked out beside slot A');
    t.notOk(readFileSync(log, 'utf8').includes('update::after-mark-unbootable'), 'slot A is still bootable');
    const c = await larchOk(['cancel', '--sysroot', dev, '--json']);
    t.match(c.json, { result: 'cancelled', phase: 'staging' });
    t.equal((await up.exit).code, 9);
    await sameState(t, before, dev, 'after a cancel in staging');
    t.same(diffSnapshots(slotA, await snapshotTree(join(dev, 'larch/deploy/A'))), [], "slot A's tree (version 1) as it was");
    t.notOk(existsSync(join(dev, 'larch/deploy/A.tmp')), 'the new tree is removed');

    await t.test('past the point of no return: cancel unstages', async (t) => {
      const log = join(dir, 'points-2');
      const up = run(['upgrade', '--sysroot', dev], { LARCH_PAUSEPOINT: 'deploy::after-boot-files', LARCH_FAILPOINT_LOG: log });
      await waitUntil(() => existsSync(log) && readFileSync(log, 'utf8').includes('deploy::after-boot-files'), 60_000, 'the upgrade at deploy::after-boot-files');
      const c = await larchOk(['cancel', '--sysroot', dev, '--json']);
      t.match(c.json, { result: 'unstaged', slot: 'A', version: '3', phase: null });
      const r = await up.exit;
      t.equal(r.code, 0, 'the upgrade itself completed its stage');
      const s = await status(dev);
      t.equal(s.pending, null, 'nothing staged');
      t.match(s.booted, { slot: 'B', commit: v2 }, 'the booted slot stays first');
      t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B' }, 'and boots next');
    });

    t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'A', commit: v3 } }, 'the next upgrade completes');
  });
});

t.test("the daemon's download: stopped, journaled, and not tried again for the same release", async (t) => {
  const v = await vendor(t, { serveArgs: SLOW });
  const fast = await startServe(t, v.repo, join(v.dir, 'fast.log'));
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', fast, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  await v.release(2, { files: { 'usr/lib/noise': randomBytes(1 << 20) } });
  pointTo(dev, fast, v.url);
  const before = await deviceState(dev);
  writeFileSync(join(dev, 'larch/daemon.conf'), `policy = "apply"\ndevice_id = "dev-cancel"\ncheck_interval_s = 1\nmin_speed = 0\ntimeout_s = 600\n`);
  const daemon = startDaemon(t, dev, []);
  const ownerOf = () => {
    try {
      return JSON.parse(readFileSync(join(dev, 'larch/lock.owner'), 'utf8'));
    } catch {
      return null;
    }
  };
  const underWay = () => {
    if (daemon.child.exitCode !== null) throw new Error(`the daemon exited ${daemon.child.exitCode}:\n${daemon.stderr()}`);
    return ownerOf()?.command === 'daemon upgrade' && downloading(dev);
  };
  await waitUntil(underWay, 60_000, "the daemon's download under way");
  const c = await larchOk(['cancel', '--sysroot', dev, '--json']);
  t.match(c.json, { result: 'cancelled', phase: 'download', command: 'daemon upgrade', pid: daemon.child.pid }, "the daemon's job is cancelled");
  const skipped = async () => ((await larchOk(['history', '--sysroot', dev, '--json'])).json as { data?: any }[]).some((e) => e.data?.reason === 'cancelled');
  await waitUntil(skipped, 20_000, "the daemon's journal line");
  // Two more periodic checks (each reads the summary), and no new download.
  const log = join(v.dir, 'access.log');
  const count = (re: RegExp) => readFileSync(log, 'utf8').split('\n').filter((l) => re.test(l)).length;
  const summaries = count(/"path":"\/summary"/);
  const parts = count(/"path":"\/deltas\//);
  await waitUntil(() => count(/"path":"\/summary"/) >= summaries + 2, 20_000, 'two more periodic checks');
  t.equal(count(/"path":"\/deltas\//), parts, 'the cancelled release is not downloaded again');
  t.equal(daemon.child.exitCode, null, 'the daemon runs on');
  await daemon.stop();
  await sameState(t, before, dev, "after the daemon's cancel");
});
