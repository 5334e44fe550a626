/**
 * (live) apply-live on the board (issue 20, must-show 4): a release with two services (as a
 * board's rc starts them: /etc/init.d scripts, pid files in /run) boots; the next release changes
 * larch-demo's program and its message. `apply-live --dry-run` names the program, the process
 * that holds it (the shell keeps its script open) and the larch-demo service, not larch-idle;
 * `apply-live` binds the staged tree over the running one and restarts larch-demo, which then
 * writes the new release's text without a reboot while larch-idle runs on untouched; the next
 * boot comes up on the commit that was live. A release whose kernel changes is refused, and
 * `rollback` cancels it.
 */
import { type Ctx, type Scenario, expectThat } from '../lib/scenario.ts';
import { formatBoots } from '../lib/boot-table.ts';
import { LARCH } from '../lib/device.ts';

/** Polls the board until `command`'s output matches, or fails after timeoutMs. */
async function waitOn(ctx: Ctx, command: string, want: RegExp, what: string, timeoutMs = 60_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    last = (await ctx.shell.run(command)).out.trim();
    if (want.test(last)) return last;
  }
  throw new Error(`hil: ${what}: '${command}' did not print ${want} within ${timeoutMs / 1000} s (last: ${last.slice(0, 300)})`);
}

export const liveScenario: Scenario = {
  id: 'live',
  name: 'apply-live: the changed program named with its process and service, live without a reboot, the next boot on the live commit; a kernel change refused',
  variants: 3,
  async run(ctx) {
    const v1 = ctx.compose('live-demo');
    expectThat((await ctx.larch('upgrade')).result === 'staged', `upgrade to ${v1.version}: not staged`);
    const r1 = await ctx.reboot(`reboot into ${v1.version} (the services)`);
    expectThat(r1.check.commit === v1.commit && r1.check.outcome === 'confirmed', `expected ${v1.version} confirmed, saw ${formatBoots(r1.boots)} ${JSON.stringify(r1.check)}`);
    await ctx.shell.ok('/etc/init.d/larch-demo start && /etc/init.d/larch-idle start');
    await waitOn(ctx, 'cat /run/larch-demo.out', new RegExp(`^larch-demo ${v1.version}: message of ${v1.version}$`), 'larch-demo started');
    const idlePid = (await ctx.shell.ok('cat /run/larch-idle.pid')).trim();
    const demoPid = Number((await ctx.shell.ok('cat /run/larch-demo.pid')).trim());

    const v2 = ctx.compose('live-demo');
    const up = await ctx.larch('upgrade');
    expectThat(up.result === 'staged' && up.to.commit === v2.commit, `upgrade to ${v2.version}: ${JSON.stringify(up).slice(0, 300)}`);
    const dry = await ctx.larch('apply-live --dry-run');
    expectThat(dry.refused.length === 0, `apply-live --dry-run refuses: ${JSON.stringify(dry.refused)}`);
    expectThat(dry.files.modified.includes('/usr/libexec/larch-demo') && dry.files.modified.includes('/usr/share/larch-demo/message'), `the report's modified files: ${JSON.stringify(dry.files.modified)}`);
    const holder = dry.processes.find((p: { pid: number }) => p.pid === demoPid);
    expectThat(holder?.files.some((f: { path: string; via: string }) => f.path === '/usr/libexec/larch-demo' && f.via === 'fd') && holder.unit === 'larch-demo', `the report's processes: expected pid ${demoPid} holding /usr/libexec/larch-demo (fd) in larch-demo, got ${JSON.stringify(dry.processes)}`);
    const units = dry.units.map((u: { name: string }) => u.name);
    expectThat(JSON.stringify(units) === '["larch-demo"]', `the report's services: expected larch-demo only, got ${JSON.stringify(units)}`);
    ctx.note(`apply-live --dry-run: ${dry.files.total} files of /usr changed; process ${demoPid} (${holder.comm}) holds /usr/libexec/larch-demo; restarts ${units.join(', ')}`);

    const applied = await ctx.larch('apply-live');
    expectThat(applied.result === 'applied' && JSON.stringify(applied.restarted.map((x: { name: string; exit_code: number }) => [x.name, x.exit_code])) === '[["larch-demo",0]]', `apply-live: ${JSON.stringify(applied).slice(0, 400)}`);
    const out = await waitOn(ctx, 'cat /run/larch-demo.out', new RegExp(`^larch-demo ${v2.version}: message of ${v2.version}$`), 'larch-demo restarted on the new release');
    expectThat((await ctx.shell.ok('cat /run/larch-idle.pid')).trim() === idlePid && (await ctx.shell.run(`kill -0 ${idlePid}`)).code === 0, 'larch-idle was restarted or stopped');
    const st = await ctx.status();
    expectThat(st.live?.commit === v2.commit && st.pending?.commit === v2.commit && st.booted.commit === v1.commit, `status while live: ${JSON.stringify({ live: st.live, pending: st.pending?.commit, booted: st.booted.commit })}`);
    ctx.note(`live without a reboot: /run/larch-demo.out is '${out}'; larch-idle (pid ${idlePid}) untouched`);

    const r2 = await ctx.reboot('reboot after apply-live');
    expectThat(r2.check.commit === v2.commit && r2.check.outcome === 'confirmed', `the next boot: expected the live commit ${v2.version} confirmed, saw ${formatBoots(r2.boots)} ${JSON.stringify(r2.check)}`);
    expectThat((await ctx.status()).live === null, 'status.live after the reboot');

    const k = ctx.compose('kernel-touch');
    expectThat((await ctx.larch('upgrade')).result === 'staged', `upgrade to ${k.version}: not staged`);
    const refused = await ctx.shell.run(`${LARCH} apply-live --json`);
    expectThat(refused.code === 14 && /"reason": "kernel-changed"/.test(refused.out), `apply-live of a kernel change: expected exit 14 kernel-changed, got ${refused.code}: ${refused.out.slice(-400)}`);
    expectThat((await ctx.larch('rollback')).result === 'cancelled', 'rollback cancels the kernel release');
    ctx.note(`version ${k.version} (kernel changed): apply-live refused (kernel-changed), rollback cancelled it`);
  },
};
