/**
 * The device story through the Bun binary, against `larch serve`: provision v1, upgrade to v2,
 * sim-boot healthy, rollback and back, then a bad v3 whose required health check fails until
 * the bootloader falls back by itself. /var stays byte-identical; /etc edits are merged three
 * ways. `status --json` is checked at every step. Then the refusals: each leaves the device as
 * it was.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { publish } from '../../src/server/publish.ts';
import { Repo } from '../../src/store/repo.ts';
import { readSecretKey } from '../../src/store/sign.ts';
import { REF, expectFail, lines, status, vendor } from '../device-helpers.ts';
import { diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir } from '../helpers.ts';

t.test('the device story: provision, upgrade, boot, rollback, a bad update falls back by itself', async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const dev = join(tempDir(t), 'device');

  // Provision v1, then its first boot.
  const p = await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot', '--json']);
  t.match(p.json, { result: 'provisioned', slot: 'A', commit: v1, version: '1' });
  t.equal((await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot', '--json'])).json.result, 'already-provisioned', 'provision is idempotent');
  t.equal(sh(`fw_printenv -c '${join(dev, 'boot/fw_env.config')}' -n BOOT_ORDER`).trim(), 'A B', 'fw_printenv reads the env larch wrote');
  let boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
  t.match(boot, { slot: 'A', check: { healthy: true, outcome: 'already-good', fell_back: false } });
  let s = await status(dev);
  t.match(s, { booted: { slot: 'A', version: '1', commit: v1, good: true }, pending: null, last_boot: { fell_back: false }, hil_hold: false });
  // The HIL harness's hold file (docs/boot.md): status says so, in JSON and in the text.
  writeFileSync(join(dev, 'larch/hil-hold'), '');
  t.equal((await status(dev)).hil_hold, true, 'status --json: hil_hold while S/larch/hil-hold exists');
  t.match((await larchOk(['status', '--sysroot', dev])).stdout, /^HIL HOLD: .*larch\/hil-hold exists, so no boot runs boot-check/m, 'the text form says it in capitals');
  unlinkSync(join(dev, 'larch/hil-hold'));
  t.equal(readFileSync(join(dev, 'boot/A/vmlinuz'), 'utf8'), 'kernel 1\n', 'kernel copied to the slot boot dir');
  t.equal(readFileSync(join(dev, 'var/lib/seed/first-boot'), 'utf8'), 'seeded by the first deployment\n', '/var seeded once');

  // Local state: /var data and /etc edits.
  mkdirSync(join(dev, 'var/lib/app'), { recursive: true });
  writeFileSync(join(dev, 'var/lib/app/data.db'), 'precious user data\n');
  const etc = join(dev, 'larch/deploy/A/etc');
  writeFileSync(join(etc, 'app.conf'), lines(10, { 2: 'setting2=admin' }));
  writeFileSync(join(etc, 'overlap.conf'), lines(5, { 3: 'setting3=admin' }));
  writeFileSync(join(etc, 'local-only.conf'), 'mine\n');
  unlinkSync(join(etc, 'motd'));
  const varBefore = await snapshotTree(join(dev, 'var'));

  // v2: check, dry-run, upgrade, boot.
  const v2 = await v.release(2);
  const c = (await larchOk(['check', '--sysroot', dev, '--json'])).json;
  t.match(c, { available: true, update: { commit: v2, version: '2', via: 'delta' } });
  t.ok(c.update.bytes > 0, 'check says how many bytes the upgrade downloads');
  const dry = await larchOk(['upgrade', '--sysroot', dev, '--dry-run', '--json']);
  t.match(dry.json, { result: 'dry-run', download: { via: 'delta' } }, 'dry-run downloads the delta (into the repo only)');
  t.ok(dry.json.etc_plan, 'dry-run shows the /etc merge plan');
  t.equal((await status(dev)).pending, null, 'dry-run stages nothing');
  const up = (await larchOk(['upgrade', '--sysroot', dev, '--json'])).json;
  t.match(up, { result: 'staged', from: { slot: 'A', version: '1' }, to: { slot: 'B', version: '2', commit: v2 }, download: { via: 'none' } }, 'the dry run already downloaded it');
  t.same(up.etc_conflicts, ['overlap.conf'], 'the overlapping /etc change is reported');
  s = await status(dev);
  t.match(s, { booted: { slot: 'A', version: '1' }, pending: { slot: 'B', version: '2', commit: v2, good: false, tries_left: 3 } });
  const etcB = join(dev, 'larch/deploy/B/etc');
  t.equal(readFileSync(join(etcB, 'app.conf'), 'utf8'), lines(10, { 2: 'setting2=admin', 9: 'setting9=vendor-v2' }), 'local and vendor changes to other lines both land');
  t.equal(readFileSync(join(etcB, 'overlap.conf'), 'utf8'), lines(5, { 3: 'setting3=admin' }), 'overlap: the local file is kept');
  t.equal(readFileSync(join(etcB, 'overlap.conf.larchnew'), 'utf8'), lines(5, { 3: 'setting3=vendor' }), "overlap: the vendor's file is beside it");
  t.equal(readFileSync(join(etcB, 'local-only.conf'), 'utf8'), 'mine\n', 'a new local file survives');
  t.notOk(existsSync(join(etcB, 'motd')), 'a file the admin deleted stays deleted');
  // An edit made after upgrade and before the reboot is carried over by finalize.
  writeFileSync(join(etc, 'app.conf'), lines(10, { 2: 'setting2=admin', 4: 'setting4=late-edit' }));
  t.match((await larchOk(['finalize', '--sysroot', dev, '--json'])).json, { slot: 'B', conflicts: ['overlap.conf'] });
  t.equal(readFileSync(join(etcB, 'app.conf'), 'utf8'), lines(10, { 2: 'setting2=admin', 4: 'setting4=late-edit', 9: 'setting9=vendor-v2' }), 'finalize: the late /etc edit lands too');

  boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
  t.match(boot, { slot: 'B', check: { healthy: true, outcome: 'confirmed' } });
  s = await status(dev);
  t.match(s, { booted: { slot: 'B', version: '2', commit: v2, good: true }, pending: null, rollback: { slot: 'A', version: '1' }, last_boot: { fell_back: false } });
  t.same(diffSnapshots(varBefore, await snapshotTree(join(dev, 'var'))), [], '/var byte-identical across the upgrade');
  t.match((await larchOk(['finalize', '--sysroot', dev, '--json'])).json, { slot: null }, 'finalize with nothing staged does nothing');

  // rollback to v1 and forward again.
  t.match((await larchOk(['rollback', '--sysroot', dev, '--json'])).json, { result: 'rolled-back', slot: 'A', version: '1' });
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { healthy: true, fell_back: false } });
  t.match(await status(dev), { booted: { slot: 'A', version: '1' }, rollback: { slot: 'B', version: '2' } });
  await larchOk(['rollback', '--sysroot', dev]);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B' });
  t.same(diffSnapshots(varBefore, await snapshotTree(join(dev, 'var'))), [], '/var byte-identical across rollbacks');

  // v3 is bad: its required health check fails on every boot until the bootloader falls back.
  const v3 = await v.release(3, { failingHealthCheck: true });
  await larchOk(['pin', '--sysroot', dev]);
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'pinned', to: null }, 'pinned: upgrade does nothing');
  t.equal((await status(dev)).pinned, true);
  await larchOk(['unpin', '--sysroot', dev]);
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'A', version: '3', commit: v3 } });
  for (let i = 1; i <= 3; i++) {
    boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
    t.match(boot, { slot: 'A', check: { healthy: false, outcome: 'retry', reboot: true } }, `try ${i}: v3 unhealthy, reboot`);
    t.match(boot.check.failed_checks, ['10-services']);
    if (i === 1) {
      // Booted into the unconfirmed v3: slot B holds v2, the only tree known to boot.
      const early = await larch(['deploy', v2, '--allow-downgrade', '--sysroot', dev, '--json']);
      expectFail(t, early, 'REFUSED', 'overwriting the other slot while the booted one is unconfirmed');
      t.equal(early.json?.error?.data?.reason, 'booted-unconfirmed');
    }
  }
  boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
  t.match(boot, { slot: 'B', check: { healthy: true, fell_back: true, from: 'A' } }, 'tries spent: the bootloader fell back to v2 by itself');
  s = await status(dev);
  t.match(s, { booted: { slot: 'B', version: '2', good: true }, pending: null, last_boot: { fell_back: true, from: 'A' } });
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { fell_back: false } }, 'the fallback is reported once; later boots are normal');
  t.same(diffSnapshots(varBefore, await snapshotTree(join(dev, 'var'))), [], '/var byte-identical across the fallback');
  const hist = (await larchOk(['history', '--sysroot', dev, '--json'])).json as { event: string; message: string }[];
  t.ok(hist.some((e) => e.event === 'fallback' && /fell back from slot A to slot B/.test(e.message)), 'history says why it rolled back');
  t.ok(hist.some((e) => e.event === 'health' && /10-services FAILED/.test(e.message)), 'history names the failed health check');
  const rb = await larch(['rollback', '--sysroot', dev, '--json']);
  expectFail(t, rb, 'REFUSED', 'rollback to the failed v3');
});

t.test('refused before any write: unsigned, wrongly signed and expired summaries, a corrupt object, a downgrade; a tampered delta part falls back to the objects', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  await v.release(2);
  const snapshot = async () => ({ deploy: await snapshotTree(join(dev, 'larch/deploy')), boot: await snapshotTree(join(dev, 'boot')) });
  const before = await snapshot();
  const unchanged = async (what: string) => {
    const after = await snapshot();
    t.same(diffSnapshots(before.deploy, after.deploy), [], `${what}: deployments untouched`);
    t.same(diffSnapshots(before.boot, after.boot), [], `${what}: boot files and env untouched`);
    t.equal((await status(dev)).pending, null, `${what}: nothing staged`);
  };
  const sig = join(v.repo, 'summary.sig');
  const goodSig = readFileSync(sig);

  rmSync(sig);
  expectFail(t, await larch(['upgrade', '--sysroot', dev, '--json']), 'SIGNATURE_MISSING', 'unsigned summary');
  await unchanged('unsigned summary');

  const other = join(v.dir, 'other');
  await larchOk(['keygen', '--out', other]);
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${other}.key`]);
  expectFail(t, await larch(['upgrade', '--sysroot', dev, '--json']), 'SIGNATURE_INVALID', 'summary signed by an untrusted key');
  await unchanged('untrusted key');

  // A summary signed by the right key that expired an hour ago: the publisher's clock is
  // injected (publish's `now`), the device reads its real one, so no wait for the expiry.
  const hourAgo = Math.floor(Date.now() / 1000) - 3600;
  await publish(await Repo.open(v.repo), { signKeys: [await readSecretKey(`${v.key}.key`)], expiresInSeconds: 1, now: hourAgo });
  const expired = await larch(['upgrade', '--sysroot', dev, '--json']);
  expectFail(t, expired, 'SIGNATURE_INVALID', 'expired summary');
  t.match(expired.json?.error?.message, /expired/);
  await unchanged('expired summary');
  writeFileSync(sig, goodSig);

  // No delta, and an object of v2 that fails its checksum on the server.
  renameSync(join(v.repo, 'deltas'), join(v.dir, 'deltas-aside'));
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  const entry = (await larchOk(['ls', '--repo', v.repo, REF, '/etc', '--json'])).json.find((e: { path: string }) => e.path === '/etc/os-release');
  const objectFile = join(v.repo, 'objects', entry.object.slice(0, 2), `${entry.object.slice(2)}.filez`);
  const goodObject = readFileSync(objectFile);
  const badObject = Buffer.from(goodObject);
  badObject[badObject.length - 2] ^= 0x55;
  writeFileSync(objectFile, badObject);
  const corrupt = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.not(corrupt.code, 0, 'corrupt object: refused');
  t.ok(['OBJECT_CORRUPT', 'DELTA_CORRUPT'].includes(corrupt.json?.error?.code) && /os-release|checksum|corrupt/i.test(corrupt.json?.error?.message), `corrupt object: a clear error (${corrupt.json?.error?.code}: ${corrupt.json?.error?.message})`);
  await unchanged('corrupt object');
  writeFileSync(objectFile, goodObject);
  renameSync(join(v.dir, 'deltas-aside'), join(v.repo, 'deltas'));

  // A tampered delta part, published again so the summary's checksums match it: the delta's own
  // signed superblock still refuses it, and the device fetches the same commit object by object
  // instead (a failing delta never blocks an update the objects can deliver).
  const deltaDir = join(v.repo, 'deltas', readdirSync(join(v.repo, 'deltas'))[0]);
  const part = join(deltaDir, 'part-0');
  const goodPart = readFileSync(part);
  const badPart = Buffer.from(goodPart);
  badPart[badPart.length >> 1] ^= 0xff;
  writeFileSync(part, badPart);
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  const tampered = await larchOk(['upgrade', '--sysroot', dev, '--json']);
  t.match(tampered.json, { result: 'staged', download: { via: 'objects', fallback: { reason: 'corrupt', code: 'DELTA_CORRUPT' } } }, 'tampered delta part: refused, the objects fetched instead');
  t.match(tampered.json.download.fallback.message, /part 1\/1/, 'the reason names the part');
  writeFileSync(part, goodPart);

  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  const down = await larch(['deploy', '1', '--sysroot', dev, '--json']);
  t.match(down.json, {}, 'deploy 1 (the booted version) does nothing');
  await larchOk(['upgrade', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const before2 = await snapshot();
  const downgrade = await larch(['deploy', '1', '--sysroot', dev, '--json']);
  expectFail(t, downgrade, 'REFUSED', 'downgrade without --allow-downgrade');
  t.match(downgrade.json?.error?.message, /downgrade/);
  t.same(diffSnapshots(before2.deploy, await snapshotTree(join(dev, 'larch/deploy'))), [], 'downgrade: deployments untouched');
});

t.test("provision --fw-env-config: the board's own env layout (redundant, at offsets of a disk), read by fw_printenv", async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  // A stand-in for the board's eMMC: U-Boot's two env copies at 1 MiB and 1 MiB + 16 KiB.
  const disk = join(dir, 'emmc.img');
  writeFileSync(disk, Buffer.alloc(2 * 1024 * 1024));
  const boardConfig = join(dir, 'fw_env.config');
  writeFileSync(boardConfig, `# the board's\n${disk} 0x100000 0x4000\n${disk} 0x104000 0x4000\n`);
  const provision = (dev: string, extra: string[]) => larch(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--json', ...extra]);

  // Blank storage and no defaults: refused before anything is written (a partial env would leave U-Boot without bootcmd).
  const blank = await provision(join(dir, 'blank'), ['--bootloader', 'uboot', '--fw-env-config', boardConfig]);
  expectFail(t, blank, 'ENV_CORRUPT', 'a board env with no valid copy and no --env-defaults');
  t.match(blank.json?.error?.hint, /--env-defaults FILE/, 'the hint names --env-defaults');
  t.notOk(existsSync(join(dir, 'blank/larch')), 'nothing provisioned');
  t.ok(readFileSync(disk).every((b) => b === 0), 'nothing written to the storage');

  const defaults = join(dir, 'u-boot-initial-env');
  writeFileSync(defaults, '# the board\'s default env\nbootcmd=run distro_bootcmd\nbootdelay=2\n');
  const dev = join(dir, 'device');
  const p = await provision(dev, ['--bootloader', 'uboot', '--fw-env-config', boardConfig, '--env-defaults', defaults]);
  t.equal(p.code, 0, `provisioned: ${p.stderr}`);
  t.equal(readFileSync(join(dev, 'boot/fw_env.config'), 'utf8'), readFileSync(boardConfig, 'utf8'), 'the board config, copied as is');
  t.notOk(existsSync(join(dev, 'boot/uboot.env')), 'no env file on the boot partition');
  t.equal(sh(`fw_printenv -c '${boardConfig}' -n BOOT_ORDER`).trim(), 'A B', 'fw_printenv finds the env at the offsets');
  t.equal(sh(`fw_printenv -c '${boardConfig}' -n bootcmd`).trim(), 'run distro_bootcmd', "with the board's default env: U-Boot keeps its bootcmd");
  t.ok(readFileSync(disk).subarray(0x100000, 0x108000).some((b) => b !== 0), 'written into the disk at the env offsets');
  t.ok(readFileSync(disk).subarray(0, 0x100000).every((b) => b === 0), 'nothing written before them');
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match(await status(dev), { booted: { slot: 'A', version: '1', good: true } }, 'boots and is confirmed through that env');

  // A valid env already there (U-Boot saved it): kept, larch's state added.
  const disk2 = join(dir, 'emmc2.img');
  writeFileSync(disk2, Buffer.alloc(2 * 1024 * 1024));
  const boardConfig2 = join(dir, 'fw_env2.config');
  writeFileSync(boardConfig2, `${disk2} 0x100000 0x4000\n${disk2} 0x104000 0x4000\n`);
  // With larch's variables of an earlier provisioning (B first, a release floor): those are not kept.
  await larchOk(['bootenv', 'init', '--uboot', boardConfig2, '--lock', join(dir, 'env.lock'), 'bootcmd=run board_boot', 'board_serial=42', 'BOOT_ORDER=B A', 'BOOT_RELEASES=9 9 9']);
  const kept = await provision(join(dir, 'kept'), ['--bootloader', 'uboot', '--fw-env-config', boardConfig2]);
  t.equal(kept.code, 0, `provisioned over the board's env: ${kept.stderr}`);
  const env2 = sh(`fw_printenv -c '${boardConfig2}'`);
  t.match(env2, /^board_serial=42$/m, "the board's variables kept");
  t.match(env2, /^bootcmd=run board_boot$/m);
  t.match(env2, /^BOOT_ORDER=A B$/m, "larch's state added");
  t.notMatch(env2, /BOOT_RELEASES/, "no release floor of an earlier provisioning");
  const owned = await provision(join(dir, 'owned'), ['--bootloader', 'uboot', '--env-defaults', defaults]);
  expectFail(t, owned, 'USAGE', "--env-defaults without a board env (larch's env files hold only larch's variables)");

  const grub = await provision(join(dir, 'grub'), ['--bootloader', 'grub', '--fw-env-config', boardConfig]);
  expectFail(t, grub, 'USAGE', '--fw-env-config with grub');
  const garbage = join(dir, 'garbage.config');
  writeFileSync(garbage, '/dev/mmcblk0 not-an-offset\n');
  const bad = await provision(join(dir, 'bad'), ['--fw-env-config', garbage]);
  expectFail(t, bad, 'INVALID_INPUT', 'a malformed fw_env.config');
  t.match(bad.json?.error?.message, garbage, 'the error names the file');
  t.notOk(existsSync(join(dir, 'bad/larch/config.json')), 'nothing provisioned');
  const missing = await provision(join(dir, 'missing'), ['--fw-env-config', join(dir, 'nope.config')]);
  expectFail(t, missing, 'NOT_FOUND', 'a missing fw_env.config');
});
