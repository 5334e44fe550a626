/**
 * The real-board path end to end (issue 19, must-show 3): `runHil({ config })`, the code a lab
 * runs with `hil-tests/run.ts --config lab.toml`, drives a board through the serial backend
 * (SerialBoard) and nothing else: a serial device that stays open across power cycles, and
 * power and flash as shell commands. The "board" is QEMU's qemu-x86_64-grub, wired as a lab
 * wires a real one:
 *
 * - the USB-serial adapter is socat: a pty (WORK/ttyFAKE, the config's serial.device) whose
 *   other side reconnects to each new QEMU's serial socket;
 * - the relay is power-on.sh / power-off.sh: QEMU started (daemonized) with its serial port a
 *   socket server that waits for that connection before the machine runs (so no early line is
 *   lost, as a real adapter that is always connected), and `kill -9` of its pid;
 * - the SD mux is `cp {image} WORK/disk.img`.
 *
 * Scenario a (upgrade, reboot, confirm, power cycle) and `table` on three boot cases (the env
 * written and read from the board's shell, as on a real board) run through it;
 * HIL_FAKE_LAB_SCENARIOS and HIL_CASES name others. Outside CI a machine without QEMU, socat or
 * the image tools skips it; under CI it fails naming what is missing.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatReport } from './lib/report.ts';
import { QEMU_PROFILES } from './lib/qemu.ts';
import { qemuBoardProblem, runHil } from './lib/runner.ts';
import { live } from './lib/scenario.ts';
import { missingTools } from '../test/helpers.ts';

const BOARD = 'qemu-x86_64-grub';
const SCENARIOS = (process.env.HIL_FAKE_LAB_SCENARIOS ?? 'a,table').split(',');
// A try spent to rescue, a missing env, a stale rescue flag cleared by a try: 6 table boots, each
// read back from the shell (about 3 min under TCG, beside CI's other QEMU file, which is longer).
process.env.HIL_CASES ??= 'both-bad-after-last-try,env-file-missing,stale-rescue-flag-cleared-on-try';
const profile = QEMU_PROFILES[BOARD];

process.once('SIGTERM', () => {
  void Promise.allSettled([...[...live.boards].map((b) => b.powerOff()), ...[...live.servers].map((s) => s.stop())]).then(() => process.exit(143));
});

const missing = missingTools(['socat']);
const problem = qemuBoardProblem(BOARD) ?? (missing.length ? `missing: ${missing.join(', ')} (node scripts/test-setup.mjs installs it, as root)` : null);

/** A TOML string (the paths are the test's own temporary ones: no quotes or backslashes in them). */
const q = (s: string) => JSON.stringify(s);

t.test(`a fake lab: ${BOARD} through the serial backend, power and flash as shell commands; scenario ${SCENARIOS.join(', ')}`, { skip: process.env.CI ? false : (problem ?? false), timeout: SCENARIOS.length * 20 * 60_000 }, async (t) => {
  if (problem) return void t.fail(`cannot run in CI: ${problem}`);
  const work = mkdtempSync(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-fake-lab-'));
  const disk = join(work, 'disk.img');
  const sock = join(work, 'serial.sock');
  const pidFile = join(work, 'qemu.pid');
  const tty = join(work, 'ttyFAKE');

  // The relay: QEMU as hil-tests/lib/qemu.ts runs this board, but its serial port a socket server
  // (wait=on: the machine does not run until the lab's adapter is connected).
  const qemuArgs = [...profile.machine, '-display', 'none', '-nodefaults', '-chardev', `socket,id=ser0,path=${sock},server=on,wait=on`, '-serial', 'chardev:ser0', ...profile.disk(disk), ...profile.net, '-daemonize', '-pidfile', pidFile];
  writeFileSync(join(work, 'power-on.sh'), `#!/bin/sh\nexec ${profile.qemu} ${qemuArgs.map((a) => `'${a}'`).join(' ')}\n`);
  // Off: SIGKILL (a cut, not a shutdown), then wait until the process is gone and the disk free.
  writeFileSync(join(work, 'power-off.sh'), `#!/bin/sh\n[ -f '${pidFile}' ] || exit 0\npid=$(cat '${pidFile}')\nkill -9 "$pid" 2>/dev/null\nwhile kill -0 "$pid" 2>/dev/null; do sleep 0.05; done\nrm -f '${pidFile}'\n`);
  for (const f of ['power-on.sh', 'power-off.sh']) chmodSync(join(work, f), 0o755);

  // The USB-serial adapter: a pty that outlives every power cycle; behind it, a loop that
  // connects to the serial socket of whichever QEMU runs now.
  // (A script: socat's address syntax would split a command line at its ':' and ',')
  writeFileSync(join(work, 'adapter.sh'), `#!/bin/sh\nwhile :; do socat - 'UNIX-CONNECT:${sock}' 2>/dev/null; sleep 0.1; done\n`);
  chmodSync(join(work, 'adapter.sh'), 0o755);
  const adapter: ChildProcess = spawn('socat', [`PTY,link=${tty},raw,echo=0`, `EXEC:${join(work, 'adapter.sh')}`], { stdio: 'ignore' });
  t.teardown(() => {
    adapter.kill('SIGKILL');
    spawn('sh', [join(work, 'power-off.sh')], { stdio: 'ignore' });
  });
  await new Promise<void>((resolve, reject) => {
    const started = Date.now();
    const poll = () => (existsSync(tty) ? resolve() : Date.now() - started > 10_000 ? reject(new Error(`socat made no ${tty} within 10 s`)) : setTimeout(poll, 50));
    poll();
  });

  const config = join(work, 'lab.toml');
  writeFileSync(
    config,
    [
      'name = "fake-lab"',
      `profile = ${q(BOARD)}`,
      // QEMU's user network: the board reaches this host's loopback as 10.0.2.2.
      'server_host = "10.0.2.2"',
      'listen_host = "127.0.0.1"',
      `setup = [${profile.setup.map(q).join(', ')}]`,
      '[serial]',
      `device = ${q(tty)}`,
      'baud = 115200',
      '[power]',
      `on = ${q(join(work, 'power-on.sh'))}`,
      `off = ${q(join(work, 'power-off.sh'))}`,
      'settle_ms = 0',
      '[flash]',
      `command = ${q(`cp --sparse=always {image} ${disk}`)}`,
      '',
    ].join('\n'),
  );

  const result = await runHil({ config, scenarios: SCENARIOS, workDir: join(work, 'hil'), log: (line) => t.comment(line) });
  for (const line of formatReport(result.reports, result).split('\n')) t.comment(line);
  t.same(result.reports.map((r) => r.id), SCENARIOS, `scenarios ${SCENARIOS.join(', ')} ran`);
  for (const r of result.reports) {
    t.equal(r.board, 'fake-lab', "on the lab's board, by its config name");
    t.ok(r.ok, `fake-lab ${r.id}: ${r.error?.split('\n')[0] ?? 'passed'}`);
  }
  if (result.reports.every((r) => r.ok)) rmSync(work, { recursive: true, force: true });
  else t.comment(`console log and work dir kept in ${work}`);
});
