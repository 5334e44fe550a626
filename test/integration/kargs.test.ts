/**
 * Kernel arguments per deployment (issue 19), through the Bun binary on plain sysroots: `larch
 * kargs` stages the booted commit again with the change (or changes the staged deployment), the
 * rollback slot keeps its own, an upgrade applies the vendor's kargs.d change and keeps the local
 * ones, arguments that failed are refused again. sim-boot passes what the slot's file holds (the
 * file the boot scripts read: test/integration/board-scripts.test.ts runs them on it), so
 * S/larch/sim/cmdline is the command line the kernel would get.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, expectFail, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';

const DEFAULTS = 'console=ttyS0,115200 larch.root=LABEL=larch-root quiet';
const VENDOR_CONF = 'usr/lib/larch/kargs.d/10-vendor.conf';

async function device(t: Test, v: Vendor, bootloader: 'uboot' | 'grub', kargs: string | null = DEFAULTS): Promise<string> {
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', bootloader, ...(kargs === null ? [] : ['--kargs', kargs])]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

/** What the simulated bootloader passed the kernel at the last sim-boot. */
const cmdline = (dev: string) => readFileSync(join(dev, 'larch/sim/cmdline'), 'utf8').trim();

t.test('U-Boot: kargs stages a new deployment, the rollback keeps its own, an upgrade applies the vendor change and keeps the local one', async (t) => {
  const v = await vendor(t);
  await v.release(1, { files: { [VENDOR_CONF]: '# the vendor\nvendor.old=1\n' } });
  const dev = await device(t, v, 'uboot');
  const first = `${DEFAULTS} vendor.old=1`;
  t.equal(cmdline(dev), `${first} larch.slot=A`, 'the first boot: the board defaults, then the commit kargs.d');
  t.same((await status(dev)).booted.kargs, first.split(' '), 'status: booted.kargs');
  t.match((await larchOk(['status', '--sysroot', dev])).stdout, `\n    kernel arguments: ${first}\n`, 'status (text) prints them under the deployment');
  t.same((await larchOk(['kargs', '--sysroot', dev, '--json'])).json, { slot: 'A', kargs: first.split(' ') }, 'kargs with no change prints them');
  t.match(readFileSync(join(dev, 'boot/A/larch.env')).toString('latin1'), `bootargs=${first} larch.slot=A\0`, 'S/boot/A/larch.env holds them for U-Boot');

  const r = (await larchOk(['kargs', '--sysroot', dev, '--append', 'loglevel=7', '--delete', 'quiet', '--json'])).json;
  t.match(r, { result: 'staged', slot: 'B', commit: v.commits[0], kargs_before: first.split(' '), kargs: ['console=ttyS0,115200', 'larch.root=LABEL=larch-root', 'vendor.old=1', 'loglevel=7'] }, 'a new deployment of the booted commit, in order');
  let s = await status(dev);
  t.same(s.booted.kargs, first.split(' '), 'the booted deployment is untouched');
  t.match(s.pending, { slot: 'B', commit: v.commits[0], kargs: r.kargs }, 'status: pending.kargs');
  await larchOk(['sim-boot', '--sysroot', dev]);
  const local = 'console=ttyS0,115200 larch.root=LABEL=larch-root vendor.old=1 loglevel=7';
  t.equal(cmdline(dev), `${local} larch.slot=B`, 'after the reboot the kernel has the change');
  s = await status(dev);
  t.match(s, { booted: { slot: 'B', good: true, kargs: local.split(' ') }, rollback: { slot: 'A', kargs: first.split(' ') } }, 'the rollback slot keeps its own arguments');

  await larchOk(['rollback', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.equal(cmdline(dev), `${first} larch.slot=A`, 'rollback boots the old arguments');
  await larchOk(['rollback', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.equal(cmdline(dev), `${local} larch.slot=B`, 'and back');

  // v2's vendor list drops vendor.old=1 and adds vendor.test=1: the local change stays.
  await v.release(2, { files: { [VENDOR_CONF]: 'vendor.test=1 # added in v2\n' } });
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'A' } });
  const upgraded = 'console=ttyS0,115200 larch.root=LABEL=larch-root loglevel=7 vendor.test=1';
  t.same((await status(dev)).pending.kargs, upgraded.split(' '), "bootc's rule: the vendor's removal and addition applied, the local change kept");

});

t.test('a staged update gets the change in place; it boots with it', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v, 'uboot');
  await v.release(2, { files: { [VENDOR_CONF]: 'vendor.test=1\n' } });
  await larchOk(['upgrade', '--sysroot', dev]);
  const c = (await larchOk(['kargs', '--sysroot', dev, '--replace', 'console=ttyAMA0', '--append', 'opt="a b"', '--json'])).json;
  t.match(c, { result: 'changed-staged', slot: 'B', commit: v.commits[1], kargs: ['console=ttyAMA0', 'larch.root=LABEL=larch-root', 'quiet', 'vendor.test=1', 'opt="a b"'] }, 'U-Boot passes a quoted argument as stored');
  t.match((await status(dev)).pending, { slot: 'B', version: '2', kargs: c.kargs, tries_left: 3 });
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.equal(cmdline(dev), `${c.kargs.join(' ')} larch.slot=B`);
  t.match((await status(dev)).booted, { slot: 'B', version: '2', good: true });
});

t.test('GRUB: the slot file is a grubenv with larch_kargs; --editor edits the list; quotes GRUB would escape are refused', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v, 'grub');
  t.match(readFileSync(join(dev, 'boot/A/kargs.grubenv'), 'latin1'), `# GRUB Environment Block\n# WARNING: Do not edit this file by tools other than grub-editenv!!!\nlarch_kargs=${DEFAULTS}\n`);
  const script = join(tempDir(t), 'edit.sh');
  writeFileSync(script, `#!/bin/sh\nsed -i -e 's/^quiet$/splash/' -e '$a x=$y' "$1"\n`, { mode: 0o755 });
  const r = await larch(['kargs', '--sysroot', dev, '--editor', '--json'], { env: { VISUAL: script } });
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, { result: 'staged', slot: 'B', kargs: ['console=ttyS0,115200', 'larch.root=LABEL=larch-root', 'splash', 'x=$y'] });
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.equal(cmdline(dev), 'console=ttyS0,115200 larch.root=LABEL=larch-root splash x=$y larch.slot=B');
  const quoted = await larch(['kargs', '--sysroot', dev, '--append', 'opt="a b"', '--json']);
  expectFail(t, quoted, 'USAGE', 'a quoted argument GRUB would pass with backslashes');
  t.match(quoted.json.error.message, /GRUB escapes/);
});

t.test('refusals: nothing to delete, an ambiguous key, a device without --kargs, arguments that already failed', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v, 'uboot', `${DEFAULTS} console=tty0`);
  let r = await larch(['kargs', '--sysroot', dev, '--delete', 'nosuch', '--json']);
  expectFail(t, r, 'INVALID_INPUT', 'deleting an argument the deployment does not have');
  t.equal(r.code, 4);
  r = await larch(['kargs', '--sysroot', dev, '--delete', 'console', '--json']);
  expectFail(t, r, 'USAGE', 'a bare key two arguments have');
  t.match(r.json.error.message, /console=ttyS0,115200, console=tty0/);
  r = await larch(['kargs', '--sysroot', dev, '--append', 'larch.slot=B', '--json']);
  expectFail(t, r, 'USAGE', "the bootloader's larch.slot=");
  t.match(await status(dev), { pending: null }, 'nothing staged by a refusal');
  t.same((await larchOk(['kargs', '--sysroot', dev, '--append', 'x=1', '--dry-run', '--json'])).json.result, 'dry-run');
  t.match(await status(dev), { pending: null }, 'nothing staged by --dry-run');

  // Arguments the device fell back from are refused again; others are taken.
  await larchOk(['kargs', '--sysroot', dev, '--append', 'bad=1']);
  for (let i = 0; i < 3; i++) await larchOk(['sim-boot', '--sysroot', dev, '--unhealthy']);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { fell_back: true } });
  const s = await status(dev);
  t.match(s.failed_releases, [{ commit: v.commits[0], kargs: [...DEFAULTS.split(' '), 'console=tty0', 'bad=1'] }], 'the failure names the arguments');
  t.equal(s.booted.slot, 'A');
  r = await larch(['kargs', '--sysroot', dev, '--append', 'bad=1', '--json']);
  expectFail(t, r, 'REFUSED', 'the same arguments again');
  t.equal(r.json.error.data.reason, 'failed-here');
  t.match((await larchOk(['kargs', '--sysroot', dev, '--append', 'good=1', '--json'])).json, { result: 'staged', slot: 'B' }, 'other arguments on the same commit are taken');

  const plain = join(tempDir(t), 'plain');
  await larchOk(['provision', '--sysroot', plain, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`]);
  r = await larch(['kargs', '--sysroot', plain, '--append', 'x=1', '--json']);
  expectFail(t, r, 'REFUSED', 'a device provisioned without --kargs');
  t.equal(r.json.error.data.reason, 'kargs-unmanaged');
  t.equal((await status(plain)).booted?.kargs ?? (await status(plain)).deployments[0].kargs, null, 'status: kargs null where larch manages none');
});
