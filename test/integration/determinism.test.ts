/**
 * The same tree and metadata give the same commit id from Node and from
 * the Bun binary, and that id is pinned by a vector.
 */
import t from 'tap';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Runtime, larchOk, tempDir } from '../helpers.ts';

const vector = JSON.parse(readFileSync(new URL('../vectors/commits/synthetic-tree.json', import.meta.url), 'utf8'));

function materialize(dir: string): void {
  mkdirSync(dir);
  for (const e of vector.entries) {
    const p = join(dir, e.path);
    if (e.type === 'dir') mkdirSync(p);
    else if (e.type === 'reg') writeFileSync(p, Buffer.from(e.content, 'latin1'));
    else symlinkSync(e.target, p);
  }
  for (const e of vector.entries) if (e.type !== 'lnk') chmodSync(join(dir, e.path), e.mode);
  chmodSync(dir, vector.root_mode);
}

async function commitWith(runtime: Runtime, dir: string, mode: string, dirtreeFormat = 1): Promise<string> {
  const repo = join(dir, `repo-${runtime}-${mode}-${dirtreeFormat}`);
  await larchOk(['init', '--repo', repo, '--mode', mode, '--dirtree-format', String(dirtreeFormat)], { runtime });
  const args = ['commit', '--repo', repo, '-b', 'main', '--tree', join(dir, 'tree'), '--owner', '0:0', '--no-xattrs'];
  args.push('--timestamp', String(vector.timestamp), '--version', vector.version, '--subject', vector.subject);
  for (const [k, v] of Object.entries(vector.metadata)) args.push('--metadata', `${k}=${v}`);
  return (await larchOk([...args, '--json'], { runtime })).json.commit;
}

t.test('Node and Bun give the pinned commit id in every repo mode and dirtree format', async (t) => {
  const dir = tempDir(t);
  materialize(join(dir, 'tree'));
  // Format 2 lists each file's size in its dirtree (docs/formats.md §2.3): another id, as pinned.
  for (const [format, pinned] of [[1, vector.commit], [2, vector.commit_dirtree_format_2]] as const) {
    const ids = new Set<string>();
    for (const runtime of ['node', 'bun'] as Runtime[]) {
      for (const mode of ['archive', 'bare-user']) {
        const id = await commitWith(runtime, dir, mode, format);
        t.equal(id, pinned, `${runtime} ${mode} dirtree format ${format}`);
        ids.add(id);
      }
    }
    t.equal(ids.size, 1, `one id in dirtree format ${format}`);
  }
});

t.test('a different timestamp or content changes the id', async (t) => {
  const dir = tempDir(t);
  materialize(join(dir, 'tree'));
  writeFileSync(join(dir, 'tree', 'etc', 'hostname'), 'other\n');
  t.not(await commitWith('bun', dir, 'archive'), vector.commit, 'content change');
});
