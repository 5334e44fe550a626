/**
 * The tree cache's key (tree-key.ts): each input that decides mmdebstrap's output changes it,
 * the order of the packages does not, and a changed apt index file (read from disk, as
 * readTreeKeyInputs does for /var/lib/apt/lists) does.
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TREE_CACHE_FORMAT, type TreeKeyInputs, encodeTreeKeyInputs, treeCacheKey } from '../../../src/compose/tree-key.ts';
import { mmdebstrapArgs, readTreeKeyInputs } from '../../../src/compose/mmdebstrap.ts';
import { hashDirectory } from '../../../src/compose/tree-cache.ts';
import { missingTools, tempDir, testNeeding } from '../../helpers.ts';

const h = (c: string) => c.repeat(64);

function base(): TreeKeyInputs {
  return {
    packages: [{ name: 'busybox' }, { name: 'apt', version: '2.6.1' }, { name: 'tzdata' }],
    architecture: 'amd64',
    recommends: false,
    sourceDateEpoch: 1767225600,
    localPackages: [{ path: 'a_1.0_all.deb', sha256: h('a') }],
    mmdebstrapArgs: ['--mode=unshare', '--variant=essential', '@OUT@', '/etc/apt/sources.list.d/debian.sources'],
    aptConfigFiles: [{ path: '/etc/apt/sources.list.d/debian.sources', sha256: h('b') }],
    aptLists: [
      { path: 'deb.debian.org_debian_dists_bookworm_InRelease', sha256: h('c') },
      { path: 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4', sha256: h('d') },
    ],
    mmdebstrapVersion: 'mmdebstrap 1.3.5',
    aptVersion: 'apt 2.6.1 (amd64)',
    hookFiles: [{ path: 'setup00.sh', sha256: h('e') }],
  };
}

t.test('the key is a SHA-256 of a canonical encoding that starts from the format constant', async (t) => {
  t.match(treeCacheKey(base()), /^[0-9a-f]{64}$/);
  t.equal(treeCacheKey(base()), treeCacheKey(base()), 'the same inputs, the same key');
  t.equal(TREE_CACHE_FORMAT, 1);
  t.throws(() => encodeTreeKeyInputs({ ...base(), sourceDateEpoch: 1.5 }), RangeError, 'a fractional SOURCE_DATE_EPOCH is refused');
});

t.test('every input changes the key', async (t) => {
  const key = treeCacheKey(base());
  const changes: [string, (i: TreeKeyInputs) => void][] = [
    ['a package added', (i) => i.packages.push({ name: 'netbase' })],
    ['a package removed', (i) => i.packages.pop()],
    ['a pin changed', (i) => (i.packages[1].version = '2.6.2')],
    ['a pin added', (i) => (i.packages[0].version = '1:1.35.0-4+b3')],
    ['the architecture', (i) => (i.architecture = 'arm64')],
    ['recommends', (i) => (i.recommends = true)],
    ['SOURCE_DATE_EPOCH', (i) => (i.sourceDateEpoch += 86400)],
    ["a local .deb's content", (i) => (i.localPackages[0].sha256 = h('f'))],
    ["a local .deb's name", (i) => (i.localPackages[0].path = 'b_1.0_all.deb')],
    ['a local .deb added', (i) => i.localPackages.push({ path: 'c_1.0_all.deb', sha256: h('a') })],
    ['an mmdebstrap argument', (i) => (i.mmdebstrapArgs[1] = '--variant=minbase')],
    ["an apt sources file's content", (i) => (i.aptConfigFiles[0].sha256 = h('f'))],
    ['an apt sources file added', (i) => i.aptConfigFiles.push({ path: '/etc/apt/sources.list', sha256: h('b') })],
    ["an index file's content", (i) => (i.aptLists[1].sha256 = h('f'))],
    ['an index file added', (i) => i.aptLists.push({ path: 'deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages.lz4', sha256: h('d') })],
    ['an index file removed', (i) => i.aptLists.pop()],
    ['the mmdebstrap version', (i) => (i.mmdebstrapVersion = 'mmdebstrap 1.4.0')],
    ['the apt version', (i) => (i.aptVersion = 'apt 2.6.2 (amd64)')],
    ["a merged-usr hook's content", (i) => (i.hookFiles[0].sha256 = h('f'))],
    ['a merged-usr hook added', (i) => i.hookFiles.push({ path: 'essential00.sh', sha256: h('e') })],
  ];
  const seen = new Set([key]);
  for (const [what, change] of changes) {
    const inputs = base();
    change(inputs);
    const changed = treeCacheKey(inputs);
    t.not(changed, key, `${what} changes the key`);
    seen.add(changed);
  }
  t.equal(seen.size, changes.length + 1, 'and each change gives a key of its own');
});

t.test('the order of the packages and of listed files does not change the key; the order of local .deb files does', async (t) => {
  const key = treeCacheKey(base());
  const reordered = base();
  reordered.packages.reverse();
  t.equal(treeCacheKey(reordered), key, 'packages in another order');
  const listed = base();
  listed.aptLists.reverse();
  t.equal(treeCacheKey(listed), key, 'index files listed in another order');
  const locals = base();
  locals.localPackages.push({ path: 'z_1.0_all.deb', sha256: h('9') });
  const swapped = base();
  swapped.localPackages.unshift({ path: 'z_1.0_all.deb', sha256: h('9') });
  t.not(treeCacheKey(locals), treeCacheKey(swapped), 'local .deb files are staged under numbered names: their order is an input');
});

t.test("mmdebstrap gets the packages sorted, so their order decides nothing in the build either", async (t) => {
  const opts = { packages: base().packages, localPackages: [], architecture: 'amd64', recommends: false };
  const paths = { out: '@OUT@', debs: '@DEBS@' };
  const args = mmdebstrapArgs(opts, paths);
  t.ok(args.includes('--include=apt=2.6.1,busybox,tzdata'), `sorted --include (${args.find((a) => a.startsWith('--include='))})`);
  t.same(mmdebstrapArgs({ ...opts, packages: [...opts.packages].reverse() }, paths), args, 'the same arguments for the reversed list');
  t.ok(args.includes('--aptopt=Apt::Install-Recommends "false"'));
  t.ok(mmdebstrapArgs({ ...opts, recommends: true }, paths).includes('--aptopt=Apt::Install-Recommends "true"'), 'recommends reaches apt');
});

const cannot = missingTools(['mmdebstrap', 'apt-get']).map((tool) => `${tool} is not installed`).join(', ') || false;

testNeeding(t, "readTreeKeyInputs: a changed apt index file's content and a changed local .deb change the key; the output path does not", cannot, { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, 'larch-tree-key-');
  const lists = join(dir, 'lists');
  mkdirSync(join(lists, 'partial'), { recursive: true });
  const index = join(lists, 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages');
  writeFileSync(index, 'Package: busybox\nVersion: 1:1.35.0-4+b3\n');
  writeFileSync(join(lists, 'lock'), '');
  const deb = join(dir, 'local_1.0_all.deb');
  writeFileSync(deb, 'not really a deb, but its bytes are what the key hashes');
  const sources = join(dir, 'debian.sources');
  writeFileSync(sources, 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n');
  const opts = { packages: [{ name: 'busybox' }], localPackages: [deb], architecture: 'amd64', recommends: false, sourceDateEpoch: 1767225600 };
  const key = async () => treeCacheKey(await readTreeKeyInputs(opts, [sources], { aptLists: lists }));

  const first = await key();
  t.equal(await key(), first, 'the same host, the same key');
  const inputs = await readTreeKeyInputs(opts, [sources], { aptLists: lists });
  t.same(inputs.aptLists.map((f) => f.path), ['deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages'], 'the lock file and partial/ are not indexes');
  t.same(inputs.mmdebstrapArgs.filter((a) => a.includes(dir)), [sources], 'of the paths under the test dir, the arguments the key sees hold only the sources file (no staging path)');
  t.ok(inputs.mmdebstrapArgs.some((a) => a.includes('@STAGE@/0-local_1.0_all.deb')), 'the local .deb at its placeholder staging path');
  t.ok(inputs.mmdebstrapArgs.includes(sources), 'the sources file is an argument');

  writeFileSync(join(lists, 'partial', 'half-downloaded'), 'x');
  t.equal(await key(), first, 'a partial download does not change the key');
  writeFileSync(index, 'Package: busybox\nVersion: 1:1.36.1-1\n');
  const updated = await key();
  t.not(updated, first, "an index file's new content (apt-get update) changes the key");
  writeFileSync(deb, 'another build of the local package');
  t.not(await key(), updated, "a local .deb's new content changes the key");
  writeFileSync(sources, 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n');
  t.not(await key(), updated, "the sources file's new content changes the key");
});

t.test('hashDirectory: regular files by relative path, sorted, with their content hash', async (t) => {
  const dir = tempDir(t, 'larch-hash-dir-');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'b'), 'b');
  writeFileSync(join(dir, 'sub', 'a'), 'a');
  t.same(await hashDirectory(dir), [
    { path: 'b', sha256: '3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d' },
    { path: 'sub/a', sha256: 'ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb' },
  ]);
  t.same(await hashDirectory(dir, new Set(['sub'])), [{ path: 'b', sha256: '3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d' }], 'skip leaves out a subtree');
  t.same(await hashDirectory(join(dir, 'missing')), [], 'a missing directory holds nothing');
});
