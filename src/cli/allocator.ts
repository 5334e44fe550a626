/**
 * The allocator option the device binary's update commands run with. Bun's allocator (mimalloc)
 * keeps the pages the collector has freed for 100 ms (its `purge_delay`) before it gives them back
 * to the system. An apply churns through thousands of short-lived buffers (small .gz views, brotli
 * output chunks), and pages kept that long raise its peak. Measured on the corpus pair
 * (bench/apply-memory.ts, bench/README.md): peak RSS 130-133 MiB at 100 ms, 125 MiB at 30 ms in
 * the same apply time, 121 MiB at 0 ms but 1.2 s slower (every free returned at once). 30 ms.
 *
 * mimalloc reads its options from the environment once, as the process starts, so the compiled
 * binary re-executes itself (execve: same pid, same arguments, nothing run or written before) with
 * the option set, for the commands that apply updates or stay resident. Everything else starts as
 * it always did. An operator's own MIMALLOC_PURGE_DELAY is kept; Node and `bun src/...` are left
 * alone (neither is the device binary).
 */

/** The option, as it is set in the environment of the re-executed process. */
export const ALLOCATOR_ENV = { MIMALLOC_PURGE_DELAY: '30' } as const;

/** Commands that apply an update or stay resident (as main() names them: one or two words). */
const COMMANDS = new Set(['delta apply', 'upgrade', 'deploy', 'rebase', 'install', 'uninstall', 'daemon']);

/** Whether `argv` (the command line after the program) should run with ALLOCATOR_ENV set. Pure. */
export function wantsAllocatorOption(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): boolean {
  if (env.MIMALLOC_PURGE_DELAY !== undefined) return false;
  return COMMANDS.has(`${argv[0]} ${argv[1]}`) || COMMANDS.has(argv[0] ?? '');
}

/**
 * Re-executes the compiled binary with ALLOCATOR_ENV when wantsAllocatorOption says so; returns
 * (and the command runs as it is) when it does not, or when the exec fails.
 */
export function runWithAllocatorOption(): void {
  const proc = process as NodeJS.Process & { execve?: (file: string, args: string[], env: Record<string, string | undefined>) => never };
  // The compiled binary's script is in Bun's embedded file system; Node has no execve before 23.
  const compiled = typeof proc.execve === 'function' && (process.argv[1] ?? '').startsWith('/$bunfs/');
  if (!compiled || !wantsAllocatorOption(process.argv.slice(2), process.env)) return;
  try {
    proc.execve!(process.execPath, [process.execPath, ...process.argv.slice(2)], { ...process.env, ...ALLOCATOR_ENV });
  } catch {
    // Not re-executed: the command runs with the allocator's defaults.
  }
}
