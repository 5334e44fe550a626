#!/usr/bin/env node
// Makes sure everything the tests use is on this machine, installing it when we can (root + apt),
// and failing loudly with what to install otherwise. Then fetches the real Debian packages the
// fidelity tests unpack into .cache/debs/ (kept between runs).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const isRoot = process.getuid?.() === 0;

/** tool -> Debian package that provides it */
const TOOLS = { getfattr: 'attr', setfattr: 'attr', mkfifo: 'coreutils', sync: 'coreutils', 'dpkg-deb': 'dpkg', tar: 'tar', 'apt-get': 'apt', ostree: 'ostree' };
const missing = [...new Set(Object.entries(TOOLS).filter(([t]) => !has(t)).map(([, p]) => p))];
if (missing.length > 0) {
  if (!isRoot || !has('apt-get')) {
    console.error(`test-setup: missing tools from Debian packages: ${missing.join(' ')}\nInstall them (apt-get install -y ${missing.join(' ')}) and run again.`);
    process.exit(1);
  }
  console.error(`test-setup: installing ${missing.join(' ')}`);
  const upd = spawnSync('apt-get', ['update'], { stdio: 'inherit' });
  const inst = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (upd.status !== 0 || inst.status !== 0) {
    console.error(`test-setup: apt-get install ${missing.join(' ')} failed`);
    process.exit(1);
  }
}

/** Real packages for the fidelity test: symlinks, setuid binaries, many small files, large libraries. */
export const FIDELITY_PACKAGES = [
  'bash', 'dash', 'coreutils', 'sed', 'grep', 'gzip', 'tar', 'findutils', 'diffutils', 'less',
  'sudo', 'passwd', 'mount', 'tzdata', 'ncurses-base', 'ca-certificates', 'zlib1g', 'libc6',
  'busybox', 'hostname', 'iputils-ping', 'procps',
];
const debs = join(root, '.cache', 'debs');
mkdirSync(debs, { recursive: true });
const have = new Set(readdirSync(debs).filter((f) => f.endsWith('.deb')).map((f) => f.split('_')[0]));
const need = FIDELITY_PACKAGES.filter((p) => !have.has(p));
if (need.length > 0) {
  let r = spawnSync('apt-get', ['download', ...need], { cwd: debs, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0 && isRoot) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    r = spawnSync('apt-get', ['download', ...need], { cwd: debs, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  if (r.status !== 0) {
    console.error(`test-setup: 'apt-get download ${need.join(' ')}' failed:\n${r.stderr}`);
    process.exit(1);
  }
}
if (!existsSync(join(debs, readdirSync(debs).find((f) => f.startsWith('bash_')) ?? 'none'))) {
  console.error('test-setup: Debian packages are missing from .cache/debs');
  process.exit(1);
}
console.error(`test-setup: tools present; ${FIDELITY_PACKAGES.length} Debian packages in .cache/debs`);
