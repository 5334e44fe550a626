/**
 * larch commit --oci on images made by hand (test/oci-helpers.ts): four layers with every kind
 * of whiteout, an opaque directory whose marker comes after this layer's own entry, a hard link
 * into a lower layer, a file replaced by a directory, xattrs and owners; the flattened tree is
 * checked entry by entry against the listing image-spec's layer.md gives for it (written out by
 * hand below). Then: the same image as a layout, an oci-archive and a docker-archive; gzip, zstd
 * and plain layers; two repos, Node and Bun; tags, platforms, version and time; no change;
 * --larch-layout and the package list.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Runtime, larch, larchOk, tempDir } from '../helpers.ts';
import { type ImageSpec, digestOf, tarOf, writeDockerArchive, writeLayout, writeOciArchive } from '../oci-helpers.ts';

const STATUS = 'Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\n\nPackage: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n';

async function fourLayers(): Promise<Buffer[]> {
  return [
    await tarOf([
      { name: 'dev/' },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'etc/' },
      { name: 'etc/motd', content: 'motd\n' },
      { name: 'etc/keep', content: 'a file for now\n' },
      { name: 'usr/share/doc/pkg/README', content: 'readme\n' },
      { name: 'usr/share/doc/pkg/sub/x', content: 'x\n' },
      { name: 'opt/app/', mode: 0o755 },
      { name: 'opt/app/old', content: 'old\n' },
      { name: 'opt/app/lib/l', content: 'l\n' },
      { name: 'usr/bin/tool', content: 'tool v1\n', mode: 0o755 },
      { name: 'usr/lib/link', type: 'symlink', linkname: '../bin/tool' },
      { name: 'home/user/', mode: 0o700, uid: 1000, gid: 1000 },
      { name: 'home/user/f', content: 'f\n', uid: 1000, gid: 1000, mode: 0o600 },
      { name: 'var/lib/dpkg/status', content: STATUS },
      { name: 'var/log/dpkg.log', content: 'log\n' },
      { name: 'etc/hostname', content: 'builder\n' },
    ]),
    await tarOf([
      { name: 'etc/.wh.motd', content: '' },
      { name: 'usr/share/doc/.wh.pkg', content: '' },
      { name: 'opt/app/new', content: 'new\n' },
      // The marker after this layer's own entry: it still hides only the lower layer's.
      { name: 'opt/app/.wh..wh..opq', content: '' },
      { name: 'usr/bin/tool2', type: 'link', linkname: 'usr/bin/tool' },
      { name: 'etc/keep/' },
      { name: 'etc/keep/inner', content: 'inner\n' },
    ]),
    await tarOf([
      { name: 'x', content: 'x\n', pax: { 'SCHILY.xattr.user.larch': '1', 'SCHILY.xattr.security.selinux': 'system_u:object_r:etc_t:s0' } },
      { name: 'd/', pax: { 'SCHILY.xattr.user.d': '2' } },
      { name: 'usr/bin/tool', content: 'tool v2\n', mode: 0o755 },
      { name: 'a/new3', content: '3\n' },
      // Same layer: the whiteout does not hide it.
      { name: 'a/.wh.new3', content: '' },
    ]),
    await tarOf([{ name: './', mode: 0o755 }, { name: 'home/user/.wh.f', content: '' }, { name: 'opt/app/', mode: 0o750 }]),
  ];
}

/** What layer.md makes of fourLayers: path type mode uid:gid [content | -> target]. */
const EXPECTED = [
  '/a dir 755 0:0',
  '/a/new3 reg 644 0:0 3',
  '/d dir 755 0:0',
  '/dev dir 755 0:0',
  '/etc dir 755 0:0',
  '/etc/hostname reg 644 0:0 builder',
  '/etc/keep dir 755 0:0',
  '/etc/keep/inner reg 644 0:0 inner',
  '/home dir 755 0:0',
  '/home/user dir 700 1000:1000',
  '/opt dir 755 0:0',
  '/opt/app dir 750 0:0',
  '/opt/app/new reg 644 0:0 new',
  '/usr dir 755 0:0',
  '/usr/bin dir 755 0:0',
  '/usr/bin/tool reg 755 0:0 tool v2',
  '/usr/bin/tool2 reg 755 0:0 tool v1',
  '/usr/lib dir 755 0:0',
  '/usr/lib/link lnk 777 0:0 -> ../bin/tool',
  '/usr/share dir 755 0:0',
  '/usr/share/doc dir 755 0:0',
  '/var dir 755 0:0',
  '/var/lib dir 755 0:0',
  '/var/lib/dpkg dir 755 0:0',
  `/var/lib/dpkg/status reg 644 0:0 ${STATUS.trim()}`,
  '/var/log dir 755 0:0',
  '/var/log/dpkg.log reg 644 0:0 log',
  '/x reg 644 0:0 x',
];

interface LsEntry {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  target?: string;
}

/** The commit's listing in EXPECTED's form, contents read from a checkout. */
async function listing(repo: string, rev: string, checkout: string): Promise<string[]> {
  const ls: LsEntry[] = (await larchOk(['ls', '--repo', repo, rev, '/', '-R', '--json'])).json;
  await larchOk(['checkout', '--repo', repo, rev, checkout]);
  return ls.map((e) => {
    const head = `${e.path} ${e.type} ${e.mode.toString(8)} ${e.uid}:${e.gid}`;
    if (e.type === 'reg') return `${head} ${readFileSync(join(checkout, e.path), 'utf8').trim()}`;
    if (e.type === 'lnk') return `${head} -> ${e.target ?? execFileSync('readlink', [join(checkout, e.path)], { encoding: 'utf8' }).trim()}`;
    return head;
  });
}

const getfattr = (path: string, name: string) => execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', name, path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

async function newRepo(dir: string, name: string, runtime: Runtime = 'bun'): Promise<string> {
  const repo = join(dir, name);
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user'], { runtime });
  return repo;
}

t.test('four layers flatten to what layer.md says, entry by entry', async (t) => {
  const dir = tempDir(t);
  const image = writeLayout(join(dir, 'layout'), { layers: await fourLayers(), labels: { 'org.opencontainers.image.version': '1.0' } });
  const repo = await newRepo(dir, 'r');
  const r = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'layout'), '--json']);
  t.equal(r.json.version, '1.0', 'version from the image label');
  t.equal(r.json.timestamp_s, Date.parse('2026-11-01T00:00:00Z') / 1000, 'time from the config');
  t.same(
    { source: r.json.image.source, manifest_digest: r.json.image.manifest_digest, whiteouts: r.json.image.whiteouts, opaque_dirs: r.json.image.opaque_dirs, hardlinks: r.json.image.hardlinks, dropped: r.json.image.dropped, layers: r.json.image.layers.map((l: { digest: string }) => l.digest) },
    { source: 'oci-layout', manifest_digest: image.manifestDigest, whiteouts: 4, opaque_dirs: 1, hardlinks: 1, dropped: { xattrs: 1, devices: 1, aufs: 0, layout: 0 }, layers: image.layerDigests },
    'the JSON counts what the layers held',
  );
  t.same(await listing(repo, 'os', join(dir, 'co')), EXPECTED, 'the tree is the flattened image');
  t.equal(getfattr(join(dir, 'co', 'x'), 'user.larch'), '1', 'a user xattr is kept');
  t.equal(getfattr(join(dir, 'co', 'd'), 'user.d'), '2', "a directory's xattr is kept");
  t.throws(() => getfattr(join(dir, 'co', 'x'), 'security.selinux'), 'security.selinux is dropped (umoci: the build machine labels)');
  const show = (await larchOk(['show', '--repo', repo, 'os', '--json'])).json;
  t.equal(show.metadata['larch.oci.manifest_digest'], image.manifestDigest, 'the manifest digest is recorded');
  t.equal(show.metadata['larch.oci.config_digest'], image.configDigest);
  t.equal(show.metadata['larch.architecture'], 'amd64');
  t.same(show.metadata['larch.packages'], [['base-files', '12.4', 'amd64'], ['hello', '2.10-3', 'amd64']], 'the package list from the dpkg status');
  t.equal(readdirSync(join(repo, 'tmp')).length, 0, 'nothing left in R/tmp');
  t.equal((await larch(['fsck', '--repo', repo])).code, 0, 'fsck clean');
  // 'old' (opaque), 'motd' (whiteout), the doc files, home/user/f and tool v1's replaced path: none stored.
  const stored = execFileSync('sh', ['-c', `cat $(find '${repo}/objects' -name '*.file' -type f) 2>/dev/null || true`], { encoding: 'utf8' });
  for (const gone of ['motd\n', 'readme\n', 'old\n', 'f\n', 'a file for now\n']) t.notOk(stored.includes(gone), `no object holds ${JSON.stringify(gone)}: unstaged when a later layer removed it`);
});

t.test('layout, oci-archive and docker-archive; gzip, zstd and plain; Node and Bun: one tree, stable ids', async (t) => {
  const dir = tempDir(t);
  const layers = await fourLayers();
  const spec: ImageSpec = { layers, labels: { 'org.opencontainers.image.version': '1.0' } };
  writeLayout(join(dir, 'layout'), spec);
  await writeOciArchive(join(dir, 'image.tar'), spec);
  await writeDockerArchive(join(dir, 'docker.tar'), spec);
  writeLayout(join(dir, 'zstd'), { ...spec, compression: ['zstd', 'none', 'gzip', 'zstd'] });
  const commit = async (source: string, runtime: Runtime, name: string) => {
    const repo = await newRepo(dir, name, runtime);
    const r = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', source, '--json'], { runtime });
    const show = (await larchOk(['show', '--repo', repo, 'os', '--json'], { runtime })).json;
    return { commit: r.json.commit, root: show.root.tree, source: r.json.image.source };
  };
  const layout = await commit(join(dir, 'layout'), 'bun', 'a');
  t.same(await commit(join(dir, 'layout'), 'node', 'b'), layout, 'Node and Bun, two fresh repos: the same commit id');
  t.same(await commit(join(dir, 'image.tar'), 'bun', 'c'), { ...layout, source: 'oci-archive' }, 'the oci-archive of the same image: the same commit id');
  t.same(await commit(join(dir, 'image.tar'), 'node', 'c2'), { ...layout, source: 'oci-archive' }, 'and from Node');
  const docker = await commit(join(dir, 'docker.tar'), 'bun', 'd');
  t.equal(docker.source, 'docker-archive');
  t.equal(docker.root, layout.root, 'the docker-archive: the same tree');
  t.not(docker.commit, layout.commit, '(another commit id: a docker-archive has no manifest digest to record)');
  const zstd = await commit(join(dir, 'zstd'), 'bun', 'e');
  t.equal(zstd.root, layout.root, 'zstd, plain and gzip layers: the same tree');
  t.equal((await commit(join(dir, 'zstd'), 'node', 'f')).root, layout.root, 'zstd through the zstd tool on Node too');
});

t.test('tags, platforms, version and time', async (t) => {
  const dir = tempDir(t);
  const layers = [await tarOf([{ name: 'etc/os-release', content: 'ID=test\n' }])];
  writeLayout(join(dir, 'two'), { layers, tags: ['1.0', '1.1'] });
  const repo = await newRepo(dir, 'r');
  const none = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'two'), '--json']);
  t.equal(none.code, 2, 'two tags, none latest: a usage error');
  t.same({ reason: none.json.error.data.reason, tags: none.json.error.data.tags }, { reason: 'tag', tags: ['1.0', '1.1'] }, 'naming the tags');
  const tagged = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', `${join(dir, 'two')}:1.1`, '--json']);
  t.equal(tagged.json.version, '1.1', 'no version label: the tag is the version');
  const missing = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', `${join(dir, 'two')}:2.0`, '--json']);
  t.equal(missing.json.error.data.reason, 'tag', 'an unknown tag is refused');

  writeLayout(join(dir, 'latest'), { layers });
  const noVersion = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'latest'), '--json']);
  t.equal(noVersion.json.error.data.reason, 'no-version', 'tag latest and no label: give --version');
  writeLayout(join(dir, 'undated'), { layers, created: null, labels: { 'org.opencontainers.image.version': '3' } });
  const undated = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'undated'), '--json']);
  t.equal(undated.json.error.data.reason, 'no-created', 'no created time: give --timestamp');
  const given = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'undated'), '--timestamp', '1700000000', '--version', '3.1', '--json']);
  t.same([given.json.version, given.json.timestamp_s], ['3.1', 1700000000], '--version and --timestamp win');

  // A multi-platform index: the image index blob names two manifests.
  const a = writeLayout(join(dir, 'multi'), { layers, architecture: 'amd64', tags: ['x'] });
  const b = writeLayout(join(dir, 'multi-arm'), { layers, architecture: 'arm64', tags: ['x'] });
  const blob = (d: string, from: string) => readFileSync(join(dir, from, 'blobs', 'sha256', d.slice(7)));
  const indexDoc = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [
    { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: a.manifestDigest, size: blob(a.manifestDigest, 'multi').length, platform: { os: 'linux', architecture: 'amd64' } },
    { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: b.manifestDigest, size: blob(b.manifestDigest, 'multi-arm').length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ] }));
  execFileSync('sh', ['-c', `cp '${join(dir, 'multi-arm')}'/blobs/sha256/* '${join(dir, 'multi')}'/blobs/sha256/`]);
  execFileSync('sh', ['-c', `cat > '${join(dir, 'multi', 'blobs', 'sha256', digestOf(indexDoc).slice(7))}'`], { input: indexDoc });
  execFileSync('sh', ['-c', `cat > '${join(dir, 'multi', 'index.json')}'`], { input: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: digestOf(indexDoc), size: indexDoc.length, annotations: { 'org.opencontainers.image.ref.name': 'x' } }] }) });
  const pick = await larch(['commit', '--repo', repo, '-b', 'arm', '--oci', join(dir, 'multi'), '--json']);
  t.same([pick.code, pick.json.error.data.reason, pick.json.error.data.platforms], [2, 'platform', ['linux/amd64', 'linux/arm64/v8']], 'two platforms: --platform names one');
  const arm = await larchOk(['commit', '--repo', repo, '-b', 'arm', '--oci', join(dir, 'multi'), '--platform', 'linux/arm64/v8', '--json']);
  t.equal(arm.json.image.manifest_digest, b.manifestDigest, 'the arm64 manifest is taken');
  t.equal((await larchOk(['show', '--repo', repo, 'arm', '--json'])).json.metadata['larch.architecture'], 'arm64', 'and its architecture recorded');
});

t.test('the same image again commits nothing; --larch-layout lays the tree out as compose does', async (t) => {
  const dir = tempDir(t);
  writeLayout(join(dir, 'layout'), { layers: await fourLayers(), labels: { 'org.opencontainers.image.version': '1.0' } });
  const repo = await newRepo(dir, 'r');
  const first = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'layout'), '--json']);
  const again = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'layout'), '--json']);
  t.same([again.json.changed, again.json.commit, again.json.release], [false, first.json.commit, first.json.release], 'unchanged: the head, no new release');
  const laid = await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'layout'), '--larch-layout', '--json']);
  t.equal(laid.json.changed, true);
  t.equal(laid.json.image.dropped.layout, 2, 'dropped: /var/log (its subtree with it) and /etc/hostname');
  const paths = ((await larchOk(['ls', '--repo', repo, 'os', '/', '-R', '--json'])).json as LsEntry[]).map((e) => e.path);
  t.ok(paths.includes('/usr/lib/sysimage/dpkg/status'), 'the dpkg database moved under /usr');
  t.ok(paths.includes('/usr/share/factory/var/lib'), "the rest of /var to the factory copy");
  t.notOk(paths.some((p) => p.startsWith('/var/') || p === '/etc/hostname' || p.includes('dpkg.log')), 'no /var content, no build state');
  t.ok(paths.includes('/var'), 'an empty /var stays, as in a composed tree');
  t.ok(paths.includes('/dev'), '/dev itself stays (its nodes are a device\'s own)');
  t.same((await larchOk(['show', '--repo', repo, 'os', '--json'])).json.metadata['larch.packages'].length, 2, 'the package list still read');
});
