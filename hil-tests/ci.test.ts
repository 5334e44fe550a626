/**
 * CI's share of the HIL suite (.ci/run runs this file with `npx tap` after `npm test`): scenario
 * (b), bad updates that fall back by themselves, on the qemu-x86_64-grub board. One tap assertion
 * per scenario, so its pass/fail counts fold into CI's closing line. `npm run hil` runs everything.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatReport } from './lib/report.ts';
import { qemuBoardProblem, runHil } from './lib/runner.ts';
import { live } from './lib/scenario.ts';

// tap's timeout ends this process with SIGTERM: leave no QEMU or larch serve behind.
process.once('SIGTERM', () => {
  void Promise.allSettled([...[...live.boards].map((b) => b.powerOff()), ...[...live.servers].map((s) => s.stop())]).then(() => process.exit(143));
});

const board = process.env.HIL_CI_BOARD ?? 'qemu-x86_64-grub';
const scenarios = (process.env.HIL_CI_SCENARIOS ?? 'b').split(',');
const problem = qemuBoardProblem(board);

t.test(`HIL on ${board}: scenario ${scenarios.join(', ')}`, { skip: problem ?? false, timeout: 25 * 60_000 }, async (t) => {
  const workDir = mkdtempSync(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-hil-ci-'));
  const result = await runHil({ boards: [board], scenarios, workDir, log: (line) => t.comment(line) });
  for (const line of formatReport(result.reports, result).split('\n')) t.comment(line);
  t.equal(result.reports.length, scenarios.length, 'every scenario ran');
  for (const r of result.reports) t.ok(r.ok, `${r.board} ${r.id}: ${r.name}${r.error ? ` (${r.error.split('\n')[0]})` : ''}`);
  if (result.reports.every((r) => r.ok)) rmSync(workDir, { recursive: true, force: true });
  else t.comment(`console logs kept in ${workDir}`);
});
