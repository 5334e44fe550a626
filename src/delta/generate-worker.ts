/**
 * The delta generator's second thread (worker_threads), the other half of diff-worker.ts's
 * protocol (second-thread.ts). One request at a time:
 * - `{ op: 'diff', old, neu }` → `{ patch, ms }`: bsdiff(old, neu);
 * - `{ op: 'choose', input }` → `{ choice }`: chooseFor(input), a whole file's choice;
 * - a request that throws → `{ error }`.
 *
 * From source the worker runs this module; in the compiled binary it runs the binary's own entry
 * (src/cli/larch.ts), which loads this module and does nothing else in a worker thread.
 * One entry point keeps the binary's code in one copy: a second one (bun build --compile of two
 * entry points) embeds a second bundle (the binary 190 KB larger).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { bsdiff } from './bsdiff.ts';
import { type ChooseInput, chooseFor } from './choose.ts';
import { GENERATE_WORKER_ROLE } from './worker-role.ts';

export type Request = { op: 'diff'; old: Uint8Array; neu: Uint8Array } | { op: 'choose'; input: Omit<ChooseInput, 'plainPatch'> };

function serve(port: NonNullable<typeof parentPort>): void {
  port.on('message', async (request: Request) => {
    try {
      if (request.op === 'diff') {
        const t0 = performance.now();
        const patch = bsdiff(request.old, request.neu);
        // diff and extra are views of one buffer (bsdiff.ts): one transfer moves both, uncopied.
        port.postMessage({ patch, ms: performance.now() - t0 }, [patch.diff.buffer as ArrayBuffer]);
      } else {
        const choice = await chooseFor(request.input);
        port.postMessage({ choice }, choice.chosen ? [choice.chosen.patch.diff.buffer as ArrayBuffer] : []);
      }
    } catch (err) {
      port.postMessage({ error: err instanceof Error ? err.message : String(err) });
    }
  });
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === GENERATE_WORKER_ROLE) serve(parentPort!);
else if (!isMainThread) throw new Error(`a worker thread of larch that is not the delta generator's: workerData ${JSON.stringify(workerData)}`);
