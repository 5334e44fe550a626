/**
 * The delta apply's second thread, the other half of part-thread.ts: one part at a time,
 * `PartRequest` → `{ written }`, or `{ error }` (a LarchError's code, message, hint and data).
 * Failpoints count in the parent's counts (failpoint.ts), so `NAME:N` means the process's Nth hit.
 * Loaded as the thread's module from source, by the binary's own entry in the binary (worker-role.ts).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { shareFailpointHits } from '../failpoint.ts';
import { Repo } from '../store/repo.ts';
import { applyCheckedPart } from './apply.ts';
import { type PartRequest, errorReply } from './part-thread.ts';
import { APPLY_WORKER_ROLE } from './worker-role.ts';

function serve(port: NonNullable<typeof parentPort>, hits: SharedArrayBuffer): void {
  shareFailpointHits(hits);
  port.on('message', async (request: PartRequest) => {
    try {
      const repo = await Repo.open(request.repo);
      const written = await applyCheckedPart(repo, request.where, request.part, request.index, request.count, request.format, true);
      port.postMessage({ written });
    } catch (err) {
      port.postMessage({ error: errorReply(err) });
    }
  });
}

const given = workerData as { role?: string; failpointHits: SharedArrayBuffer } | null;
if (!isMainThread && given?.role === APPLY_WORKER_ROLE) serve(parentPort!, given.failpointHits);
else if (!isMainThread) throw new Error(`a worker thread of larch that is not the delta apply's: workerData ${JSON.stringify(workerData)}`);
