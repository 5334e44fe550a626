/**
 * Pure: the root filesystem of an OCI image, flattened layer by layer (image-spec layer.md:
 * "Applying Changesets"), as names and object ids only: no content, no host path ever opened
 * (docs/design/issue-21-oci.md §4.3). Each node remembers the layer that made it, so a whiteout
 * or an opaque marker removes only what lower layers made, "regardless of the ordering" of the
 * entries within its own layer. Refusals (INVALID_INPUT with data.reason) come before anything
 * is committed: a '..' component, an entry below a symlink of the merged tree, a whiteout of its
 * own directory or a parent, a name of AUFS's that is no OCI whiteout, a non-directory root, a
 * hard link to no file.
 */
import { LarchError, quash } from '../errors.ts';
import type { DirMeta, ObjectId } from '../store/object.ts';
import { splitTarPath } from '../store/tar-entries.ts';
import { type MDir, addFile, ensureDir, newDir } from '../store/mtree.ts';

const WHITEOUT = Buffer.from('.wh.');
const OPAQUE = '.wh..wh..opq';

export type EntryType = 'dir' | 'reg' | 'lnk' | 'fifo';

/** One tar entry of a layer, its content already stored (id) when it has one. */
export type LayerEntry =
  | { path: Uint8Array; type: 'dir'; meta: DirMeta }
  | { path: Uint8Array; type: 'reg' | 'lnk' | 'fifo'; id: ObjectId; size: number; linkName?: string }
  | { path: Uint8Array; type: 'hardlink'; target: Uint8Array };

interface FileNode {
  kind: 'file';
  type: 'reg' | 'lnk' | 'fifo';
  id: ObjectId;
  size: number;
  /** The layer that made it. */
  stamp: number;
  /** A symlink's target, for messages. */
  linkName?: string;
}

interface DirNode {
  kind: 'dir';
  meta: DirMeta;
  children: Map<string, { name: Uint8Array; node: Node }>;
  /** The last layer whose entry declared this directory (-1: made implicitly). */
  declared: number;
  /** The last layer that declared this directory or put anything below it. */
  touched: number;
}

type Node = FileNode | DirNode;

/** What an entry's path is, before its content is read: so the importer stores no bytes of an entry that is no file. */
export type PathKind = { kind: 'skip'; reason: 'aufs' } | { kind: 'whiteout' } | { kind: 'opaque' } | { kind: 'entry' };

const key = (name: Uint8Array) => Buffer.from(name).toString('latin1');
const show = (parts: Uint8Array[]) => quash(parts.map((p) => Buffer.from(p).toString('utf8')).join('/'), 200);

function refuse(reason: string, message: string, data: Record<string, unknown> = {}): LarchError {
  return new LarchError('INVALID_INPUT', message, { data: { reason, ...data } });
}

/** A path as its components: raw bytes split on '/', empty and '.' components dropped. @throws INVALID_INPUT dotdot */
export function splitPath(path: Uint8Array): Uint8Array[] {
  const parts = splitTarPath(Buffer.from(path.buffer, path.byteOffset, path.byteLength));
  return parts === 'root' ? [] : parts;
}

const startsWith = (a: Uint8Array, b: Uint8Array) => a.length >= b.length && Buffer.from(a.subarray(0, b.length)).equals(b);

/** What a path names in a layer (pure; refuses '..' and AUFS names that are no OCI whiteout). */
export function classifyPath(path: Uint8Array): PathKind {
  const parts = splitPath(path);
  if (parts.length === 0) return { kind: 'entry' };
  // AUFS's own directories at the top (.wh..wh.plnk, .wh..wh.aufs, .wh..wh.orph): metadata, not content.
  if (startsWith(parts[0], Buffer.from('.wh..wh.')) && !(parts.length === 1 && key(parts[0]) === OPAQUE)) return { kind: 'skip', reason: 'aufs' };
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (!startsWith(p, WHITEOUT)) continue;
    const last = i === parts.length - 1;
    if (last && key(p) === OPAQUE) return { kind: 'opaque' };
    if (startsWith(p, Buffer.from('.wh..wh.')) || !last) throw refuse('whiteout-name', `'${show(parts)}' is not an OCI whiteout`, { path: show(parts) });
    const name = p.subarray(WHITEOUT.length);
    if (name.length === 0 || key(name) === '.' || key(name) === '..') throw refuse('whiteout-parent', `whiteout '${show(parts)}' names its own directory or a parent`, { path: show(parts) });
    return { kind: 'whiteout' };
  }
  return { kind: 'entry' };
}

/** The merged tree. Layers are applied in order: beginLayer(), then each entry of the layer in tar order. */
export class LayerTree {
  private readonly root: DirNode;
  private layer = -1;

  /** implicit: the metadata of a parent directory no layer declared (0755 root:root, or --owner's). */
  constructor(private readonly implicit: DirMeta) {
    this.root = { kind: 'dir', meta: implicit, children: new Map(), declared: -1, touched: -1 };
  }

  beginLayer(): void {
    this.layer++;
  }

  /** A whiteout or an opaque marker (classifyPath said which). */
  whiteout(path: Uint8Array): void {
    const parts = splitPath(path);
    const kind = classifyPath(path).kind;
    const dirParts = parts.slice(0, -1);
    if (kind === 'opaque') {
      // The directory is made when missing (containers/storage makes the marker's parent first).
      const dir = this.walk(dirParts, { create: true, touch: true })!;
      this.prune(dir);
      return;
    }
    // A whiteout adds nothing: a missing parent makes it a no-op.
    const dir = this.walk(dirParts, { create: false, touch: false });
    if (!dir) return;
    const name = parts[parts.length - 1].subarray(WHITEOUT.length);
    const child = dir.children.get(key(name));
    if (!child) return;
    const n = child.node;
    if (n.kind === 'file') {
      if (n.stamp < this.layer) dir.children.delete(key(name));
    } else if (n.touched < this.layer) {
      dir.children.delete(key(name));
    } else {
      // This layer put things below it: they stay, the lower content goes, and so does the lower
      // layers' declaration of the directory itself.
      this.prune(n);
      if (n.declared < this.layer) n.meta = this.implicit;
    }
  }

  /** A directory, file, symlink, FIFO or hard link of the current layer. */
  add(entry: LayerEntry): void {
    const parts = splitPath(entry.path);
    if (parts.length === 0) {
      if (entry.type !== 'dir') throw refuse('root-type', `entry '.' would make the root a ${entry.type === 'hardlink' ? 'hard link' : entry.type}`);
      this.root.meta = entry.meta;
      this.root.declared = this.root.touched = this.layer;
      return;
    }
    const dir = this.walk(parts.slice(0, -1), { create: true, touch: true })!;
    const name = parts[parts.length - 1];
    const k = key(name);
    if (entry.type === 'dir') {
      const existing = dir.children.get(k)?.node;
      if (existing?.kind === 'dir') {
        existing.meta = entry.meta;
        existing.declared = existing.touched = this.layer;
      } else {
        dir.children.set(k, { name, node: { kind: 'dir', meta: entry.meta, children: new Map(), declared: this.layer, touched: this.layer } });
      }
      return;
    }
    if (entry.type === 'hardlink') {
      const targetParts = splitPath(entry.target);
      const target = this.lookup(targetParts);
      if (!target || target.kind !== 'file' || (targetParts.length === parts.length && targetParts.every((p, i) => key(p) === key(parts[i])))) {
        throw refuse('link-target', `hard link '${show(parts)}' to '${show(targetParts)}', which is not a file of the image at this point`, { path: show(parts), target: show(targetParts) });
      }
      dir.children.set(k, { name, node: { ...target, stamp: this.layer } });
      return;
    }
    dir.children.set(k, { name, node: { kind: 'file', type: entry.type, id: entry.id, size: entry.size, stamp: this.layer, ...(entry.linkName !== undefined ? { linkName: entry.linkName } : {}) } });
  }

  /**
   * The flattened tree for writeMTree. `rewrite` moves or drops paths ('/'-joined, one char per
   * byte): a directory dropped takes its subtree with it; parents a move needs are made implicitly.
   */
  toMTree(rewrite?: (path: string) => string | null): MDir {
    const out = newDir(this.root.meta);
    const dirAt = (parts: string[]): MDir => {
      let d = out;
      for (const p of parts) d = ensureDir(d, Buffer.from(p, 'latin1'), this.implicit, 'oci image');
      return d;
    };
    const visit = (d: DirNode, at: string[]) => {
      for (const { name, node } of d.children.values()) {
        const path = [...at, key(name)];
        const moved = rewrite ? rewrite(path.join('/')) : path.join('/');
        if (moved === null) continue;
        const to = moved.split('/');
        if (node.kind === 'dir') {
          const made = dirAt(to);
          made.meta = node.meta;
          visit(node, path);
        } else {
          addFile(dirAt(to.slice(0, -1)), Buffer.from(to[to.length - 1], 'latin1'), node.id, node.size, 'oci image');
        }
      }
    };
    visit(this.root, []);
    return out;
  }

  /** The file (regular, symlink or FIFO) at path in the tree as it stands, or null. */
  fileAt(path: Uint8Array): { type: 'reg' | 'lnk' | 'fifo'; id: ObjectId; size: number } | null {
    try {
      const node = this.lookup(splitPath(path));
      return node?.kind === 'file' ? { type: node.type, id: node.id, size: node.size } : null;
    } catch (err) {
      if (err instanceof LarchError) return null;
      throw err;
    }
  }

  /** Every object id the tree refers to (the rest of what the import stored can be dropped). */
  fileIds(): Set<ObjectId> {
    const ids = new Set<ObjectId>();
    const visit = (d: DirNode) => {
      for (const { node } of d.children.values()) node.kind === 'dir' ? visit(node) : ids.add(node.id);
    };
    visit(this.root);
    return ids;
  }

  /**
   * Removes what lower layers made below d; keeps this layer's entries. A directory this layer put
   * things in but did not declare is, once its lower self is gone, one made implicitly.
   */
  private prune(d: DirNode): void {
    for (const [k, { node }] of d.children) {
      if (node.kind === 'file') {
        if (node.stamp < this.layer) d.children.delete(k);
      } else if (node.touched < this.layer) {
        d.children.delete(k);
      } else {
        this.prune(node);
        if (node.declared < this.layer) node.meta = this.implicit;
      }
    }
  }

  /** The directory at parts: missing ones made (create), a file in the way replaced by one; a symlink in the way refused. */
  private walk(parts: Uint8Array[], opts: { create: boolean; touch: boolean }): DirNode | null {
    let d = this.root;
    if (opts.touch) d.touched = this.layer;
    for (let i = 0; i < parts.length; i++) {
      const k = key(parts[i]);
      const child = d.children.get(k)?.node;
      if (child?.kind === 'file' && child.type === 'lnk') {
        throw refuse('through-symlink', `entry '${show(parts)}' lies under '${show(parts.slice(0, i + 1))}', a symlink${child.linkName ? ` to '${quash(child.linkName, 200)}'` : ''} in the image's tree`, { path: show(parts), symlink: show(parts.slice(0, i + 1)) });
      }
      if (child?.kind === 'dir') {
        d = child;
      } else {
        if (!opts.create) return null;
        const made: DirNode = { kind: 'dir', meta: this.implicit, children: new Map(), declared: -1, touched: -1 };
        d.children.set(k, { name: parts[i], node: made });
        d = made;
      }
      if (opts.touch) d.touched = this.layer;
    }
    return d;
  }

  /** The node at parts in the tree as it stands; a symlink in the parent chain refused. */
  private lookup(parts: Uint8Array[]): Node | null {
    const dir = this.walk(parts.slice(0, -1), { create: false, touch: false });
    if (!dir || parts.length === 0) return null;
    return dir.children.get(key(parts[parts.length - 1]))?.node ?? null;
  }
}
