/** Health checks with real scripts in a temp root: required failures and timeouts make a boot unhealthy, wanted ones do not. */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HEALTH_DIR, runHealthChecks } from '../../../src/bootcount/health.ts';
import { tempDir, waitUntil } from '../../helpers.ts';

function check(root: string, kind: 'required' | 'wanted', name: string, body: string, mode = 0o755): string {
  const dir = join(root, HEALTH_DIR, `${kind}.d`);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, mode);
  return path;
}

t.test('no health.d at all: healthy, nothing run', async (t) => {
  const report = await runHealthChecks({ root: tempDir(t) });
  t.same(report, { required: [], wanted: [], skipped: [], healthy: true });
});

t.test('passing checks run in name order and keep the tail of their output', async (t) => {
  const root = tempDir(t);
  const log = join(root, 'order');
  check(root, 'required', '20-second', `echo second >> ${log}; exit 0`);
  check(root, 'required', '10-first', `echo first >> ${log}; for i in $(seq 1 50); do echo line $i; done; echo err >&2`);
  check(root, 'wanted', '05-wanted', `echo wanted >> ${log}`);
  const report = await runHealthChecks({ root, tailLines: 3 });
  t.ok(report.healthy);
  t.same(report.required.map((r) => r.name), ['10-first', '20-second']);
  t.same(report.required[0].output_tail, ['line 49', 'line 50', 'err']);
  t.same((await import('node:fs')).readFileSync(log, 'utf8'), 'first\nsecond\nwanted\n', 'required first, each dir sorted');
});

t.test('a failing required check makes the boot unhealthy', async (t) => {
  const root = tempDir(t);
  check(root, 'required', '10-ok', 'exit 0');
  check(root, 'required', '20-disk', 'echo "/data is read-only"; exit 3');
  const report = await runHealthChecks({ root });
  t.notOk(report.healthy);
  const failed = report.required[1];
  t.same([failed.passed, failed.exit_code, failed.timed_out, failed.signal], [false, 3, false, null]);
  t.same(failed.output_tail, ['/data is read-only']);
});

t.test('a required check that hangs is killed at the timeout, with what it started', async (t) => {
  const root = tempDir(t);
  const marker = join(root, 'grandchild-alive');
  // The check starts a grandchild that would write a file later; the group kill must stop it too.
  const pidFile = join(root, 'grandchild.pid');
  check(root, 'required', '10-hang', `echo starting; (sleep 30; touch ${marker}) & echo $! > ${pidFile}; sleep 30`);
  const started = Date.now();
  const report = await runHealthChecks({ root, timeoutMs: 300 });
  const elapsed = Date.now() - started;
  t.notOk(report.healthy);
  const r = report.required[0];
  t.same([r.passed, r.timed_out, r.signal], [false, true, 'SIGKILL']);
  t.same(r.output_tail, ['starting']);
  t.ok(elapsed < 5000, `returned after ${elapsed} ms`);
  // Gone or a zombie waiting to be reaped (dead either way); alive it would sleep on for 30 s.
  const pid = Number(readFileSync(pidFile, 'utf8'));
  const dead = () => {
    try {
      return /^ Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)/, ''));
    } catch {
      return !existsSync(`/proc/${pid}`);
    }
  };
  await waitUntil(dead, 5000, 'the grandchild killed too');
  t.ok(pid > 0 && dead(), `the grandchild (pid ${pid}) was killed too`);
});

t.test('a failing wanted check is reported but the boot stays healthy', async (t) => {
  const root = tempDir(t);
  check(root, 'required', '10-ok', 'exit 0');
  check(root, 'wanted', '10-network', 'echo "no route to update server"; exit 1');
  const report = await runHealthChecks({ root });
  t.ok(report.healthy);
  t.same([report.wanted[0].passed, report.wanted[0].exit_code], [false, 1]);
});

t.test('non-executable files and directories are skipped with a warning', async (t) => {
  const root = tempDir(t);
  const notExec = check(root, 'required', '10-readme', 'exit 1', 0o644);
  mkdirSync(join(root, HEALTH_DIR, 'required.d', '20-dir'));
  check(root, 'required', '30-ok', 'exit 0');
  const warnings: string[] = [];
  const report = await runHealthChecks({ root, onWarning: (m) => warnings.push(m) });
  t.ok(report.healthy);
  t.same(report.required.map((r) => r.name), ['30-ok']);
  t.same(report.skipped.map((s) => s.reason), ['not executable', 'not a regular file']);
  t.equal(report.skipped[0].path, notExec);
  t.equal(warnings.length, 2);
});

t.test('a check that cannot start fails with the reason; symlinks to scripts run', async (t) => {
  const root = tempDir(t);
  const dir = join(root, HEALTH_DIR, 'required.d');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '10-bad-interpreter'), '#!/nonexistent/interpreter\n');
  chmodSync(join(dir, '10-bad-interpreter'), 0o755);
  const target = check(root, 'wanted', 'real-script', 'echo via-link');
  symlinkSync(target, join(dir, '20-link'));
  const report = await runHealthChecks({ root });
  t.notOk(report.healthy);
  t.equal(report.required[0].passed, false);
  t.match(report.required[0].error, /ENOENT/);
  t.same([report.required[1].passed, report.required[1].output_tail], [true, ['via-link']]);
});

t.test('bad options are caller mistakes', async (t) => {
  await t.rejects(runHealthChecks({ timeoutMs: 0 }), RangeError);
  await t.rejects(runHealthChecks({ tailLines: -1 }), RangeError);
});
