/**
 * Generates a static delta from commit A (or from nothing) to commit B: every object B has and
 * A lacks, as a literal, as a bsdiff patch against a similar file of A, or (format 2) as a patch
 * between the two files' views when the file holds compressed streams (view/view.ts), whichever
 * compresses smallest; packed into parts whose three streams (control, diff, literal) are each compressed
 * whole, so similar content across files compresses together. Written to R/deltas/NAME/ and,
 * with `out`, as one file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { fsyncPath, syncFilesystem } from '../_durable.ts';
import { collectGarbage } from '../_gc.ts';
import { type FileHeader, type ObjectId, type ObjectKind, encodeFileHeader } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import { type SecretKey, encodeSignatures, keyId } from '../store/sign.ts';
import { readTreePlan } from '../store/walk.ts';
import { type Candidate, type FileChoice, MAX_BSDIFF_BYTES, chooseFor } from './choose.ts';
import { compress, compressedSize } from './compress.ts';
import { DiffWorker } from './diff-worker.ts';
import { type DeltaFormatVersion, type PartInfo, deltaFileBytes, encodeEnvelope, encodePart, encodePreamble, encodeRecord, encodeSuperblock } from './format.ts';
import { type PlanFile, planSources } from './plan.ts';
import { signDelta } from './sign.ts';
import { encodeZeroRuns } from './zero-runs.ts';
import { type ContentKind, CONTENT_KINDS, KIND_HEAD_BYTES, contentKind } from './view/kind.ts';
import type { StreamCodec } from './view/segment.ts';
import type { FallbackReason } from './view/view.ts';

export interface GenerateOptions {
  from: ObjectId | null;
  to: ObjectId;
  signKeys?: SecretKey[];
  /** Also write the whole delta as one file here. */
  out?: string;
  /** brotli quality 0-11 (default 11). */
  quality?: number;
  /** Raw bytes (diff + literal) per part before it is closed (default 32 MiB). */
  partBytes?: number;
  /**
   * 'auto' (default): format 3, files with compressed streams sent through their views where that
   * is smaller and the diff bytes zero-run coded; 2: views, no coding (format 2 when a file goes
   * through its view, else 1), for agents that read format 2; 1: neither, for agents older than
   * format 2.
   */
  format?: 1 | 2 | 'auto';
  now?: () => number;
}

/** Per kind of content: what the delta spends on it (estimates: each object alone at brotli q5). */
export interface KindFigures {
  objects: number;
  new_bytes: number;
  /** The smaller of literal and plain patch: what the delta would spend without views. */
  estimate_before: number;
  /** The candidate taken. */
  estimate_after: number;
  /** Objects sent through their views. */
  view: number;
}

export interface StreamFallback {
  path: string;
  codec: StreamCodec;
  reason: FallbackReason;
}

export interface GenerateResult {
  from: ObjectId | null;
  to: ObjectId;
  name: string;
  bytes: number;
  parts: number;
  objects: number;
  patched: number;
  literal: number;
  signed_by: string[];
  dir: string;
  out?: string;
  /** 3 (auto); with --format 2, 2 when a file is sent through its view, else 1; with --format 1, 1. */
  format: DeltaFormatVersion;
  /** Patched files sent through their views (counted in `patched` too). */
  view_patched: number;
  by_kind: Record<ContentKind, KindFigures>;
  /** Compressed streams in the new files that have a patch source: found, used, and why not. */
  streams: { found: number; used: number; fallbacks: StreamFallback[] };
  /** Time of each phase in ms, added up over the generator's two threads (diff, estimate, view) and the thread pool (compress): they overlap. */
  timings_ms: { plan: number; diff: number; estimate: number; compress: number; view: number; total: number };
}

export function deltaName(from: ObjectId | null, to: ObjectId): string {
  return `${from ?? 'empty'}-${to}`;
}

interface NewObject {
  kind: ObjectKind;
  id: ObjectId;
  path: string;
}

/**
 * Parts compressed on the thread pool while the loop builds the next ones. Each holds its raw
 * streams and brotli's quality-11 state. Unbounded, a loop that no longer waits for its reads let
 * closed parts pile up: 1.9 GiB peak on the corpus pair, for no gain in time. Corpus pair, with
 * the collections below: 1 part 104.5 s and 974 MiB; 2 parts 101.1 s, 1,038 MiB; 4 parts 100.7 s,
 * 1,102 MiB.
 */
const PARTS_COMPRESSING = 2;

/**
 * After a file or a part larger than this, a full collection: a large file leaves its
 * bytes, its source's and bsdiff's suffix array (4 bytes per source byte) behind, and a loop that
 * no longer waits on the thread pool gave the collector too few chances. Corpus pair, one part
 * compressing: generation peak 1,313 MiB without, 985 MiB with, in the same time.
 */
const COLLECT_AFTER_BYTES = 4 * 1024 * 1024;

/**
 * A file with compressed streams and a source, old and new together at least this large, has its
 * plain patch built on a second thread (diff-worker.ts) beside its view patch. Below it, posting
 * the bytes and waking the worker would cost about what the overlap gains.
 */
const SECOND_THREAD_BYTES = 1024 * 1024;

/**
 * A file with a source, old and new together at least this large, is chosen for whole on the
 * second thread (choose.ts) while the loop goes on with the files after it; it has a part of its
 * own, so the parts before and after it close and compress without waiting for it. Corpus pair:
 * the kernel (28 MB together; its initramfs, 3.5 MB, stays on the loop).
 */
const OWN_PART_BYTES = 16 * 1024 * 1024;

class PartBuilder {
  control: Uint8Array[] = [];
  diff: Uint8Array[] = [];
  literal: Uint8Array[] = [];
  rawBytes = 0;
  /** The largest source view a record of this part expands on the device. */
  scratch = 0;
  objects: { kind: ObjectKind; id: ObjectId }[] = [];
  addLiteral(b: Uint8Array) {
    this.literal.push(b);
    this.rawBytes += b.length;
  }
  addDiff(b: Uint8Array) {
    this.diff.push(b);
    this.rawBytes += b.length;
  }
}

/**
 * Under the repo's writer lock (prune cannot remove A's or B's objects meanwhile), the delta is
 * built in a staging directory under R/tmp/, synced, and renamed to R/deltas/NAME: a kill leaves
 * no part of it under that name, only a staging directory that `larch prune` removes.
 * @throws NOT_FOUND, OBJECT_MISSING, OBJECT_CORRUPT, LOCKED
 */
export async function generateDelta(repo: Repo, opts: GenerateOptions): Promise<GenerateResult> {
  const lock = await repo.lock();
  try {
    const staging = await repo.makeStagingDir().catch((err) => {
      throw fromSystemError(err, 'create staging directory in', repo.path);
    });
    try {
      return await generateInto(repo, staging, opts);
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  } finally {
    await lock.release();
  }
}

/** Builds the delta in `tmpDir` (a staging directory), then moves it to R/deltas/NAME. */
async function generateInto(repo: Repo, tmpDir: string, opts: GenerateOptions): Promise<GenerateResult> {
  const started = performance.now();
  const timings_ms = { plan: 0, diff: 0, estimate: 0, compress: 0, view: 0, total: 0 };
  const quality = opts.quality ?? 11;
  // Format 3 zero-run codes every part's diff bytes, so it is decided before the first part.
  const codeDiff = (opts.format ?? 'auto') === 'auto';
  const partBytes = opts.partBytes ?? 32 * 1024 * 1024;
  const toCommitBytes = await repo.readMetadataBytes('commit', opts.to);
  const toCommit = await repo.readCommit(opts.to);
  const planB = await readTreePlan(repo, toCommit.root);

  const have = new Set<string>();
  const oldFiles: PlanFile[] = [];
  if (opts.from !== null) {
    const planA = await readTreePlan(repo, (await repo.readCommit(opts.from)).root);
    for (const d of planA.dirs) have.add(`dirtree:${d.tree}`).add(`dirmeta:${d.metaId}`);
    for (const f of planA.files) {
      if (have.has(`file:${f.id}`)) continue;
      have.add(`file:${f.id}`);
      const h = (await repo.readFile(f.id)).header;
      if (h.type === 'reg') oldFiles.push({ path: '/' + f.path.toString('latin1'), id: f.id, size: h.size });
    }
  }

  // What B has and A lacks, in B's tree order (neighbours in the tree compress well together).
  const wanted: NewObject[] = [];
  const take = (kind: ObjectKind, id: ObjectId, path: string) => {
    const key = `${kind}:${id}`;
    if (have.has(key)) return;
    have.add(key);
    wanted.push({ kind, id, path });
  };
  for (const d of planB.dirs) {
    take('dirmeta', d.metaId, '/' + d.path.toString('latin1'));
    take('dirtree', d.tree, '/' + d.path.toString('latin1'));
  }
  const headers = new Map<ObjectId, FileHeader>();
  const newFiles: PlanFile[] = [];
  for (const f of planB.files) {
    const path = '/' + f.path.toString('latin1');
    if (have.has(`file:${f.id}`)) continue;
    take('file', f.id, path);
    const h = (await repo.readFile(f.id)).header;
    headers.set(f.id, h);
    if (h.type === 'reg') newFiles.push({ path, id: f.id, size: h.size });
  }
  const sources = planSources(oldFiles, newFiles);
  timings_ms.plan = performance.now() - started;

  const name = deltaName(opts.from, opts.to);
  const dir = join(repo.path, 'deltas', name);

  // LARCH_DELTA_REPORT=FILE writes one line per new file: its size and the estimates (for tuning).
  const debugLines: string[] | undefined = process.env.LARCH_DELTA_REPORT ? [] : undefined;
  const parts: PartInfo[] = [];
  const partFiles: string[] = [];
  const pending: Promise<void>[] = [];
  let current = new PartBuilder();
  let patched = 0;
  let literal = 0;
  const byKind = Object.fromEntries(CONTENT_KINDS.map((k) => [k, { objects: 0, new_bytes: 0, estimate_before: 0, estimate_after: 0, view: 0 }])) as Record<ContentKind, KindFigures>;
  const streams = { found: 0, used: 0, fallbacks: [] as StreamFallback[] };
  let viewPatched = 0;

  /** The next part's place in the delta: parts are numbered in the order the loop opens them. */
  const reservePart = (objects: PartInfo['objects']): { info: PartInfo; file: string } => {
    const info: PartInfo = { size: 0, sha256: '', raw: 0, objects, scratch: 0 };
    const file = join(tmpDir, `part-${parts.length}`);
    parts.push(info);
    partFiles.push(file);
    return { info, file };
  };

  /** Compresses a built part into its place, on the thread pool. */
  const compressPart = async (part: PartBuilder, { info, file }: { info: PartInfo; file: string }) => {
    info.raw = part.rawBytes;
    info.scratch = part.scratch;
    const t0 = performance.now();
    const diff = Buffer.concat(part.diff);
    const { runs, bytes: diffBytes } = codeDiff ? encodeZeroRuns(diff) : { runs: null, bytes: diff };
    const [c, r, d, l] = await Promise.all([Buffer.concat(part.control), runs, diffBytes, Buffer.concat(part.literal)].map((s) => (s === null ? null : compress(s, quality))));
    timings_ms.compress += performance.now() - t0;
    // Formats 1 and 2 share the three-stream part.
    const bytes = encodePart(codeDiff ? 3 : 1, c!, r, d!, l!);
    info.size = bytes.length;
    info.sha256 = createHash('sha256').update(bytes).digest('hex');
    await writeFile(file, bytes);
    failpoint('delta::after-part-write');
  };

  const closePart = async () => {
    const part = current;
    current = new PartBuilder();
    if (part.rawBytes > COLLECT_AFTER_BYTES) collectGarbage();
    if (part.objects.length === 0) return;
    // Compressed while the next part is being built.
    pending.push(compressPart(part, reservePart(part.objects)));
    // The loop waits for the oldest part once PARTS_COMPRESSING are under way.
    if (pending.length > PARTS_COMPRESSING) await pending[pending.length - 1 - PARTS_COMPRESSING];
  };

  interface NewFile {
    path: string;
    kind: ContentKind;
    header: Uint8Array;
    content: Uint8Array | null;
    sourcePath?: string;
  }

  /** Adds a file to a part as its choice says (none: no source, literal), and its figures to the result. */
  const addFile = (part: PartBuilder, file: NewFile, choice: FileChoice | null, where = '') => {
    const figures = byKind[file.kind];
    if (choice) {
      timings_ms.diff += choice.timings.diff;
      timings_ms.view += choice.timings.view;
      timings_ms.estimate += choice.timings.estimate;
      figures.estimate_before += choice.estimateBefore;
      figures.estimate_after += choice.estimateAfter;
      streams.found += choice.streams.length;
      for (const note of choice.streams) {
        if (note.reason === null) streams.used++;
        else streams.fallbacks.push({ path: file.path, codec: note.codec, reason: note.reason });
      }
      debugLines?.push(`${file.path}\t${file.content!.length}\tkind=${file.kind}\t${choice.report}\tsource=${file.sourcePath}${where}`);
    }
    const chosen: Candidate | null = choice?.chosen ?? null;
    if (chosen) {
      part.control.push(...chosen.control);
      part.addDiff(chosen.patch.diff);
      part.addLiteral(chosen.patch.extra);
      part.scratch = Math.max(part.scratch, chosen.scratch);
      patched++;
      if (chosen.record.type === 'view-file') {
        viewPatched++;
        figures.view++;
      }
    } else {
      part.control.push(encodeRecord({ type: 'file', header: file.header, source: null }));
      if (file.content) part.addLiteral(file.content);
      literal++;
    }
  };

  // The second thread (diff-worker.ts), started at the first file that uses it.
  const worker = new DiffWorker();
  // The choices of files with parts of their own, under way on the second thread.
  const ownParts: Promise<void>[] = [];
  try {
    for (const obj of wanted) {
      if (obj.kind !== 'file') {
        const bytes = await repo.readMetadataBytes(obj.kind, obj.id);
        current.control.push(encodeRecord({ type: 'metadata', kind: obj.kind as 'dirtree' | 'dirmeta', length: bytes.length }));
        current.addLiteral(bytes);
      } else {
        const header = headers.get(obj.id)!;
        const source = header.type === 'reg' ? sources.get(obj.id) : undefined;
        const content = header.type === 'reg' ? (await repo.readFileWhole(obj.id)).content : null;
        const file: NewFile = { path: obj.path, kind: content ? contentKind(obj.path, content.subarray(0, KIND_HEAD_BYTES)) : 'other', header: encodeFileHeader(header), content, sourcePath: source?.path };
        const figures = byKind[file.kind];
        figures.objects++;
        if (content) figures.new_bytes += content.length;
        if (content && source && source.size <= MAX_BSDIFF_BYTES && content.length <= MAX_BSDIFF_BYTES) {
          const old = (await repo.readFileWhole(source.id)).content;
          const input = { old, content, header: file.header, source: source.id, views: opts.format !== 1 };
          if (old.length + content.length >= OWN_PART_BYTES && !worker.busy) {
            await closePart();
            const place = reservePart([{ kind: obj.kind, id: obj.id }]);
            const job = worker.choose(input).then((choice) => {
              const part = new PartBuilder();
              addFile(part, file, choice, '\tchosen-on=second-thread');
              return compressPart(part, place);
            });
            job.catch(() => {}); // awaited with the others at the end; handled here too, in case the loop throws first
            ownParts.push(job);
            continue;
          }
          // Two patches to build for a file with streams: the plain one on the second thread while this one builds the other.
          const plainPatch = (o: Uint8Array, c: Uint8Array) => (!worker.busy && o.length + c.length >= SECOND_THREAD_BYTES ? worker.diff(o, c) : null);
          addFile(current, file, await chooseFor({ ...input, plainPatch }));
        } else {
          if (content) {
            debugLines?.push(`${obj.path}\t${content.length}\tkind=${file.kind}\tliteral-only`);
            const estimate = compressedSize(content, 5);
            figures.estimate_before += estimate;
            figures.estimate_after += estimate;
          }
          addFile(current, file, null);
        }
        if (content && content.length > COLLECT_AFTER_BYTES) collectGarbage();
      }
      current.objects.push({ kind: obj.kind, id: obj.id });
      if (current.rawBytes >= partBytes) await closePart();
    }
    await closePart();
    await Promise.all([...pending, ...ownParts]);
  } finally {
    await worker.close();
  }

  if (debugLines) await writeFile(process.env.LARCH_DELTA_REPORT!, debugLines.join('\n') + '\n');
  const format: DeltaFormatVersion = codeDiff ? 3 : viewPatched > 0 ? 2 : 1;
  const superblock = encodeSuperblock({
    format,
    from: opts.from,
    to: opts.to,
    commit: toCommitBytes,
    commitSigs: await repo.readSignatures(opts.to),
    created: Math.floor((opts.now?.() ?? Date.now()) / 1000),
    parts,
  });
  const signatures = await Promise.all((opts.signKeys ?? []).map((k) => signDelta(superblock, k)));
  const envelope = encodeEnvelope(superblock, encodeSignatures(signatures));
  await writeFile(join(tmpDir, 'envelope'), envelope);
  await syncFilesystem(tmpDir, [...partFiles, join(tmpDir, 'envelope'), tmpDir]);
  await moveIntoPlace(tmpDir, dir);
  failpoint('delta::after-generate-rename');

  const bytes = deltaFileBytes(envelope.length, parts);
  if (opts.out) await writeSingleFile(opts.out, format, envelope, partFiles.map((f) => join(dir, basename(f))));
  return {
    from: opts.from,
    to: opts.to,
    name,
    bytes,
    parts: parts.length,
    objects: wanted.length,
    patched,
    literal,
    signed_by: signatures.map((s) => keyId(s.key)),
    dir,
    out: opts.out,
    format,
    view_patched: viewPatched,
    by_kind: byKind,
    streams,
    timings_ms: { ...timings_ms, total: performance.now() - started },
  };
}

/**
 * Replaces R/deltas/NAME with the staged directory as a whole: a previous delta of that name is
 * first renamed aside into R/tmp/ (where prune finds it if we die), so NAME never holds a mix.
 */
async function moveIntoPlace(staged: string, dir: string): Promise<void> {
  const aside = `${staged}-replaced`;
  try {
    await mkdir(dirname(dir), { recursive: true });
    await rename(dir, aside).catch((err) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await rename(staged, dir);
    await fsyncPath(dirname(dir));
  } catch (err) {
    throw fromSystemError(err, 'move the delta into', dir);
  }
  await rm(aside, { recursive: true, force: true });
}

/**
 * preamble ‖ envelope ‖ parts, written to a temp file beside `out`, synced and renamed into
 * place. The temp name is the one writeFileAtomic uses (.tmp-PID-RANDOM), which prune removes
 * where it looks (the repo's own directories).
 */
async function writeSingleFile(out: string, format: DeltaFormatVersion, envelope: Uint8Array, partFiles: string[]): Promise<void> {
  const tmp = join(dirname(out), `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'w').catch((err) => {
    throw fromSystemError(err, 'write', out);
  });
  try {
    await fh.write(encodePreamble(envelope.length, format));
    await fh.write(envelope);
    for (const f of partFiles) {
      const src = await open(f, 'r');
      try {
        const buf = Buffer.alloc(1 << 20);
        for (;;) {
          const { bytesRead } = await src.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          await fh.write(buf.subarray(0, bytesRead));
        }
      } finally {
        await src.close();
      }
    }
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw fromSystemError(err, 'write', out);
  }
  await fh.close();
  await rename(tmp, out).catch(async (err) => {
    await rm(tmp, { force: true });
    throw fromSystemError(err, 'write', out);
  });
  await fsyncPath(dirname(out));
}
