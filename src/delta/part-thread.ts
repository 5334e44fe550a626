/**
 * The delta apply's second thread: applies whole parts (apply-worker.ts serves it) while the
 * apply's own thread goes on with the others. Parts are independent (their patch sources are
 * objects of the base commit, already in the repo), and each is its own transaction, so a part
 * stored by either thread is a part a resumed apply skips.
 */
import type { ErrorCode } from '../errors.ts';
import { LarchError } from '../errors.ts';
import { failpointHits } from '../failpoint.ts';
import type { DeltaFormatVersion, PartInfo } from './format.ts';
import { SecondThread } from './second-thread.ts';
import { APPLY_WORKER_ROLE } from './worker-role.ts';

export interface PartRequest {
  repo: string;
  where: { path: string; offset: number };
  part: PartInfo;
  index: number;
  count: number;
  format: DeltaFormatVersion;
}

/** A LarchError as it crosses threads (`code` absent: any other error, a bug). */
export interface ErrorReply {
  code?: ErrorCode;
  message: string;
  hint?: string;
  data?: Record<string, unknown>;
}

export type PartReply = { written: number } | { error: ErrorReply };

export function errorReply(err: unknown): ErrorReply {
  if (err instanceof LarchError) return { code: err.code, message: err.message, hint: err.hint, data: err.data };
  return { message: err instanceof Error ? (err.stack ?? err.message) : String(err) };
}

export class PartThread {
  #thread = new SecondThread<PartRequest, PartReply>(APPLY_WORKER_ROLE, new URL('./apply-worker.ts', import.meta.url), "the delta apply's second thread (apply-worker.ts)", () => ({ failpointHits: failpointHits() }));

  /** Checks and applies one part there; the number of objects written. @throws as the apply's own thread would (LarchError), or Error naming the thread */
  async apply(request: PartRequest): Promise<number> {
    const reply = await this.#thread.call(request);
    if ('written' in reply) return reply.written;
    const e = reply.error;
    if (e.code !== undefined) throw new LarchError(e.code, e.message, { hint: e.hint, data: e.data ?? {} });
    throw new Error(`the delta apply's second thread: ${e.message}`);
  }

  close(): Promise<void> {
    return this.#thread.close();
  }
}
