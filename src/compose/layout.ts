/**
 * Where package and overlay paths go in a larch image (docs/images.md, "Layout"): merged /usr
 * (/bin, /sbin, /lib* are symlinks into /usr, as Debian's merged-usr systems have them), /etc
 * kept as the vendor default for the three-way merge, and /var empty: what packages ship under
 * /var is kept under /usr/share/factory/var, because a device's /var is shared by all
 * deployments and never written by an update. Pure: paths in, paths out.
 */
import { DPKG_ADMINDIR } from '../packages/dpkg-status.ts';

/** Top-level directories that live in /usr, with a symlink at the root. */
export const MERGED_USR_DIRS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];
/** Where package content under /var goes. */
export const FACTORY_VAR = 'usr/share/factory/var';

/**
 * Splits a tar member name ("./usr/bin/", "usr/bin/x") into a relative path without '.' parts
 * or slashes at either end; '' is the root. Returns undefined for a name with '..'.
 */
export function normalizeMemberName(name: string): string | undefined {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return undefined;
  return parts.join('/');
}

/**
 * The path in the image for a path a package or overlay names (relative, normalized):
 * `bin/sh` → `usr/bin/sh`, `var/lib/x` → `usr/share/factory/var/lib/x`; `var` itself stays.
 *
 * @example imagePath('lib64/ld-linux-x86-64.so.2') // 'usr/lib64/ld-linux-x86-64.so.2'
 */
export function imagePath(path: string): string {
  const slash = path.indexOf('/');
  const first = slash < 0 ? path : path.slice(0, slash);
  if (MERGED_USR_DIRS.includes(first)) return `usr/${path}`;
  if (first === 'var' && slash >= 0) return `${FACTORY_VAR}/${path.slice(slash + 1)}`;
  return path;
}

/** Proper ancestors of a relative path, shortest first: 'a/b/c' → ['a', 'a/b']. */
export function ancestors(path: string): string[] {
  const parts = path.split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

/** Matches a path against a glob whose '*' and '?' stay within one component (no '**'). */
export function matchGlob(pattern: string, path: string): boolean {
  const pp = pattern.split('/');
  const parts = path.split('/');
  if (pp.length !== parts.length) return false;
  return pp.every((p, i) => componentRegex(p).test(parts[i]));
}

function componentRegex(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

/**
 * Where an exposed boot file goes: files already in /boot stay; device trees go to
 * /boot/dtbs/ (the deployer copies that directory to the slot); anything else to /boot/.
 */
export function bootDestination(path: string): string {
  if (path.startsWith('boot/')) return path;
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.endsWith('.dtb') ? `boot/dtbs/${base}` : `boot/${base}`;
}

/**
 * Files every resolved tree gets, so that dpkg and apt (on the device, in a layering root) find
 * the database at DPKG_ADMINDIR with no flags (apt passes dpkg --admindir=the status file's directory).
 */
export const ADMINDIR_CONFIG: Readonly<Record<string, string>> = {
  'etc/dpkg/dpkg.cfg.d/larch': `# larch: the dpkg database moves with /usr (docs/formats.md, "Tree layout")\nadmindir /${DPKG_ADMINDIR}\n`,
  'etc/apt/apt.conf.d/50larch': `// larch: the dpkg database moves with /usr (docs/formats.md, "Tree layout")\nDir::State::status "/${DPKG_ADMINDIR}/status";\n`,
};

/**
 * Paths of a tree built by running maintainer scripts that are left out of the commit: state that
 * is the build's own (logs, caches, apt lists, dpkg's locks and backups), what the build machine
 * lent the tree (/etc/hostname, /etc/resolv.conf, mmdebstrap's apt options, the device nodes), and
 * what every device must make for itself (ssh host keys, /etc/machine-id).
 */
const DROPPED_TREE_PATHS: RegExp[] = [
  /^dev\/./,
  /^(proc|sys|run|tmp)\/./,
  /^var\/(cache|log|tmp|run|lock)(\/|$)/,
  /^var\/lib\/apt\/lists(\/|$)/,
  /^var\/lib\/dpkg\/(lock|lock-frontend|triggers\/Lock|[^/]*-old)$/,
  /^var\/backups\/./,
  /^etc\/(hostname|resolv\.conf|machine-id)$/,
  /^etc\/apt\/apt\.conf\.d\/99mmdebstrap$/,
  /^etc\/ssh\/ssh_host_[^/]*$/,
];

/**
 * Where a member of a resolved tree (mmdebstrap's output, already merged-/usr) goes in the
 * commit, or null when it is left out (DROPPED_TREE_PATHS): /var/lib/dpkg moves to
 * DPKG_ADMINDIR, the rest of /var goes to FACTORY_VAR as package content does.
 *
 * @example treeMemberPath('var/lib/dpkg/status') // 'usr/lib/sysimage/dpkg/status'
 * @example treeMemberPath('etc/ssh/ssh_host_ed25519_key') // null
 */
export function treeMemberPath(path: string): string | null {
  if (DROPPED_TREE_PATHS.some((re) => re.test(path))) return null;
  if (path === 'var/lib/dpkg' || path.startsWith('var/lib/dpkg/')) return `${DPKG_ADMINDIR}${path.slice('var/lib/dpkg'.length)}`;
  if (path.startsWith('var/')) return `${FACTORY_VAR}/${path.slice(4)}`;
  return path;
}
