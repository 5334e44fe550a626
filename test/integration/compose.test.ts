/**
 * larch compose and db list|diff through the Bun binary, on real Debian packages fetched with
 * apt-get download (cached in .cache/compose), exact = true (resolved composes: compose-resolve.test.ts): a 38-package definition composes to the same
 * commit id twice; one changed pin changes it and db diff names exactly that package; old and
 * new versions of real packages give a db diff that matches dpkg-deb -f of the .deb files
 * used (directions by the real dpkg --compare-versions), and a device provisioned with the old
 * commit (over HTTP, and over MQTT) shows that same diff in `check --json` and `upgrade --dry-run
 * --json` (fetching only the new commit object for check; the dry run stages nothing), while a
 * device on commits without package lists gets `packages: null`; a missing package, an
 * unavailable version and escaping overlays fail before anything is committed.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Test, startServe, status, vendor } from '../device-helpers.ts';
import { ROOT, larch, larchOk, sh, tempDir } from '../helpers.ts';
import { startBroker } from '../mqtt-helpers.ts';

const CACHE = join(ROOT, '.cache', 'compose');
const ARCH = sh('dpkg --print-architecture').trim();

/** 38 real packages of a small Debian system (no dependency closure needed: compose takes the list as given). */
const PACKAGES = [
  'base-files', 'base-passwd', 'bash', 'busybox', 'ca-certificates', 'coreutils', 'dash', 'debianutils', 'diffutils',
  'findutils', 'grep', 'gzip', 'hostname', 'libacl1', 'libattr1', 'libbz2-1.0', 'libc-bin', 'libc6', 'libcap2',
  'libcrypt1', 'libgcc-s1', 'libgmp10', 'liblzma5', 'libmd0', 'libpcre2-8-0', 'libselinux1', 'libssl3',
  'libsystemd0', 'libtinfo6', 'libudev1', 'libzstd1', 'mawk', 'ncurses-base', 'openssl', 'sed', 'tar', 'tzdata', 'zlib1g',
];

/** Packages the apt sources here carry in two or more versions (bookworm, -updates, -security). */
const MULTI_VERSION_CANDIDATES = ['libc6', 'libc-bin', 'libssl3', 'openssl', 'tzdata', 'liblzma5', 'libpcre2-8-0', 'libsystemd0', 'libudev1', 'ca-certificates'];

/** The downloadable versions of a package, newest first, from `apt-cache madison`. */
function madison(pkg: string): string[] {
  const out = sh(`apt-cache madison ${pkg}`);
  const versions = out.split('\n').filter((l) => l.includes(' Packages')).map((l) => l.split('|')[1].trim());
  return [...new Set(versions)].sort((a, b) => (dpkgCompare(a, 'lt', b) ? 1 : dpkgCompare(a, 'gt', b) ? -1 : 0));
}

function dpkgCompare(a: string, op: 'lt' | 'gt' | 'eq', b: string): boolean {
  return spawnSync('dpkg', ['--compare-versions', a, op, b]).status === 0;
}

function definition(dir: string, name: string, pins: Record<string, string>, extra = '', version = '1.0'): string {
  const packages = PACKAGES.map((p) => (pins[p] ? `${p}=${pins[p]}` : p));
  const path = join(dir, `${name}.toml`);
  writeFileSync(path, `ref = "test/${name}"\nversion = "${version}"\narchitecture = "${ARCH}"\nexact = true\ntimestamp = 2026-01-01T00:00:00Z\npackages = ${JSON.stringify(packages)}\n${extra}`);
  return path;
}

async function newRepo(dir: string, name: string, mode = 'bare-user'): Promise<string> {
  const repo = join(dir, name);
  await larchOk(['init', '--repo', repo, '--mode', mode]);
  return repo;
}

function controlFields(deb: string): { name: string; version: string; architecture: string } {
  const [name, version, architecture] = sh(`dpkg-deb -f '${deb}' Package Version Architecture`)
    .trim()
    .split('\n')
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
  return { name, version, architecture };
}

const compose = (def: string, repo: string, more: string[] = []) => larchOk(['compose', def, '--repo', repo, '--cache', CACHE, '--json', ...more]);

t.test('38 packages compose to the same commit twice; one changed pin changes it and db diff names exactly it', async (t) => {
  const dir = tempDir(t, 'larch-compose-');
  const tz = madison('tzdata');
  t.ok(tz.length >= 2, `tzdata has two versions in the apt sources (${tz.join(', ')})`);
  const defA = definition(dir, 'a', { tzdata: tz[0] });
  const defB = definition(dir, 'b', { tzdata: tz[tz.length - 1] });
  const repo1 = await newRepo(dir, 'repo1');
  const repo2 = await newRepo(dir, 'repo2');

  const started = Date.now();
  const first = (await compose(defA, repo1)).json;
  t.comment(`compose of ${first.packages.length} packages: ${((Date.now() - started) / 1000).toFixed(1)} s (${first.downloaded} downloaded)`);
  t.equal(first.packages.length, PACKAGES.length, 'every package is in the commit');
  const second = (await compose(defA, repo2)).json;
  t.equal(second.commit, first.commit, 'the same definition and versions give the same commit id in another repo');
  t.equal(second.downloaded, 0, 'the second compose comes from the cache');

  const changed = (await compose(defB, repo1, ['--orphan'])).json;
  // The ref differs (test/b), but ref names are not part of a commit: only the pin changed.
  t.not(changed.commit, first.commit, 'changing one pinned version changes the commit id');

  const diff = (await larchOk(['db', 'diff', '--repo', repo1, first.commit, changed.commit, '--json'])).json;
  t.same(diff.upgraded, [], 'nothing upgraded');
  t.same(diff.downgraded, [{ name: 'tzdata', architecture: 'all', from: tz[0], to: tz[tz.length - 1] }], 'exactly tzdata, with both versions');
  t.same([diff.added, diff.removed], [[], []], 'nothing added or removed');

  const text = (await larchOk(['db', 'diff', '--repo', repo1, changed.commit, first.commit])).stdout;
  t.match(text, new RegExp(`Upgraded:\\n  tzdata ${tz[tz.length - 1].replace(/[+.]/g, '\\$&')} -> ${tz[0].replace(/[+.]/g, '\\$&')}\\n$`), 'human output, other direction');

  const list = (await larchOk(['db', 'list', '--repo', repo1, 'test/a', '--json'])).json;
  t.same(list.packages, first.packages, 'db list shows the recorded packages');
  const same = (await larchOk(['db', 'diff', '--repo', repo1, first.commit, first.commit])).stdout;
  t.match(same, /No package changes/, 'a commit against itself');

  const ls = (await larchOk(['ls', '--repo', repo1, first.commit, '/'])).stdout;
  t.match(ls, /\/bin -> usr\/bin/, 'merged /usr: /bin is a symlink');
  const usrBin = (await larchOk(['ls', '--repo', repo1, first.commit, '/usr/bin', '--json'])).json;
  t.ok(JSON.stringify(usrBin).includes('bash'), '/bin/bash of the package is in /usr/bin');
  const varList = (await larchOk(['ls', '--repo', repo1, first.commit, '/var', '--json'])).json;
  t.same(varList, [], '/var is empty');
  const fsck = await larch(['fsck', '--repo', repo1]);
  t.equal(fsck.code, 0, 'fsck is clean');
});

t.test('old and new versions of real packages: db diff matches dpkg-deb -f of the .deb files used', async (t) => {
  const dir = tempDir(t, 'larch-compose-');
  const oldPins: Record<string, string> = {};
  const newPins: Record<string, string> = {};
  for (const pkg of MULTI_VERSION_CANDIDATES) {
    const versions = madison(pkg);
    if (versions.length < 2) continue;
    newPins[pkg] = versions[0];
    oldPins[pkg] = versions[versions.length - 1];
  }
  t.ok(Object.keys(oldPins).length >= 5, `at least 5 packages in two versions (${Object.keys(oldPins).join(', ')})`);
  // An archive repo with signed commits, so devices can take them (the device part below); the
  // new commit's parent is the old one, so the old is in test/new's history for provision --commit.
  const repo = await newRepo(dir, 'repo', 'archive');
  const key = join(dir, 'vendor');
  await larchOk(['keygen', '--out', key]);
  const oldRun = (await compose(definition(dir, 'old', oldPins), repo, ['--sign-key', `${key}.key`])).json;
  const newRun = (await compose(definition(dir, 'new', newPins, '', '2.0'), repo, ['--sign-key', `${key}.key`, '--parent', oldRun.commit, '--timestamp', '1767229200'])).json;

  const fields = (run: { deb_files: string[] }) => run.deb_files.map(controlFields);
  const oldFields = fields(oldRun);
  const newFields = fields(newRun);
  t.same(oldFields, oldRun.packages, 'the old commit records Package/Version/Architecture of its .deb files');
  t.same(newFields, newRun.packages, 'the new commit records Package/Version/Architecture of its .deb files');

  const expected = { upgraded: [] as unknown[], downgraded: [] as unknown[] };
  for (const o of oldFields) {
    const n = newFields.find((p) => p.name === o.name && p.architecture === o.architecture)!;
    if (n.version === o.version) continue;
    const change = { name: o.name, architecture: o.architecture, from: o.version, to: n.version };
    (dpkgCompare(n.version, 'gt', o.version) ? expected.upgraded : expected.downgraded).push(change);
  }
  t.ok(expected.upgraded.length >= 5, `${expected.upgraded.length} packages upgraded between the .deb files`);
  const diff = (await larchOk(['db', 'diff', '--repo', repo, oldRun.commit, newRun.commit, '--json'])).json;
  t.same({ upgraded: diff.upgraded, downgraded: diff.downgraded }, expected, 'db diff = the versions in the .deb files, ordered as dpkg orders them');
  t.same([diff.added, diff.removed], [[], []], 'nothing added or removed');
  const back = (await larchOk(['db', 'diff', '--repo', repo, newRun.commit, oldRun.commit, '--json'])).json;
  t.equal(back.downgraded.length, expected.upgraded.length, 'the other way round, the same packages are downgrades');

  // The device's view of the same update: db diff's four lists, from check and from the dry run.
  const packages = { upgraded: diff.upgraded, downgraded: diff.downgraded, added: diff.added, removed: diff.removed };
  const dbText = (await larchOk(['db', 'diff', '--repo', repo, oldRun.commit, newRun.commit])).stdout;
  const sections = dbText.split('\n').slice(2).join('\n'); // without its from:/to: lines
  // Deltas (fast brotli): a whole-tree one to provision, over MQTT too, in one file rather than
  // 3000 objects, and old -> new for the dry run.
  for (const from of [[], ['--from', oldRun.commit]]) await larchOk(['delta', 'generate', '--repo', repo, ...from, '--to', from.length ? newRun.commit : oldRun.commit, '--quality', '1', '--sign-key', `${key}.key`]);
  await larchOk(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'), { quiet: true });
  const log = join(dir, 'access.log');
  const url = await startServe(t, repo, log, ['--mqtt', broker.url]);
  // startServe returns on serve's "mqtt" line, printed once the broker acknowledged the subscription.
  const requests = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);

  const onDevice = async (t: Test, dev: string, remote: string[]) => {
    await larchOk(['provision', '--sysroot', dev, ...remote, '--ref', 'test/new', '--keys', `${key}.pub`, '--commit', oldRun.commit, '--json']);
    await larchOk(['sim-boot', '--sysroot', dev]);
    const before = requests().length;
    const started = Date.now();
    const check = (await larchOk(['check', '--sysroot', dev, '--json'])).json;
    t.comment(`check with the package diff: ${Date.now() - started} ms`);
    t.match(check, { available: true, booted: { commit: oldRun.commit, version: '1.0' }, update: { commit: newRun.commit, version: '2.0', via: 'delta' } }, 'check offers the new commit');
    t.same(check.packages, packages, 'check --json: exactly the lists of db diff --json');
    // Only the summary and the new commit object (with its signatures) were fetched, and the
    // commit was not stored: a repo holding it without its tree would skip its pull.
    const commitPath = `objects/${newRun.commit.slice(0, 2)}/${newRun.commit.slice(2)}`;
    const paths = requests().slice(before).map((e) => String(e.path).replace(/^\/+/, '').replace(/\?.*$/, ''));
    t.same([...new Set(paths)].sort(), ['summary', 'summary.sig', `${commitPath}.commit`, `${commitPath}.sig`].sort(), 'check fetched the summary and the commit object only');
    t.notOk(existsSync(join(dev, 'larch/repo', `${commitPath}.commit`)), 'the fetched commit is not in the device repo');
    const text = (await larchOk(['check', '--sysroot', dev])).stdout;
    t.equal(text.slice(text.indexOf('\n') + 1), sections, "check's text: db diff's sections after the update line");

    const dry = (await larchOk(['upgrade', '--sysroot', dev, '--dry-run', '--json'])).json;
    t.match(dry, { result: 'dry-run', to: { commit: newRun.commit }, download: { via: 'delta' } }, 'the dry run targets the new commit');
    t.same(dry.packages, packages, 'upgrade --dry-run --json: exactly the lists of db diff --json');
    const dryText = (await larchOk(['upgrade', '--sysroot', dev, '--dry-run'])).stdout;
    t.ok(dryText.endsWith(sections), "the dry run's text ends with db diff's sections");
    // The dry run brought the commit into the repo: check reads it there and fetches no object.
    const since = requests().length;
    t.same((await larchOk(['check', '--sysroot', dev, '--json'])).json.packages, packages, 'check after the dry run: the same diff');
    t.notOk(requests().slice(since).some((e) => /^\/?objects\//.test(String(e.path))), 'read from the repo, no object fetched');
    const st = await status(dev);
    t.equal(st.pending, null, 'the dry run staged nothing');
    t.same([st.booted.commit, st.boot.order[0], st.boot.slots.B.deployed], [oldRun.commit, 'A', false], 'slot A first and booted with the old commit, slot B empty');
  };
  await t.test('a device over HTTP', (t) => onDevice(t, join(dir, 'dev-http'), ['--repo-url', url]));
  await t.test('a device over MQTT', (t) => onDevice(t, join(dir, 'dev-mqtt'), ['--mqtt-url', broker.url]));
});

t.test('a device whose commits have no package list (plain larch commit) gets packages: null', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'dev');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', 'os/stable', '--keys', `${v.key}.pub`, '--json']);
  const none = (await larchOk(['check', '--sysroot', dev, '--json'])).json;
  t.same([none.available, none.packages], [false, null], 'no update: packages null');
  await v.release(2);
  const check = (await larchOk(['check', '--sysroot', dev, '--json'])).json;
  t.same([check.available, check.update?.version, check.packages], [true, '2', null], 'an update without package lists: packages null');
  const text = (await larchOk(['check', '--sysroot', dev])).stdout;
  t.match(text, /^update available: version 2 \([0-9a-f]{12}\); download [^\n]*\n$/, 'text: the update line alone');
  const dry = (await larchOk(['upgrade', '--sysroot', dev, '--dry-run', '--json'])).json;
  t.same([dry.result, dry.packages], ['dry-run', null], 'the dry run: packages null');
  t.equal((await status(dev)).pending, null, 'the dry run staged nothing');
});

t.test('bad definitions fail before anything is committed, naming what is wrong', async (t) => {
  const dir = tempDir(t, 'larch-compose-');
  const repo = await newRepo(dir, 'repo');
  // A first good compose, so there is a ref to keep unchanged.
  const good = definition(dir, 'good', {}, '');
  writeFileSync(good, `ref = "test/good"\nversion = "1"\narchitecture = "${ARCH}"\nexact = true\npackages = ["hostname", "base-files"]\n`);
  const base = (await compose(good, repo)).json;
  const refsBefore = (await larchOk(['refs', '--repo', repo, '--json'])).stdout;
  const objectsBefore = sh(`find '${repo}/objects' -type f | wc -l`).trim();

  mkdirSync(join(dir, 'overlay', 'etc'), { recursive: true });
  writeFileSync(join(dir, 'overlay', 'etc', 'motd'), 'hello\n');
  mkdirSync(join(dir, 'outside', 'etc'), { recursive: true });
  symlinkSync(join(dir, '..'), join(dir, 'overlay-link'));
  const header = `ref = "test/good"\nversion = "2"\narchitecture = "${ARCH}"\nexact = true\n`;
  const cases: { name: string; body: string; code: string; message: RegExp; data?: Record<string, unknown> }[] = [
    { name: 'a package that does not exist', body: 'packages = ["hostname", "larch-no-such-package"]\n', code: 'NOT_FOUND', message: /package 'larch-no-such-package' does not exist/, data: { package: 'larch-no-such-package' } },
    { name: 'a version that is not available', body: 'packages = ["hostname=0.0-1", "base-files"]\n', code: 'NOT_FOUND', message: /version '0\.0-1' of package 'hostname' is not available \(available: /, data: { package: 'hostname', version: '0.0-1' } },
    { name: "an overlay source with '..'", body: 'packages = ["hostname"]\n[[overlay]]\nsource = "../outside"\n', code: 'INVALID_INPUT', message: /field 'overlay\[0\]\.source' '\.\.\/outside' has a '\.\.' component/, data: { field: 'overlay[0].source' } },
    { name: 'an absolute overlay source', body: 'packages = ["hostname"]\n[[overlay]]\nsource = "/etc"\n', code: 'INVALID_INPUT', message: /field 'overlay\[0\]\.source' '\/etc' is an absolute path/, data: { field: 'overlay[0].source' } },
    { name: "an overlay target with '..'", body: 'packages = ["hostname"]\n[[overlay]]\nsource = "overlay"\ntarget = "/usr/../../x"\n', code: 'INVALID_INPUT', message: /field 'overlay\[0\]\.target' '\/usr\/\.\.\/\.\.\/x' has a '\.\.' component/, data: { field: 'overlay[0].target' } },
    { name: 'an overlay source that is a symlink out of the directory', body: 'packages = ["hostname"]\n[[overlay]]\nsource = "overlay-link"\n', code: 'INVALID_INPUT', message: /field 'overlay\[0\]\.source' 'overlay-link' resolves to .*outside the definition's directory/, data: { field: 'overlay[0].source' } },
    { name: 'an overlay written through a symlink of the packages', body: 'packages = ["base-files"]\n[[overlay]]\nsource = "overlay/etc/motd"\ntarget = "/etc/os-release/motd"\n', code: 'INVALID_INPUT', message: /overlay\[0\].*'\/etc\/os-release\/motd' lies under '\/etc\/os-release', which package base-files places as a symlink/ },
    { name: 'an unknown field', body: 'packages = ["hostname"]\npackges = ["x"]\n', code: 'INVALID_INPUT', message: /field 'packges' is not a known field/, data: { field: 'packges' } },
  ];
  for (const c of cases) {
    const def = join(dir, `bad-${cases.indexOf(c)}.toml`);
    writeFileSync(def, header + c.body);
    const r = await larch(['compose', def, '--repo', repo, '--cache', CACHE, '--json']);
    t.not(r.code, 0, `${c.name}: fails`);
    t.equal(r.json?.error?.code, c.code, `${c.name}: ${c.code}`);
    t.match(r.json?.error?.message, c.message, `${c.name}: the message names it`);
    if (c.data) t.match(r.json?.error?.data, c.data, `${c.name}: data names it`);
    t.match(r.stderr, /^larch: /, `${c.name}: one-line error on stderr`);
  }
  t.equal((await larchOk(['refs', '--repo', repo, '--json'])).stdout, refsBefore, 'refs unchanged');
  t.equal(sh(`find '${repo}/objects' -type f | wc -l`).trim(), objectsBefore, 'no object was added');
  t.same(readdirSync(join(repo, 'tmp')), [], 'no staging left behind');
  t.equal((await larchOk(['db', 'list', '--repo', repo, 'test/good', '--json'])).json.commit, base.commit, 'the ref still names the good commit');
});

t.test('overlays and commands: owners of untouched package entries survive the unprivileged round trip', async (t) => {
  const dir = tempDir(t, 'larch-compose-');
  const repo = await newRepo(dir, 'repo');
  mkdirSync(join(dir, 'overlay', 'etc'), { recursive: true });
  writeFileSync(join(dir, 'overlay', 'etc', 'hostname'), 'gateway\n');
  const def = join(dir, 'img.toml');
  const body = `ref = "test/img"\nversion = "1"\narchitecture = "${ARCH}"\nexact = true\npackages = ["base-files", "hostname"]\n`;
  writeFileSync(def, `${body}commands = ["mkdir -p etc/larch && echo built > etc/larch/stamp", "chmod 0600 etc/host.conf"]\n[[overlay]]\nsource = "overlay"\n`);
  const run = (await compose(def, repo)).json;
  const entry = async (path: string) => {
    const dirPath = path.slice(0, path.lastIndexOf('/')) || '/';
    const list = (await larchOk(['ls', '--repo', repo, run.commit, dirPath, '--json'])).json as { path: string; mode: number; uid: number; gid: number; size: number }[];
    const e = list.find((x) => x.path === path);
    return e && { mode: e.mode.toString(8), uid: e.uid, gid: e.gid, size: e.size };
  };
  t.same(await entry('/etc/hostname'), { mode: '644', uid: 0, gid: 0, size: 8 }, 'the overlay replaced the package file, root:root');
  t.same(await entry('/etc/larch/stamp'), { mode: '644', uid: 0, gid: 0, size: 6 }, 'a file a command created');
  t.match(await entry('/etc/host.conf'), { mode: '600', uid: 0, gid: 0 }, 'a mode a command changed');
  t.match(await entry('/usr/share/factory/var/local'), { mode: '2775', uid: 0, gid: 50 }, 'an untouched directory keeps root:staff 2775 from base-files');

  writeFileSync(def, `${body}commands = ["true", "echo broken >&2; exit 3"]\n`);
  const refs = (await larchOk(['refs', '--repo', repo, '--json'])).stdout;
  const r = await larch(['compose', def, '--repo', repo, '--cache', CACHE, '--json']);
  t.equal(r.json?.error?.code, 'INVALID_INPUT', 'a failing command stops the compose');
  t.match(r.json?.error?.message, /commands\[1\] 'echo broken >&2; exit 3' exited 3: broken/, 'naming the command and its output');
  t.equal((await larchOk(['refs', '--repo', repo, '--json'])).stdout, refs, 'refs unchanged');
});
