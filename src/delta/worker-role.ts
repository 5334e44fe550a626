/**
 * How a thread knows it is the delta generator's second thread: diff-worker.ts starts it with
 * `GENERATE_WORKER_DATA` as its `workerData`. In the compiled binary the worker runs the
 * binary's own entry, which asks `inBunWorker()` first: it must not load node:worker_threads
 * (+5 MiB of RSS at every command's start, `larch --version`) nor the generator's code.
 */
export const GENERATE_WORKER_DATA = { role: 'larch-generate-worker' } as const;

/** Whether this is a worker thread of the Bun runtime (the binary's only workers are the generator's). */
export function inBunWorker(): boolean {
  return (globalThis as { Bun?: { isMainThread: boolean } }).Bun?.isMainThread === false;
}
