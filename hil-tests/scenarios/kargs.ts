/**
 * (kargs) Kernel arguments per deployment (issue 19, must-show 1): `larch kargs --append quiet
 * --delete console` stages the booted commit again; after the reboot /proc/cmdline has the
 * change; the rollback slot keeps its own arguments (larch rollback + reboot boots them); a new
 * base whose /usr/lib/larch/kargs.d adds a vendor argument keeps the local change. The console
 * the harness reads survives `--delete console`: the initramfs writes to the profile's
 * `larch.tty=`, not to the kernel's console.
 */
import { type Ctx, type Scenario, expectThat } from '../lib/scenario.ts';
import { formatBoots } from '../lib/boot-table.ts';

const args = (cmdline: string) => cmdline.trim().split(/\s+/);

async function procCmdline(ctx: Ctx): Promise<string[]> {
  return args(await ctx.shell.ok('cat /proc/cmdline'));
}

export const kargsScenario: Scenario = {
  id: 'kargs',
  name: 'larch kargs: the change on /proc/cmdline, the rollback keeps its own, a vendor argument added on upgrade keeps the local ones',
  variants: 1,
  async run(ctx) {
    const factory = (await ctx.status()).booted;
    const before = await procCmdline(ctx);
    expectThat(before.some((a) => a.startsWith('console=')) && !before.includes('quiet'), `factory /proc/cmdline: expected a console= and no quiet, got ${before.join(' ')}`);
    // What the bootloader adds itself: larch.slot= (larch's scripts), BOOT_IMAGE= (GRUB's linux
    // command), initrd=\A\initrd.img (systemd-boot, for the kernel's EFI stub, before the entry's options).
    const own = before.filter((a) => !a.startsWith('larch.slot=') && !a.startsWith('BOOT_IMAGE=') && !a.startsWith('initrd='));
    expectThat(JSON.stringify(factory.kargs) === JSON.stringify(own), `status booted.kargs ${JSON.stringify(factory.kargs)} is not /proc/cmdline ${before.join(' ')}`);

    const k = await ctx.larch('kargs --append quiet --delete console');
    const target = factory.slot === 'A' ? 'B' : 'A';
    expectThat(k.result === 'staged' && k.slot === target && k.commit === factory.commit, `larch kargs: expected staged in slot ${target}, got ${JSON.stringify(k)}`);
    const r = await ctx.reboot('reboot with the new kernel arguments');
    expectThat(r.boots.length === 1 && r.boots[0].slot === target && r.boots[0].wrote && r.check.outcome === 'confirmed', `kargs reboot: expected a confirmed try on slot ${target}, saw ${formatBoots(r.boots)} ${JSON.stringify(r.check)}`);
    const changed = await procCmdline(ctx);
    expectThat(changed.includes('quiet') && !changed.some((a) => a.startsWith('console=')) && changed.includes(`larch.slot=${target}`), `/proc/cmdline after larch kargs: expected quiet and no console=, got ${changed.join(' ')}`);
    const st = await ctx.status();
    expectThat(JSON.stringify(st.rollback?.kargs) === JSON.stringify(factory.kargs), `status rollback.kargs: expected the factory's ${JSON.stringify(factory.kargs)}, got ${JSON.stringify(st.rollback?.kargs)}`);
    ctx.note(`kargs: ${before.join(' ')} -> ${changed.join(' ')}`);

    await ctx.larch('rollback');
    await ctx.reboot('reboot into the rollback slot');
    const rolled = await procCmdline(ctx);
    expectThat(JSON.stringify(rolled) === JSON.stringify(before), `rollback: expected the factory command line ${before.join(' ')}, got ${rolled.join(' ')}`);
    await ctx.larch('rollback');
    await ctx.reboot('reboot back to the changed arguments');
    expectThat(JSON.stringify(await procCmdline(ctx)) === JSON.stringify(changed), 'rolling forward again boots the changed arguments');

    const v = ctx.compose('vendor-kargs');
    const up = await ctx.larch('upgrade');
    expectThat(up.result === 'staged', `upgrade to ${v.version}: expected staged, got ${JSON.stringify(up).slice(0, 400)}`);
    const r2 = await ctx.reboot('reboot into a base that adds a vendor argument');
    expectThat(r2.check.commit === v.commit && r2.check.outcome === 'confirmed', `vendor upgrade: expected ${v.version} confirmed, got ${JSON.stringify(r2.check)}`);
    const upgraded = await procCmdline(ctx);
    expectThat(upgraded.includes('vendor.test=1') && upgraded.includes('quiet') && !upgraded.some((a) => a.startsWith('console=')), `after the upgrade: expected vendor.test=1 with the local quiet and no console=, got ${upgraded.join(' ')}`);
    ctx.note(`upgrade to ${v.version}: ${upgraded.join(' ')}`);
  },
};
