/**
 * `npm run hil`: builds each board's image, runs the scenarios on it, prints the report.
 *
 *   node --import tsx hil-tests/run.ts [--board B[,B]] [--scenario a,b,c,d,table,agent,layer] [--config board.toml]
 *                                      [--work-dir DIR [--reuse]] [--json FILE] [--keep]
 *
 * Without --board: every QEMU board that `larch image build` knows and this host can run (the
 * others are listed as skipped). --config runs on a real board instead (hil-tests/README.md).
 * --reuse takes the image an earlier run left in --work-dir. Exit 0 when every scenario passed.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatReport } from './lib/report.ts';
import { runHil } from './lib/runner.ts';
import { live } from './lib/scenario.ts';

// Ctrl-C or a CI timeout: cut the boards' power and stop the servers, so no QEMU is left running.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`hil: ${signal}: powering off and stopping`);
    void Promise.allSettled([...[...live.boards].map((b) => b.powerOff()), ...[...live.servers].map((s) => s.stop())]).then(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      board: { type: 'string' },
      scenario: { type: 'string' },
      config: { type: 'string' },
      'work-dir': { type: 'string' },
      json: { type: 'string' },
      keep: { type: 'boolean' },
      reuse: { type: 'boolean' },
    },
  });
  const workDir = values['work-dir'] ? resolve(values['work-dir']) : mkdtempSync(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-hil-'));
  mkdirSync(workDir, { recursive: true });
  const result = await runHil({ boards: values.board?.split(','), scenarios: values.scenario?.split(','), config: values.config, workDir, reuse: values.reuse });
  console.log(formatReport(result.reports, result));
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2) + '\n');
  const ok = result.reports.length > 0 && result.reports.every((r) => r.ok);
  if (ok && !values.keep && !values['work-dir']) rmSync(workDir, { recursive: true, force: true });
  else console.log(`work dir kept (console logs, serve logs, images): ${workDir}`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`hil: ${(e as Error).message}`);
    process.exit(2);
  },
);
