/**
 * A second thread for the delta generator's bsdiff. For a file with compressed streams the
 * generator builds two patches, plain and through the views; the plain one runs here while the
 * generator's own thread builds the other (corpus pair: the kernel's two took 11.9 and 11.8 s one
 * after the other, with the second core idle; bench/README.md, "Issue 18").
 *
 * The worker is started at the first diff and stopped by `close`. It runs the same bsdiff as the
 * generator's thread, so a patch is the same bytes on either.
 */
import { Worker } from 'node:worker_threads';
import type { Patch } from './bsdiff.ts';

/**
 * Where the worker's module is. From source (Node, `bun src/…`) it is beside this file; in the
 * compiled binary every entry point sits under the entry points' common directory (src/) in
 * Bun's embedded file system, and the bundle's `import.meta.url` is the binary's own entry there.
 */
function workerUrl(): URL {
  const compiled = import.meta.url.startsWith('file:///$bunfs/');
  return new URL(compiled ? './delta/bsdiff-worker.ts' : './bsdiff-worker.ts', import.meta.url);
}

/**
 * The worker thread. Node runs the TypeScript sources through tsx, which a worker does not get
 * from its parent (neither bin/larch.js's register() nor, on Node 20, `--import tsx`), so there
 * the worker registers it before it loads its module.
 */
function startWorker(): Worker {
  const url = workerUrl();
  if ('Bun' in globalThis || !url.pathname.endsWith('.ts')) return new Worker(url);
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`, { eval: true });
}

/** A view over its own whole buffer, so that posting it copies only its bytes. */
function alone(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

type Reply = { patch: Patch; ms: number } | { error: string };

export class DiffWorker {
  #worker: Worker | null = null;
  #waiting: { resolve: (r: { patch: Patch; ms: number }) => void; reject: (e: Error) => void } | null = null;

  /**
   * bsdiff(old, neu) on the worker; `ms` is the time it took there.
   * @throws Error (a rejection) when the worker cannot start, fails or is stopped, naming why; one diff at a time
   */
  diff(old: Uint8Array, neu: Uint8Array): Promise<{ patch: Patch; ms: number }> {
    if (this.#waiting) throw new Error('DiffWorker.diff: one diff at a time');
    const message = { old: alone(old), neu: alone(neu) };
    const worker = this.#start();
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      worker.postMessage(message);
    });
  }

  /** Stops the worker; a diff under way is rejected, and a later diff starts another worker. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = null;
    if (worker) await worker.terminate();
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
      if ('error' in reply) waiting?.reject(new Error(`bsdiff on the generator's second thread: ${reply.error}`));
      else waiting?.resolve(reply);
    });
    worker.on('error', (err) => fail(new Error(`the generator's second thread (bsdiff-worker.ts) failed: ${err.message}`)));
    worker.on('exit', (code) => fail(new Error(`the generator's second thread (bsdiff-worker.ts) stopped (exit code ${code})`)));
    this.#worker = worker;
    return worker;
  }
}
