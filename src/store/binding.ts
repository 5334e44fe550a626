/**
 * Product and hardware binding of a commit (docs/formats.md §12): which vendor repo it belongs to
 * (`larch.collection_id`, as OSTree's collection-binding), which hardware it is built for
 * (`larch.compatible`, as RAUC's `compatible`), and its Debian architecture
 * (`larch.architecture`). Pure: metadata in, values or the first mismatch out. The device's side
 * (what it was provisioned for) and the refusal are in src/agent/product-binding.ts.
 */
import { quash } from '../errors.ts';
import type { CborValue } from './cbor.ts';

export const COLLECTION_ID_KEY = 'larch.collection_id';
export const COMPATIBLE_KEY = 'larch.compatible';
export const ARCHITECTURE_KEY = 'larch.architecture';

/** What a commit, a summary or a device is bound to; null: not said (accepts, or is accepted by, any). */
export interface Binding {
  collection_id: string | null;
  compatible: string | null;
  architecture: string | null;
}

export type BindingReason = 'wrong-collection' | 'incompatible' | 'wrong-architecture';

/** Reverse-DNS, as OSTree's collection ids: two or more dot-separated parts, e.g. com.example.gateway. */
const COLLECTION_ID_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/;
/** A Debian architecture name (amd64, arm64, armhf, ...), as compose's definition checks it. */
const ARCHITECTURE_RE = /^[a-z0-9][a-z0-9-]*$/;
/** Printable text without control characters (RAUC's compatible is free text, e.g. "Acme Gadget v2"). */
const COMPATIBLE_RE = /^[^\p{Cc}]+$/u;

/** Why value is not a valid id of this kind, or null when it is. */
export function bindingValueProblem(key: keyof Binding, value: string): string | null {
  if (value.length === 0 || value.length > 255) return 'must be 1 to 255 characters';
  if (key === 'collection_id' && !COLLECTION_ID_RE.test(value)) return 'is not a reverse-DNS id (two or more parts of letters, digits, _ and -, joined by dots, e.g. com.example.gateway)';
  if (key === 'architecture' && !ARCHITECTURE_RE.test(value)) return 'is not a Debian architecture name (e.g. amd64, arm64)';
  if (key === 'compatible' && !COMPATIBLE_RE.test(value)) return 'holds control characters';
  return null;
}

export const BINDING_KEYS: Record<keyof Binding, string> = { collection_id: COLLECTION_ID_KEY, compatible: COMPATIBLE_KEY, architecture: ARCHITECTURE_KEY };

/**
 * The binding a commit's metadata says. A value that is not text (a commit made with
 * --metadata-json by hand) is kept as its JSON, so it matches no device's value.
 */
export function commitBinding(metadata: Map<string, CborValue>): Binding {
  const get = (key: string): string | null => {
    const v = metadata.get(key);
    if (v === undefined) return null;
    return typeof v === 'string' ? v : quash(JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x instanceof Map ? Object.fromEntries(x) : x)) ?? 'null');
  };
  return { collection_id: get(COLLECTION_ID_KEY), compatible: get(COMPATIBLE_KEY), architecture: get(ARCHITECTURE_KEY) };
}

export interface BindingMismatch {
  reason: BindingReason;
  field: keyof Binding;
  /** The device's (or repo's) value. */
  device: string;
  /** The offered summary's or commit's value. */
  offered: string;
}

const REASONS: Record<keyof Binding, BindingReason> = { collection_id: 'wrong-collection', compatible: 'incompatible', architecture: 'wrong-architecture' };

/**
 * The first field where offered is bound to something else than device, or null. A field either
 * side leaves null is no mismatch: older commits and summaries carry none, and a device that
 * never recorded one accepts any.
 */
export function bindingMismatch(device: Binding, offered: Partial<Binding>): BindingMismatch | null {
  for (const field of ['collection_id', 'architecture', 'compatible'] as const) {
    const d = device[field];
    const o = offered[field] ?? null;
    if (d !== null && o !== null && d !== o) return { reason: REASONS[field], field, device: d, offered: o };
  }
  return null;
}
