/**
 * Health checks as greenboot runs them: executables in etc/larch/health.d/required.d (any failure
 * makes the boot unhealthy) and wanted.d (failures are reported only), run one at a time in name
 * order, each with a timeout after which its whole process group gets SIGKILL. `larch boot-check`
 * feeds the result to planBootCheck() in state.ts.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { constants } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export const HEALTH_DIR = 'etc/larch/health.d';
export const DEFAULT_HEALTH_TIMEOUT_MS = 60_000;
export const DEFAULT_TAIL_LINES = 20;
/** Output kept per check while it runs; only the tail is reported, so a chatty check cannot fill memory. */
const MAX_KEPT_OUTPUT_BYTES = 64 * 1024;

export type HealthCheckKind = 'required' | 'wanted';

export interface HealthCheckResult {
  readonly name: string;
  readonly path: string;
  readonly kind: HealthCheckKind;
  readonly passed: boolean;
  /** Exit status, or null when it was killed by a signal or could not start. */
  readonly exit_code: number | null;
  readonly signal: string | null;
  readonly timed_out: boolean;
  readonly duration_ms: number;
  /** The last lines of stdout and stderr, interleaved as they arrived. */
  readonly output_tail: readonly string[];
  /** Why it could not start (e.g. a bad interpreter line), when that is why it failed. */
  readonly error?: string;
}

export interface HealthReport {
  readonly required: readonly HealthCheckResult[];
  readonly wanted: readonly HealthCheckResult[];
  /** Entries that were not run: not executable, or not a file. */
  readonly skipped: readonly { readonly path: string; readonly reason: string }[];
  /** Every required check passed (wanted checks never decide this). */
  readonly healthy: boolean;
}

export interface HealthOptions {
  /** The root the health.d directories live under; tests pass a temp dir. Default '/'. */
  readonly root?: string;
  readonly timeoutMs?: number;
  readonly tailLines?: number;
  /** Environment for the checks; default the caller's. */
  readonly env?: NodeJS.ProcessEnv;
  /** Told about skipped entries as they are found (the CLI prints them as warnings). */
  readonly onWarning?: (message: string) => void;
}

/**
 * Runs every required and wanted check and reports. Missing directories mean no checks (healthy).
 * Never throws for a failing check; that is what the report is for.
 * @throws RangeError when timeoutMs or tailLines is not a positive integer (a caller mistake)
 * @example (await runHealthChecks({ root: '/tmp/sysroot' })).healthy
 */
export async function runHealthChecks(options: HealthOptions = {}): Promise<HealthReport> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  const tailLines = options.tailLines ?? DEFAULT_TAIL_LINES;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive integer, got ${timeoutMs}`);
  if (!Number.isInteger(tailLines) || tailLines <= 0) throw new RangeError(`tailLines must be a positive integer, got ${tailLines}`);
  const root = options.root ?? '/';
  const skipped: { path: string; reason: string }[] = [];
  const results: Record<HealthCheckKind, HealthCheckResult[]> = { required: [], wanted: [] };
  for (const kind of ['required', 'wanted'] as const) {
    const dir = join(root, HEALTH_DIR, `${kind}.d`);
    for (const entry of await listChecks(dir)) {
      const path = join(dir, entry);
      const reason = await whyNotRunnable(path);
      if (reason) {
        skipped.push({ path, reason });
        options.onWarning?.(`health check '${path}' skipped: ${reason}`);
        continue;
      }
      results[kind].push(await runOne(path, entry, kind, { timeoutMs, tailLines, env: options.env ?? process.env }));
    }
  }
  return { required: results.required, wanted: results.wanted, skipped, healthy: results.required.every((r) => r.passed) };
}

/** Names in byte order (as greenboot's `ls` in the C locale), or none when the directory is missing. */
async function listChecks(dir: string): Promise<string[]> {
  try {
    const names = await readdir(dir);
    return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
}

async function whyNotRunnable(path: string): Promise<string | null> {
  let st;
  try {
    st = await stat(path); // follows symlinks, as exec does
  } catch (err) {
    return `cannot stat: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  if (!st.isFile()) return 'not a regular file';
  if ((st.mode & (constants.S_IXUSR | constants.S_IXGRP | constants.S_IXOTH)) === 0) return 'not executable';
  return null;
}

function runOne(path: string, name: string, kind: HealthCheckKind, opts: { timeoutMs: number; tailLines: number; env: NodeJS.ProcessEnv }): Promise<HealthCheckResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let kept = '';
    let timed_out = false;
    let spawnError: string | undefined;
    const keep = (chunk: Buffer) => {
      kept += chunk.toString('utf8');
      if (kept.length > MAX_KEPT_OUTPUT_BYTES) kept = kept.slice(-MAX_KEPT_OUTPUT_BYTES);
    };
    // Its own process group, so a timeout kills whatever the check started too.
    let child: ChildProcessByStdio<null, Readable, Readable>;
    try {
      child = spawn(path, [], { cwd: '/', env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      // Bun throws where Node emits 'error': a check file that is no program (ENOEXEC, e.g. all
      // zeros after a power cut, found by test/integration/powerloss.test.ts) fails the check;
      // it must not end boot-check with an internal error.
      const error = (err as Error).message;
      return resolve({ name, path, kind, passed: false, exit_code: null, signal: null, timed_out: false, duration_ms: Date.now() - started, output_tail: [], error });
    }
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      timed_out = true;
      killGroup(child.pid);
    }, opts.timeoutMs);
    child.on('error', (err) => {
      spawnError = err.message;
    });
    // 'close' waits for the pipes; a grandchild that escaped the group could hold them open, so
    // after exit give the output a moment and then stop reading.
    let settled = false;
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (timed_out || signal) killGroup(child.pid);
      child.stdout.destroy();
      child.stderr.destroy();
      const lines = kept.split('\n');
      if (lines.at(-1) === '') lines.pop();
      resolve({
        name,
        path,
        kind,
        passed: !timed_out && exitCode === 0 && spawnError === undefined,
        exit_code: spawnError ? null : exitCode,
        signal,
        timed_out,
        duration_ms: Date.now() - started,
        output_tail: lines.slice(-opts.tailLines),
        ...(spawnError ? { error: spawnError } : {}),
      });
    };
    child.on('close', finish);
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 200).unref());
    child.on('error', () => finish(null, null));
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
