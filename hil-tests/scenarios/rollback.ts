/**
 * (d) `larch rollback`: after a confirmed upgrade, back to the previous tree (no try spent: it is
 * good); and a staged update not yet booted is cancelled by it.
 */
import { type Scenario, expectThat } from '../lib/scenario.ts';
import { upgradeAndConfirm } from './upgrade.ts';

export const rollbackScenario: Scenario = {
  id: 'd',
  name: 'larch rollback (to the previous tree; cancel a staged update)',
  variants: 2,
  async run(ctx) {
    const factory = (await ctx.status()).booted;
    const up = await upgradeAndConfirm(ctx, 'reboot into the upgrade');
    const rb = await ctx.larch('rollback');
    expectThat(rb.result === 'rolled-back' && rb.slot === factory.slot, `larch rollback: expected rolled-back to slot ${factory.slot}, got ${JSON.stringify(rb)}`);
    const r = await ctx.reboot('reboot after rollback');
    expectThat(r.boots.length === 1 && r.boots[0].slot === factory.slot && !r.boots[0].wrote, `rollback: the bootloader should boot slot ${factory.slot} with no write, saw ${JSON.stringify(r.boots)}`);
    expectThat(r.check.commit === factory.commit && r.check.outcome === 'already-good' && !r.check.fell_back, `rollback: expected the factory tree already good, got ${JSON.stringify(r.check)}`);
    const st = await ctx.status();
    expectThat(st.boot?.slots?.[up.slot]?.good === true, `rollback: the newer slot ${up.slot} should stay good (a roll-forward target): ${JSON.stringify(st.boot)}`);
    ctx.note(`rollback: ${up.version} -> ${factory.version}, slot ${factory.slot} booted without a try`);

    // A staged update, cancelled before it boots.
    const v = ctx.compose('good');
    const staged = await ctx.larch('upgrade');
    expectThat(staged.result === 'staged', `upgrade: expected staged, got ${JSON.stringify(staged).slice(0, 400)}`);
    const cancel = await ctx.larch('rollback');
    expectThat(cancel.result === 'cancelled', `larch rollback of a staged update: expected cancelled, got ${JSON.stringify(cancel)}`);
    const r2 = await ctx.reboot('reboot after cancel');
    expectThat(r2.check.commit === factory.commit && r2.boots.length === 1 && !r2.boots[0].wrote, `cancel: expected the factory tree with no try spent, got ${JSON.stringify(r2.boots)} ${JSON.stringify(r2.check)}`);
    ctx.note(`cancel: staged ${v.version} cancelled, still on ${factory.version}`);
  },
};
