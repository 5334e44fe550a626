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
import type { Patch } from './bsdiff.ts';
import type { ChooseInput, FileChoice } from './choose.ts';
import type { Request } from './generate-worker.ts';
import { SecondThread } from './second-thread.ts';
import { GENERATE_WORKER_ROLE } from './worker-role.ts';

/** A view over its own whole buffer, so that posting it copies only its bytes. */
function alone(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

type Reply = { patch: Patch; ms: number } | { choice: FileChoice } | { error: string };

export class DiffWorker {
  #thread = new SecondThread<Request, Reply>(GENERATE_WORKER_ROLE, new URL('./generate-worker.ts', import.meta.url), "the generator's second thread (generate-worker.ts)");

  /** Whether a request is under way (one at a time). */
  get busy(): boolean {
    return this.#thread.busy;
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
  close(): Promise<void> {
    return this.#thread.close();
  }

  async #call(request: Request): Promise<Reply> {
    const reply = await this.#thread.call(request);
    if ('error' in reply) throw new Error(`the generator's second thread: ${reply.error}`);
    return reply;
  }
}
