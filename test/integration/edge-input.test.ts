/** Bad or unusual input: each gets a clear error (or is stored faithfully) and loses nothing. */
import t from 'tap';
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir } from '../helpers.ts';

function smallTree(dir: string): string {
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'etc'), { recursive: true });
  writeFileSync(join(tree, 'etc', 'motd'), 'hello\n');
  symlinkSync('motd', join(tree, 'etc', 'issue'));
  sh(`mkfifo '${join(tree, 'etc', 'initctl')}'`);
  writeFileSync(join(tree, 'no-permissions'), 'mode 0000\n');
  chmodSync(join(tree, 'no-permissions'), 0o000);
  return tree;
}

t.test('timestamps outside the epoch range are usage errors and write nothing', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  for (const ts of ['1960-01-01T00:00:00Z', '99999999999999999999', 'yesterday']) {
    const r = await larch(['commit', '--repo', repo, '-b', 'main', '--tree', smallTree(join(dir, ts.replace(/\W/g, ''))), '--version', '1', '--timestamp', ts, '--json']);
    t.equal(r.code, 2, `${ts}: exit 2`);
    t.equal(r.json.error.code, 'USAGE');
  }
  t.same((await larchOk(['refs', '--repo', repo, '--json'])).json, [], 'no ref');
});

t.test('the per-file fsync fallback (no syncfs) handles symlinks and FIFOs', async (t) => {
  const dir = tempDir(t);
  const tree = smallTree(dir);
  for (const mode of ['archive', 'bare-user']) {
    const repo = join(dir, mode);
    await larchOk(['init', '--repo', repo, '--mode', mode]);
    const r = await larch(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', '1'], { env: { LARCH_SYNC: 'file' } });
    t.equal(r.code, 0, `${mode}: commit with LARCH_SYNC=file`);
    t.equal((await larch(['fsck', '--repo', repo])).code, 0, `${mode}: fsck clean`);
    await larchOk(['checkout', '--repo', repo, 'main', join(dir, `co-${mode}`)]);
    t.same(diffSnapshots(await snapshotTree(tree), await snapshotTree(join(dir, `co-${mode}`))), [], `${mode}: a mode-0000 file, a symlink and a FIFO come back as they were`);
  }
});

t.test('bytes after the end of an archive object make it corrupt', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  await larchOk(['commit', '--repo', repo, '-b', 'main', '--tree', smallTree(dir), '--version', '1']);
  const obj = (await larchOk(['ls', '--repo', repo, 'main', '/etc', '--json'])).json.find((e: { path: string }) => e.path === '/etc/motd').object;
  const p = join(repo, 'objects', obj.slice(0, 2), `${obj.slice(2)}.filez`);
  t.equal(statSync(p).mode & 0o777, 0o644, 'archive objects are world-readable (served by a web server)');
  writeFileSync(p, Buffer.concat([readFileSync(p), Buffer.from('junk')]));
  const f = await larch(['fsck', '--repo', repo, '--json']);
  t.equal(f.code, 5);
  t.match(f.json.problems[0].problem, /4 bytes follow the end of the compressed content/);
  const co = await larch(['checkout', '--repo', repo, 'main', join(dir, 'co'), '--json']);
  t.equal(co.json.error.code, 'OBJECT_CORRUPT', 'checkout refuses it too');
});

t.test('keygen never overwrites or mismatches a key pair', async (t) => {
  const dir = tempDir(t);
  await larchOk(['keygen', '--out', join(dir, 'k')]);
  const before = readFileSync(join(dir, 'k.key'), 'utf8');
  const again = await larch(['keygen', '--out', join(dir, 'k'), '--json']);
  t.equal(again.json.error.code, 'EXISTS');
  t.equal(readFileSync(join(dir, 'k.key'), 'utf8'), before, 'secret key untouched');
  writeFileSync(join(dir, 'lonely.pub'), readFileSync(join(dir, 'k.pub')));
  t.equal((await larch(['keygen', '--out', join(dir, 'lonely'), '--json'])).json.error.code, 'EXISTS', 'an existing .pub alone stops it');
  t.throws(() => statSync(join(dir, 'lonely.key')), 'and no .key was written');
});

t.test('prune --keep counts each branch on its own where histories overlap', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  for (let v = 1; v <= 4; v++) {
    writeFileSync(join(tree, 'v'), String(v));
    await larchOk(['commit', '--repo', repo, '-b', 'a', '--tree', tree, '--version', String(v)]);
  }
  const bHead = (await larchOk(['show', '--repo', repo, 'a^', '--json'])).json.commit;
  await larchOk(['commit', '--repo', repo, '-b', 'b', '--tree', tree, '--version', 'b', '--parent', bHead]);
  await larchOk(['prune', '--repo', repo, '--keep', '2']);
  t.same((await larchOk(['log', '--repo', repo, 'a', '--json'])).json.map((c: { version: string }) => c.version), ['4', '3'], 'a keeps 2');
  t.same((await larchOk(['log', '--repo', repo, 'b', '--json'])).json.map((c: { version: string }) => c.version), ['b', '3'], 'b keeps 2 (one shared with a)');
  t.equal((await larch(['fsck', '--repo', repo])).code, 0);
});

async function makeTar(path: string, entries: { header: Partial<tar.Header> & { name: string }; body?: string }[]) {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(path));
  for (const e of entries) await new Promise<void>((r, j) => pack.entry(e.header as tar.Header, e.body ?? '', (err) => (err ? j(err) : r())));
  pack.finalize();
  await done;
}

t.test('tar input: refused entries name the entry; --no-xattrs drops pax xattrs', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const cases: [string, { header: Partial<tar.Header> & { name: string }; body?: string }[], RegExp][] = [
    ['empty symlink target', [{ header: { name: 'bad-link', type: 'symlink', linkname: '' } }], /bad-link': symlink target is empty/],
    ['.. in a path', [{ header: { name: '../escape', type: 'file' }, body: 'x' }], /'\.\.\/escape' has a '\.\.' component/],
    ['a device node', [{ header: { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 } }], /dev\/null' is a character-device entry/],
    ['a hard link to nothing', [{ header: { name: 'hl', type: 'link', linkname: 'missing' } }], /hard link to 'missing'/],
  ];
  for (const [what, entries, message] of cases) {
    const file = join(dir, `${what.replace(/\W/g, '-')}.tar`);
    await makeTar(file, entries);
    const r = await larch(['commit', '--repo', repo, '-b', 'main', '--tar', file, '--version', '1', '--json']);
    t.not(r.code, 0, `${what}: refused`);
    t.match(r.json?.error?.message, message, `${what}: says which entry and why`);
  }
  const good = join(dir, 'good.tar');
  await makeTar(good, [{ header: { name: 'f', type: 'file', pax: { 'SCHILY.xattr.user.k': 'v' } }, body: 'x' }]);
  const truncated = join(dir, 'truncated.tar');
  writeFileSync(truncated, readFileSync(good).subarray(0, 700));
  const tr = await larch(['commit', '--repo', repo, '-b', 'main', '--tar', truncated, '--version', '1', '--json']);
  t.equal(tr.json.error.code, 'INVALID_INPUT', 'a truncated tar is refused');
  t.match(tr.json.error.message, /is not a readable tar archive/);
  const gz = join(dir, 'damaged.tar.gz');
  writeFileSync(gz, Buffer.concat([gzipSync(readFileSync(good)).subarray(0, 40), Buffer.alloc(30, 0x55)]));
  const dg = await larch(['commit', '--repo', repo, '-b', 'main', '--tar', gz, '--version', '1', '--json']);
  t.equal(dg.json.error.code, 'INVALID_INPUT', 'a damaged .tar.gz is bad input, not an I/O error');
  const bigX = join(dir, 'big-xattr.tar');
  await makeTar(bigX, [{ header: { name: 'f', type: 'file', pax: { 'SCHILY.xattr.user.big': 'x'.repeat(1100 * 1024) } }, body: 'x' }]);
  const bx = await larch(['commit', '--repo', repo, '-b', 'main', '--tar', bigX, '--version', '1', '--json']);
  t.equal(bx.json.error.code, 'INVALID_INPUT', 'a header over 1 MiB is refused at write time');
  t.match(bx.json.error.message, /over the 1 MiB limit/);
  t.same((await larchOk(['refs', '--repo', repo, '--json'])).json, [], 'nothing was committed by any of them');
  const withX = await larchOk(['commit', '--repo', repo, '-b', 'x', '--tar', good, '--version', '1', '--json']);
  const noX = await larchOk(['commit', '--repo', repo, '-b', 'nox', '--tar', good, '--version', '1', '--no-xattrs', '--json']);
  const lsX = (await larchOk(['ls', '--repo', repo, 'x', '--json'])).json[0].object;
  const lsNoX = (await larchOk(['ls', '--repo', repo, 'nox', '--json'])).json[0].object;
  t.not(lsX, lsNoX, '--no-xattrs changes the file object (its xattr is gone)');
  t.not(withX.json.commit, noX.json.commit);
});
