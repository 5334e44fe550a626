/**
 * A damaged boot env never stops the agent, and a torn one never boots an unconfirmed slot as good
 * (the last-known-good marker), through the Bun binary with sim-boot, for the four layouts: the redundant
 * U-Boot env in two files on the boot partition (larch's own, by its default names or by names the
 * board's fw_env.config gives, as on the Raspberry Pi), a board's redundant raw env (at
 * offsets of a disk, from provision --fw-env-config) and GRUB's grubenv. Each is damaged three ways
 * (a write torn after its first bytes, a flipped byte, all zeros) while B holds the good release
 * and A a staged, unconfirmed update. Also: sim-boot refuses a real root, and /proc/cmdline wins
 * over the simulated command line (§6).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, expectFail, status, vendor } from '../device-helpers.ts';
import { BIN, larch, larchOk, sh, tempDir } from '../helpers.ts';
import { selectCopy } from '../../src/bootcount/uboot-env.ts';

/** fat: larch's default file names; named: files on the boot partition a board names (rpi4-uboot's larch.env, larch-redund.env). */
type Layout = 'fat' | 'named' | 'raw' | 'grub';
const NAMED_FILES = ['boot/larch.env', 'boot/larch-redund.env'];
type Damage = 'torn' | 'flip' | 'zero';

const COPY = 0x4000;
/** The board's eMMC stand-in: U-Boot's two env copies at 1 MiB and 1 MiB + 16 KiB. */
const RAW_OFFSETS = [0x100000, 0x104000];
const LARCH_ONLY = { BOOT_ORDER: 'B A', BOOT_A_GOOD: '0', BOOT_A_LEFT: '0', BOOT_B_GOOD: '1', BOOT_B_LEFT: '0', BOOT_LKG: 'B', BOOT_RESCUE: '0' };

function damage(bytes: Buffer, how: Damage): void {
  if (how === 'torn') bytes.fill(0xff, 24); // the write stopped after 24 bytes (erased flash after)
  if (how === 'flip') bytes[5] ^= 0x20;
  if (how === 'zero') bytes.fill(0);
}

/** The env as its own tools read it: fw_printenv (libubootenv) or grub-editenv. */
function envByTool(dev: string, layout: Layout): Record<string, string> {
  const text = layout === 'grub' ? sh(`grub-editenv '${join(dev, 'boot/grub/grubenv')}' list`) : sh(`fw_printenv -c '${join(dev, 'boot/fw_env.config')}'`);
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/**
 * A device of `layout` where B holds the good release (v2, marked good, the last known good) and
 * A the staged, unconfirmed v3. Returns its sysroot and a function that copies it (with its env
 * storage) to a fresh sysroot.
 */
async function stagedOverGood(t: Test, layout: Layout) {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  const dev = join(dir, 'device');
  const extra: string[] = ['--bootloader', layout === 'grub' ? 'grub' : 'uboot'];
  if (layout === 'raw') {
    sh(`mkdir -p '${dev}'`);
    writeFileSync(join(dev, 'emmc.img'), Buffer.alloc(2 * 1024 * 1024));
    const config = join(dir, 'board-fw_env.config');
    writeFileSync(config, RAW_OFFSETS.map((o) => `${join(dev, 'emmc.img')} 0x${o.toString(16)} 0x4000\n`).join(''));
    // The board's storage is blank: its default env goes in with larch's state (provision --env-defaults).
    writeFileSync(join(dir, 'board-defaults'), 'bootcmd=run distro_bootcmd\n');
    extra.push('--fw-env-config', config, '--env-defaults', join(dir, 'board-defaults'));
  }
  if (layout === 'named') {
    const config = join(dir, 'board-fw_env.config');
    writeFileSync(config, NAMED_FILES.map((f) => `${join(dev, f)} 0x0 0x4000\n`).join(''));
    extra.push('--fw-env-config', config);
  }
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, ...extra]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } }, `${layout}: v2 confirmed in B`);
  await v.release(3);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.match(await status(dev), { booted: { slot: 'B', version: '2' }, pending: { slot: 'A', version: '3' }, boot: { last_good: 'B' } }, `${layout}: v3 staged in A, unconfirmed`);
  let copies = 0;
  const copy = () => {
    const to = join(dir, `copy${++copies}`);
    cpSync(dev, to, { recursive: true });
    // The U-Boot env paths in fw_env.config are absolute: point them at the copy.
    const cfg = join(to, 'boot/fw_env.config');
    if (existsSync(cfg)) writeFileSync(cfg, readFileSync(cfg, 'utf8').replaceAll(dev, to));
    return to;
  };
  return { dev, copy, vendor: v };
}

/** Damages every copy of the env (the bootloader finds none valid). */
function damageEnv(dev: string, layout: Layout, how: Damage): void {
  if (layout !== 'raw') {
    for (const file of layout === 'fat' ? ['boot/uboot.env', 'boot/uboot-redund.env'] : layout === 'named' ? NAMED_FILES : ['boot/grub/grubenv']) {
      const bytes = readFileSync(join(dev, file));
      damage(bytes, how);
      writeFileSync(join(dev, file), bytes);
    }
    return;
  }
  const disk = readFileSync(join(dev, 'emmc.img'));
  for (const o of RAW_OFFSETS) damage(disk.subarray(o, o + COPY), how);
  writeFileSync(join(dev, 'emmc.img'), disk);
}

for (const layout of ['fat', 'named', 'grub'] as const) {
  t.test(`${layout}: a damaged env larch owns is read as the safe default and rewritten with what larch can prove`, async (t) => {
    const { copy } = await stagedOverGood(t, layout);
    const first: Record<Damage, string> = { torn: 'status', flip: 'sim-boot', zero: 'boot-check' };
    for (const how of ['torn', 'flip', 'zero'] as const) {
      const dev = copy();
      damageEnv(dev, layout, how);
      const at = `${layout}, ${how}`;
      // Whichever command comes first finds the damage, repairs it and says so.
      const r = await larch([first[how], '--sysroot', dev, '--json']);
      t.equal(r.code, 0, `${at}: ${first[how]} works (${r.stderr.trim()})`);
      const env = first[how] === 'status' ? r.json.boot_env : first[how] === 'sim-boot' ? r.json.check.boot_env : r.json.boot_env;
      t.equal(env, 'repaired', `${at}: ${first[how]} reports boot_env repaired`);
      if (first[how] === 'status') t.match(r.json.boot_env_detail.message, /no valid copy/, `${at}: what was wrong`);
      if (first[how] === 'sim-boot') t.match(r.json, { slot: 'B', wrote: false, check: { healthy: true } }, `${at}: the bootloader boots the last known good B (the LKG marker), never the unconfirmed A`);
      // A boot-check (sim-boot's too) that finds B good also records B's release as the floor
      // (BOOT_RELEASES "FLOOR A B", release-floor.ts); status only repairs.
      const releases = first[how] === 'status' ? {} : { BOOT_RELEASES: '2 3 2' };
      t.same(envByTool(dev, layout), { ...LARCH_ONLY, ...releases }, `${at}: a valid env again, with only larch's variables: B good and first, A (unconfirmed) not bootable`);
      const s = await status(dev);
      t.match(s, { boot_env: 'ok', boot_env_detail: null, pending: null, boot: { order: ['B', 'A'], last_good: 'B' } }, `${at}: status after the repair`);
      t.match(sh(`'${BIN}' status --sysroot '${dev}'`), /^boot env ok$/m, `${at}: human status names the env state`);
      const history = (await larchOk(['history', '--sysroot', dev, '--json'])).json as { data?: { boot_env?: string } }[];
      t.equal(history.filter((e) => e.data?.boot_env === 'repaired').length, 1, `${at}: the repair is journaled once`);
      t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', wrote: false, check: { outcome: 'already-good', boot_env: 'ok' } }, `${at}: boots B`);
      t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'A', version: '3' } }, `${at}: upgrade works again`);
    }
  });
}

t.test('raw board env (redundant, at disk offsets): never rewritten partially; corrupt, with the command that restores it', async (t) => {
  const { copy, vendor: v } = await stagedOverGood(t, 'raw');
  const v4 = await v.release(4); // on offer, not on the devices: a refused upgrade must not fetch it
  for (const how of ['torn', 'flip', 'zero'] as const) {
    const dev = copy();
    damageEnv(dev, 'raw', how);
    const before = readFileSync(join(dev, 'emmc.img'));
    const at = `raw, ${how}`;
    const s = await status(dev);
    t.equal(s.boot_env, 'corrupt', `${at}: status reports boot_env corrupt`);
    const cfg = join(dev, 'boot/fw_env.config');
    t.match(s.boot_env_detail.hint, `fw_setenv -c ${cfg} -f /etc/u-boot-initial-env BOOT_LKG B`, `${at}: the hint names the exact restore command`);
    t.match(s, { pending: null, boot: { order: ['B', 'A'], last_good: 'B' } }, `${at}: status shows what the bootloader does: B first`);
    t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', wrote: false, check: { healthy: true, boot_env: 'corrupt' } }, `${at}: sim-boot boots B (the LKG marker), not the unconfirmed A`);
    t.match((await larchOk(['boot-check', '--sysroot', dev, '--json'])).json, { slot: 'B', healthy: true, boot_env: 'corrupt' }, `${at}: boot-check completes`);
    const up = await larch(['upgrade', '--sysroot', dev, '--json']);
    expectFail(t, up, 'ENV_CORRUPT', `${at}: upgrade cannot stage without an env`);
    t.notOk(existsSync(join(dev, 'larch/repo/objects', v4.slice(0, 2), `${v4.slice(2)}.commit`)), `${at}: refused before v4 is downloaded`);
    t.match(up.json?.error?.hint, 'fw_setenv -c', `${at}: and says how to restore it`);
    t.ok(readFileSync(join(dev, 'emmc.img')).equals(before), `${at}: nothing written to the board's storage`);

    // The hint's command, with a board defaults file in place of /etc/u-boot-initial-env.
    const defaults = join(dev, '..', 'u-boot-initial-env');
    writeFileSync(defaults, 'bootcmd=run distro_bootcmd\nbootdelay=2\n');
    sh(`fw_setenv -c '${cfg}' -f '${defaults}' BOOT_LKG B`);
    t.match(await status(dev), { boot_env: 'ok', boot: { order: ['B', 'A'], last_good: 'B' } }, `${at}: restored`);
    t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'A' } }, `${at}: upgrade works after the restore`);
    t.equal(sh(`fw_printenv -c '${cfg}' -n bootcmd`).trim(), 'run distro_bootcmd', `${at}: the board's variables kept by larch's write`);
  }
});

t.test('a torn write of one copy of the redundant FAT env: the other copy is used, no repair needed', async (t) => {
  const { copy } = await stagedOverGood(t, 'fat');
  const dev = copy();
  const files = ['boot/uboot.env', 'boot/uboot-redund.env'].map((f) => join(dev, f));
  const copies = files.map((f) => readFileSync(f));
  // The newest copy is the one the staging write just wrote.
  const newest = selectCopy([{ crcValid: true, flags: copies[0][4] }, { crcValid: true, flags: copies[1][4] }])!;
  damage(copies[newest], 'torn');
  writeFileSync(files[newest], copies[newest]);
  const s = await status(dev);
  t.match(s, { boot_env: 'ok', pending: null, boot: { order: ['B', 'A'] } }, 'the older copy: A marked bad before its files were rewritten, B first');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', wrote: false }, 'boots B');
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged' }, 'the next write goes to the torn copy');
  t.equal(sh(`fw_printenv -c '${join(dev, 'boot/fw_env.config')}' -n BOOT_ORDER`).trim(), 'A B', 'fw_printenv reads the new copy');
});

t.test('provision writes the redundant FAT env (two files, both copies) and fw_env.config lists both', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  const lines = readFileSync(join(dev, 'boot/fw_env.config'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  t.same(lines.map((l) => l.split(/\s+/).slice(0, 3)), [[join(dev, 'boot/uboot.env'), '0x0', '0x4000'], [join(dev, 'boot/uboot-redund.env'), '0x0', '0x4000']]);
  const copies = ['uboot.env', 'uboot-redund.env'].map((f) => readFileSync(join(dev, 'boot', f)));
  t.same(copies.map((c) => [c.length, c[4]]), [[0x4000, 1], [0x4000, 0]], 'two whole copies, flags 1 and 0');
  t.equal(sh(`fw_printenv -c '${join(dev, 'boot/fw_env.config')}' -n BOOT_LKG`).trim(), 'A');
  t.notOk(existsSync(join(dev, 'boot/larch-lkg-B')), 'the LKG marker says A');
});

t.test('sim-boot refuses a real root; /proc/cmdline wins over the simulated command line', async (t) => {
  const none = await larch(['sim-boot', '--json']);
  expectFail(t, none, 'USAGE', 'sim-boot without --sysroot');
  t.match(none.json?.error?.message, /needs --sysroot/);
  for (const root of ['/', '/sysroot']) expectFail(t, await larch(['sim-boot', '--sysroot', root, '--json']), 'USAGE', `sim-boot --sysroot ${root}`);

  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]); // the simulated command line now says B
  // A booted system whose kernel command line says A (a mount namespace with a file over /proc/cmdline).
  const cmdline = join(dir, 'cmdline');
  writeFileSync(cmdline, 'console=ttyS0 larch.slot=A\n');
  const onBooted = (args: string[]) => spawnSync('unshare', ['-rm', 'sh', '-c', `mount --bind '${cmdline}' /proc/cmdline && exec '${BIN}' "$@"`, 'sh', ...args], { encoding: 'utf8' });
  const st = onBooted(['status', '--sysroot', dev, '--json']);
  t.equal(st.status, 0, `status on a booted system: ${st.stderr}`);
  t.equal(JSON.parse(st.stdout).booted.slot, 'A', 'the real command line wins over S/larch/sim/cmdline (which says B)');
  const sim = onBooted(['sim-boot', '--sysroot', dev, '--json']);
  t.equal(sim.status, 2, 'sim-boot on a system booted through larch: exit 2');
  t.match(JSON.parse(sim.stdout).error.message, /booted through larch \(larch\.slot=A/);
  t.equal((await status(dev)).booted.slot, 'B', 'without a larch.slot= on /proc/cmdline, the simulation still counts');
});
