/**
 * A full disk during an upgrade, on a size-limited tmpfs the test mounts (needs root, as CI
 * runs; fails loudly otherwise): the space pre-flight refuses with what is missing; with no
 * delta (size unknown in advance) the pull runs into ENOSPC and stops cleanly. Either way the
 * booted deployment and the boot state are untouched and nothing half-deployed is bootable;
 * once space is freed the next upgrade succeeds.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, status, tmpfs, vendor } from '../device-helpers.ts';
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
  tmpfs(t, mnt, '64m');
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

/** Mounts a size-limited tmpfs at dir (root only) for the test's life. */
t.test('a small /boot: one slot of boot files beside the booted one is enough; a kernel that does not fit is refused before anything is written', async (t) => {
  if (!IS_ROOT) return void t.fail('this test mounts a size-limited tmpfs as /boot and needs root (CI runs as root)');
  const v = await vendor(t);
  // No deltas: bsdiff of random kernels is slow, and the object pull is what the space rules must hold for.
  const kernel = (n: number, mib: number) => ({ delta: false, files: { [`boot/vmlinuz-6.1.0-${n}`]: randomBytes(mib * MiB) } });
  await v.release(1, kernel(1, 2));
  const dev = join(tempDir(t), 'device');
  // The boot partition, its own filesystem: room for two slots of 2 MiB kernels, not three.
  tmpfs(t, join(dev, 'boot'), '5m');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  for (const n of [2, 3]) {
    await v.release(n, kernel(n, 2));
    const up = await larch(['upgrade', '--sysroot', dev, '--json']);
    t.equal(up.code, 0, `upgrade to ${n} fits (${up.json?.error?.message})`);
    t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { check: { healthy: true, version: String(n), outcome: 'confirmed' } }, `version ${n} boots`);
  }
  t.match(await status(dev), { booted: { slot: 'A', version: '3' }, rollback: { slot: 'B', version: '2' } });

  // A 4 MiB kernel does not fit beside the booted slot's 2 MiB, even with slot B's files gone.
  await v.release(4, kernel(4, 4));
  const before = { deploy: await snapshotTree(join(dev, 'larch/deploy')), boot: await snapshotTree(join(dev, 'boot')) };
  const big = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(big.code, 8, 'refused: exit 8');
  t.equal(big.json?.error?.code, 'NO_SPACE');
  t.match(big.json?.error?.message, new RegExp(`filesystem of ${join(dev, 'boot').replace(/[/.]/g, '\\$&')}: the boot files need about 4\\.\\d MiB`), `names /boot and what it needs (${big.json?.error?.message})`);
  t.notMatch(big.json?.error?.hint, /larch cleanup'/, 'the hint does not send the user to larch cleanup, which cannot free /boot');
  t.same(diffSnapshots(before.deploy, (await snapshotTree(join(dev, 'larch/deploy')))), [], 'deployments untouched');
  t.same(diffSnapshots(before.boot, await snapshotTree(join(dev, 'boot'))), [], 'boot files and env untouched');
  t.match(await status(dev), { booted: { version: '3' }, pending: null, rollback: { slot: 'B', version: '2' } }, 'the rollback deployment is still there');
  // A release that fits again goes through.
  await v.release(5, kernel(5, 2));
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'B', version: '5' } });
});

t.test('a full filesystem does not stop boot-check from marking a healthy slot good', async (t) => {
  if (!IS_ROOT) return void t.fail('this test fills a tmpfs and needs root (CI runs as root)');
  const v = await vendor(t);
  await v.release(1);
  const mnt = join(tempDir(t), 'mnt');
  tmpfs(t, mnt, '64m');
  const dev = join(mnt, 'device');
  tmpfs(t, join(dev, 'boot'), '8m'); // the boot partition, where the env lives
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  // The bootloader boots B (what sim-boot records), then an application fills /var to 100%.
  writeFileSync(join(dev, 'larch/sim/cmdline'), 'larch.slot=B\n');
  sh(`dd if=/dev/zero of='${join(dev, 'var/fill')}' bs=64k 2>/dev/null || true`);
  sh(`head -c 65536 /dev/zero > '${join(dev, 'var/fill2')}' 2>/dev/null || true`);
  t.equal(sh(`df --output=avail '${mnt}' | tail -1`).trim(), '0', 'the filesystem is full');
  const check = await larch(['boot-check', '--sysroot', dev, '--no-reboot', '--json']);
  t.equal(check.code, 0, `boot-check succeeds (${check.json?.error?.message})`);
  t.match(check.json, { slot: 'B', healthy: true, outcome: 'confirmed' });
  t.match(await status(dev), { booted: { slot: 'B', version: '2', good: true } }, 'slot B is marked good');
  rmSync(join(dev, 'var/fill'));
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, outcome: 'already-good' } }, 'and boots as the good slot');
});
