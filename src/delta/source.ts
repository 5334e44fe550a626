/** Where a delta's bytes come from: one delta file, or a delta directory in a repo (R/deltas/NAME/). */
import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import type { DeltaSource } from './apply.ts';
import { DeltaFormatError, DeltaUnsupportedError, MAX_ENVELOPE_BYTES, PREAMBLE_BYTES, decodeEnvelope, decodePreamble, decodeSuperblock } from './format.ts';

/** A one-file delta: preamble ‖ envelope ‖ parts. @throws NOT_FOUND, DELTA_CORRUPT */
export async function openDeltaFile(path: string): Promise<DeltaSource> {
  const fh = await open(path, 'r').catch((err) => {
    throw fromSystemError(err, 'open delta', path);
  });
  try {
    const pre = Buffer.alloc(PREAMBLE_BYTES);
    const { bytesRead } = await fh.read(pre, 0, PREAMBLE_BYTES, 0);
    const envelopeLength = (() => {
      try {
        return decodePreamble(pre.subarray(0, bytesRead));
      } catch (err) {
        throw new LarchError(err instanceof DeltaUnsupportedError ? 'DELTA_UNSUPPORTED' : 'DELTA_CORRUPT', `'${path}': ${(err as Error).message}`, { data: { path } });
      }
    })();
    // The declared length is checked against the file before anything is allocated for it.
    if (PREAMBLE_BYTES + envelopeLength > (await fh.stat()).size) throw new LarchError('DELTA_CORRUPT', `'${path}': truncated inside its superblock (it declares ${envelopeLength} bytes)`, { data: { path } });
    const envelope = Buffer.alloc(envelopeLength);
    const got = (await fh.read(envelope, 0, envelopeLength, PREAMBLE_BYTES)).bytesRead;
    if (got !== envelopeLength) throw new LarchError('DELTA_CORRUPT', `'${path}': truncated inside its superblock`, { data: { path } });
    let sizes: number[];
    try {
      sizes = decodeSuperblock(decodeEnvelope(envelope).superblock).parts.map((p) => p.size);
    } catch (err) {
      if (err instanceof DeltaFormatError) throw new LarchError(err instanceof DeltaUnsupportedError ? 'DELTA_UNSUPPORTED' : 'DELTA_CORRUPT', `'${path}': ${err.message}`, { data: { path } });
      throw err;
    }
    const offsets: number[] = [];
    let at = PREAMBLE_BYTES + envelopeLength;
    for (const s of sizes) {
      offsets.push(at);
      at += s;
    }
    return { envelope, part: async (i) => ({ path, offset: offsets[i] }) };
  } finally {
    await fh.close();
  }
}

/** A delta as generated into a repo: NAME/envelope and NAME/part-N. */
export async function openDeltaDir(dir: string): Promise<DeltaSource> {
  const envelope = await readFile(join(dir, 'envelope')).catch((err) => {
    throw fromSystemError(err, 'read delta', join(dir, 'envelope'));
  });
  if (envelope.length > MAX_ENVELOPE_BYTES) throw new LarchError('DELTA_CORRUPT', `'${dir}/envelope' is over the size limit`, { data: { path: join(dir, 'envelope'), max_bytes: MAX_ENVELOPE_BYTES } });
  return { envelope, part: async (i) => ({ path: join(dir, `part-${i}`), offset: 0 }) };
}

/** Names of the deltas stored in a repo. */
export async function listDeltaNames(repoPath: string): Promise<string[]> {
  return (await readdir(join(repoPath, 'deltas')).catch(() => [])).filter((n) => /^([0-9a-f]{64}|empty)-[0-9a-f]{64}$/.test(n)).sort();
}
