/**
 * The three-way /etc merge decision: given the old vendor default (base), the booted /etc (local)
 * and the new vendor default (theirs), decide per path what the new deployment's /etc holds, and why.
 * Pure: trees in, a plan out; reading and writing directories is `tree-io.ts`. Rules: docs/etc-merge.md.
 */
import type { Xattrs } from '../../store/object.ts';
import { decodeText, mergeLines } from './line-merge.ts';

// ---------------------------------------------------------------------------------------------
// Trees

/** Owner and extended attributes, which every entry type carries. */
export interface EntryOwner {
  uid: number;
  gid: number;
  /** Extended attributes, when the reader was asked for them; absent and empty compare equal. */
  xattrs?: Xattrs;
}

export interface FileEntry extends EntryOwner {
  type: 'file';
  /** Permission bits (mode & 0o7777). */
  mode: number;
  /** The bytes, for every file read into memory. */
  content?: Uint8Array;
  /** Instead of content, for files too large to hold: equality then goes by size and hash. */
  large?: { sizeBytes: number; sha256: string };
}

export interface SymlinkEntry extends EntryOwner {
  type: 'symlink';
  target: string;
}

export interface DirEntry extends EntryOwner {
  type: 'dir';
  mode: number;
}

export type EtcEntry = FileEntry | SymlinkEntry | DirEntry;

/**
 * A directory tree as relative path ('ssh/sshd_config', '/'-separated, no leading slash) to entry.
 * The root itself may be present under '' (its mode and owner are merged like any directory).
 */
export type EtcTree = ReadonlyMap<string, EtcEntry>;

// ---------------------------------------------------------------------------------------------
// Plan

export type EtcActionKind = 'keep-local' | 'take-vendor' | 'merged' | 'conflict' | 'delete' | 'keep-deleted' | 'new-local';

/** Why an action was chosen; stable strings for scripts (docs/etc-merge.md has the table). */
export type EtcReason =
  | 'unchanged' // keep-local: the same in all three trees
  | 'modified-locally' // keep-local: only the admin changed it
  | 'same-change' // keep-local: both sides made the same change (or added the same thing)
  | 'vendor-removed-modified' // keep-local: the vendor removed it, but the admin had changed it
  | 'vendor-removed-nonempty' // keep-local: the vendor removed the directory, local files remain in it
  | 'vendor-changed' // take-vendor: only the vendor changed it
  | 'vendor-added' // take-vendor: new in the vendor's tree
  | 'lines-merged' // merged: local and vendor changed different lines
  | 'metadata-merged' // merged: content from one side, mode/owner changes from the other
  | 'content-conflict' // conflict: local and vendor changed the same lines
  | 'binary-conflict' // conflict: both changed a file that is not mergeable by line (binary, too large) differently
  | 'symlink-conflict' // conflict: both retargeted a symlink differently
  | 'type-conflict' // conflict: both changed it and one side changed its type
  | 'add-conflict' // conflict: both added it, with different content
  | 'metadata-conflict' // conflict: content merged, but both changed the same metadata field differently
  | 'vendor-removed' // delete: the vendor removed it and the admin never changed it
  | 'deleted-locally' // keep-deleted: the admin deleted it; the vendor did not change it
  | 'deleted-locally-vendor-changed' // keep-deleted: the admin deleted it; the vendor changed it meanwhile
  | 'parent-not-directory' // keep-deleted: its directory is absent (or not a directory) in the result
  | 'larchnew-refreshed' // delete: an old FILE.larchnew, replaced by this merge's vendor copy
  | 'added-locally' // new-local: the admin created it
  | 'leftover-larchnew'; // new-local: a FILE.larchnew from an earlier merge that no longer conflicts

export type MetadataField = 'mode' | 'uid' | 'gid' | 'xattrs';

/** Where the result's bytes come from (the writer copies large files from that tree). */
export type ContentSource = 'local' | 'theirs' | 'merged';

export interface EtcAction {
  path: string;
  action: EtcActionKind;
  reason: EtcReason;
  /** The path in the merged tree; null when it is absent (delete, keep-deleted). */
  result: EtcEntry | null;
  contentFrom: ContentSource | null;
  /** For conflicts on files and symlinks: the vendor's version, written beside the result. */
  larchnew?: { path: string; entry: EtcEntry };
  /** Metadata fields both sides changed differently (the local value was kept). */
  metadataConflicts?: MetadataField[];
  /** For content conflicts: how many regions overlapped. */
  conflictRegions?: number;
}

export interface EtcMergePlan {
  /** One action per path of the three trees (paths removed on both sides are left out), sorted by path. */
  actions: EtcAction[];
}

/** The suffix of the vendor's copy of a conflicting file, as rpm's `.rpmnew`. */
export const LARCHNEW_SUFFIX = '.larchnew';

// ---------------------------------------------------------------------------------------------
// Comparison

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

function fileContentEqual(a: FileEntry, b: FileEntry): boolean {
  if (a.content && b.content) return bytesEqual(a.content, b.content);
  if (a.large && b.large) return a.large.sizeBytes === b.large.sizeBytes && a.large.sha256 === b.large.sha256;
  // One is held and one is not: the reader holds every file under a size bound, so their sizes
  // differ, unless a memory budget ran out; compare nothing we cannot see and call them different.
  return false;
}

/** Same type and same content (bytes, symlink target); metadata is compared apart. */
export function sameContent(a: EtcEntry, b: EtcEntry): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'file') return fileContentEqual(a, b as FileEntry);
  if (a.type === 'symlink') return a.target === (b as SymlinkEntry).target;
  return true;
}

function xattrsKey(x: Xattrs | undefined): string {
  if (!x || x.length === 0) return '';
  const hex = (b: Uint8Array) => Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return x
    .map(([n, v]) => `${hex(n)}=${hex(v)}`)
    .sort()
    .join(',');
}

function metaValue(e: EtcEntry, field: MetadataField): number | string | undefined {
  switch (field) {
    case 'mode':
      return e.type === 'symlink' ? undefined : e.mode;
    case 'uid':
      return e.uid;
    case 'gid':
      return e.gid;
    case 'xattrs':
      return xattrsKey(e.xattrs);
  }
}

const META_FIELDS: MetadataField[] = ['mode', 'uid', 'gid', 'xattrs'];

export function sameMetadata(a: EtcEntry, b: EtcEntry): boolean {
  return META_FIELDS.every((f) => metaValue(a, f) === metaValue(b, f));
}

export const sameEntry = (a: EtcEntry, b: EtcEntry): boolean => sameContent(a, b) && sameMetadata(a, b);

/**
 * Field by field three-way merge of metadata: a field one side changed takes that side's value;
 * a field both changed differently keeps the local value and is reported. base null (both sides
 * added the path) makes every differing field a conflict.
 */
function mergeMetadata(base: EtcEntry | null, local: EtcEntry, theirs: EtcEntry, onto: EtcEntry): { entry: EtcEntry; conflicts: MetadataField[] } {
  const out: EtcEntry = { ...onto };
  const conflicts: MetadataField[] = [];
  for (const field of META_FIELDS) {
    const l = metaValue(local, field);
    const t = metaValue(theirs, field);
    const b = base ? metaValue(base, field) : undefined;
    let take: 'local' | 'theirs' = 'local';
    if (l === t) take = 'local';
    else if (base && l === b) take = 'theirs';
    else if (base && t === b) take = 'local';
    else conflicts.push(field);
    const from = take === 'local' ? local : theirs;
    if (field === 'mode' && out.type !== 'symlink' && from.type !== 'symlink') out.mode = from.mode;
    if (field === 'uid') out.uid = from.uid;
    if (field === 'gid') out.gid = from.gid;
    if (field === 'xattrs') {
      if (from.xattrs && from.xattrs.length > 0) out.xattrs = from.xattrs;
      else delete out.xattrs;
    }
  }
  return { entry: out, conflicts };
}

const encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// The decision per path

type Decision = Omit<EtcAction, 'path'>;

const keepLocal = (reason: EtcReason, local: EtcEntry): Decision => ({ action: 'keep-local', reason, result: local, contentFrom: 'local' });
const takeVendor = (reason: EtcReason, theirs: EtcEntry): Decision => ({ action: 'take-vendor', reason, result: theirs, contentFrom: 'theirs' });
const absent = (action: 'delete' | 'keep-deleted', reason: EtcReason): Decision => ({ action, reason, result: null, contentFrom: null });

/** A conflict keeps the local entry whole; the vendor's file or symlink goes beside it (a directory cannot). */
function conflict(reason: EtcReason, local: EtcEntry, theirs: EtcEntry, extra: Partial<Decision> = {}): Decision {
  return { action: 'conflict', reason, result: local, contentFrom: 'local', ...(theirs.type !== 'dir' ? { larchnew: { path: '', entry: theirs } } : {}), ...extra };
}

/** Content of both changed files, merged by line when all three are text. */
function mergeFileContent(base: FileEntry, local: FileEntry, theirs: FileEntry): { merged: Uint8Array } | { reason: EtcReason; conflictRegions?: number } {
  if (!base.content || !local.content || !theirs.content) return { reason: 'binary-conflict' };
  const texts = [base.content, local.content, theirs.content].map((c) => decodeText(c));
  if (texts.some((t) => t === null)) return { reason: 'binary-conflict' };
  const r = mergeLines(texts[0]!, texts[1]!, texts[2]!);
  if (r.clean) return { merged: encoder.encode(r.text) };
  return 'tooComplex' in r ? { reason: 'binary-conflict' } : { reason: 'content-conflict', conflictRegions: r.conflictRegions };
}

/** Names the outcome by comparing it with both sides: equal to local, equal to theirs, or a mix. */
function classify(base: EtcEntry | null, local: EtcEntry, theirs: EtcEntry, result: EtcEntry, contentFrom: ContentSource): Decision {
  if (sameEntry(result, local)) {
    const reason: EtcReason = base && sameEntry(local, base) && sameEntry(theirs, base) ? 'unchanged' : sameEntry(local, theirs) ? 'same-change' : 'modified-locally';
    return { action: 'keep-local', reason, result, contentFrom: 'local' };
  }
  if (sameEntry(result, theirs)) return { action: 'take-vendor', reason: 'vendor-changed', result, contentFrom: 'theirs' };
  return { action: 'merged', reason: contentFrom === 'merged' ? 'lines-merged' : 'metadata-merged', result, contentFrom };
}

/** Both local and theirs hold the path; base may not (both added it). */
function decideBothPresent(base: EtcEntry | null, local: EtcEntry, theirs: EtcEntry): Decision {
  // A type change wins over an untouched other side; against any change (even a chmod) it conflicts,
  // because one side's edit would otherwise vanish without a word.
  if (local.type !== theirs.type) {
    if (base && sameEntry(base, theirs)) return keepLocal('modified-locally', local);
    if (base && sameEntry(base, local)) return takeVendor('vendor-changed', theirs);
    return conflict(base ? 'type-conflict' : 'add-conflict', local, theirs);
  }
  const localChanged = !base || !sameContent(base, local);
  const theirsChanged = !base || !sameContent(base, theirs);
  let contentFrom: ContentSource;
  let content: EtcEntry;
  if (!theirsChanged || sameContent(local, theirs)) [contentFrom, content] = ['local', local];
  else if (!localChanged) [contentFrom, content] = ['theirs', theirs];
  else if (!base) return conflict('add-conflict', local, theirs);
  else if (local.type === 'file' && theirs.type === 'file' && base.type === 'file') {
    const r = mergeFileContent(base, local, theirs);
    if (!('merged' in r)) return conflict(r.reason, local, theirs, r.conflictRegions ? { conflictRegions: r.conflictRegions } : {});
    [contentFrom, content] = ['merged', { ...local, content: r.merged }];
  } else if (local.type === 'symlink') return conflict('symlink-conflict', local, theirs);
  else return conflict('type-conflict', local, theirs); // both files again after base was another type

  // Metadata is merged against base only when base was the same kind of thing.
  const metaBase = base && base.type === local.type ? base : null;
  const { entry, conflicts } = mergeMetadata(metaBase, local, theirs, content);
  if (conflicts.length > 0) return { action: 'conflict', reason: 'metadata-conflict', result: entry, contentFrom, metadataConflicts: conflicts };
  return classify(base, local, theirs, entry, contentFrom);
}

const isLarchnewName = (path: string) => path.endsWith(LARCHNEW_SUFFIX) && path.length > LARCHNEW_SUFFIX.length && !path.endsWith('/' + LARCHNEW_SUFFIX);

/** Phase 1: each path on its own, ignoring what happens to its directory and its children. */
function decidePath(path: string, base: EtcEntry | undefined, local: EtcEntry | undefined, theirs: EtcEntry | undefined, localTree: EtcTree, theirsTree: EtcTree): Decision | null {
  if (!local) {
    if (!base) return theirs ? takeVendor('vendor-added', theirs) : null;
    if (!theirs) return null; // removed on both sides: nothing to do or say
    return absent('keep-deleted', sameEntry(base, theirs) ? 'deleted-locally' : 'deleted-locally-vendor-changed');
  }
  if (!base && !theirs) {
    const original = path.slice(0, -LARCHNEW_SUFFIX.length);
    const leftover = isLarchnewName(path) && local.type !== 'dir' && (localTree.has(original) || theirsTree.has(original));
    return { action: 'new-local', reason: leftover ? 'leftover-larchnew' : 'added-locally', result: local, contentFrom: 'local' };
  }
  if (!theirs) return sameEntry(base!, local) ? absent('delete', 'vendor-removed') : keepLocal('vendor-removed-modified', local);
  return decideBothPresent(base ?? null, local, theirs);
}

const parentOf = (path: string): string => {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
};
const depthOf = (path: string): number => (path === '' ? 0 : path.split('/').length);

/**
 * Plans the merge of three /etc trees. Never throws on tree content: every combination has a rule.
 *
 * @example
 * const file = (text: string) => ({ type: 'file', mode: 0o644, uid: 0, gid: 0, content: new TextEncoder().encode(text) }) as const;
 * const plan = planEtcMerge(new Map([['motd', file('a\nb\nc\n')]]), new Map([['motd', file('A\nb\nc\n')]]), new Map([['motd', file('a\nb\nC\n')]]));
 * // plan.actions[0]: { path: 'motd', action: 'merged', reason: 'lines-merged', result: { ...content 'A\nb\nC\n' } }
 */
export function planEtcMerge(base: EtcTree, local: EtcTree, theirs: EtcTree): EtcMergePlan {
  const paths = [...new Set([...base.keys(), ...local.keys(), ...theirs.keys()])].sort(comparePaths);
  const decisions = new Map<string, Decision>();
  for (const path of paths) {
    const d = decidePath(path, base.get(path), local.get(path), theirs.get(path), local, theirs);
    if (d) decisions.set(path, d);
  }

  // Phase 2, deepest first: a local directory the vendor removed (or turned into a file or
  // symlink) stays while anything below it stays, so the vendor cannot take away the admin's files.
  const present = (p: string) => p === '' || decisions.get(p)?.result != null;
  const children = new Map<string, string[]>();
  for (const p of decisions.keys()) if (p !== '') children.set(parentOf(p), [...(children.get(parentOf(p)) ?? []), p]);
  for (const path of [...decisions.keys()].sort((a, b) => depthOf(b) - depthOf(a))) {
    const l = local.get(path);
    const d = decisions.get(path)!;
    if (l?.type !== 'dir' || d.result?.type === 'dir') continue;
    if (!(children.get(path) ?? []).some(present)) continue;
    const t = theirs.get(path);
    decisions.set(path, t ? conflict('type-conflict', l, t) : keepLocal('vendor-removed-nonempty', l));
  }

  // Phase 3, parents first: nothing can be created below a path that is not a directory in the result.
  // A parent no tree mentions is implied (small hand-made trees leave directories out).
  const resultIsDir = (p: string) => p === '' || !decisions.has(p) || decisions.get(p)!.result?.type === 'dir';
  for (const path of paths) {
    const d = decisions.get(path);
    if (!d || d.result === null || path === '' || resultIsDir(parentOf(path))) continue;
    decisions.set(path, absent('keep-deleted', 'parent-not-directory'));
  }

  // Phase 4: name the vendor copies. An old FILE.larchnew from an earlier merge is replaced;
  // a name the admin or vendor uses for something else gets a number (FILE.larchnew.1, ...).
  for (const [path, d] of decisions) {
    if (!d.larchnew) continue;
    let name = path + LARCHNEW_SUFFIX;
    const old = decisions.get(name);
    if (old?.reason === 'leftover-larchnew') decisions.set(name, absent('delete', 'larchnew-refreshed'));
    for (let n = 1; decisions.get(name)?.result || takenByLarchnew(decisions, name, path); n++) name = `${path}${LARCHNEW_SUFFIX}.${n}`;
    d.larchnew = { path: name, entry: d.larchnew.entry };
  }

  return { actions: [...decisions].sort(([a], [b]) => comparePaths(a, b)).map(([path, d]) => ({ path, ...d })) };
}

function takenByLarchnew(decisions: Map<string, Decision>, name: string, self: string): boolean {
  for (const [path, d] of decisions) if (path !== self && d.larchnew?.path === name) return true;
  return false;
}

/** Code-unit order, so a directory always sorts before everything below it. */
export const comparePaths = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// Reports: JSON for `upgrade --dry-run --json` / `status --json`, text for people

export interface EtcActionJson {
  path: string;
  action: EtcActionKind;
  reason: EtcReason;
  /** The result's type; null when the path is absent from the result. */
  type: EtcEntry['type'] | null;
  content_from: ContentSource | null;
  /** Octal string, e.g. "0644"; absent for symlinks and absent paths. */
  mode?: string;
  uid?: number;
  gid?: number;
  larchnew?: string;
  metadata_conflicts?: MetadataField[];
  conflict_regions?: number;
}

export interface EtcMergeJson {
  /** Bumped when a field changes meaning. */
  version: 1;
  counts: Record<EtcActionKind, number>;
  /** Paths that need the admin: conflicts, and local deletions of files the vendor changed. */
  attention: string[];
  /** Every action except 'unchanged' ones (all of them with includeUnchanged). */
  actions: EtcActionJson[];
}

const ACTION_KINDS: EtcActionKind[] = ['conflict', 'merged', 'take-vendor', 'new-local', 'keep-local', 'delete', 'keep-deleted'];

/** True for actions an admin should look at: they kept their version over a vendor change. */
export const needsAttention = (a: EtcAction): boolean =>
  a.action === 'conflict' || a.reason === 'deleted-locally-vendor-changed' || a.reason === 'vendor-removed-modified' || a.reason === 'leftover-larchnew';

export function planToJson(plan: EtcMergePlan, opts: { includeUnchanged?: boolean } = {}): EtcMergeJson {
  const counts = Object.fromEntries(ACTION_KINDS.map((k) => [k, 0])) as Record<EtcActionKind, number>;
  for (const a of plan.actions) counts[a.action]++;
  const actions = plan.actions
    .filter((a) => opts.includeUnchanged || a.reason !== 'unchanged')
    .map((a): EtcActionJson => {
      const j: EtcActionJson = { path: a.path, action: a.action, reason: a.reason, type: a.result?.type ?? null, content_from: a.contentFrom };
      if (a.result) {
        if (a.result.type !== 'symlink') j.mode = a.result.mode.toString(8).padStart(4, '0');
        j.uid = a.result.uid;
        j.gid = a.result.gid;
      }
      if (a.larchnew) j.larchnew = a.larchnew.path;
      if (a.metadataConflicts) j.metadata_conflicts = a.metadataConflicts;
      if (a.conflictRegions) j.conflict_regions = a.conflictRegions;
      return j;
    });
  return { version: 1, counts, attention: plan.actions.filter(needsAttention).map((a) => a.path), actions };
}

const REASON_TEXT: Record<EtcReason, string> = {
  unchanged: 'unchanged',
  'modified-locally': 'local changes kept; vendor did not change it',
  'same-change': 'local and vendor made the same change',
  'vendor-removed-modified': 'vendor removed it; kept because it was changed locally',
  'vendor-removed-nonempty': 'vendor removed the directory; kept because local files remain in it',
  'vendor-changed': 'vendor update; no local changes',
  'vendor-added': 'new from vendor',
  'lines-merged': 'local and vendor changes to different lines both applied',
  'metadata-merged': 'content from one side, mode/owner change from the other',
  'content-conflict': 'local and vendor changed the same lines; local kept',
  'binary-conflict': 'local and vendor changed this file, which is binary or too large to merge by line; local kept',
  'symlink-conflict': 'local and vendor retargeted this symlink differently; local kept',
  'type-conflict': 'local and vendor both changed it, one to another file type; local kept',
  'add-conflict': 'local and vendor both added it, differently; local kept',
  'metadata-conflict': 'local and vendor changed the same mode/owner field; local kept',
  'vendor-removed': 'removed by vendor; no local changes',
  'deleted-locally': 'deleted locally; stays deleted',
  'deleted-locally-vendor-changed': 'deleted locally; stays deleted although the vendor changed it',
  'parent-not-directory': 'its directory is gone in the result',
  'larchnew-refreshed': 'old vendor copy, replaced by the new one',
  'added-locally': 'local file',
  'leftover-larchnew': 'vendor copy left by an earlier merge; review and remove it',
};

/**
 * One line per path that changed or needs attention, like etc-update's list; unchanged paths are
 * only counted. prefix is prepended to paths (e.g. '/etc/').
 */
export function formatPlan(plan: EtcMergePlan, opts: { prefix?: string; verbose?: boolean } = {}): string {
  const prefix = opts.prefix ?? '';
  const shown = plan.actions.filter((a) => opts.verbose || (a.reason !== 'unchanged' && a.reason !== 'modified-locally' && a.reason !== 'added-locally'));
  const { counts } = planToJson(plan);
  const unchanged = plan.actions.filter((a) => a.reason === 'unchanged').length;
  const summary = ACTION_KINDS.filter((k) => counts[k] > 0 && k !== 'keep-local').map((k) => `${counts[k]} ${k}`);
  summary.push(`${counts['keep-local'] - unchanged} local changes kept`, `${unchanged} unchanged`);
  const width = Math.max(0, ...shown.map((a) => a.action.length));
  const lines = [`/etc merge: ${summary.join(', ')}`];
  for (const a of shown) {
    const where = a.result?.type === 'dir' ? '/' : '';
    const copy = a.larchnew ? `; vendor version in ${prefix}${a.larchnew.path}` : '';
    const fields = a.metadataConflicts ? ` (${a.metadataConflicts.join(', ')})` : '';
    lines.push(`  ${a.action.padEnd(width)}  ${prefix}${a.path}${where}  ${REASON_TEXT[a.reason]}${fields}${copy}`);
  }
  return lines.join('\n') + '\n';
}
