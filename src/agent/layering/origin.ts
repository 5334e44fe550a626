/**
 * The origin file of a deployment, S/larch/deploy/X.origin.json (docs/formats.md "Origin file"):
 * the layering request the slot's tree was built from (request.ts) and the vendor base it was
 * built on. rpm-ostree keeps the same in its `.origin`; `upgrade` re-applies it on a new base.
 * A slot with no origin file has no layering: it holds the vendor's commit as it is.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../../errors.ts';
import { writeFileAtomic } from '../../_durable.ts';
import type { Slot } from '../../bootcount/state.ts';
import type { ObjectId } from '../../store/object.ts';
import type { Sysroot } from '../sysroot.ts';
import { EMPTY_REQUEST, type LayerRequest, type LocalDeb, isEmptyRequest, isPackageName } from './request.ts';

export interface Origin {
  /** The vendor commit the slot's tree was built from. */
  base: { commit: ObjectId; version: string };
  request: LayerRequest;
}

export function originPath(sysroot: Sysroot, slot: Slot): string {
  return join(sysroot.larchDir, 'deploy', `${slot}.origin.json`);
}

/** The file's JSON (snake_case, sorted lists): what formats.md documents. */
export function formatOrigin(o: Origin): string {
  const { packages, local, replace, remove } = o.request;
  return JSON.stringify({ format: 1, base: o.base, packages, local_packages: local, override_replace: replace, override_remove: remove }, null, 2) + '\n';
}

const isDeb = (d: any): d is LocalDeb => d && isPackageName(d.name) && typeof d.version === 'string' && typeof d.architecture === 'string' && typeof d.sha256 === 'string' && /^[0-9a-f]{64}$/.test(d.sha256);
const isNames = (a: unknown): a is string[] => Array.isArray(a) && a.every((n) => typeof n === 'string' && isPackageName(n));

/** @throws INVALID_INPUT for a file that is not an origin */
export function parseOrigin(text: string, path: string): Origin {
  let j: any;
  try {
    j = JSON.parse(text);
  } catch {
    j = null;
  }
  const ok = j && j.format === 1 && typeof j.base?.commit === 'string' && typeof j.base?.version === 'string' && isNames(j.packages) && isNames(j.override_remove) && Array.isArray(j.local_packages) && j.local_packages.every(isDeb) && Array.isArray(j.override_replace) && j.override_replace.every(isDeb);
  if (!ok) throw new LarchError('INVALID_INPUT', `${path}: not a larch origin file (format 1)`, { hint: "the layering request of this slot is unreadable: 'larch override reset' and 'larch uninstall' cannot name it; restore the file or deploy the vendor tree again with 'larch upgrade'", data: { path } });
  return { base: { commit: j.base.commit, version: j.base.version }, request: { packages: j.packages, local: j.local_packages, replace: j.override_replace, remove: j.override_remove } };
}

/** The slot's origin, or null when the slot has no layering. @throws INVALID_INPUT, IO */
export async function readOrigin(sysroot: Sysroot, slot: Slot): Promise<Origin | null> {
  const path = originPath(sysroot, slot);
  const text = await readFile(path, 'utf8').catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', path))));
  return text === null ? null : parseOrigin(text, path);
}

/** The request the slot was built from (empty when it has no layering). */
export async function readRequest(sysroot: Sysroot, slot: Slot): Promise<LayerRequest> {
  return (await readOrigin(sysroot, slot))?.request ?? EMPTY_REQUEST;
}

/** Writes (or, for no layering, removes) the slot's origin, atomically. */
export async function writeOrigin(sysroot: Sysroot, slot: Slot, origin: Origin | null): Promise<void> {
  if (origin === null || isEmptyRequest(origin.request)) await rm(originPath(sysroot, slot), { force: true });
  else await writeFileAtomic(originPath(sysroot, slot), formatOrigin(origin));
}

/** The vendor commit a slot's deployment stands for: its origin's base, or the commit itself (no layering). */
export async function baseCommitOf(sysroot: Sysroot, slot: Slot, commit: ObjectId): Promise<ObjectId> {
  return (await readOrigin(sysroot, slot))?.base.commit ?? commit;
}
