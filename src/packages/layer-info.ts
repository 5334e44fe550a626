/**
 * The layer of a derived (layered) commit: the commit metadata a device writes when it builds a
 * tree from a vendor base plus layered packages and overrides (formats.md §12.2). One reader and
 * one writer of those keys, for the layering engine, `status`, `db` and the upgrade preview.
 * Pure: no I/O.
 */
import { LarchError } from '../errors.ts';
import type { CborValue } from '../store/cbor.ts';
import { parseDebianVersion } from './debian-version.ts';

/** The metadata keys of a derived commit (formats.md §12.2). */
export const LAYER_KEYS = {
  baseCommit: 'larch.base.commit',
  baseVersion: 'larch.base.version',
  layered: 'larch.layered',
  replaced: 'larch.overrides.replaced',
  removed: 'larch.overrides.removed',
  local: 'larch.local',
} as const;

/** A package layered on top of the base (what was asked, not its dependencies), at the version installed. */
export interface LayeredPackage {
  name: string;
  version: string;
}

/** A base package replaced by another version: version is the one installed, base_version the base's. */
export interface ReplacedPackage {
  name: string;
  version: string;
  base_version: string;
}

/** A base package removed from the tree: version is the base's. */
export interface RemovedPackage {
  name: string;
  version: string;
}

export interface LayerInfo {
  /** The vendor commit the tree was built from, and its version (the derived commit's version too). */
  base: { commit: string; version: string };
  /** Sorted by name. */
  layered: LayeredPackage[];
  /** Each sorted by name. */
  overrides: { replaced: ReplacedPackage[]; removed: RemovedPackage[] };
  /** Made on the device (unsigned): its trust is the verified base's. */
  local: boolean;
}

/** The names a status shows: the contract's `layered`, `overrides` and `base` of a deployment. */
export interface LayerSummary {
  base: { commit: string; version: string };
  layered: string[];
  overrides: { replaced: string[]; removed: string[] };
  local: boolean;
}

const COMMIT_ID = /^[0-9a-f]{64}$/;
/** Debian Policy §5.6.1: lower case letters, digits, + - . ; at least two characters, starting alphanumeric. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Is this commit derived (any layer key present)? Cheaper than decodeLayerInfo, never throws. */
export function isDerived(metadata: Map<string, CborValue>): boolean {
  return Object.values(LAYER_KEYS).some((k) => metadata.has(k));
}

/**
 * Reads the layer of a commit from its metadata: null when the commit is not derived (none of
 * the keys), the layer otherwise. `what` names the commit in errors ("commit 1f2e… (booted)").
 * larch.base.commit and larch.base.version are required; a missing list is empty, a missing
 * larch.local false.
 *
 * @throws INVALID_INPUT naming the key and what is wrong with its value
 * @example decodeLayerInfo(new Map([['larch.base.commit', 'ab…'], ['larch.base.version', '2'], ['larch.layered', [{ name: 'htop', version: '3.2.2-2' }]], ['larch.local', true]]), 'c')
 *   // { base: { commit: 'ab…', version: '2' }, layered: [{ name: 'htop', version: '3.2.2-2' }], overrides: { replaced: [], removed: [] }, local: true }
 */
export function decodeLayerInfo(metadata: Map<string, CborValue>, what: string): LayerInfo | null {
  if (!isDerived(metadata)) return null;
  const bad = (key: string, problem: string): never => {
    throw new LarchError('INVALID_INPUT', `${what}: layer metadata ${key} ${problem}`, {
      hint: "the derived commit was written by another larch or damaged: 'larch show' prints its metadata; rebuild the layer ('larch override reset' and 'larch uninstall', then install again) or deploy a vendor commit",
      data: { key, what },
    });
  };
  const text = (key: string, value: CborValue | undefined, check?: (s: string) => boolean, expected = 'text'): string => {
    if (value === undefined) bad(key, 'is missing');
    if (typeof value !== 'string' || value === '' || (check && !check(value))) bad(key, `is not ${expected}: ${describe(value!)}`);
    return value as string;
  };
  const baseCommit = text(LAYER_KEYS.baseCommit, metadata.get(LAYER_KEYS.baseCommit), (s) => COMMIT_ID.test(s), 'a commit id (64 hex digits)');
  const baseVersion = text(LAYER_KEYS.baseVersion, metadata.get(LAYER_KEYS.baseVersion));
  const list = <T extends { name: string }>(key: string, fields: readonly string[]): T[] => {
    const raw = metadata.get(key);
    if (raw === undefined) return [];
    if (!Array.isArray(raw)) bad(key, `is not an array: ${describe(raw)}`);
    const out = (raw as CborValue[]).map((entry, i) => {
      const where = `${key}[${i}]`;
      if (!isMap(entry)) bad(where, `is not a map {${fields.join(', ')}}: ${describe(entry)}`);
      const get = (field: string) => (entry instanceof Map ? entry.get(field) : (entry as Record<string, CborValue>)[field]);
      const o: Record<string, string> = {};
      for (const f of fields) o[f] = text(`${where}.${f}`, get(f), f === 'name' ? (s) => PACKAGE_NAME.test(s) : (s) => parseDebianVersion(s) !== undefined, f === 'name' ? 'a Debian package name' : 'a Debian version');
      return o as unknown as T;
    });
    out.sort(byName);
    for (let i = 1; i < out.length; i++) if (out[i].name === out[i - 1].name) bad(key, `names ${out[i].name} twice`);
    return out;
  };
  const local = metadata.get(LAYER_KEYS.local);
  if (local !== undefined && typeof local !== 'boolean') bad(LAYER_KEYS.local, `is not true or false: ${describe(local)}`);
  return {
    base: { commit: baseCommit, version: baseVersion },
    layered: list<LayeredPackage>(LAYER_KEYS.layered, ['name', 'version']),
    overrides: {
      replaced: list<ReplacedPackage>(LAYER_KEYS.replaced, ['name', 'version', 'base_version']),
      removed: list<RemovedPackage>(LAYER_KEYS.removed, ['name', 'version']),
    },
    local: local === true,
  };
}

/** The metadata entries of a layer (each list sorted by name), to add to the base's metadata. */
export function encodeLayerInfo(info: LayerInfo): Record<string, CborValue> {
  const sorted = <T extends { name: string }>(l: T[]) => [...l].sort(byName);
  return {
    [LAYER_KEYS.baseCommit]: info.base.commit,
    [LAYER_KEYS.baseVersion]: info.base.version,
    [LAYER_KEYS.layered]: sorted(info.layered).map((p) => ({ name: p.name, version: p.version })),
    [LAYER_KEYS.replaced]: sorted(info.overrides.replaced).map((p) => ({ name: p.name, version: p.version, base_version: p.base_version })),
    [LAYER_KEYS.removed]: sorted(info.overrides.removed).map((p) => ({ name: p.name, version: p.version })),
    [LAYER_KEYS.local]: info.local,
  };
}

/**
 * What a status shows of a commit: its layer's names, or for a commit that is not derived, the
 * commit itself as its base with nothing layered.
 */
export function layerSummary(commit: string, version: string, layer: LayerInfo | null): LayerSummary {
  if (!layer) return { base: { commit, version }, layered: [], overrides: { replaced: [], removed: [] }, local: false };
  const names = (l: { name: string }[]) => l.map((p) => p.name);
  return { base: { ...layer.base }, layered: names(layer.layered), overrides: { replaced: names(layer.overrides.replaced), removed: names(layer.overrides.removed) }, local: layer.local };
}

/** A CBOR map: a decoded Map, or a plain object before encoding. */
function isMap(v: CborValue): boolean {
  return v instanceof Map || (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array));
}

function describe(value: CborValue): string {
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (value instanceof Map) return 'a map';
  const json = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}
