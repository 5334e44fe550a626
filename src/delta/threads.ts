/**
 * How many threads a delta apply uses, and which part goes to the second (pure; apply.ts does
 * the rest). One by default: the second thread costs ~48 MiB more at the peak for ~31% less time
 * on the corpus pair (bench/README.md, "the apply's second thread"), and devices budget memory
 * first.
 */
import { LarchError } from '../errors.ts';
import type { PartInfo } from './format.ts';

/** One thread unless LARCH_APPLY_THREADS says 2. @throws USAGE for a value other than 1 or 2 */
export function defaultApplyThreads(env: NodeJS.ProcessEnv = process.env): number {
  const set = env.LARCH_APPLY_THREADS;
  if (set === undefined || set === '') return 1;
  return applyThreads(set, 'LARCH_APPLY_THREADS');
}

/** A thread count as `--threads` and LARCH_APPLY_THREADS take it: 1 or 2. @throws USAGE */
export function applyThreads(text: string, name: string): number {
  if (text === '1' || text === '2') return Number(text);
  throw new LarchError('USAGE', `${name} must be 1 or 2, not '${text}'`, { hint: '1 applies the parts one after another (the least memory), 2 applies the part with the largest source view on a second thread', data: { option: name, value: text } });
}

/**
 * The part the second thread takes, or null: the one that expands the largest source view on disk
 * (a kernel's: its expansion, patch and LZ4 fold are the apply's longest part), when the first
 * thread has other parts to go on with meanwhile.
 */
export function secondThreadPart(parts: readonly PartInfo[], todo: readonly number[], threads: number): number | null {
  if (threads < 2 || todo.length < 2) return null;
  let best: number | null = null;
  for (const i of todo) if ((parts[i].scratch ?? 0) > (best === null ? 0 : parts[best].scratch ?? 0)) best = i;
  return best;
}
