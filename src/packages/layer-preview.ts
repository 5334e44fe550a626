/**
 * What an upgrade of a layered device will do to its packages: the new base's list with the
 * booted layer (layered packages, their dependencies, overrides) applied again, compared with
 * the booted list. A preview for `check` and `upgrade --dry-run`, computed from package lists
 * alone; the layering engine resolves the real tree when it re-applies the layer.
 * Pure: no I/O.
 */
import { compareDebianVersions } from './debian-version.ts';
import type { LayerInfo } from './layer-info.ts';
import { type InstalledPackage, type PackageDiff, diffPackageLists } from './package-diff.ts';

/**
 * A part of the layer the new base changes: in-new-base (a layered package the new base has
 * itself), base-not-older (the new base has a replaced package at the override's version or
 * newer), not-in-new-base (a replaced or removed package the new base no longer has).
 */
export interface LayerNote {
  name: string;
  reason: 'in-new-base' | 'base-not-older' | 'not-in-new-base';
  message: string;
}

export interface LayerPreview {
  /** The booted deployment's base. */
  base: { commit: string; version: string };
  /** What is re-applied on the new base (names, sorted). */
  reapplied: { layered: string[]; replaced: string[]; removed: string[] };
  notes: LayerNote[];
}

const key = (p: { name: string; architecture: string }) => `${p.name}\0${p.architecture}`;

/**
 * The package diff from the booted (layered) tree to the new base with the layer re-applied.
 * What the layer changed is the difference between the booted base's list and the booted list
 * (so the layered packages' dependencies count); without the booted base's list (pruned from
 * the repo), the layer's own entries stand for it.
 *
 * @example previewLayeredUpgrade(booted, layer, oldBase, newBase).packages.upgraded // the new base's upgrades; layered packages kept
 */
export function previewLayeredUpgrade(booted: InstalledPackage[], layer: LayerInfo, oldBase: InstalledPackage[] | null, newBase: InstalledPackage[]): { packages: PackageDiff; layer: LayerPreview } {
  const layeredNames = new Set(layer.layered.map((p) => p.name));
  const replaced = new Map(layer.overrides.replaced.map((p) => [p.name, p]));
  const removedNames = new Set(layer.overrides.removed.map((p) => p.name));
  const bootedByName = (name: string) => booted.filter((p) => p.name === name);
  // What the layer did to the booted base: packages added, versions changed, packages removed.
  const delta = oldBase
    ? diffPackageLists(oldBase, booted)
    : {
        added: booted.filter((p) => layeredNames.has(p.name)),
        upgraded: layer.overrides.replaced.flatMap((r) => bootedByName(r.name).map((p) => ({ name: p.name, architecture: p.architecture, from: r.base_version, to: p.version }))),
        downgraded: [],
        removed: newBase.filter((p) => removedNames.has(p.name)),
      };
  const result = new Map(newBase.map((p) => [key(p), p]));
  const notes: LayerNote[] = [];
  const note = (name: string, reason: LayerNote['reason'], message: string) => notes.push({ name, reason, message });

  // A package the layer brought or changed keeps the newer of its version and the new base's:
  // the layer's tree needed that version, and the new base's may be newer still.
  const newer = (inBase: InstalledPackage, version: string) => (compareDebianVersions(version, inBase.version) > 0 ? { ...inBase, version } : inBase);
  for (const p of delta.added) {
    const inBase = result.get(key(p));
    if (!inBase) result.set(key(p), p);
    else {
      result.set(key(p), newer(inBase, p.version));
      if (layeredNames.has(p.name)) note(p.name, 'in-new-base', `${p.name}: the new base has it (${inBase.version}); layering it adds nothing`);
    }
  }
  for (const c of [...delta.upgraded, ...delta.downgraded]) {
    const inBase = result.get(key(c));
    const override = replaced.get(c.name);
    if (override) {
      if (!inBase) note(c.name, 'not-in-new-base', `${c.name}: replaced by ${c.to}, but the new base no longer has it`);
      else if (compareDebianVersions(inBase.version, c.to) >= 0) note(c.name, 'base-not-older', `${c.name}: the new base has ${inBase.version}, not older than the override's ${c.to}`);
      if (inBase) result.set(key(c), { ...inBase, version: c.to });
    } else if (inBase) result.set(key(c), newer(inBase, c.to));
  }
  for (const p of delta.removed) {
    if (result.has(key(p))) result.delete(key(p));
    else if (removedNames.has(p.name)) note(p.name, 'not-in-new-base', `${p.name}: removed by an override, and the new base no longer has it`);
  }
  for (const r of layer.overrides.removed) {
    if (!oldBase && !newBase.some((p) => p.name === r.name)) note(r.name, 'not-in-new-base', `${r.name}: removed by an override, and the new base no longer has it`);
  }
  notes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    packages: diffPackageLists(booted, [...result.values()]),
    layer: { ...reappliedLayer(layer), notes },
  };
}

/** What an upgrade re-applies of a layer, with no notes (when the package lists are not known). */
export function reappliedLayer(layer: LayerInfo): LayerPreview {
  const names = (l: { name: string }[]) => l.map((p) => p.name).sort();
  return { base: { ...layer.base }, reapplied: { layered: names(layer.layered), replaced: names(layer.overrides.replaced), removed: names(layer.overrides.removed) }, notes: [] };
}
