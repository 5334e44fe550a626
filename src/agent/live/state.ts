/**
 * S/larch/live.json: the staged deployment whose /usr and /etc are bound over the running ones
 * (`larch apply-live`). Mounts end with the boot, so the file counts only in the boot that wrote
 * it (boot_id); sim-boot, a simulated reboot, removes it. docs/formats.md §11.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../_durable.ts';
import type { Slot } from '../../bootcount/state.ts';
import { bootId } from '../lock-owner.ts';
import type { Sysroot } from '../sysroot.ts';

export interface LiveState {
  slot: Slot;
  commit: string;
  version: string;
  boot_id: string;
  since: string;
  /** switching: the mounts are being made (a kill here leaves /usr bound and /etc maybe not: apply-live again finishes it); live: both made. */
  state: 'switching' | 'live';
}

export const livePath = (sysroot: Sysroot) => join(sysroot.larchDir, 'live.json');

/** The live state of this boot, or null (none, or one left by an earlier boot). */
export async function readLive(sysroot: Sysroot): Promise<LiveState | null> {
  let s: LiveState;
  try {
    s = JSON.parse(await readFile(livePath(sysroot), 'utf8')) as LiveState;
  } catch {
    return null;
  }
  return s.boot_id === bootId() ? s : null;
}

export async function writeLive(sysroot: Sysroot, s: LiveState): Promise<void> {
  await writeFileAtomic(livePath(sysroot), JSON.stringify(s, null, 2) + '\n');
}

/** A (simulated) reboot ends what was live. */
export async function endLive(sysroot: Sysroot): Promise<void> {
  await rm(livePath(sysroot), { force: true });
}
