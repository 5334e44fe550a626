/**
 * (bless) systemd-boot boards: larch and systemd's own boot counting agree both ways (issue 19;
 * docs/boot.md, "systemd-boot", Interop). After an upgrade that systemd-boot counted and
 * boot-check confirmed, `systemd-bless-boot` moves the booted entry between its states and
 * `larch status` must read each one as systemd does; then larch's mark-good must read as good
 * to systemd-bless-boot. systemd-bless-boot finds the booted entry by the LoaderBootCountPath
 * EFI variable systemd-boot set at this boot, so every step acts on the entry of this boot.
 */
import { type Ctx, type Scenario, blessBoot, expectThat } from '../lib/scenario.ts';
import { upgradeAndConfirm } from './upgrade.ts';

const bless = (ctx: Ctx, verb: Parameters<typeof blessBoot>[1]) => blessBoot(ctx.shell, verb);

async function slotState(ctx: Ctx, slot: string): Promise<{ good: boolean; tries_left: number }> {
  const st = await ctx.status();
  return st.boot.slots[slot];
}

export const blessScenario: Scenario = {
  id: 'bless',
  name: 'systemd-bless-boot and larch agree both ways (systemd-boot boards)',
  variants: 1,
  bootloaders: ['systemd-boot'],
  async run(ctx) {
    const { slot } = await upgradeAndConfirm(ctx, 'reboot into the upgrade');
    expectThat((await bless(ctx, 'status')) === 'good', 'after boot-check confirmed the counted boot, systemd-bless-boot status should say good');

    // Back to the name systemd-boot gave the entry at this boot: one try spent of larch's three.
    await bless(ctx, 'indeterminate');
    const back = await slotState(ctx, slot);
    expectThat(await bless(ctx, 'status') === 'indeterminate', 'systemd-bless-boot indeterminate: status should say indeterminate');
    expectThat(!back.good && back.tries_left === 2, `systemd-bless-boot indeterminate: larch should read slot ${slot} unconfirmed with 2 tries left (3 written, 1 spent by systemd-boot), read ${JSON.stringify(back)}`);

    // systemd blesses it: larch reads the slot good.
    await bless(ctx, 'good');
    const good = await slotState(ctx, slot);
    expectThat(good.good, `systemd-bless-boot good: larch should read slot ${slot} good, read ${JSON.stringify(good)}`);

    // systemd marks it bad: larch reads it not bootable (no tries left, not good).
    await bless(ctx, 'bad');
    const bad = await slotState(ctx, slot);
    expectThat(await bless(ctx, 'status') === 'bad', 'systemd-bless-boot bad: status should say bad');
    expectThat(!bad.good && bad.tries_left === 0, `systemd-bless-boot bad: larch should read slot ${slot} not bootable, read ${JSON.stringify(bad)}`);

    // larch's mark-good on the unconfirmed entry: systemd-bless-boot reads it as good.
    await bless(ctx, 'indeterminate');
    const marked = await ctx.larch('mark-good');
    expectThat(marked, 'larch mark-good printed nothing');
    expectThat(await bless(ctx, 'status') === 'good', "after larch mark-good, systemd-bless-boot status should say good");
    const after = await slotState(ctx, slot);
    expectThat(after.good, `larch mark-good: status should read slot ${slot} good, read ${JSON.stringify(after)}`);
    ctx.note(`slot ${slot}: systemd-bless-boot indeterminate/good/bad read by larch as 2 tries left/good/not bootable; larch mark-good read by systemd-bless-boot as good`);

    // And systemd-boot boots what both agree on: the slot, good, with no try spent.
    const again = await ctx.powerOnAsCase('b-marked-good', 1, 'power cycle after the blessings');
    expectThat(again.check.slot === slot && again.check.outcome === 'already-good', `power cycle: expected slot ${slot} already good, got ${JSON.stringify(again.check)}`);
  },
};
