/**
 * The delta generator's second thread. Until the first part closes, the generator's own loop is
 * the only work, and on the corpus pair the kernel was most of it (two bsdiffs of 8.8-11.9 and
 * 11.8 s, one after the other, with the second core idle; bench/README.md, "Issue 18"). So:
 * - `diff`: the plain patch of a file with compressed streams, while the generator's thread
 *   builds its view patch;
 * - `choose`: a whole large file's choice (choose.ts), while the generator's loop goes on with
 *   the files after it.
 *
 * The worker is started at the first request and stopped by `close`. It runs the same code as the
 * generator's thread, so a patch or a choice is the same bytes on either.
 */
import { Worker } from 'node:worker_threads';
import type { Patch } from './bsdiff.ts';
import type { ChooseInput, FileChoice } from './choose.ts';
import type { Request } from './generate-worker.ts';
import { GENERATE_WORKER_DATA } from './worker-role.ts';

/**
 * The worker thread. In the compiled binary it runs the binary's own entry, the bundle's
 * `import.meta.url`, which serves requests when `workerData` says so (generate-worker.ts). From
 * source it runs generate-worker.ts; Node runs the sources through tsx, which a worker does not
 * get from its parent (neither bin/larch.js's register() nor, on Node 20, `--import tsx`), so
 * there the worker registers it before it loads its module.
 */
function startWorker(): Worker {
  const options = { workerData: GENERATE_WORKER_DATA };
  if (import.meta.url.startsWith('file:///$bunfs/')) return new Worker(new URL(import.meta.url), options);
  const url = new URL('./generate-worker.ts', import.meta.url);
  if ('Bun' in globalThis) return new Worker(url, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`, { ...options, eval: true });
}

/** A view over its own whole buffer, so that posting it copies only its bytes. */
function alone(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

type Reply = { patch: Patch; ms: number } | { choice: FileChoice } | { error: string };

export class DiffWorker {
  #worker: Worker | null = null;
  #waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;

  /** Whether a request is under way (one at a time). */
  get busy(): boolean {
    return this.#waiting !== null;
  }

  /**
   * bsdiff(old, neu) on the worker; `ms` is the time it took there.
   * @throws Error (a rejection) when the worker cannot start, fails or is stopped, naming why; one request at a time
   */
  async diff(old: Uint8Array, neu: Uint8Array): Promise<{ patch: Patch; ms: number }> {
    return (await this.#call({ op: 'diff', old: alone(old), neu: alone(neu) })) as { patch: Patch; ms: number };
  }

  /**
   * chooseFor(input) on the worker (the plain patch built there too).
   * @throws as `diff`
   */
  async choose(input: Omit<ChooseInput, 'plainPatch'>): Promise<FileChoice> {
    const sent = { ...input, old: alone(input.old), content: alone(input.content) };
    return ((await this.#call({ op: 'choose', input: sent })) as { choice: FileChoice }).choice;
  }

  /** Stops the worker; a request under way is rejected, and a later one starts another worker. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = null;
    if (worker) await worker.terminate();
  }

  #call(request: Request): Promise<Reply> {
    if (this.#waiting) throw new Error('DiffWorker: one request at a time');
    const worker = this.#start();
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      worker.postMessage(request);
    });
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = startWorker();
    const fail = (err: Error) => {
      if (this.#worker === worker) this.#worker = null;
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting?.reject(err);
    };
    worker.on('message', (reply: Reply) => {
      const waiting = this.#waiting;
      this.#waiting = null;
      if ('error' in reply) waiting?.reject(new Error(`the generator's second thread: ${reply.error}`));
      else waiting?.resolve(reply);
    });
    worker.on('error', (err) => fail(new Error(`the generator's second thread (generate-worker.ts) failed: ${err.message}`)));
    worker.on('exit', (code) => fail(new Error(`the generator's second thread (generate-worker.ts) stopped (exit code ${code})`)));
    this.#worker = worker;
    return worker;
  }
}
