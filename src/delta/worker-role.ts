/**
 * How a thread knows it is the delta generator's second thread: diff-worker.ts starts it with
 * `GENERATE_WORKER_DATA` as its `workerData`. In the compiled binary the worker runs the
 * binary's own entry, which asks `inBunWorker()` and loads the generator's code only then:
 * loaded at every command's start it cost 1.8 MiB of RSS (`larch --version`: 45.0-45.2 MB
 * against 43.1-43.5, page cache dropped before each set of runs).
 */
export const GENERATE_WORKER_DATA = { role: 'larch-generate-worker' } as const;

/** Whether this is a worker thread of the Bun runtime (the binary's only workers are the generator's). */
export function inBunWorker(): boolean {
  return (globalThis as { Bun?: { isMainThread: boolean } }).Bun?.isMainThread === false;
}
