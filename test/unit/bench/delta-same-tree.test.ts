import t from 'tap';
import { chmodSync, chownSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sameTree } from '../../../bench/delta-methods.ts';

// bench/delta.ts's identical-checkout check: contents, symlink targets, entries, owners, modes.
function tree(root: string): string {
  mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(root, 'usr', 'bin', 'tool'), 'binary\n');
  chmodSync(join(root, 'usr', 'bin', 'tool'), 0o755);
  symlinkSync('usr/bin', join(root, 'bin'));
  return root;
}

t.test('two equal checkouts are the same; each kind of difference is found', async (t) => {
  const dir = t.testdir();
  const a = tree(join(dir, 'a'));
  t.equal(sameTree(a, tree(join(dir, 'b'))), 'ok');

  const content = tree(join(dir, 'content'));
  writeFileSync(join(content, 'usr', 'bin', 'tool'), 'binarY\n');
  t.match(sameTree(a, content), /^checkout DIFFERS/);

  const link = tree(join(dir, 'link'));
  rmSync(join(link, 'bin'));
  symlinkSync('usr/sbin', join(link, 'bin'));
  t.match(sameTree(a, link), /^checkout DIFFERS/, 'a symlink target is compared, not followed');

  const extra = tree(join(dir, 'extra'));
  writeFileSync(join(extra, 'usr', 'new'), '');
  t.match(sameTree(a, extra), /^checkout DIFFERS/);

  const mode = tree(join(dir, 'mode'));
  chmodSync(join(mode, 'usr', 'bin', 'tool'), 0o644);
  t.match(sameTree(a, mode), /owners\/modes DIFFER.*usr\/bin\/tool \d+ \d+ 755' vs '.*644/);

  if (process.getuid?.() === 0) {
    const owner = tree(join(dir, 'owner'));
    chownSync(join(owner, 'usr', 'bin', 'tool'), 1000, 1000);
    t.match(sameTree(a, owner), /owners\/modes DIFFER/);
  }
});
