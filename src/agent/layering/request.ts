/**
 * The layering request: what the device was asked to add and change on top of the vendor's base
 * (rpm-ostree's origin: `packages`, `local-packages`, `override-replace-local`, `override-remove`),
 * never what apt resolved from it. Pure: the verbs as edits of a request, and its checks.
 */
import { LarchError } from '../../errors.ts';

/** A .deb file the device was given, cached by its content (S/larch/layering/local/SHA256.deb). */
export interface LocalDeb {
  name: string;
  version: string;
  architecture: string;
  sha256: string;
}

export interface LayerRequest {
  /** Package names to install from the device's apt sources, sorted. */
  packages: string[];
  /** Local .deb files to install (`larch install FILE.deb`), sorted by name. */
  local: LocalDeb[];
  /** Base packages replaced by a given .deb (`override replace`), sorted by name. */
  replace: LocalDeb[];
  /** Base packages removed (`override remove`), sorted. */
  remove: string[];
}

export const EMPTY_REQUEST: LayerRequest = { packages: [], local: [], replace: [], remove: [] };

export function isEmptyRequest(r: LayerRequest): boolean {
  return r.packages.length + r.local.length + r.replace.length + r.remove.length === 0;
}

const sortNames = (names: Iterable<string>) => [...new Set(names)].sort();
const sortDebs = (debs: LocalDeb[]) => [...new Map(debs.map((d) => [d.name, d])).values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

/** A Debian package name (Policy 5.6.1), so a name can never carry an apt option or a path. */
export function isPackageName(name: string): boolean {
  return /^[a-z0-9][a-z0-9+.-]+$/.test(name);
}

/** `larch install`: names from the apt sources and local .deb files, added to what is layered. */
export function addInstall(r: LayerRequest, names: string[], local: LocalDeb[]): LayerRequest {
  const localNames = new Set(local.map((d) => d.name));
  return {
    ...r,
    packages: sortNames([...r.packages.filter((p) => !localNames.has(p)), ...names]),
    local: sortDebs([...r.local.filter((d) => !names.includes(d.name)), ...local]),
  };
}

/**
 * `larch uninstall`: drops layered packages (by name, from the sources or local).
 * @throws NOT_FOUND naming the packages that are not layered
 */
export function removeInstall(r: LayerRequest, names: string[]): LayerRequest {
  const layered = new Set([...r.packages, ...r.local.map((d) => d.name)]);
  const missing = names.filter((n) => !layered.has(n));
  if (missing.length > 0) {
    throw new LarchError('NOT_FOUND', `not layered: ${missing.join(', ')} (layered: ${[...layered].sort().join(', ') || 'none'})`, { hint: "uninstall takes packages added with 'larch install'; a base package is removed with 'larch override remove'", data: { packages: missing, layered: [...layered].sort() } });
  }
  return { ...r, packages: r.packages.filter((p) => !names.includes(p)), local: r.local.filter((d) => !names.includes(d.name)) };
}

/** `override replace`: these .deb files take the place of the base's packages of the same names. */
export function addReplace(r: LayerRequest, debs: LocalDeb[]): LayerRequest {
  const names = new Set(debs.map((d) => d.name));
  return { ...r, replace: sortDebs([...r.replace.filter((d) => !names.has(d.name)), ...debs]), remove: r.remove.filter((n) => !names.has(n)) };
}

/** `override remove`: base packages left out of the derived tree. */
export function addRemove(r: LayerRequest, names: string[]): LayerRequest {
  return { ...r, remove: sortNames([...r.remove, ...names]), replace: r.replace.filter((d) => !names.includes(d.name)) };
}

/**
 * `override reset [PKG...]`: the named overrides (all, with no names) dropped, so the base's
 * package comes back. @throws NOT_FOUND naming the packages that have no override
 */
export function resetOverrides(r: LayerRequest, names: string[]): LayerRequest {
  if (names.length === 0) return { ...r, replace: [], remove: [] };
  const overridden = new Set([...r.replace.map((d) => d.name), ...r.remove]);
  const missing = names.filter((n) => !overridden.has(n));
  if (missing.length > 0) {
    throw new LarchError('NOT_FOUND', `no override for: ${missing.join(', ')} (overridden: ${[...overridden].sort().join(', ') || 'none'})`, { hint: "'larch override reset' with no name resets them all", data: { packages: missing, overridden: [...overridden].sort() } });
  }
  return { ...r, replace: r.replace.filter((d) => !names.includes(d.name)), remove: r.remove.filter((n) => !names.includes(n)) };
}

/** Drops the named packages from whatever part of the request holds them (upgrade --drop-failing-layers). */
export function dropPackages(r: LayerRequest, names: string[]): LayerRequest {
  const drop = new Set(names);
  return { packages: r.packages.filter((n) => !drop.has(n)), local: r.local.filter((d) => !drop.has(d.name)), replace: r.replace.filter((d) => !drop.has(d.name)), remove: r.remove.filter((n) => !drop.has(n)) };
}

/** Every package name the request mentions. */
export function requestNames(r: LayerRequest): string[] {
  return sortNames([...r.packages, ...r.local.map((d) => d.name), ...r.replace.map((d) => d.name), ...r.remove]);
}
