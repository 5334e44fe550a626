/**
 * fsck finds each kind of corruption, names the object and a path
 * that uses it, and exits non-zero; signatures verify with the signing key only, and not after
 * any byte of the commit changes.
 */
import t from 'tap';
import { mkdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { larch, larchOk, tempDir } from '../helpers.ts';

async function makeRepo(dir: string, mode: string) {
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(tree, 'usr', 'bin', 'tool'), 'the tool binary\n'.repeat(100));
  writeFileSync(join(tree, 'usr', 'bin', 'other'), 'another file\n');
  mkdirSync(join(tree, 'etc'));
  writeFileSync(join(tree, 'etc', 'config'), 'key=value\n');
  const repo = join(dir, `repo-${mode}`);
  await larchOk(['init', '--repo', repo, '--mode', mode]);
  await larchOk(['keygen', '--out', join(dir, 'k')]).catch(() => undefined);
  const c = await larchOk(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', '1', '--sign-key', join(dir, 'k.key'), '--json']);
  return { repo, commit: c.json.commit as string };
}

/** The path of the object a `larch ls` row names. */
async function objectOf(repo: string, path: string): Promise<string> {
  const rows = (await larchOk(['ls', '--repo', repo, 'main', '-R', '--json'])).json;
  return rows.find((r: { path: string }) => r.path === path).object;
}
const objPath = (repo: string, id: string, ext: string) => join(repo, 'objects', id.slice(0, 2), `${id.slice(2)}.${ext}`);

for (const mode of ['archive', 'bare-user']) {
  t.test(`${mode}: fsck passes a clean repo and finds each corruption`, async (t) => {
    const dir = tempDir(t);
    const { repo, commit } = await makeRepo(dir, mode);
    const clean = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(clean.code, 0, 'clean repo passes');
    t.same(clean.json.problems, []);
    const fileExt = mode === 'archive' ? 'filez' : 'file';

    // 1. a flipped byte in a file object
    const tool = await objectOf(repo, '/usr/bin/tool');
    const p = objPath(repo, tool, fileExt);
    const bytes = readFileSync(p);
    bytes[bytes.length - 5] ^= 0x01;
    writeFileSync(p, bytes);
    let r = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(r.code, 5, 'flipped byte: exit 5');
    let prob = r.json.problems.find((x: { id: string }) => x.id === tool);
    t.ok(prob, 'flipped byte: names the object');
    t.equal(prob?.path, '/usr/bin/tool', 'flipped byte: names the path');
    t.equal(prob?.code, 'OBJECT_CORRUPT');
    writeFileSync(p, (bytes[bytes.length - 5] ^= 0x01, bytes));
    t.equal((await larch(['fsck', '--repo', repo])).code, 0, 'repaired');

    // 1b. a truncated file object (for archive: the DEFLATE stream ends early)
    truncateSync(p, bytes.length - 3);
    r = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(r.code, 5, 'truncated file: exit 5, not a crash');
    prob = r.json.problems.find((x: { id: string }) => x.id === tool);
    t.equal(prob?.code, 'OBJECT_CORRUPT', 'truncated file: code');
    t.equal(prob?.path, '/usr/bin/tool', 'truncated file: path');
    writeFileSync(p, bytes);

    // 2. a missing object
    const other = await objectOf(repo, '/usr/bin/other');
    renameSync(objPath(repo, other, fileExt), join(dir, 'saved'));
    r = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(r.code, 5, 'missing: exit 5');
    prob = r.json.problems.find((x: { id: string }) => x.id === other);
    t.equal(prob?.code, 'OBJECT_MISSING', 'missing: code');
    t.equal(prob?.path, '/usr/bin/other', 'missing: path');
    t.match(r.stderr, new RegExp(`${other}`), 'missing: the error names the object');
    t.equal(prob?.problem, 'is missing', 'missing: the problem text does not repeat kind and id');
    renameSync(join(dir, 'saved'), objPath(repo, other, fileExt));

    // 3. a truncated dirtree
    const etcTree = await objectOf(repo, '/etc');
    const tp = objPath(repo, etcTree, 'dirtree');
    const orig = readFileSync(tp);
    truncateSync(tp, orig.length - 3);
    r = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(r.code, 5, 'truncated dirtree: exit 5');
    prob = r.json.problems.find((x: { id: string }) => x.id === etcTree);
    t.equal(prob?.kind, 'dirtree');
    t.equal(prob?.path, '/etc', 'truncated dirtree: path');
    writeFileSync(tp, orig);

    // 4. a commit whose signature does not match
    const sp = objPath(repo, commit, 'sig');
    const sig = readFileSync(sp);
    sig[sig.length - 1] ^= 0x80;
    writeFileSync(sp, sig);
    r = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(r.code, 5, 'bad signature: exit 5');
    prob = r.json.problems.find((x: { kind: string }) => x.kind === 'sig');
    t.equal(prob?.id, commit, 'bad signature: names the commit');
    t.equal(prob?.code, 'SIGNATURE_INVALID');
    t.equal((await larch(['verify', '--repo', repo, '--key', join(dir, 'k.pub'), 'main'])).code, 6, 'verify refuses it too');
  });
}

t.test('verify: the signing key only, and no byte of the commit may change', async (t) => {
  const dir = tempDir(t);
  const { repo, commit } = await makeRepo(dir, 'archive');
  await larchOk(['keygen', '--out', join(dir, 'other')]);
  t.equal((await larch(['verify', '--repo', repo, '--key', join(dir, 'k.pub'), 'main'])).code, 0, 'K verifies');
  const wrong = await larch(['verify', '--repo', repo, '--key', join(dir, 'other.pub'), 'main', '--json']);
  t.equal(wrong.code, 6, 'another key: exit 6');
  t.equal(wrong.json.error.code, 'SIGNATURE_INVALID');
  t.equal((await larch(['verify', '--repo', repo, '--key', join(dir, 'other.pub'), '--key', join(dir, 'k.pub'), 'main'])).code, 0, 'either of two keys');
  // The keyring: no --key uses R/keys/trusted.
  await larchOk(['trust', '--repo', repo, join(dir, 'other.pub')]);
  t.equal((await larch(['verify', '--repo', repo, 'main'])).code, 6, 'keyring without K refuses');
  await larchOk(['trust', '--repo', repo, join(dir, 'k.pub')]);
  t.equal((await larch(['verify', '--repo', repo, 'main'])).code, 0, 'keyring with K verifies');

  // Change each byte of the commit object in turn (a sample of positions): never verifies.
  const cp = objPath(repo, commit, 'commit');
  const orig = readFileSync(cp);
  const positions = [0, 1, Math.floor(orig.length / 2), orig.length - 1];
  for (const pos of positions) {
    const b = Buffer.from(orig);
    b[pos] ^= 0x01;
    writeFileSync(cp, b);
    const r = await larch(['verify', '--repo', repo, '--key', join(dir, 'k.pub'), commit, '--json']);
    t.not(r.code, 0, `byte ${pos} changed: refused`);
    t.equal(r.json?.error?.code, 'OBJECT_CORRUPT', `byte ${pos} changed: reported as a corrupt commit`);
  }
  writeFileSync(cp, orig);
  // An unsigned commit is refused as unsigned.
  await larchOk(['commit', '--repo', repo, '-b', 'unsigned', '--tree', join(dir, 'tree'), '--version', '2']);
  const u = await larch(['verify', '--repo', repo, '--key', join(dir, 'k.pub'), 'unsigned', '--json']);
  t.equal(u.json.error.code, 'SIGNATURE_MISSING');
  // Signing afterwards makes it verify, without changing its id.
  const id = (await larchOk(['show', '--repo', repo, 'unsigned', '--json'])).json.commit;
  await larchOk(['sign', '--repo', repo, '--sign-key', join(dir, 'k.key'), 'unsigned']);
  t.equal((await larch(['verify', '--repo', repo, '--key', join(dir, 'k.pub'), 'unsigned'])).code, 0, 'signed later');
  t.equal((await larchOk(['show', '--repo', repo, 'unsigned', '--json'])).json.commit, id, 'same id');
});

t.test('fsck reports a ref naming a missing commit', async (t) => {
  const dir = tempDir(t);
  const { repo, commit } = await makeRepo(dir, 'archive');
  rmSync(objPath(repo, commit, 'commit'));
  const r = await larch(['fsck', '--repo', repo, '--json']);
  t.equal(r.code, 5);
  t.equal(r.json.problems[0].kind, 'ref');
  t.equal(r.json.problems[0].code, 'OBJECT_MISSING');
});
