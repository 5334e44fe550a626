/**
 * Generates a static delta from commit A (or from nothing) to commit B: every object B has and
 * A lacks, as a literal or as a bsdiff patch against a similar file of A, whichever compresses
 * smaller; packed into parts whose three streams (control, diff, literal) are each compressed
 * whole, so similar content across files compresses together. Written to R/deltas/NAME/ and,
 * with `out`, as one file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { fsyncPath, syncFilesystem } from '../_durable.ts';
import { type FileHeader, type ObjectId, type ObjectKind, encodeFileHeader } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import { type SecretKey, encodeSignatures, keyId } from '../store/sign.ts';
import { readTreePlan } from '../store/walk.ts';
import { bsdiff } from './bsdiff.ts';
import { compress } from './compress.ts';
import { type PartInfo, MAX_OPS_PER_RECORD, deltaFileBytes, encodeEnvelope, encodePart, encodePreamble, encodeRecord, encodeSuperblock } from './format.ts';
import { type PlanFile, planSources } from './plan.ts';
import { signDelta } from './sign.ts';

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
  now?: () => number;
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
  /** Wall time of each phase in ms (compress overlaps the others: it runs on the thread pool). */
  timings_ms: { plan: number; diff: number; estimate: number; compress: number; total: number };
}

/** Files larger than this are sent literally: bsdiff needs ~6x the old size in memory (suffix array). */
export const MAX_BSDIFF_BYTES = 128 * 1024 * 1024;

export function deltaName(from: ObjectId | null, to: ObjectId): string {
  return `${from ?? 'empty'}-${to}`;
}

interface NewObject {
  kind: ObjectKind;
  id: ObjectId;
  path: string;
}

/** Reads all of an object's content (generation runs on the vendor's server). */
async function readContent(repo: Repo, id: ObjectId): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of (await repo.readFile(id)).content()) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

class PartBuilder {
  control: Uint8Array[] = [];
  diff: Uint8Array[] = [];
  literal: Uint8Array[] = [];
  rawBytes = 0;
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
  const timings_ms = { plan: 0, diff: 0, estimate: 0, compress: 0, total: 0 };
  const quality = opts.quality ?? 11;
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

  const closePart = () => {
    const part = current;
    current = new PartBuilder();
    if (part.objects.length === 0) return;
    const index = parts.length;
    const info: PartInfo = { size: 0, sha256: '', raw: part.rawBytes, objects: part.objects };
    parts.push(info);
    const file = join(tmpDir, `part-${index}`);
    partFiles.push(file);
    // Compress on the thread pool while the next part is being built.
    pending.push(
      (async () => {
        const t0 = performance.now();
        const [c, d, l] = await Promise.all([part.control, part.diff, part.literal].map((s) => compress(Buffer.concat(s), quality)));
        timings_ms.compress += performance.now() - t0;
        const bytes = encodePart(c, d, l);
        info.size = bytes.length;
        info.sha256 = createHash('sha256').update(bytes).digest('hex');
        await writeFile(file, bytes);
        failpoint('delta::after-part-write');
      })(),
    );
  };

  for (const obj of wanted) {
    if (obj.kind !== 'file') {
      const bytes = await repo.readMetadataBytes(obj.kind, obj.id);
      current.control.push(encodeRecord({ type: 'metadata', kind: obj.kind as 'dirtree' | 'dirmeta', length: bytes.length }));
      current.addLiteral(bytes);
    } else {
      const header = headers.get(obj.id)!;
      const headerBytes = encodeFileHeader(header);
      const source = header.type === 'reg' ? sources.get(obj.id) : undefined;
      const content = header.type === 'reg' ? await readContent(repo, obj.id) : null;
      let usedPatch = false;
      if (content && source && source.size <= MAX_BSDIFF_BYTES && content.length <= MAX_BSDIFF_BYTES) {
        const old = await readContent(repo, source.id);
        let t0 = performance.now();
        const patch = bsdiff(old, content);
        timings_ms.diff += performance.now() - t0;
        const ops: [number, number, number][] = patch.control.map((e) => [e.diffLen, e.extraLen, e.seek]);
        const opRecords: Uint8Array[] = [];
        for (let i = 0; i < ops.length; i += MAX_OPS_PER_RECORD) opRecords.push(encodeRecord({ type: 'ops', ops: ops.slice(i, i + MAX_OPS_PER_RECORD) }));
        opRecords.push(encodeRecord({ type: 'ops', ops: [] }));
        // Pick whichever compresses smaller on its own (a fast estimate of its share of the part).
        t0 = performance.now();
        const [patchEst, literalEst] = await Promise.all([compress(Buffer.concat([...opRecords, patch.diff, patch.extra]), 5), compress(content, 5)]);
        timings_ms.estimate += performance.now() - t0;
        debugLines?.push(`${obj.path}\t${content.length}\tpatch=${patchEst.length}\tliteral=${literalEst.length}\tsource=${source.path}`);
        if (patchEst.length < literalEst.length) {
          usedPatch = true;
          current.control.push(encodeRecord({ type: 'file', header: headerBytes, source: source.id }), ...opRecords);
          current.addDiff(patch.diff);
          current.addLiteral(patch.extra);
        }
      }
      if (!usedPatch && content && !source) debugLines?.push(`${obj.path}\t${content.length}\tliteral-only`);
      if (!usedPatch) {
        current.control.push(encodeRecord({ type: 'file', header: headerBytes, source: null }));
        if (content) current.addLiteral(content);
      }
      if (usedPatch) patched++;
      else literal++;
    }
    current.objects.push({ kind: obj.kind, id: obj.id });
    if (current.rawBytes >= partBytes) closePart();
  }
  closePart();
  await Promise.all(pending);

  if (debugLines) await writeFile(process.env.LARCH_DELTA_REPORT!, debugLines.join('\n') + '\n');
  const superblock = encodeSuperblock({
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
  if (opts.out) await writeSingleFile(opts.out, envelope, partFiles.map((f) => join(dir, basename(f))));
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
async function writeSingleFile(out: string, envelope: Uint8Array, partFiles: string[]): Promise<void> {
  const tmp = join(dirname(out), `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'w').catch((err) => {
    throw fromSystemError(err, 'write', out);
  });
  try {
    await fh.write(encodePreamble(envelope.length));
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
