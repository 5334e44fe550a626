/**
 * A tree of real Debian packages plus made-up edge cases commits and
 * checks out identically in every repo mode, through the Bun binary, from a directory and
 * from a tar; what cannot be stored is refused naming the path.
 */
import t from 'tap';
import { mkdirSync, writeFileSync, symlinkSync, linkSync, chmodSync, chownSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { IS_ROOT, debs, diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir } from '../helpers.ts';

function makeEdgeCases(dir: string): void {
  mkdirSync(dir);
  const raw = (name: string | Buffer) => Buffer.concat([Buffer.from(dir + '/'), Buffer.isBuffer(name) ? name : Buffer.from(name)]);
  writeFileSync(join(dir, 'regular'), 'plain file\n');
  writeFileSync(join(dir, 'empty'), '');
  symlinkSync('/etc/passwd', join(dir, 'abs-link'));
  symlinkSync('../edge/regular', join(dir, 'rel-link'));
  symlinkSync('does/not/exist', join(dir, 'dangling-link'));
  writeFileSync(join(dir, 'hardlink-a'), 'shared inode\n');
  linkSync(join(dir, 'hardlink-a'), join(dir, 'hardlink-b'));
  writeFileSync(join(dir, 'setuid'), '#!/bin/sh\n');
  chmodSync(join(dir, 'setuid'), 0o4755);
  writeFileSync(join(dir, 'setgid'), '#!/bin/sh\n');
  chmodSync(join(dir, 'setgid'), 0o2755);
  mkdirSync(join(dir, 'sticky'));
  chmodSync(join(dir, 'sticky'), 0o1777);
  mkdirSync(join(dir, 'setgid-dir'));
  chmodSync(join(dir, 'setgid-dir'), 0o2775);
  mkdirSync(join(dir, 'empty-dir'));
  mkdirSync(join(dir, 'empty-dir', 'nested-empty'));
  mkdirSync(join(dir, 'private-dir'), { mode: 0o700 });
  writeFileSync(join(dir, 'private-dir', 'secret'), 'x', { mode: 0o600 });
  writeFileSync(join(dir, 'name with spaces'), 'spaces\n');
  writeFileSync(raw('name\nwith\nnewlines'), 'newlines\n');
  writeFileSync(raw(Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2d, 0x75, 0x74, 0x66, 0x38])), 'invalid utf-8 name\n');
  symlinkSync(Buffer.from([0x74, 0xff]), raw('link-to-invalid-utf8'));
  writeFileSync(join(dir, 'read-only'), 'ro', { mode: 0o444 });
  sh(`mkfifo -m 0640 '${join(dir, 'fifo')}'`);
  // > 100 MB: a sparse file with data at both ends, so content and size both matter.
  const fd = openSync(join(dir, 'big.bin'), 'w');
  writeSync(fd, Buffer.from('start of a big file\n'));
  ftruncateSync(fd, 100 * 1024 * 1024 + 7);
  writeSync(fd, Buffer.from('END'), 0, 3, 100 * 1024 * 1024 + 4);
  closeSync(fd);
  if (IS_ROOT) {
    chownSync(join(dir, 'regular'), 1234, 5678);
    chownSync(join(dir, 'private-dir'), 42, 43);
    sh(`setfattr -n user.larch.test -v "a value" '${join(dir, 'regular')}'`);
    sh(`setfattr -n user.binary -v 0x00ff00 '${join(dir, 'empty')}'`);
    sh(`setfattr -n user.dir -v yes '${join(dir, 'empty-dir')}'`);
    sh(`setfattr -n trusted.larch -v root-only '${join(dir, 'setuid')}'`);
  }
}

t.test('real Debian packages plus edge cases survive commit and checkout', async (t) => {
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  const packages = debs();
  t.ok(packages.length >= 15, `at least 15 Debian packages (${packages.length})`);
  for (const deb of packages) sh(`dpkg-deb -x '${deb}' '${tree}'`);
  makeEdgeCases(join(tree, 'edge'));
  const want = await snapshotTree(tree, { owners: IS_ROOT, xattrs: IS_ROOT });
  t.ok(want.size > 2000, `the tree has many entries (${want.size})`);

  const ids: Record<string, string> = {};
  const modes = IS_ROOT ? ['bare', 'bare-user', 'archive'] : ['bare-user', 'archive'];
  for (const mode of modes) {
    const repo = join(dir, `repo-${mode}`);
    await larchOk(['init', '--repo', repo, '--mode', mode]);
    const c = await larchOk(['commit', '--repo', repo, '-b', 'os/test', '--tree', tree, '--version', '1', '--timestamp', '1767225600', '--json']);
    ids[mode] = c.json.commit;
    const out = join(dir, `checkout-${mode}`);
    const co = await larchOk(['checkout', '--repo', repo, 'os/test', out, '--json']);
    if (mode === 'bare') t.equal(co.json.copied, 0, 'bare checkout hardlinks everything');
    if (mode === 'archive') t.equal(co.json.hardlinked, 0, 'archive checkout copies');
    const got = await snapshotTree(out, { owners: IS_ROOT, xattrs: IS_ROOT });
    t.same(diffSnapshots(want, got), [], `${mode}: checkout equals the source tree`);
    const f = await larch(['fsck', '--repo', repo]);
    t.equal(f.code, 0, `${mode}: fsck clean`);
    await larchOk(['checkout', '--repo', repo, 'os/test', join(dir, `copy-${mode}`), '--copy']);
    t.same(diffSnapshots(want, await snapshotTree(join(dir, `copy-${mode}`), { owners: IS_ROOT, xattrs: IS_ROOT })), [], `${mode}: --copy checkout equals the source tree`);
  }
  t.equal(new Set(Object.values(ids)).size, 1, 'every repo mode gives the same commit id');

  // The same tree from a tar (GNU tar, pax with xattrs, raw non-UTF-8 names) gives the same commit id.
  const repo = join(dir, 'repo-archive');
  const tarFile = join(dir, 'tree.tar');
  const makeTar = () => sh(`tar --xattrs --xattrs-include='*' --format=pax -C '${tree}' -cf '${tarFile}' .`);
  makeTar();
  // The same branch and release as the first commit (larch.ref and larch.release are in the
  // metadata, and the repo's counter has moved on): only the tree could make the ids differ.
  const again = ['-b', 'os/test', '--version', '1', '--timestamp', '1767225600', '--orphan', '--release', '1', '--force', '--json'];
  const fromTree = await larchOk(['commit', '--repo', repo, '--tree', tree, ...again]);
  t.equal(fromTree.json.commit, ids.archive, 'same tree, same id');
  const viaTar = await larchOk(['commit', '--repo', repo, '--tar', tarFile, ...again]);
  t.equal(viaTar.json.commit, fromTree.json.commit, 'commit --tar equals commit --tree');
  const diff = await larchOk(['diff', '--repo', repo, fromTree.json.commit, viaTar.json.commit, '--json']);
  t.same([diff.json.added, diff.json.removed, diff.json.modified], [[], [], []], 'diff of the two is empty');
});

t.test('what a tree cannot hold is refused, naming the path', async (t) => {
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'run'), { recursive: true });
  const sock = join(tree, 'run', 'daemon.sock');
  const server = createServer().listen(sock);
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => server.close());
  await larchOk(['init', '--repo', join(dir, 'repo'), '--mode', 'archive']);
  const r = await larch(['commit', '--repo', join(dir, 'repo'), '-b', 'x', '--tree', tree, '--version', '1', '--json']);
  t.equal(r.code, 4, 'exit code 4');
  t.equal(r.json.error.code, 'UNSUPPORTED_FILE_TYPE');
  t.match(r.json.error.message, /run\/daemon\.sock' is a socket/);
  t.equal((await larchOk(['refs', '--repo', join(dir, 'repo'), '--json'])).json.length, 0, 'no ref was written');
  if (IS_ROOT) {
    server.close();
    sh(`rm -f '${sock}' && mknod '${join(tree, 'run', 'null')}' c 1 3`);
    const d = await larch(['commit', '--repo', join(dir, 'repo'), '-b', 'x', '--tree', tree, '--version', '1', '--json']);
    t.equal(d.json.error.code, 'UNSUPPORTED_FILE_TYPE');
    t.match(d.json.error.message, /run\/null' is a character device/);
  }
});
