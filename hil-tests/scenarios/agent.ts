/**
 * (agent) The agent ships in the tree (issue 16, must-show 1): a release carrying agent A1 at
 * /usr/bin/larch, then one carrying A2 (two builds that differ only in their version). After the
 * reboot into the second, status shows A2 and A2 ran boot-check (its boot-check line on the
 * console says agent_version); `larch rollback` and a reboot boot the first with A1. The board
 * starts from the pristine image (whose agent is dist/larch), so "v1 with A1" is its first upgrade.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { buildAgent } from '../lib/fixture.ts';
import { type Scenario, expectThat } from '../lib/scenario.ts';
import { upgradeAndConfirm } from './upgrade.ts';

const V1 = '9.1.0-hil-a1';
const V2 = '9.2.0-hil-a2';

export const agentScenario: Scenario = {
  id: 'agent',
  name: 'the agent in the tree: v1 with A1 upgrades to v2 with A2, A2 runs boot-check, the rollback slot boots A1',
  variants: 2,
  async run(ctx) {
    const architecture = (parse(readFileSync(ctx.base.definition, 'utf8')) as { architecture: 'amd64' | 'arm64' }).architecture;
    const a1 = buildAgent(V1, architecture, ctx.workDir);
    const a2 = buildAgent(V2, architecture, ctx.workDir);

    const v1 = await upgradeAndConfirm(ctx, 'reboot into v1 (agent A1)', { agent: a1 });
    let st = await ctx.status();
    expectThat(st.booted?.agent?.version === V1 && st.booted?.agent?.in_tree === true, `v1: status should show agent ${V1} in the tree, got ${JSON.stringify(st.booted?.agent)}`);
    expectThat(st.last_boot?.agent_version === V1, `v1: boot-check should have been run by A1 (${V1}), last_boot says ${st.last_boot?.agent_version}`);

    const v2 = await upgradeAndConfirm(ctx, 'reboot into v2 (agent A2)', { agent: a2 });
    st = await ctx.status();
    expectThat(st.booted?.slot === v2.slot && st.booted?.agent?.version === V2, `v2: status should show booted agent ${V2}, got ${JSON.stringify(st.booted?.agent)}`);
    expectThat(st.last_boot?.agent_version === V2, `v2: boot-check should have been run by A2 (${V2}), last_boot says ${st.last_boot?.agent_version}`);
    expectThat(st.rollback?.slot === v1.slot && st.rollback?.agent?.version === V1, `v2: the rollback slot should keep A1 (${V1}), got ${JSON.stringify(st.rollback)}`);
    const legacy = await ctx.shell.run('ls /sysroot/larch/bin/larch');
    expectThat(legacy.code !== 0, 'v2: both slots carry their agent, so the legacy /sysroot/larch/bin/larch should be gone');
    ctx.note(`agent: ${v1.version} ran ${V1}, ${v2.version} ran ${V2} (status and boot-check agree); no legacy agent left`);

    const rb = await ctx.larch('rollback');
    expectThat(rb.result === 'rolled-back' && rb.slot === v1.slot, `larch rollback: expected rolled-back to slot ${v1.slot}, got ${JSON.stringify(rb)}`);
    const r = await ctx.reboot('reboot after rollback (agent A1)');
    expectThat(r.check.slot === v1.slot && r.check.commit === v1.commit, `rollback: expected slot ${v1.slot} (${v1.version}), got ${JSON.stringify(r.check)}`);
    expectThat(r.check.agent_version === V1, `rollback: boot-check of the rollback slot should be run by A1 (${V1}), got ${r.check.agent_version}`);
    st = await ctx.status();
    expectThat(st.booted?.agent?.version === V1, `rollback: status should show booted agent ${V1}, got ${JSON.stringify(st.booted?.agent)}`);
    const printed = (await ctx.shell.ok('/usr/bin/larch --version')).trim();
    expectThat(printed === `larch ${V1}`, `rollback: /usr/bin/larch --version printed '${printed}'`);
    ctx.note(`agent: rolled back to ${v1.version}, booted with ${V1}`);
  },
};
