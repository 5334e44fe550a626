/**
 * The runtime options the device binary's update commands run with. Each lowers an apply's
 * peak memory at little or no cost in time (corpus pair, bench/apply-memory.ts; figures in
 * docs/architecture.md, "Decisions"):
 * - `MIMALLOC_PURGE_DELAY=30`. Bun's allocator (mimalloc) keeps the pages the collector has freed
 *   for 100 ms (its `purge_delay`) before it gives them back to the system. An apply churns through
 *   thousands of short-lived buffers (small .gz views, brotli output chunks), and pages kept that
 *   long raise its peak; 0 ms would return every free at once, and costs time.
 * - `BUN_JSC_maximumFTLCandidateBytecodeCost=2000` (JavaScriptCore's default: 60000). JSC's top
 *   tier (FTL) compiles a hot function again, through B3, on a compiler thread, and what that
 *   compilation allocates for a large function stays resident. With 2000, the small hot loops
 *   (the LZ4 match search, the bsdiff adders, the op decoder) are still compiled by FTL; the large
 *   ones (the deflate puff and fold, the part loop) stay in the tier below (DFG). The LZ4HC match
 *   search (`widerMatch`, bytecode cost 1,908 in the bundle) is close to the limit, and over it a
 *   kernel's fold takes ~50% longer: test/integration/delta-apply-tiers.test.ts asserts from JSC's
 *   own report that the binary's apply compiles it by FTL.
 * - `MIMALLOC_PURGE_HOLES_MIN_INTERVAL=0` (Bun's mimalloc; default 100 ms). Each time a thread
 *   is about to wait, the allocator gives back the free OS pages inside pages still in use (the
 *   "holes" a long-lived buffer leaves pinned), at most once per this interval. An apply waits at
 *   every read and write, and its buffers come and go between two waits.
 * - `BUN_JSC_forceRAMSize=67108864` (64 MiB; APPLY_ENV, not for `install` and `uninstall`). JSC
 *   sizes its garbage collector's heap from the machine's memory (Heap.cpp): on a machine of 16 GB
 *   or more it lets the heap grow the most between collections, on a small device less. Sized for
 *   64 MiB, it collects as often on a vendor's build machine as on a device, and more often than
 *   on a 1 GiB one: an apply's short-lived garbage (the decoded op records, the pieces a patch
 *   hands on) is not left to pile up.
 * - `BUN_JSC_thresholdForJITAfterWarmUp=5000`, `BUN_JSC_thresholdForJITSoon=1000` (JSC's
 *   defaults: 500 and 100). A function runs ten times as long in the interpreter before its
 *   first compilation (baseline JIT), so the many functions an apply runs a few hundred times are
 *   never compiled, and no code or profiling data is kept for them. The hot loops reach the
 *   threshold within milliseconds and are compiled as before.
 *
 * All are read from the environment once, as the process starts, so the compiled binary
 * re-executes itself (execve: same pid, same arguments, nothing run or written before) with the
 * options set, for the commands that apply updates or stay resident. Everything else starts as it
 * always did. An option the operator set is kept as set; Node and `bun src/...` are left alone
 * (neither is the device binary).
 */

/** The options, as they are set in the environment of the re-executed process. */
export const RUNTIME_ENV = {
  MIMALLOC_PURGE_DELAY: '30',
  MIMALLOC_PURGE_HOLES_MIN_INTERVAL: '0',
  BUN_JSC_maximumFTLCandidateBytecodeCost: '2000',
  BUN_JSC_thresholdForJITAfterWarmUp: '5000',
  BUN_JSC_thresholdForJITSoon: '1000',
} as const;

/**
 * The collector sized for 64 MiB, for the commands whose work is an apply (OPTIONS_OF): their
 * live heap stays small (the apply streams), so collecting sooner costs them little. `install` and
 * `uninstall` compose and commit a whole tree, whose live heap is large: there a collection after
 * every ~25% of growth made the layering test's larch processes use twice the CPU time.
 */
export const APPLY_ENV = { BUN_JSC_forceRAMSize: String(64 * 1024 * 1024) } as const;

/**
 * The options of each command that applies an update or stays resident (as main() names them:
 * one or two words): those whose work is an apply get APPLY_ENV too.
 */
const APPLY_OPTIONS = { ...RUNTIME_ENV, ...APPLY_ENV };
const OPTIONS_OF: ReadonlyMap<string, Readonly<Record<string, string>>> = new Map([
  ...['delta apply', 'upgrade', 'deploy', 'rebase', 'daemon'].map((command) => [command, APPLY_OPTIONS] as const),
  ...['install', 'uninstall'].map((command) => [command, RUNTIME_ENV] as const),
]);

/**
 * The options `argv` (the command line after the program) should add to `env`: those of its
 * command's (OPTIONS_OF) that `env` does not set; empty for every other command. Pure.
 */
export function missingRuntimeOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const wanted = OPTIONS_OF.get(`${argv[0]} ${argv[1]}`) ?? OPTIONS_OF.get(argv[0] ?? '') ?? {};
  return Object.fromEntries(Object.entries(wanted).filter(([name]) => env[name] === undefined));
}

/**
 * Re-executes the compiled binary with the missing options when there are any; returns (and the
 * command runs as it is) when there are none, or when the exec fails.
 */
export function runWithRuntimeOptions(): void {
  const proc = process as NodeJS.Process & { execve?: (file: string, args: string[], env: Record<string, string | undefined>) => never };
  // The compiled binary's script is in Bun's embedded file system; Node has no execve before 23.
  const compiled = typeof proc.execve === 'function' && (process.argv[1] ?? '').startsWith('/$bunfs/');
  if (!compiled) return;
  const missing = missingRuntimeOptions(process.argv.slice(2), process.env);
  if (Object.keys(missing).length === 0) return;
  try {
    proc.execve!(process.execPath, [process.execPath, ...process.argv.slice(2)], { ...process.env, ...missing });
  } catch {
    // Not re-executed: the command runs with the runtime's defaults.
  }
}
