/**
 * How a thread knows which of larch's second threads it is: second-thread.ts starts each with its
 * role in `workerData`. In the compiled binary every thread runs the binary's own entry, which
 * asks `inBunWorker()` and loads the role's code only then (`serveWorkerRole`): the generator's
 * code loaded at every command's start cost 1.8 MiB of RSS (`larch --version`: 45.0-45.2 MB
 * against 43.1-43.5, page cache dropped before each set of runs).
 */
export const GENERATE_WORKER_ROLE = 'larch-generate-worker';
export const APPLY_WORKER_ROLE = 'larch-apply-worker';
export type WorkerRole = typeof GENERATE_WORKER_ROLE | typeof APPLY_WORKER_ROLE;

/** Whether this is a worker thread of the Bun runtime (the binary's only workers are larch's second threads). */
export function inBunWorker(): boolean {
  return (globalThis as { Bun?: { isMainThread: boolean } }).Bun?.isMainThread === false;
}

/** On a worker thread of the binary: loads the module that serves its role (each checks the role itself). */
export async function serveWorkerRole(): Promise<void> {
  const { workerData } = await import('node:worker_threads');
  if ((workerData as { role?: string } | null)?.role === APPLY_WORKER_ROLE) await import('./apply-worker.ts');
  else await import('./generate-worker.ts');
}
