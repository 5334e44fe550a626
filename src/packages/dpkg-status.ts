/**
 * The package list of a tree's dpkg database: its `status` file (deb822 stanzas, as dpkg writes
 * it) to the list `larch.packages` holds. Used by compose (the commit's metadata) and by `db list`
 * for a commit whose metadata has no list. Pure: text in, list out.
 */
import type { InstalledPackage } from './package-diff.ts';

/** Where a larch tree keeps its dpkg database (docs/formats.md, "Tree layout"), relative to the root: it moves with /usr. */
export const DPKG_ADMINDIR = 'usr/lib/sysimage/dpkg';
/** The database's status file, which lists the installed packages. */
export const DPKG_STATUS_PATH = `${DPKG_ADMINDIR}/status`;

/**
 * The installed packages of a dpkg status file: stanzas whose Status ends in `installed` (not
 * `config-files`, `half-installed`, ...), sorted by name and architecture.
 *
 * @example parseDpkgStatus('Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n') // [{ name: 'a', version: '1', architecture: 'all' }]
 */
export function parseDpkgStatus(text: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split('\n')) {
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) fields.set(m[1].toLowerCase(), m[2].trim());
    }
    const [name, version, architecture, status] = ['package', 'version', 'architecture', 'status'].map((k) => fields.get(k));
    if (name && version && architecture && status?.split(/\s+/)[2] === 'installed') out.push({ name, version, architecture });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.architecture < b.architecture ? -1 : a.architecture > b.architecture ? 1 : 0));
}
