/** The package diff for people (db diff, check and upgrade --dry-run). */
import type { LayerPreview } from '../packages/layer-preview.ts';
import type { PackageDiff } from '../packages/package-diff.ts';

/** rpm-ostree db diff's layout: one section per kind of change. */
export function formatPackageDiff(diff: PackageDiff): string {
  const lines: string[] = [];
  const section = (title: string, rows: string[]) => {
    if (rows.length === 0) return;
    lines.push(`${title}:`, ...rows.map((r) => `  ${r}`));
  };
  section('Upgraded', diff.upgraded.map((c) => `${c.name} ${c.from} -> ${c.to}`));
  section('Downgraded', diff.downgraded.map((c) => `${c.name} ${c.from} -> ${c.to}`));
  section('Removed', diff.removed.map((p) => `${p.name} ${p.version} ${p.architecture}`));
  section('Added', diff.added.map((p) => `${p.name} ${p.version} ${p.architecture}`));
  return lines.length ? `${lines.join('\n')}\n` : 'No package changes\n';
}

/** What a layered device's upgrade re-applies on the new base (check, upgrade --dry-run); '' when nothing is layered. */
export function formatLayerPreview(layer: LayerPreview | null): string {
  if (!layer) return '';
  const { layered, replaced, removed } = layer.reapplied;
  const lines = [`Re-applied on the new base (the booted deployment is layered on version ${layer.base.version}):`];
  if (layered.length > 0) lines.push(`  layered: ${layered.join(', ')}`);
  if (replaced.length > 0) lines.push(`  replaced: ${replaced.join(', ')}`);
  if (removed.length > 0) lines.push(`  removed: ${removed.join(', ')}`);
  for (const n of layer.notes) lines.push(`  note: ${n.message}`);
  return `${lines.join('\n')}\n`;
}
