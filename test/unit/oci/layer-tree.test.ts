/**
 * The flattened tree of an OCI image (src/oci/layer-tree.ts): the examples of image-spec layer.md
 * ("Whiteouts", "Opaque Whiteout"), the same-layer rule, hard links across layers, each refusal;
 * and a property: random layers through LayerTree give the tree the spec describes when read
 * literally (each layer's whiteouts applied to the layers below, then its entries in order).
 */
import t from 'tap';
import fc from 'fast-check';
import { LayerTree, classifyPath } from '../../../src/oci/layer-tree.ts';
import type { DirMeta } from '../../../src/store/object.ts';
import type { MDir } from '../../../src/store/mtree.ts';

const IMPLICIT: DirMeta = { mode: 0o40755, uid: 0, gid: 0, xattrs: [] };
const dirMeta = (mode: number): DirMeta => ({ mode: 0o40000 | mode, uid: 0, gid: 0, xattrs: [] });
const b = (s: string) => Buffer.from(s);
const id = (c: string) => c.repeat(64).slice(0, 64);

type Op = { dir: string; mode?: number } | { file: string; id: string } | { link: string; to: string } | { symlink: string; to: string } | { marker: string };

/** Applies layers of ops; a marker is a path ending in .wh.NAME or .wh..wh..opq. */
function flatten(layers: Op[][]): LayerTree {
  const tree = new LayerTree(IMPLICIT);
  for (const layer of layers) {
    tree.beginLayer();
    for (const op of layer) {
      if ('marker' in op) {
        const kind = classifyPath(b(op.marker)).kind;
        if (kind !== 'whiteout' && kind !== 'opaque') throw new Error(`not a marker: ${op.marker}`);
        tree.whiteout(b(op.marker));
      } else if ('dir' in op) tree.add({ path: b(op.dir), type: 'dir', meta: dirMeta(op.mode ?? 0o755) });
      else if ('file' in op) tree.add({ path: b(op.file), type: 'reg', id: id(op.id), size: 1 });
      else if ('symlink' in op) tree.add({ path: b(op.symlink), type: 'lnk', id: id('9'), size: 0, linkName: op.to });
      else tree.add({ path: b(op.link), type: 'hardlink', target: b(op.to) });
    }
  }
  return tree;
}

/** path -> 'd:MODE' or 'f:ID' for every entry of the flattened tree. */
function listing(dir: MDir, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { name, id } of dir.files.values()) out[prefix + Buffer.from(name).toString()] = `f:${id.slice(0, 1)}`;
  for (const { name, dir: d } of dir.dirs.values()) {
    const p = prefix + Buffer.from(name).toString();
    out[p] = `d:${(d.meta.mode & 0o7777).toString(8)}`;
    Object.assign(out, listing(d, `${p}/`));
  }
  return out;
}

const flat = (layers: Op[][]) => listing(flatten(layers).toMTree());

t.test("layer.md's whiteout examples", async (t) => {
  const base: Op[] = [{ dir: 'a' }, { dir: 'a/b' }, { dir: 'a/b/c' }, { file: 'a/b/c/bar', id: '1' }];
  t.same(flat([base, [{ dir: 'a' }, { marker: 'a/.wh..wh..opq' }, { dir: 'a/b' }, { dir: 'a/b/c' }, { file: 'a/b/c/foo', id: '2' }]]), { a: 'd:755', 'a/b': 'd:755', 'a/b/c': 'd:755', 'a/b/c/foo': 'f:2' }, 'opaque: bar gone, foo there');
  t.same(flat([base, [{ dir: 'a' }, { dir: 'a/b' }, { dir: 'a/b/c' }, { file: 'a/b/c/foo', id: '2' }, { marker: 'a/.wh..wh..opq' }]]), { a: 'd:755', 'a/b': 'd:755', 'a/b/c': 'd:755', 'a/b/c/foo': 'f:2' }, 'the marker after the entries: the same');
  t.same(flat([base, [{ dir: 'a' }, { dir: 'a/b' }, { dir: 'a/b/c' }, { marker: 'a/b/c/.wh.bar' }]]), { a: 'd:755', 'a/b': 'd:755', 'a/b/c': 'd:755' }, 'a whiteout of a file');
  t.same(flat([base, [{ marker: 'a/.wh.b' }]]), { a: 'd:755' }, 'a whiteout of a directory takes its subtree');
  t.same(flat([base, [{ file: 'a/new', id: '3' }, { marker: 'a/.wh.new' }]]), { a: 'd:755', 'a/b': 'd:755', 'a/b/c': 'd:755', 'a/b/c/bar': 'f:1', 'a/new': 'f:3' }, 'a whiteout never removes its own layer\'s entry');
  t.same(flat([base, [{ marker: 'nothing/.wh.here' }, { marker: 'a/.wh.missing' }]]), listing(flatten([base]).toMTree()), 'whiteouts of missing paths change nothing');
});

t.test('file and directory replacements, implicit parents, hard links', async (t) => {
  t.same(flat([[{ dir: 'x', mode: 0o700 }, { file: 'x/f', id: '1' }], [{ file: 'x', id: '2' }]]), { x: 'f:2' }, 'a file replaces a directory and its subtree');
  t.same(flat([[{ file: 'x', id: '1' }], [{ file: 'x/f', id: '2' }]]), { x: 'd:755', 'x/f': 'f:2' }, 'a file in the way of a path becomes an implicit directory');
  t.same(flat([[{ file: 'deep/er/f', id: '1' }]]), { deep: 'd:755', 'deep/er': 'd:755', 'deep/er/f': 'f:1' }, 'implicit parents 0755');
  t.same(flat([[{ dir: 'd', mode: 0o700 }], [{ dir: 'd', mode: 0o750 }]]), { d: 'd:750' }, 'a re-declared directory takes the new metadata');
  t.same(flat([[{ file: 'bin/a', id: '1' }], [{ link: 'bin/b', to: 'bin/a' }]]), { bin: 'd:755', 'bin/a': 'f:1', 'bin/b': 'f:1' }, 'a hard link to a lower layer shares its object');
  t.same(flat([[{ file: 'a', id: '1' }], [{ marker: '.wh.a' }, { link: 'b', to: 'a' }].reverse()]), { b: 'f:1' }, 'a link made before the whiteout of its target (tar order) keeps the object');
  t.same(flat([[{ dir: 'd', mode: 0o700 }, { file: 'd/old', id: '1' }], [{ marker: '.wh.d' }, { file: 'd/new', id: '2' }]]), { d: 'd:755', 'd/new': 'f:2' }, 'a whited-out directory this layer fills again: lower content and metadata gone');
  const tree = flatten([[{ file: 'a', id: '1' }, { file: 'b', id: '2' }], [{ file: 'a', id: '3' }]]);
  t.same([...tree.fileIds()].map((x) => x.slice(0, 1)).sort(), ['2', '3'], 'fileIds: only what the tree refers to (a replaced object can be dropped)');
});

t.test('refusals', async (t) => {
  const reason = (layers: Op[][]) => {
    try {
      flatten(layers);
      return null;
    } catch (err) {
      return (err as { code?: string; data?: { reason?: string } }).code + ':' + (err as { data?: { reason?: string } }).data?.reason;
    }
  };
  t.equal(reason([[{ file: 'usr/../../etc/x', id: '1' }]]), 'INVALID_INPUT:dotdot', '..');
  t.equal(reason([[{ symlink: 'lib', to: '/etc' }], [{ file: 'lib/evil', id: '1' }]]), 'INVALID_INPUT:through-symlink', 'an entry under a symlink');
  t.equal(reason([[{ symlink: 'lib', to: '/etc' }], [{ marker: 'lib/.wh.passwd' }]]), 'INVALID_INPUT:through-symlink', 'a whiteout under a symlink');
  t.equal(reason([[{ file: 'a', id: '1' }, { symlink: 'l', to: '/' }], [{ link: 'b', to: 'l/a' }]]), 'INVALID_INPUT:through-symlink', 'a hard-link target under a symlink');
  t.equal(reason([[{ link: 'b', to: 'missing' }]]), 'INVALID_INPUT:link-target', 'a hard link to nothing');
  t.equal(reason([[{ dir: 'd' }, { link: 'b', to: 'd' }]]), 'INVALID_INPUT:link-target', 'a hard link to a directory');
  t.equal(reason([[{ file: '/', id: '1' }]]), 'INVALID_INPUT:root-type', 'a file as the root');
  for (const m of ['d/.wh.', 'd/.wh..', 'd/.wh...']) t.equal(reason([[{ marker: m }]]), 'INVALID_INPUT:whiteout-parent', `${m}: its own directory or a parent`);
  t.throws(() => classifyPath(b('d/.wh..wh.foo')), { code: 'INVALID_INPUT', data: { reason: 'whiteout-name' } }, '.wh..wh.X is no OCI whiteout');
  t.throws(() => classifyPath(b('.wh.d/x')), { code: 'INVALID_INPUT', data: { reason: 'whiteout-name' } }, 'a whiteout name as a directory');
  t.same(classifyPath(b('.wh..wh.plnk/123')), { kind: 'skip', reason: 'aufs' }, "AUFS's top-level directories are skipped");
  t.same(classifyPath(b('./a/./b')), { kind: 'entry' });
});

// The spec read literally: each layer's whiteouts act on the layers below, then its entries go in, in order.
type Ref = Map<string, string>;
function reference(layers: Op[][]): Record<string, string> {
  const tree: Ref = new Map();
  const drop = (p: string) => {
    for (const k of [...tree.keys()]) if (k === p || k.startsWith(`${p}/`)) tree.delete(k);
  };
  const ensureParents = (p: string) => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const q = parts.slice(0, i).join('/');
      if (!tree.get(q)?.startsWith('d:')) tree.set(q, 'd:755');
    }
  };
  for (const layer of layers) {
    for (const op of layer) {
      if (!('marker' in op)) continue;
      const parts = op.marker.split('/');
      const last = parts.pop()!;
      const dir = parts.join('/');
      if (last === '.wh..wh..opq') {
        for (const k of [...tree.keys()]) if (dir === '' || k.startsWith(`${dir}/`)) tree.delete(k);
      } else {
        drop(dir === '' ? last.slice(4) : `${dir}/${last.slice(4)}`);
      }
    }
    for (const op of layer) {
      if ('marker' in op) {
        const dir = op.marker.split('/').slice(0, -1).join('/');
        if (op.marker.endsWith('.wh..wh..opq') && dir !== '') {
          ensureParents(`${dir}/x`);
        }
        continue;
      }
      if ('dir' in op) {
        ensureParents(op.dir);
        tree.set(op.dir, `d:${(op.mode ?? 0o755).toString(8)}`);
      } else if ('file' in op) {
        ensureParents(op.file);
        drop(op.file);
        tree.set(op.file, `f:${op.id}`);
      }
    }
  }
  return Object.fromEntries([...tree.entries()]);
}

t.test('property: LayerTree is the spec read literally', async (t) => {
  // Names decide types (a, b: directories; x, y: files), so no layer both makes a path a file and a directory.
  const dirPath = fc.array(fc.constantFrom('a', 'b'), { minLength: 1, maxLength: 3 }).map((p) => p.join('/'));
  const filePath = fc.tuple(fc.array(fc.constantFrom('a', 'b'), { maxLength: 2 }), fc.constantFrom('x', 'y')).map(([d, f]) => [...d, f].join('/'));
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ dir: dirPath, mode: fc.constantFrom(0o700, 0o750, 0o755) }),
    fc.record({ file: filePath, id: fc.constantFrom('1', '2', '3', '4') }),
    fc.oneof(dirPath, filePath).map((p) => {
      const parts = p.split('/');
      return { marker: [...parts.slice(0, -1), `.wh.${parts.at(-1)}`].join('/') };
    }),
    dirPath.map((d) => ({ marker: `${d}/.wh..wh..opq` })),
  );
  const property = fc.property(fc.array(fc.array(op, { maxLength: 8 }), { minLength: 1, maxLength: 4 }), (layers) => {
    const got = flat(layers);
    const want = reference(layers);
    if (JSON.stringify(Object.entries(got).sort()) !== JSON.stringify(Object.entries(want).sort())) throw new Error(`got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  });
  t.doesNotThrow(() => fc.assert(property, { numRuns: 2000 }), '2000 random layer sequences agree with the literal reading');
});
