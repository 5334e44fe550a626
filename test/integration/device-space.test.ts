/**
 * A full disk during an upgrade, on a size-limited tmpfs the test mounts (needs root, as CI
 * runs; fails loudly otherwise): the space pre-flight refuses with what is missing; with no
 * delta (size unknown in advance) the pull runs into ENOSPC and stops cleanly. Either way the
 * booted deployment and the boot state are untouched and nothing half-deployed is bootable;
 * once space is freed the next upgrade succeeds.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REF, status, vendor } from '../device-helpers.ts';
import { IS_ROOT, diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir } from '../helpers.ts';

const MiB = 1024 * 1024;

t.test('disk full during an upgrade', async (t) => {
  if (!IS_ROOT) {
    t.fail('this test mounts a size-limited tmpfs and needs root (CI runs as root); run it as root');
    return;
  }
  const v = await vendor(t);
  await v.release(1);
  const v2 = await v.release(2, { files: { 'usr/share/big/blob': randomBytes(8 * MiB) } });

  const mnt = join(tempDir(t), 'mnt');
  mkdirSync(mnt);
  sh(`mount -t tmpfs -o size=64m larch-test '${mnt}'`);
  t.teardown(() => sh(`umount -l '${mnt}'`));
  const dev = join(mnt, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--version', '1', '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  // Leave 12 MiB free: less than the pre-flight asks for an 8 MiB delta, and less than an
  // object pull of the 8 MiB blob needs (its download plus the stored object).
  const usedKiB = Number(sh(`df -k --output=used '${mnt}' | tail -1`).trim());
  sh(`mount -o remount,size=${usedKiB + 12 * 1024}k '${mnt}'`);

  const snapshot = async () => ({ deploy: await snapshotTree(join(dev, 'larch/deploy')), boot: await snapshotTree(join(dev, 'boot')) });
  const before = await snapshot();
  const untouched = async (what: string) => {
    const after = await snapshot();
    t.same(diffSnapshots(before.deploy, after.deploy), [], `${what}: deployments untouched`);
    t.same(diffSnapshots(before.boot, after.boot), [], `${what}: boot files and env untouched`);
    const s = await status(dev);
    t.equal(s.pending, null, `${what}: nothing staged`);
    t.equal(s.last_update.error?.code, 'NO_SPACE', `${what}: status reports the error`);
    const boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
    t.match(boot, { slot: 'A', check: { healthy: true, version: '1' } }, `${what}: the device still boots v1`);
  };

  // 1. With a delta, the pre-flight refuses before downloading anything.
  const pre = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(pre.code, 8, 'pre-flight: exit 8');
  t.equal(pre.json?.error?.code, 'NO_SPACE');
  t.match(pre.json?.error?.message, /needs about [\d.]+ MiB .* is free; [\d.]+ MiB missing/, 'says how much is missing');
  t.match(pre.json?.error?.hint, /larch cleanup/, 'and what cleanup would free');
  t.same(readdirSync(join(dev, 'larch/download')).length ?? 0, 0, 'pre-flight: nothing downloaded');
  await untouched('pre-flight');

  // 2. Without a delta the size is unknown up front: the pull itself hits ENOSPC.
  rmSync(join(v.repo, 'deltas'), { recursive: true, force: true });
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  const mid = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(mid.json?.error?.code, 'NO_SPACE', `ENOSPC mid-pull is a clean NO_SPACE error (${mid.json?.error?.message})`);
  t.equal(mid.code, 8);
  await untouched('ENOSPC mid-pull');

  // 3. Space freed: the upgrade succeeds.
  sh(`mount -o remount,size=64m '${mnt}'`);
  const up = (await larchOk(['upgrade', '--sysroot', dev, '--json'])).json;
  t.match(up, { result: 'staged', to: { commit: v2, version: '2' } }, 'after space is freed the upgrade succeeds');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, version: '2' } });
});
