/**
 * `LARCH_MEMORY_LOG=FILE`: a diagnostic of where a long command's memory goes. At each named
 * point (a delta apply's parts, its large objects and source views) one JSON line is appended to
 * FILE with the wall clock and the process's resident memory there. `bench/apply-memory.ts
 * --phases` lines its own samples of /proc up with these points, so each stretch of the apply
 * between two points gets its peak: the apply's memory budget (issue 18, 96 MiB) is met or missed
 * by phases, and a change to one phase cannot be judged from the whole run's peak alone.
 * Compiled into every build, as the failpoints are: unset, a point costs one environment read.
 * docs/cli.md (Environment) documents the line.
 */
import { appendFileSync, readFileSync } from 'node:fs';

/** One line of the log (docs/cli.md). Sizes in KiB, as /proc gives them; null where /proc has none. */
export interface MemoryPoint {
  /** Milliseconds since the Unix epoch (Date.now()), so a sampler outside the process can line up with it. */
  time_ms: number;
  pid: number;
  /** Where the process is: the stretch from here to the next point is named by this. */
  at: string;
  rss_kib: number | null;
  rss_anon_kib: number | null;
  rss_file_kib: number | null;
  /** The runtime's own figures (process.memoryUsage()), in KiB. */
  heap_used_kib: number;
  array_buffers_kib: number;
}

/** The /proc/self/status fields a point records, in KiB; null for one the kernel does not give. */
export function statusFields(status: string): Pick<MemoryPoint, 'rss_kib' | 'rss_anon_kib' | 'rss_file_kib'> {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    return m ? Number(m[1]) : null;
  };
  return { rss_kib: field('VmRSS'), rss_anon_kib: field('RssAnon'), rss_file_kib: field('RssFile') };
}

/** Appends a point named `at` to LARCH_MEMORY_LOG when it is set; otherwise does nothing. */
export function memoryPoint(at: string): void {
  const log = process.env.LARCH_MEMORY_LOG;
  if (!log) return;
  let status = '';
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    // Not Linux: the runtime's figures are still worth a line.
  }
  const usage = process.memoryUsage();
  const point: MemoryPoint = {
    time_ms: Date.now(),
    pid: process.pid,
    at,
    ...statusFields(status),
    heap_used_kib: Math.round(usage.heapUsed / 1024),
    array_buffers_kib: Math.round(usage.arrayBuffers / 1024),
  };
  appendFileSync(log, `${JSON.stringify(point)}\n`);
}
