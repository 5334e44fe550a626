/**
 * The device's product and hardware binding: which vendor repo (collection id), which hardware
 * (compatible id) and which architecture it takes updates for, and the refusal of a summary or
 * commit bound to another, before anything is written (docs/fleet.md, "One vendor, several
 * products"). What it is bound to is recorded at provision in config.json; a device provisioned
 * before that takes it from its booted commit (signed, verified when it was staged); a value
 * known from neither accepts any. The metadata keys and the comparison are store/binding.ts.
 */
import { LarchError } from '../errors.ts';
import { type Binding, type BindingMismatch, BINDING_KEYS, bindingMismatch, commitBinding } from '../store/binding.ts';
import type { Commit, ObjectId } from '../store/object.ts';
import type { Summary } from '../protocol/summary.ts';
import type { DeviceConfig, Sysroot } from './sysroot.ts';

/** What the device is bound to: config.json's values, each missing one from the booted commit's metadata. */
export async function deviceBinding(sysroot: Sysroot, config: DeviceConfig, bootedCommit: ObjectId): Promise<Binding> {
  const recorded: Binding = { collection_id: config.collectionId ?? null, compatible: config.compatible ?? null, architecture: config.architecture ?? null };
  if (recorded.collection_id !== null && recorded.compatible !== null && recorded.architecture !== null) return recorded;
  // A booted commit the repo cannot read (pruned, damaged) says nothing: the recorded values stand.
  const booted = await sysroot
    .openRepo()
    .then((repo) => repo.readCommit(bootedCommit))
    .then((c) => commitBinding(c.metadata), () => null);
  return {
    collection_id: recorded.collection_id ?? booted?.collection_id ?? null,
    compatible: recorded.compatible ?? booted?.compatible ?? null,
    architecture: recorded.architecture ?? booted?.architecture ?? null,
  };
}

/** Whether any value is known: a device bound to nothing accepts every commit, so none is fetched to check. */
export function isBound(b: Binding): boolean {
  return b.collection_id !== null || b.compatible !== null || b.architecture !== null;
}

/** The config.json fields that record a binding (the nulls left out). */
export function bindingConfig(b: Binding): Pick<DeviceConfig, 'collectionId' | 'compatible' | 'architecture'> {
  return {
    ...(b.collection_id === null ? {} : { collectionId: b.collection_id }),
    ...(b.compatible === null ? {} : { compatible: b.compatible }),
    ...(b.architecture === null ? {} : { architecture: b.architecture }),
  };
}

const HINT = "the server offers another product's repo or build; check the device's remote (larch status) and what the server publishes; nothing was changed";

function refusal(m: BindingMismatch, message: string, extra: Record<string, unknown>): LarchError {
  return new LarchError('REFUSED', message, { hint: HINT, data: { reason: m.reason, key: m.field, device: m.device, offered: m.offered, ...extra } });
}

/** Refuses a summary of another collection. @throws REFUSED (data.reason "wrong-collection") */
export function checkSummaryBinding(device: Binding, summary: Summary, source: string): void {
  const m = bindingMismatch(device, { collection_id: summary.collectionId ?? null });
  if (m) throw refusal(m, `${source}: the summary is of collection '${m.offered}'; this device belongs to collection '${m.device}'`, { source });
}

/**
 * Refuses a commit bound to another collection, architecture or hardware.
 * @throws REFUSED (data.reason "wrong-collection", "wrong-architecture", "incompatible"; data.device, data.offered)
 */
export function checkCommitBinding(device: Binding, id: ObjectId, commit: Pick<Commit, 'version' | 'metadata'>): void {
  const m = bindingMismatch(device, commitBinding(commit.metadata));
  if (!m) return;
  const what = `commit ${id.slice(0, 12)} (version ${commit.version})`;
  const message =
    m.reason === 'wrong-collection'
      ? `${what} belongs to collection '${m.offered}' (${BINDING_KEYS.collection_id}); this device belongs to '${m.device}'`
      : m.reason === 'wrong-architecture'
        ? `${what} is built for architecture ${m.offered} (${BINDING_KEYS.architecture}); this device is ${m.device}`
        : `${what} is for hardware '${m.offered}' (${BINDING_KEYS.compatible}); this device is '${m.device}'`;
  throw refusal(m, message, { commit: id, version: commit.version });
}

/**
 * What provision records: each value given (provision --collection-id, --compatible,
 * --architecture), else the summary's collection id, else the installed commit's values. The
 * summary and the commit must agree with what was given.
 * @throws REFUSED (as checkSummaryBinding, checkCommitBinding)
 */
export function provisionBinding(given: Partial<Binding>, summary: Summary, source: string, id: ObjectId, commit: Pick<Commit, 'version' | 'metadata'>): Binding {
  const asked: Binding = { collection_id: given.collection_id ?? null, compatible: given.compatible ?? null, architecture: given.architecture ?? null };
  checkSummaryBinding(asked, summary, source);
  // The summary's collection binds the commit installed from it too.
  const bound = { ...asked, collection_id: asked.collection_id ?? summary.collectionId ?? null };
  checkCommitBinding(bound, id, commit);
  const offered = commitBinding(commit.metadata);
  return { collection_id: bound.collection_id ?? offered.collection_id, compatible: bound.compatible ?? offered.compatible, architecture: bound.architecture ?? offered.architecture };
}
