/**
 * How the delta generator sends one new regular file that has a source: literally, as a plain
 * bsdiff patch, or (format 2 and later) as a patch between the two files' views. Each way is
 * compressed alone at brotli quality 5 and the smallest is taken. Bytes in, a choice out: the
 * generator runs it on its own thread, and on its second thread for its largest files
 * (generate-worker.ts), with the same result.
 */
import { type Patch, bsdiff, bspatch } from './bsdiff.ts';
import { compressedSize } from './compress.ts';
import { type ControlRecord, MAX_OPS_PER_RECORD, encodeRecord } from './format.ts';
import type { ObjectId } from '../store/object.ts';
import type { StreamCodec } from './view/segment.ts';
import { type FallbackReason, describe, expandView, foldView, hasStreams } from './view/view.ts';

/** Files larger than this are sent literally: bsdiff needs ~6x the old size in memory (suffix array). */
export const MAX_BSDIFF_BYTES = 128 * 1024 * 1024;

/** A way to send a patched file, as the part will hold it: its control records, diff and extra bytes. */
export interface Candidate {
  record: ControlRecord;
  control: Uint8Array[];
  patch: Patch;
  /** Bytes of the source's view the device writes to R/tmp/ (0 for a plain patch). */
  scratch: number;
}

export interface StreamNote {
  codec: StreamCodec;
  reason: FallbackReason | null;
}

/** What was chosen for a file, and the figures the generator reports about it. */
export interface FileChoice {
  /** null: send the file literally. */
  chosen: Candidate | null;
  /** The smaller of the literal's and the plain patch's estimates: what it would cost without views. */
  estimateBefore: number;
  estimateAfter: number;
  /** The file's compressed streams, and for each why it was not used (null: it was). */
  streams: StreamNote[];
  /** For LARCH_DELTA_REPORT: the estimates and the choice. */
  report: string;
  timings: { diff: number; view: number; estimate: number };
}

export interface ChooseInput {
  old: Uint8Array;
  content: Uint8Array;
  /** The file's header (encodeFileHeader), as the record carries it. */
  header: Uint8Array;
  source: ObjectId;
  /** Whether view records may be used (format 2 and later). */
  views: boolean;
  /**
   * The plain patch when someone else builds it (the second thread), while this thread builds
   * the view patch; otherwise it is built here.
   */
  plainPatch?: (old: Uint8Array, content: Uint8Array) => Promise<{ patch: Patch; ms: number }> | null;
}

export function patchCandidate(patch: Patch, record: ControlRecord, scratch = 0): Candidate {
  const ops: [number, number, number][] = patch.control.map((e) => [e.diffLen, e.extraLen, e.seek]);
  const control = [encodeRecord(record)];
  for (let i = 0; i < ops.length; i += MAX_OPS_PER_RECORD) control.push(encodeRecord({ type: 'ops', ops: ops.slice(i, i + MAX_OPS_PER_RECORD) }));
  control.push(encodeRecord({ type: 'ops', ops: [] }));
  return { record, control, patch, scratch };
}

/** What the estimate compresses: the records after the first and both byte streams. */
function estimate(c: Candidate): number {
  return compressedSize(Buffer.concat([...c.control.slice(1), c.patch.diff, c.patch.extra]), 5);
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/**
 * The file as a patch between views (`dst`, the new file's description, has streams). Proven
 * before it is offered: the device's own code (expandView, bspatch, foldView) must give the new
 * file back byte for byte; a difference is a bug, reported as a `verify` fallback.
 */
async function viewCandidate(input: ChooseInput, dst: ReturnType<typeof describe>, timings: FileChoice['timings']): Promise<{ candidate: Candidate | null; streams: StreamNote[] }> {
  const { old, content } = input;
  let t0 = performance.now();
  const src = describe(old, 'src');
  const fallback = (reason: FallbackReason) => ({ candidate: null, streams: dst.streams.map((n) => ({ codec: n.codec, reason: n.reason ?? reason })) });
  timings.view += performance.now() - t0;
  if (src.view.length > MAX_BSDIFF_BYTES || dst.view.length > MAX_BSDIFF_BYTES) return fallback('limit');
  t0 = performance.now();
  const patch = bsdiff(src.view, dst.view);
  timings.diff += performance.now() - t0;
  t0 = performance.now();
  try {
    const rebuilt = await collect(foldView(once(bspatch(expandView(old, src.segments), patch)), dst.segments));
    if (!rebuilt.equals(content)) return fallback('verify');
  } catch {
    return fallback('verify');
  } finally {
    timings.view += performance.now() - t0;
  }
  const record: ControlRecord = { type: 'view-file', header: input.header, source: input.source, src: src.segments, dst: dst.segments };
  return { candidate: patchCandidate(patch, record, src.view.length), streams: dst.streams };
}

/**
 * The smallest way to send `content` given its source `old`. Ties go to the simpler record:
 * literal, then plain patch, then view.
 */
export async function chooseFor(input: ChooseInput): Promise<FileChoice> {
  const { old, content } = input;
  const timings = { diff: 0, view: 0, estimate: 0 };
  let t0 = performance.now();
  const dst = input.views ? describe(content, 'dst') : null;
  const withView = dst !== null && hasStreams(dst.segments);
  timings.view += performance.now() - t0;
  const elsewhere = withView ? (input.plainPatch?.(old, content) ?? null) : null;
  elsewhere?.catch(() => {}); // awaited below; handled here too, in case the view throws first
  const view = withView ? await viewCandidate(input, dst, timings) : null;
  let patch: Patch;
  if (elsewhere) {
    const done = await elsewhere;
    patch = done.patch;
    timings.diff += done.ms;
  } else {
    t0 = performance.now();
    patch = bsdiff(old, content);
    timings.diff += performance.now() - t0;
  }
  const plain = patchCandidate(patch, { type: 'file', header: input.header, source: input.source });
  t0 = performance.now();
  const literalEst = compressedSize(content, 5);
  const plainEst = estimate(plain);
  const viewEst = view?.candidate ? estimate(view.candidate) : null;
  timings.estimate += performance.now() - t0;
  const before = Math.min(literalEst, plainEst);
  let chosen: Candidate | null = plainEst < literalEst ? plain : null;
  let after = before;
  if (view?.candidate && viewEst !== null && viewEst < before) {
    chosen = view.candidate;
    after = viewEst;
  }
  const viewChosen = chosen !== null && chosen === view?.candidate;
  const streams = (view?.streams ?? dst?.streams ?? []).map((n) => ({ codec: n.codec, reason: n.reason ?? (viewChosen ? null : ('larger' as const)) }));
  const report = `patch=${plainEst}\tliteral=${literalEst}\tview=${viewEst ?? '-'}\tchosen=${chosen === null ? 'literal' : chosen === plain ? 'patch' : 'view'}${elsewhere ? '\tplain-on=second-thread' : ''}`;
  return { chosen, estimateBefore: before, estimateAfter: after, streams, report, timings };
}
