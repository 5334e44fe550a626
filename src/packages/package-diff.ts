/**
 * The package-level view of commits (`larch db list|diff`, as `rpm-ostree db diff`): the
 * package list in a commit's metadata (formats.md §12), and the difference between two lists.
 * Pure: no I/O.
 */
import type { CborValue } from '../store/cbor.ts';
import { compareDebianVersions } from './debian-version.ts';

/** Commit metadata key holding [[name, version, architecture], ...], sorted by name. */
export const PACKAGES_KEY = 'larch.packages';

export interface InstalledPackage {
  name: string;
  version: string;
  architecture: string;
}

export interface PackageChange {
  name: string;
  architecture: string;
  from: string;
  to: string;
}

export interface PackageDiff {
  upgraded: PackageChange[];
  downgraded: PackageChange[];
  added: InstalledPackage[];
  removed: InstalledPackage[];
}

const byName = (a: InstalledPackage, b: InstalledPackage) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.architecture < b.architecture ? -1 : a.architecture > b.architecture ? 1 : 0);

/** The metadata value for a package list (sorted, so the commit id does not depend on input order). */
export function encodePackageList(packages: InstalledPackage[]): CborValue {
  return [...packages].sort(byName).map((p) => [p.name, p.version, p.architecture]);
}

/**
 * Reads the package list from a commit's metadata. Returns undefined when the commit has no
 * package list (it was not made by compose), or when the entry is malformed.
 */
export function decodePackageList(metadata: Map<string, CborValue>): InstalledPackage[] | undefined {
  const raw = metadata.get(PACKAGES_KEY);
  if (!Array.isArray(raw)) return undefined;
  const out: InstalledPackage[] = [];
  for (const entry of raw) {
    if (!Array.isArray(entry) || entry.length !== 3 || !entry.every((v) => typeof v === 'string')) return undefined;
    const [name, version, architecture] = entry as string[];
    out.push({ name, version, architecture });
  }
  return out.sort(byName);
}

/**
 * What changed between two package lists. A package is identified by name and architecture
 * (Multi-Arch: same packages can be present once per architecture); an architecture change
 * (e.g. a package moving to `all`) shows as a removal and an addition. Versions compare with
 * Debian's rules, so `2.36-9+deb12u7` → `2.36-9+deb12u14` is an upgrade.
 *
 * @example diffPackageLists([{name:'a',version:'1',architecture:'all'}], [{name:'a',version:'2',architecture:'all'}]).upgraded // [{name:'a', architecture:'all', from:'1', to:'2'}]
 */
export function diffPackageLists(from: InstalledPackage[], to: InstalledPackage[]): PackageDiff {
  const key = (p: InstalledPackage) => `${p.name}\0${p.architecture}`;
  const before = new Map(from.map((p) => [key(p), p]));
  const after = new Map(to.map((p) => [key(p), p]));
  const diff: PackageDiff = { upgraded: [], downgraded: [], added: [], removed: [] };
  for (const [k, old] of before) {
    const now = after.get(k);
    if (!now) diff.removed.push(old);
    else if (now.version !== old.version) {
      const change = { name: old.name, architecture: old.architecture, from: old.version, to: now.version };
      // Versions that differ as text but compare equal (1.0 vs 1.0-0) still count as a change.
      (compareDebianVersions(now.version, old.version) >= 0 ? diff.upgraded : diff.downgraded).push(change);
    }
  }
  for (const [k, now] of after) if (!before.has(k)) diff.added.push(now);
  for (const list of Object.values(diff) as InstalledPackage[][]) list.sort(byName);
  return diff;
}

/**
 * The package diff between two commits, from their metadata; null when either was not made by
 * compose (no package list), so "no changes" and "not known" never look alike.
 */
export function diffCommitPackages(from: Map<string, CborValue>, to: Map<string, CborValue>): PackageDiff | null {
  const before = decodePackageList(from);
  const after = decodePackageList(to);
  return before && after ? diffPackageLists(before, after) : null;
}
