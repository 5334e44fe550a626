/**
 * larch export-oci (issue 21 must-show 2): a commit out as an OCI image and back. The layer and
 * the archive are byte-identical across runs and runtimes; GNU tar reads the layer with its
 * xattrs; importing the export gives back the same commit id and signatures (or, with a flag that
 * changes a commit field, the same tree); a second tag joins a layout; a corrupt object is never
 * exported; skopeo and umoci accept the image.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Runtime, type TapTest, larch, larchOk, missingTools, tempDir, testNeeding } from '../helpers.ts';

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A tree with what a layer must carry exactly: long and non-UTF-8 names, a binary xattr, a hard-linked object, a FIFO, a symlink. */
function makeTree(dir: string): string {
  const tree = join(dir, 'tree');
  const long = join(tree, 'usr', 'share', 'a'.repeat(90), 'b'.repeat(90));
  mkdirSync(long, { recursive: true });
  writeFileSync(join(long, 'c'.repeat(120)), 'deep and long\n');
  writeFileSync(Buffer.concat([Buffer.from(join(tree, 'usr', 'latin1-')), Buffer.from([0xe9])]), 'not utf-8\n');
  mkdirSync(join(tree, 'usr', 'bin'));
  writeFileSync(join(tree, 'usr', 'bin', 'ping'), 'ping\n', { mode: 0o755 });
  execFileSync('setfattr', ['-n', 'user.capability', '-v', '0x0100000200200000000000000000000000', join(tree, 'usr', 'bin', 'ping')]);
  writeFileSync(join(tree, 'usr', 'bin', 'a'), 'same\n');
  writeFileSync(join(tree, 'usr', 'bin', 'b'), 'same\n');
  symlinkSync('/usr/bin/ping', join(tree, 'usr', 'bin', 'ping6'));
  execFileSync('mkfifo', [join(tree, 'usr', 'fifo')]);
  return tree;
}

async function setup(t: TapTest) {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
  await larchOk(['keygen', '--out', join(dir, 'vendor')]);
  // --owner with a uid past ustar's 7 octal digits: the layer needs pax uid/gid for it.
  const c = await larchOk(['commit', '--repo', repo, '-b', 'os/stable', '--tree', makeTree(dir), '--version', '1.0', '--timestamp', '2026-11-01T00:00:00Z', '--owner', '3000000:3000000', '--metadata', 'larch.architecture=arm64', '--sign-key', join(dir, 'vendor.key'), '--json']);
  return { dir, repo, commit: c.json.commit as string, key: join(dir, 'vendor.key') };
}

t.test('reproducible: the same commit gives the same bytes, from Node and Bun', async (t) => {
  const { dir, repo, commit } = await setup(t);
  const out = async (name: string, runtime: Runtime, extra: string[] = []) => (await larchOk(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, name), '--tag', '1.0', ...extra, '--json'], { runtime })).json;
  const a = await out('a.tar', 'bun');
  const b = await out('b.tar', 'node');
  t.equal(a.commit, commit);
  t.equal(a.format, 'oci-archive');
  t.equal(sha(join(dir, 'a.tar')), sha(join(dir, 'b.tar')), 'two exports, Bun and Node: byte-identical archives');
  t.same([a.manifest_digest, a.layer.diff_id], [b.manifest_digest, b.layer.diff_id]);
  const z1 = await out('z1.tar', 'bun', ['--compression', 'zstd']);
  await out('z2.tar', 'node', ['--compression', 'zstd']);
  t.equal(z1.layer.media_type, 'application/vnd.oci.image.layer.v1.tar+zstd');
  t.equal(sha(join(dir, 'z1.tar')), sha(join(dir, 'z2.tar')), 'zstd too');
  t.equal(z1.layer.diff_id, a.layer.diff_id, 'one plain tar under either compression');
  const layout = await out('layout', 'bun');
  t.equal(layout.format, 'oci-layout');
  const blob = join(dir, 'layout', 'blobs', 'sha256', layout.layer.digest.slice(7));
  const listing = execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-tvvzf', blob], { encoding: 'utf8' });
  t.equal(listing.split('\n').filter((l) => /^[-dhlp]/.test(l)).length, layout.layer.entries, 'GNU tar reads every entry');
  t.match(listing, /3000000\/3000000/, 'owners past 2097151 (pax uid/gid)');
  t.match(listing, /user\.capability/, 'the binary xattr as a pax record');
  t.match(listing, /^h.* usr\/bin\/b link to usr\/bin\/a$/m, 'a second path of one object is a hard link');
  t.match(listing, new RegExp(`${'c'.repeat(120)}`), 'a name past 100 bytes (pax path)');
  const config = JSON.parse(readFileSync(join(dir, 'layout', 'blobs', 'sha256', layout.config_digest.slice(7)), 'utf8'));
  t.same([config.architecture, config.variant, config.config.Labels['org.opencontainers.image.version'], config.config.Labels['larch.commit']], ['arm64', undefined, '1.0', commit], "the config's platform, version and commit");
});

t.test('round trip: the export imported gives the same commit; a flag gives the same tree', async (t) => {
  const { dir, repo, commit, key } = await setup(t);
  const original = (await larchOk(['show', '--repo', repo, 'os/stable', '--json'])).json;
  for (const compression of ['gzip', 'zstd', 'none']) {
    const out = join(dir, `${compression}.tar`);
    await larchOk(['export-oci', '--repo', repo, 'os/stable', '--out', out, '--compression', compression]);
    const fresh = join(dir, `fresh-${compression}`);
    await larchOk(['init', '--repo', fresh, '--mode', 'bare-user']);
    const back = await larchOk(['commit', '--repo', fresh, '-b', 'os/stable', '--oci', out, '--json']);
    t.same([back.json.commit, back.json.restored, back.json.changed], [commit, true, true], `${compression}: the same commit id, restored`);
    t.same(back.json.signed_by, original.signed_by, `${compression}: its signatures came along`);
    t.equal((await larch(['verify', '--repo', fresh, 'os/stable', '--key', `${key.replace(/\.key$/, '.pub')}`])).code, 0, `${compression}: and verify`);
    t.equal((await larch(['fsck', '--repo', fresh])).code, 0, `${compression}: fsck clean`);
    const again = await larchOk(['commit', '--repo', fresh, '-b', 'os/stable', '--oci', out, '--json']);
    t.same([again.json.commit, again.json.changed], [commit, false], `${compression}: again: nothing changes`);
  }
  const fresh = join(dir, 'flagged');
  await larchOk(['init', '--repo', fresh, '--mode', 'bare-user']);
  const flagged = await larchOk(['commit', '--repo', fresh, '-b', 'os/stable', '--oci', join(dir, 'gzip.tar'), '--version', '1.0-rebuilt', '--json']);
  t.same([flagged.json.restored, flagged.json.restore_skipped], [false, 'flags'], 'with --version: a fresh commit');
  t.equal((await larchOk(['show', '--repo', fresh, 'os/stable', '--json'])).json.root.tree, original.root.tree, 'of the same tree');
  const other = await larchOk(['commit', '--repo', fresh, '-b', 'os/other', '--oci', join(dir, 'gzip.tar'), '--version', '1', '--json']);
  t.equal(other.json.restored, false, 'another branch: no restore');
});

t.test('layouts gather tags; a corrupt object is never exported; what is in the way is kept', async (t) => {
  const { dir, repo } = await setup(t);
  const layout = join(dir, 'layout');
  await larchOk(['export-oci', '--repo', repo, 'os/stable', '--out', layout, '--tag', '1.0']);
  await larchOk(['export-oci', '--repo', repo, 'os/stable', '--out', layout, '--tag', '1.1', '--no-commit-label']);
  const tags = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')).manifests.map((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name']);
  t.same(tags, ['1.0', '1.1'], 'both tags in index.json');
  const fresh = join(dir, 'fresh');
  await larchOk(['init', '--repo', fresh, '--mode', 'bare-user']);
  const r = await larchOk(['commit', '--repo', fresh, '-b', 'os/stable', '--oci', `${layout}:1.1`, '--json']);
  t.same([r.json.restored, r.json.restore_skipped, r.json.version], [false, null, '1.0'], '--no-commit-label: a fresh commit, its version from the label');

  const exists = await larch(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, 'layout', 'index.json') + '.tar', '--json']);
  t.equal(exists.code, 0, 'a new archive name is fine');
  const again = await larch(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, 'layout', 'index.json') + '.tar', '--json']);
  t.same([again.code, again.json.error.code], [11, 'EXISTS'], 'an existing archive is not overwritten');
  mkdirSync(join(dir, 'notlayout'));
  writeFileSync(join(dir, 'notlayout', 'precious'), 'x');
  const other = await larch(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, 'notlayout'), '--json']);
  t.same([other.code, other.json.error.code], [11, 'EXISTS'], 'a directory that is no layout is refused');
  t.same(readdirSync(join(dir, 'notlayout')), ['precious'], 'and left as it was');

  const ping = (await larchOk(['ls', '--repo', repo, 'os/stable', '/usr/bin/ping', '--json'])).json[0].object;
  writeFileSync(join(repo, 'objects', ping.slice(0, 2), `${ping.slice(2)}.file`), 'pong\n');
  const corrupt = await larch(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, 'corrupt.tar'), '--json']);
  t.same([corrupt.code, corrupt.json.error.code], [5, 'OBJECT_CORRUPT'], 'a corrupt object fails the export');
  t.notOk(existsSync(join(dir, 'corrupt.tar')), 'and no archive is left');
  t.same(readdirSync(dir).filter((n) => n.includes('.tmp')), [], 'nor temporary files');
});

const TOOLS = ['skopeo', 'umoci'];
t.test('skopeo and umoci read the export', async (t) => {
  await testNeeding(t, 'skopeo inspect, umoci unpack', missingTools(TOOLS).length > 0 && `missing ${missingTools(TOOLS).join(', ')}`, {}, async (t) => {
    const { dir, repo } = await setup(t);
    await larchOk(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, 'layout'), '--tag', '1.0', '--platform', 'linux/amd64']);
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${join(dir, 'layout')}:1.0`], { encoding: 'utf8' }));
    t.same([inspect.Architecture, inspect.Os, inspect.Labels['org.opencontainers.image.version'], inspect.Layers.length], ['amd64', 'linux', '1.0', 1], 'skopeo inspect: platform, version, one layer');
    execFileSync('umoci', ['unpack', '--rootless', '--image', `${join(dir, 'layout')}:1.0`, join(dir, 'bundle')], { stdio: 'pipe' });
    const rootfs = join(dir, 'bundle', 'rootfs');
    t.equal(readFileSync(join(rootfs, 'usr', 'bin', 'ping'), 'utf8'), 'ping\n', 'umoci unpack: the files are there');
    const dump = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'user.capability', join(rootfs, 'usr', 'bin', 'ping')], { encoding: 'utf8' });
    t.match(dump, /^user\.capability=0x0100000200200000000000000000000000$/m, 'with the binary xattr exact');
  });
});
