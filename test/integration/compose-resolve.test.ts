/**
 * larch compose resolving dependencies and running maintainer scripts (mmdebstrap, issue 17
 * must-show 1), through the Bun binary on real Debian packages (the host's apt indexes; .deb
 * files cached in .cache/compose): a definition listing only openssh-server gets its whole
 * closure with the scripts run (the sshd user, /etc/ssh/sshd_config) and no ssh host keys, the
 * dpkg database under /usr/lib/sysimage/dpkg with the config pointing dpkg and apt at it, the
 * same commit id from a second compose into another repo (a real second mmdebstrap run:
 * --no-tree-cache), and `db list` equal to the tree's own dpkg database; a third compose takes
 * the tree from the tree cache and gives that id again; a changed local .deb misses the cache
 * (each key input: test/unit/compose/tree-key.test.ts); a failing maintainer script and an unresolvable package fail
 * with a clear error and leave the refs as they were.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, larch, larchOk, missingTools, sh, tempDir, testNeeding } from '../helpers.ts';

const CACHE = join(ROOT, '.cache', 'compose');
const ARCH = sh('dpkg --print-architecture').trim();
const cannot = missingTools(['mmdebstrap', 'dpkg-deb', 'apt-cache']).map((tool) => `${tool} is not installed`).join(', ') || false;

function definition(dir: string, name: string, body: string): string {
  const path = join(dir, `${name}.toml`);
  writeFileSync(path, `ref = "test/${name}"\nversion = "1.0"\narchitecture = "${ARCH}"\ntimestamp = 2026-01-01T00:00:00Z\n${body}`);
  return path;
}

async function newRepo(dir: string, name: string): Promise<string> {
  const repo = join(dir, name);
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
  return repo;
}

const refs = (repo: string) => sh(`find '${repo}/refs' -type f -exec sh -c 'echo "$1 $(cat "$1")"' _ {} \\; | sort`);

testNeeding(t, 'a definition listing only openssh-server gets its closure, scripts run, no host keys, the same commit twice, db list = the dpkg database', cannot, { timeout: 900_000 }, async (t) => {
  const dir = tempDir(t, 'larch-compose-resolve-');
  const def = definition(dir, 'ssh', 'packages = ["openssh-server"]\n');
  const repo1 = await newRepo(dir, 'repo1');
  const started = Date.now();
  const first = (await larchOk(['compose', def, '--repo', repo1, '--cache', CACHE, '--json'])).json;
  // A hit when an earlier run left this tree in the shared cache; the second compose below builds anyway.
  t.comment(`resolved compose of openssh-server: ${first.packages.length} packages, ${((Date.now() - started) / 1000).toFixed(1)} s (${first.downloaded} downloaded, tree cache ${first.tree_cache})`);
  t.ok(first.tree_cache === 'hit' || first.tree_cache === 'miss', `the tree cache was used (${first.tree_cache})`);
  t.equal(first.exact, false, 'a resolved compose');
  const names: string[] = first.packages.map((p: { name: string }) => p.name);
  for (const dep of ['openssh-server', 'openssh-client', 'libc6', 'libssl3', 'adduser', 'dpkg', 'base-passwd', 'libpam0g']) t.ok(names.includes(dep), `the closure holds ${dep}`);
  t.notOk(names.includes('perl'), 'merged /usr from the start: no usrmerge and no perl in the closure');

  const tree = join(dir, 'tree');
  await larchOk(['checkout', '--repo', repo1, first.commit, tree]);
  t.match(readFileSync(join(tree, 'etc/passwd'), 'utf8'), /^sshd:x:\d+:\d+:/m, "openssh-server's postinst made the sshd user");
  t.match(readFileSync(join(tree, 'etc/ssh/sshd_config'), 'utf8'), /Include \/etc\/ssh\/sshd_config\.d\/\*\.conf/, 'the conffile /etc/ssh/sshd_config is in /etc');
  t.same(readdirSync(join(tree, 'etc/ssh')).filter((f) => f.startsWith('ssh_host_')), [], 'no ssh host keys in the tree (each device makes its own)');
  t.notOk(existsSync(join(tree, 'etc/machine-id')), 'no /etc/machine-id');
  t.same(readdirSync(join(tree, 'var')), [], '/var is empty');
  t.match(readFileSync(join(tree, 'etc/dpkg/dpkg.cfg.d/larch'), 'utf8'), /^admindir \/usr\/lib\/sysimage\/dpkg$/m, 'dpkg.cfg.d/larch sets the admindir');
  t.match(readFileSync(join(tree, 'etc/apt/apt.conf.d/50larch'), 'utf8'), 'Dir::State::status "/usr/lib/sysimage/dpkg/status";', 'apt finds the status file');
  t.ok(existsSync(join(tree, 'usr/lib/sysimage/dpkg/info/openssh-server.postinst')), 'the database keeps the maintainer scripts');
  t.equal(readlinkOf(join(tree, 'bin')), 'usr/bin', 'merged /usr');

  // db list is the tree's own dpkg database, read by the real dpkg-query.
  const dbList = (await larchOk(['db', 'list', '--repo', repo1, first.commit, '--json'])).json;
  const dpkgQuery = sh(`dpkg-query --admindir='${tree}/usr/lib/sysimage/dpkg' -W -f='\${db:Status-Status} \${Package} \${Version} \${Architecture}\\n'`)
    .split('\n')
    .filter((l) => l.startsWith('installed '))
    .map((l) => l.split(' ').slice(1).join(' '))
    .sort();
  t.same(dbList.packages.map((p: { name: string; version: string; architecture: string }) => `${p.name} ${p.version} ${p.architecture}`).sort(), dpkgQuery, 'db list shows the whole closure, as dpkg-query reads the tree');
  t.equal(dbList.packages.length, first.packages.length, 'db list and compose agree');
  // A commit of the same tree without larch.packages: db list reads the tree's dpkg database.
  const plain = (await larchOk(['commit', '--repo', repo1, '--branch', 'test/plain', '--tree', tree, '--version', '1', '--json'])).json;
  const plainList = (await larchOk(['db', 'list', '--repo', repo1, plain.commit, '--json'])).json;
  t.same(plainList.packages, dbList.packages, 'a commit with no package list in its metadata: db list reads /usr/lib/sysimage/dpkg/status');

  // Determinism: a second mmdebstrap run, not the cache's copy of the first tree.
  const repo2 = await newRepo(dir, 'repo2');
  const rebuildStarted = Date.now();
  const second = (await larchOk(['compose', def, '--repo', repo2, '--cache', CACHE, '--no-tree-cache', '--json'])).json;
  const rebuildS = (Date.now() - rebuildStarted) / 1000;
  t.equal(second.tree_cache, 'off', '--no-tree-cache ran mmdebstrap again');
  t.equal(second.commit, first.commit, 'composing again (another repo, mmdebstrap run again, warm .deb cache) gives the same commit id');
  t.equal(second.downloaded, 0, 'the second compose downloads nothing');

  // The tree cache: the same inputs take the stored tree, and give the same commit.
  const repo3 = await newRepo(dir, 'repo3');
  const hitStarted = Date.now();
  const third = (await larchOk(['compose', def, '--repo', repo3, '--cache', CACHE, '--json'])).json;
  t.comment(`the same compose: ${rebuildS.toFixed(1)} s running mmdebstrap, ${((Date.now() - hitStarted) / 1000).toFixed(1)} s from the tree cache`);
  t.equal(third.tree_cache, 'hit', 'a third compose with the same inputs takes the tree from the cache');
  t.equal(third.commit, first.commit, 'and gives the same commit id');
  t.same(third.packages, first.packages, 'and the same package list');
});

testNeeding(t, 'the tree cache misses when an input changes: a local .deb of the same name and version', cannot, { timeout: 900_000 }, async (t) => {
  const dir = tempDir(t, 'larch-compose-tree-cache-');
  // A tree cache of its own, so this test's trees do not evict the shared cache's (the image
  // tests'); the .deb cache is the shared one, so nothing is downloaded again.
  const cache = join(dir, 'cache');
  mkdirSync(cache);
  mkdirSync(join(CACHE, 'resolved'), { recursive: true });
  symlinkSync(join(CACHE, 'resolved'), join(cache, 'resolved'));
  const deb = (content: string) => {
    const pkg = join(dir, 'pkg');
    mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
    mkdirSync(join(pkg, 'usr/share/larch-test'), { recursive: true });
    writeFileSync(join(pkg, 'DEBIAN/control'), `Package: larch-test-local\nVersion: 1.0\nArchitecture: all\nMaintainer: larch tests <t@example.org>\nDescription: a local package\n`);
    writeFileSync(join(pkg, 'usr/share/larch-test/content'), content);
    sh(`dpkg-deb --root-owner-group -Zgzip --build '${pkg}' '${dir}/larch-test-local_1.0_all.deb'`);
  };
  const compose = async (def: string, name: string) => (await larchOk(['compose', def, '--repo', await newRepo(dir, name), '--cache', cache, '--json'])).json;
  const body = 'packages = ["busybox"]\nlocal_packages = ["larch-test-local_1.0_all.deb"]\n';
  const def = definition(dir, 'local', body);

  deb('one\n');
  const one = await compose(def, 'repo1');
  t.equal(one.tree_cache, 'miss', 'a new tree cache: the first compose builds');
  const again = await compose(def, 'repo2');
  t.equal(again.tree_cache, 'hit', 'the same inputs: a hit');
  t.equal(again.commit, one.commit, 'the same commit id');

  deb('two\n');
  const two = await compose(def, 'repo3');
  t.equal(two.tree_cache, 'miss', 'the local .deb rebuilt with other content (same name and version): a miss');
  t.not(two.commit, one.commit, 'and another tree');
  const tree = join(dir, 'tree');
  await larchOk(['checkout', '--repo', join(dir, 'repo3'), two.commit, tree]);
  t.equal(readFileSync(join(tree, 'usr/share/larch-test/content'), 'utf8'), 'two\n', "the new .deb's content, not the cached tree's");
  t.same(readdirSync(join(cache, 'trees')).filter((n) => n.endsWith('.tar')).length, 2, 'two trees stored, one per key');
});

function readlinkOf(path: string): string {
  return sh(`readlink '${path}'`).trim();
}

testNeeding(t, 'a failing maintainer script and an unresolvable package: a clear error, no commit', cannot, { timeout: 600_000 }, async (t) => {
  const dir = tempDir(t, 'larch-compose-resolve-fail-');
  const repo = await newRepo(dir, 'repo');
  // A package whose postinst fails, as a local .deb.
  const pkg = join(dir, 'pkg');
  mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
  writeFileSync(join(pkg, 'DEBIAN/control'), `Package: larch-test-fails\nVersion: 1.0\nArchitecture: all\nMaintainer: larch tests <t@example.org>\nDescription: a postinst that fails\n`);
  writeFileSync(join(pkg, 'DEBIAN/postinst'), '#!/bin/sh\necho "larch-test-fails: refusing to configure" >&2\nexit 3\n', { mode: 0o755 });
  sh(`dpkg-deb --root-owner-group -Zgzip --build '${pkg}' '${dir}/larch-test-fails_1.0_all.deb'`);
  const before = refs(repo);

  const failing = definition(dir, 'fails', 'packages = ["busybox"]\nlocal_packages = ["larch-test-fails_1.0_all.deb"]\n');
  const r = await larch(['compose', failing, '--repo', repo, '--cache', CACHE, '--json']);
  t.equal(r.code, 4, `a failing maintainer script exits 4 (INVALID_INPUT): ${r.stderr.trim()}`);
  t.equal(r.json?.error?.code, 'INVALID_INPUT');
  t.equal(r.json?.error?.data?.package, 'larch-test-fails', 'the error names the package');
  t.match(r.json?.error?.message, /maintainer script of package 'larch-test-fails' failed/, 'and says a maintainer script failed');
  t.equal(refs(repo), before, 'no commit: the refs are as they were');

  const missing = definition(dir, 'missing', 'packages = ["openssh-server", "larch-no-such-package"]\n');
  const m = await larch(['compose', missing, '--repo', repo, '--cache', CACHE, '--json']);
  t.equal(m.code, 3, 'an unresolvable package exits 3 (NOT_FOUND)');
  t.equal(m.json?.error?.data?.package, 'larch-no-such-package', 'naming the package');
  t.equal(refs(repo), before, 'no commit: the refs are as they were');
});

testNeeding(t, 'the exact option lists the packages exactly, with no scripts run', cannot, { timeout: 300_000 }, async (t) => {
  const dir = tempDir(t, 'larch-compose-exact-');
  const repo = await newRepo(dir, 'repo');
  const def = definition(dir, 'exact', 'packages = ["busybox", "libc6", "openssh-server"]\n');
  const r = (await larchOk(['compose', def, '--repo', repo, '--cache', CACHE, '--exact', '--json'])).json;
  t.equal(r.exact, true);
  t.same(r.packages.map((p: { name: string }) => p.name), ['busybox', 'libc6', 'openssh-server'], 'exactly the listed packages, no dependency added');
  const tree = join(dir, 'tree');
  await larchOk(['checkout', '--repo', repo, r.commit, tree]);
  t.notOk(existsSync(join(tree, 'etc/passwd')), 'no maintainer script ran (no base-passwd, no sshd user)');
  t.notOk(existsSync(join(tree, 'usr/lib/sysimage/dpkg')), 'no dpkg database');
});
