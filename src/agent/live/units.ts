/**
 * Which services a live apply restarts, and restarting them (docs/design/issue-20-device-verbs.md
 * §6.2 "Units"). A service is restarted when its own definition changed, or when one of its
 * processes runs or holds a file the update changes: only then does the new tree reach it. A
 * process that belongs to no service is never restarted (nothing here kills processes); the
 * caller reports it.
 *
 * Two init systems: systemd, which knows each process's unit from its cgroup and restarts through
 * `systemctl`, and sysvinit, where a service is an `/etc/init.d/NAME` script and its process is
 * known only by the start-stop-daemon convention `/run/NAME.pid`.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { spawnFailure, stderrTail } from '../../_run.ts';
import type { ProcessUse } from './procs.ts';

export type InitSystem = 'systemd' | 'sysvinit';

export interface UnitToRestart {
  /** systemd: `NAME.service`; sysvinit: the script's name under /etc/init.d. */
  name: string;
  init: InitSystem;
  /** In this order: 'unit-file' (its definition changed), 'process' (a process of it uses a changed file). */
  why: ('unit-file' | 'process')[];
  /** The changed files that made it so, sorted. */
  files: string[];
}

/** systemd when ROOT/run/systemd/system exists, else sysvinit (the test of systemd's own sd_booted()). */
export function initSystemOf(root: string): InitSystem {
  try {
    return statSync(join(root, 'run/systemd/system')).isDirectory() ? 'systemd' : 'sysvinit';
  } catch {
    return 'sysvinit';
  }
}

/** Where the system manager reads unit files from, as the running system names them. */
const UNIT_DIRS = ['/usr/lib/systemd/system/', '/etc/systemd/system/'];

/**
 * The service whose definition a changed path is: `DIR/NAME.service` or a drop-in
 * `DIR/NAME.service.d/...`. Not a template (`NAME@.service`): it is no unit systemctl can restart,
 * and its instances are restarted through their processes. Not `*.wants/` links: enabling a
 * unit changes nothing in what runs.
 */
export function serviceOfUnitFile(path: string): string | null {
  const dir = UNIT_DIRS.find((d) => path.startsWith(d));
  if (dir === undefined) return null;
  const [first, ...rest] = path.slice(dir.length).split('/');
  const name = rest.length === 0 ? first : first.endsWith('.service.d') ? first.slice(0, -'.d'.length) : null;
  return name !== null && /^[^@]+\.service$/.test(name) ? name : null;
}

/** The sysvinit service whose script a changed path is (`/etc/init.d/NAME`), or null. */
function scriptOfInitFile(path: string): string | null {
  const m = /^\/etc\/init\.d\/([^/]+)$/.exec(path);
  return m && m[1] !== '.' && m[1] !== '..' ? m[1] : null;
}

/**
 * The sysvinit services of the pids: NAME when ROOT/etc/init.d/NAME exists and ROOT/run/NAME.pid
 * holds the pid (the start-stop-daemon convention; sysvinit has no cgroups to tell). A pid file
 * names the service's main process only: a child it forked holding a changed file is in no
 * service here, and reported as such.
 */
export async function sysvinitServicesOf(pids: number[], root: string): Promise<Map<number, string>> {
  const wanted = new Set(pids);
  const byPid = new Map<number, string>();
  if (wanted.size === 0) return byPid;
  const scripts = await readdir(join(root, 'etc/init.d')).catch(() => [] as string[]);
  for (const name of scripts.sort()) {
    const text = await readFile(join(root, 'run', `${name}.pid`), 'utf8').catch(() => null);
    const pid = text === null ? NaN : Number(text.trim().split('\n')[0]);
    if (Number.isSafeInteger(pid) && wanted.has(pid) && !byPid.has(pid)) byPid.set(pid, name);
  }
  return byPid;
}

/**
 * The units a live apply restarts: with systemd, a unit whose unit file or drop-in changed (a changed path under
 * /usr/lib/systemd/system/ or /etc/systemd/system/ named NAME.service or inside NAME.service.d/) — why 'unit-file' —,
 * and the unit of each process that uses a changed file (ProcessUse.unit) — why 'process'. With sysvinit: /etc/init.d/NAME
 * whose script changed ('unit-file'), and NAME whose pid file ROOT/run/NAME.pid holds the pid of a process that uses a
 * changed file ('process'); `files` lists the changed files that made it so. Processes in no unit are never restarted
 * (the caller reports them). Sorted by name; each unit once.
 *
 * `changed` are absolute paths as the running system names them ('/usr/...', '/etc/...').
 */
export async function unitsToRestart(changed: string[], uses: ProcessUse[], opts: { root: string; init: InitSystem }): Promise<UnitToRestart[]> {
  const units = new Map<string, { unitFile: boolean; process: boolean; files: Set<string> }>();
  const note = (name: string, why: 'unit-file' | 'process', files: string[]) => {
    const u = units.get(name) ?? { unitFile: false, process: false, files: new Set<string>() };
    if (why === 'unit-file') u.unitFile = true;
    else u.process = true;
    for (const f of files) u.files.add(f);
    units.set(name, u);
  };

  for (const path of changed) {
    const name = opts.init === 'systemd' ? serviceOfUnitFile(path) : scriptOfInitFile(path);
    if (name !== null) note(name, 'unit-file', [path]);
  }
  // Under sysvinit a cgroup names no service even when one is mounted: the pid files do.
  const sysvinit = opts.init === 'sysvinit' ? await sysvinitServicesOf(uses.map((u) => u.pid), opts.root) : null;
  for (const use of uses) {
    const name = sysvinit ? (sysvinit.get(use.pid) ?? null) : use.unit;
    if (name !== null) note(name, 'process', use.files.map((f) => f.path));
  }

  return [...units.keys()].sort().map((name) => {
    const u = units.get(name)!;
    const why: UnitToRestart['why'] = [];
    if (u.unitFile) why.push('unit-file');
    if (u.process) why.push('process');
    return { name, init: opts.init, why, files: [...u.files].sort() };
  });
}

/** How a missing systemctl is explained: /run/systemd/system said systemd runs, so PATH is the likely cause. */
const SYSTEMCTL_CONTEXT = { context: 'restarting services', purpose: 'on a systemd system (/run/systemd/system exists)', hint: 'larch looks systemctl up on PATH' };

interface Ran {
  exit_code: number;
  stderr: string;
}

/**
 * Runs a command to its exit; the spawn error (not started) is returned for the caller to judge.
 * It waits for the exit, not for the end of stderr: a restarted daemon that inherits the pipe
 * would hold it open for as long as it runs. stdout is dropped (an init script's progress text).
 */
function runToExit(cmd: string, args: string[], env: NodeJS.ProcessEnv, detached: boolean): Promise<Ran | { notStarted: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, detached, stdio: ['ignore', 'ignore', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => chunks.push(d));
    child.on('error', (err: NodeJS.ErrnoException) => resolve({ notStarted: err }));
    child.on('exit', (code, signal) => {
      // Output written just before the exit may still be in the pipe: read on until its end, or
      // briefly when a daemon the command started keeps the pipe open.
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        child.stderr.destroy();
        // Killed by a signal: the shell's 128+N, so the report has one number either way.
        const exitCode = code ?? 128 + (signal ? osConstants.signals[signal] : 0);
        resolve({ exit_code: exitCode, stderr: stderrTail(Buffer.concat(chunks).toString('utf8')) });
      };
      const timer = setTimeout(done, 500);
      if (child.stderr.readableEnded) done();
      else child.stderr.once('end', done);
    });
  });
}

/**
 * Restarts them in order: systemd: `systemctl daemon-reload` first when any unit's why includes 'unit-file', then
 * `systemctl restart NAME` for each; sysvinit: `ROOT/etc/init.d/NAME restart`. A failing restart does not stop the
 * others: each gets its exit code (and the last lines of its stderr). The systemctl binary is looked up on PATH (tests put
 * a fake one first on PATH). @throws TOOL_MISSING when systemctl is not there on a systemd system
 *
 * When daemon-reload fails, the units restarted for their unit file are not restarted: systemd
 * would run them from the definition it still has, and report success for a change it never
 * read. They get daemon-reload's exit code and stderr instead; the other units restart as usual.
 * A sysvinit script that cannot be started gets the shell's codes: 127 missing, 126 not executable.
 */
export async function restartUnits(units: UnitToRestart[], opts: { root: string; init: InitSystem; env?: NodeJS.ProcessEnv }): Promise<{ name: string; exit_code: number; stderr: string }[]> {
  const env = opts.env ?? process.env;
  const results: { name: string; exit_code: number; stderr: string }[] = [];
  if (units.length === 0) return results;

  if (opts.init === 'systemd') {
    // spawn looks the command up on env.PATH when env is given: the test's fake systemctl.
    const systemctl = async (args: string[]): Promise<Ran> => {
      const r = await runToExit('systemctl', args, env, false);
      if ('notStarted' in r) throw spawnFailure('systemctl', r.notStarted, SYSTEMCTL_CONTEXT);
      return r;
    };
    let reloadFailed: Ran | null = null;
    if (units.some((u) => u.why.includes('unit-file'))) {
      const r = await systemctl(['daemon-reload']);
      if (r.exit_code !== 0) reloadFailed = { exit_code: r.exit_code, stderr: `systemctl daemon-reload failed${r.stderr ? `: ${r.stderr}` : ''}` };
    }
    for (const u of units) {
      if (reloadFailed && u.why.includes('unit-file')) {
        results.push({ name: u.name, ...reloadFailed });
        continue;
      }
      results.push({ name: u.name, ...(await systemctl(['restart', u.name])) });
    }
    return results;
  }

  for (const u of units) {
    const script = join(opts.root, 'etc/init.d', u.name);
    // In a session of its own, as init would run it: the daemon it starts is not tied to the
    // terminal larch runs in (a Ctrl-C there must not reach it).
    const r = await runToExit(script, ['restart'], env, true);
    if ('notStarted' in r) {
      results.push({ name: u.name, exit_code: r.notStarted.code === 'ENOENT' ? 127 : 126, stderr: `cannot run ${script}: ${r.notStarted.message}` });
    } else {
      results.push({ name: u.name, ...r });
    }
  }
  return results;
}
