/**
 * Entry of the delta generator's second thread (worker_threads): the bsdiff of each pair it is
 * sent, one at a time. A separate entry point of the compiled binary (scripts/build.mjs); the
 * generator talks to it through diff-worker.ts, which is the protocol's other half:
 * in `{ old, neu }`, out `{ patch, ms }` or `{ error }`.
 */
import { parentPort } from 'node:worker_threads';
import { bsdiff } from './bsdiff.ts';

const port = parentPort;
if (port === null) throw new Error('bsdiff-worker.ts runs as a worker thread of the delta generator, not on its own');
port.on('message', ({ old, neu }: { old: Uint8Array; neu: Uint8Array }) => {
  try {
    const t0 = performance.now();
    const patch = bsdiff(old, neu);
    // diff and extra are views of one buffer (bsdiff.ts): one transfer moves both, uncopied.
    port.postMessage({ patch, ms: performance.now() - t0 }, [patch.diff.buffer as ArrayBuffer]);
  } catch (err) {
    port.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
});
