/**
 * Layers across upgrades: the booted deployment's origin re-applied on the new vendor base, as
 * rpm-ostree does, so the upgrade stages one deployment (base + layer). Offline, the build uses
 * the cached lists and .deb files (build.ts); a request that no longer applies refuses the upgrade
 * (LAYER_FAILED, data.reason), unless the caller drops its failing parts (--drop-failing-layers).
 */
import { join } from 'node:path';
import { LarchError } from '../../errors.ts';
import type { Slot } from '../../bootcount/state.ts';
import type { ObjectId } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import type { Sysroot } from '../sysroot.ts';
import { buildLayered } from './build.ts';
import { type Origin, readOrigin } from './origin.ts';
import { isEmptyRequest } from './request.ts';

export interface Reapplied {
  /** What to stage: the derived commit, or the base when nothing is layered (or everything was dropped). */
  commit: ObjectId;
  /** The new slot's origin (null: no layering). */
  origin: Origin | null;
  /** Parts of the request left out (--drop-failing-layers). */
  dropped: string[];
}

/** @throws LAYER_FAILED (with "upgrade to VERSION" in the message), NO_SPACE, and what buildLayered throws */
export async function reapplyLayers(sysroot: Sysroot, repo: Repo, bootedSlot: Slot, base: { commit: ObjectId; version: string }, opts: { dropFailing?: boolean } = {}): Promise<Reapplied> {
  const origin = await readOrigin(sysroot, bootedSlot);
  if (!origin || isEmptyRequest(origin.request)) return { commit: base.commit, origin: null, dropped: [] };
  try {
    const built = await buildLayered({ sysroot, repo, base: base.commit, request: origin.request, etcDir: join(sysroot.deployDir(bootedSlot), 'etc'), dropFailing: opts.dropFailing });
    const next = isEmptyRequest(built.request) ? null : { base, request: built.request };
    return { commit: built.commit!, origin: next, dropped: built.dropped };
  } catch (err) {
    if (err instanceof LarchError && err.code === 'LAYER_FAILED') {
      throw new LarchError('LAYER_FAILED', `upgrade to version ${base.version}: the layered packages do not apply on the new base: ${err.message.replace(/^layering: /, '')}`, {
        hint: `nothing was staged and the device keeps running version ${origin.base.version}; 'larch upgrade --drop-failing-layers' upgrades without the failing part (and says which), or change the layer first (larch uninstall, larch override reset)`,
        data: { ...err.data, version: base.version },
      });
    }
    throw err;
  }
}
