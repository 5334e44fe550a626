/**
 * A second thread of larch (worker_threads) that serves one request at a time: the delta
 * generator's (diff-worker.ts) and the delta apply's (part-thread.ts). Started at the first
 * request, stopped by `close`; a thread that fails or exits rejects the request under way, and
 * the next request starts another.
 *
 * In the compiled binary the thread runs the binary's own entry, the bundle's `import.meta.url`,
 * which serves the role `workerData` names (worker-role.ts). From source it runs the role's
 * module; Node runs the sources through tsx, which a worker does not get from its parent
 * (neither bin/larch.js's register() nor, on Node 20, `--import tsx`), so there the thread
 * registers it before it loads its module.
 */
import { Worker } from 'node:worker_threads';
import type { WorkerRole } from './worker-role.ts';

function startWorker(role: WorkerRole, module: URL, data: Record<string, unknown>): Worker {
  const options = { workerData: { ...data, role } };
  if (import.meta.url.startsWith('file:///$bunfs/')) return new Worker(new URL(import.meta.url), options);
  if ('Bun' in globalThis) return new Worker(module, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(module.href)}); });`, { ...options, eval: true });
}

export class SecondThread<Request, Reply> {
  #worker: Worker | null = null;
  #waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;

  /**
   * @param role what the thread serves; `module` its module (from source)
   * @param name the thread in messages ("the generator's second thread")
   * @param data more `workerData` for the thread, read when it starts
   */
  constructor(
    private readonly role: WorkerRole,
    private readonly module: URL,
    private readonly name: string,
    private readonly data: () => Record<string, unknown> = () => ({}),
  ) {}

  /** Whether a request is under way (one at a time). */
  get busy(): boolean {
    return this.#waiting !== null;
  }

  /** Sends a request; resolves with the thread's reply. @throws Error (a rejection) when the thread cannot start, fails or is stopped, naming why */
  call(request: Request, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.#waiting) throw new Error(`${this.name}: one request at a time`);
    const worker = this.#start();
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      worker.postMessage(request, transfer);
    });
  }

  /** Stops the thread; a request under way is rejected, and a later one starts another thread. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = null;
    if (worker) await worker.terminate();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = startWorker(this.role, this.module, this.data());
    const fail = (err: Error) => {
      if (this.#worker === worker) this.#worker = null;
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting?.reject(err);
    };
    worker.on('message', (reply: Reply) => {
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting?.resolve(reply);
    });
    worker.on('error', (err) => fail(new Error(`${this.name} failed: ${err.message}`)));
    worker.on('exit', (code) => fail(new Error(`${this.name} stopped (exit code ${code})`)));
    this.#worker = worker;
    return worker;
  }
}
