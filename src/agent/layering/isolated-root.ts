/**
 * The isolated root a layered tree is built in: a checkout of the base commit in a staging
 * directory on the sysroot's own filesystem (S/larch/layering/build, hardlinks from the bare
 * repo), in which the tree's own apt-get and dpkg run chrooted, inside a mount and PID namespace
 * made for the run (`unshare --mount --pid --fork`): /proc and a minimal /dev are mounted there
 * only, and vanish with the namespace. Never the running system, never a deployment.
 *
 * The tree's /var is apt's scratch (lists, archives, the apt sources copied from the booted
 * deployment) and is emptied before the tree is committed; a policy-rc.d refuses every service
 * start while the scripts run.
 */
import { mkdir, readdir, rename, rm, stat, writeFile, chmod, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../../errors.ts';
import { runTool } from '../../_run.ts';
import { checkout } from '../../store/checkout.ts';
import type { ObjectId } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import { DPKG_ADMINDIR, DPKG_STATUS_PATH } from '../../packages/dpkg-status.ts';

/** Inside the root: the apt sources, keys and local .deb files of this run (under /var: never committed). */
export const SCRATCH = '/var/lib/larch-layer';
const POLICY_RC_D = 'usr/sbin/policy-rc.d';

/** Mounts /proc and a minimal /dev inside the namespace, then runs the command chrooted, with a clean environment. */
const NAMESPACE_SCRIPT = `set -e
R=$1; shift
# chroot is in /usr/sbin, which the caller's PATH may lack (cron's /usr/bin:/bin; the demo image's console shell has PATH=/bin).
PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755,nosuid,size=1m larch-dev "$R/dev"
for d in null zero full random urandom tty; do : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -p "$R/dev/pts" "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true "$@"
`;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class IsolatedRoot {
  private readonly created: string[] = [];
  /** What the base has in /tmp and /run: kept; anything else the scripts left there goes. */
  private readonly baseEntries = new Map<string, Set<string>>();
  private constructor(readonly dir: string) {}

  /**
   * Checks commit out into dir (which must not exist), with the files scripts may rewrite in
   * place (/etc and the dpkg database) copied, never hardlinked: a bare repo's objects are the
   * hardlinks' other names. @throws NOT_FOUND, OBJECT_*, NO_SPACE, INVALID_INPUT (no dpkg database)
   */
  static async prepare(repo: Repo, commit: ObjectId, dir: string): Promise<IsolatedRoot> {
    await checkout(repo, commit, dir, { verify: true });
    const root = new IsolatedRoot(dir);
    if (!(await isFile(join(dir, DPKG_STATUS_PATH))) || !(await isFile(join(dir, 'usr/bin/apt-get')))) {
      throw new LarchError('INVALID_INPUT', `the base commit ${commit.slice(0, 12)} is not layering-capable: it has no dpkg database at /${DPKG_STATUS_PATH} or no /usr/bin/apt-get`, {
        hint: 'the vendor composes a layering-capable tree (dpkg and apt in the image, the database under /usr: docs/layering.md)',
        data: { commit, reason: 'not-layering-capable' },
      });
    }
    for (const rel of ['etc', DPKG_ADMINDIR]) await unshareLinks(join(dir, rel));
    for (const rel of ['tmp', 'run']) root.baseEntries.set(rel, new Set(await readdir(join(dir, rel)).catch(() => [])));
    for (const rel of ['proc', 'dev', 'tmp', 'var', 'root']) {
      if (!(await exists(join(dir, rel)))) {
        await mkdir(join(dir, rel), { recursive: true });
        root.created.push(rel);
      }
    }
    await chmod(join(dir, 'tmp'), 0o1777);
    await mkdir(join(dir, SCRATCH.slice(1), 'debs'), { recursive: true });
    for (const sub of ['var/lib/apt/lists/partial', 'var/cache/apt/archives/partial', 'var/log/apt', 'var/lib/dpkg']) await mkdir(join(dir, sub), { recursive: true });
    // Services never start in the isolated root (invoke-rc.d and deb-systemd-invoke ask this).
    if (!(await exists(join(dir, POLICY_RC_D)))) {
      await writeFile(join(dir, POLICY_RC_D), '#!/bin/sh\n# larch layering: no service starts in the isolated root\nexit 101\n', { mode: 0o755 });
      root.created.push(POLICY_RC_D);
    }
    return root;
  }

  /** A path inside the root (rel: relative, or absolute as seen from inside). */
  path(rel: string): string {
    return join(this.dir, rel.replace(/^\/+/, ''));
  }

  /** Runs argv chrooted in the root, in a new mount and PID namespace. @throws TOOL_MISSING */
  async run(argv: string[]): Promise<RunResult> {
    return runTool('unshare', ['--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', 'sh', '-c', NAMESPACE_SCRIPT, 'larch-layer', this.dir, ...argv], { context: 'layering', purpose: 'to build a layered tree in a namespace' });
  }

  /**
   * Makes the tree committable: /var emptied (scratch of the run; the commit's /var stays empty,
   * the device's /var is its own), and what prepare added removed. Returns nothing; the tree is ready.
   */
  async finish(): Promise<void> {
    for (const rel of this.created.filter((r) => r !== 'var')) await rm(this.path(rel), { recursive: true, force: true });
    const varDir = this.path('var');
    const mode = (await stat(varDir)).mode & 0o7777;
    await rename(varDir, `${this.dir}.var`);
    await rm(`${this.dir}.var`, { recursive: true, force: true });
    if (!this.created.includes('var')) {
      await mkdir(varDir);
      await chmod(varDir, mode);
    }
    // The scripts' leftovers that are the running system's, not the tree's.
    for (const rel of ['tmp', 'run']) {
      const keep = this.baseEntries.get(rel) ?? new Set<string>();
      if (!this.created.includes(rel) && (await exists(this.path(rel)))) for (const e of await readdir(this.path(rel))) if (!keep.has(e)) await rm(join(this.path(rel), e), { recursive: true, force: true });
    }
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await rm(`${this.dir}.var`, { recursive: true, force: true });
  }
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}
async function isFile(p: string): Promise<boolean> {
  return lstat(p).then((s) => s.isFile(), () => false);
}

/** Replaces dir by a copy of itself: new inodes for every file, owners and modes kept. */
async function unshareLinks(dir: string): Promise<void> {
  if (!(await lstat(dir).then((s) => s.isDirectory(), () => false))) return;
  const copy = `${dir}.larch-copy`;
  // cp -a keeps owners, modes, xattrs and links within the copy; the copies are new inodes.
  const r = await runTool('cp', ['-a', '--no-target-directory', dir, copy]);
  if (r.code !== 0) {
    await rm(copy, { recursive: true, force: true });
    const noSpace = /No space left/.test(r.stderr);
    throw new LarchError(noSpace ? 'NO_SPACE' : 'IO', `copy ${dir} in the isolated root: ${r.stderr.trim().split('\n').slice(-1)[0]}`, { data: { path: dir } });
  }
  await rm(dir, { recursive: true, force: true });
  await rename(copy, dir);
}
