/** The three-way /etc merge decision: one small tree per rule of docs/etc-merge.md, the line merge, and the reports. */
import t from 'tap';
import {
  type EtcAction,
  type EtcEntry,
  type EtcTree,
  type FileEntry,
  LARCHNEW_SUFFIX,
  formatPlan,
  planEtcMerge,
  planToJson,
} from '../../../src/agent/etc/plan.ts';
import { decodeText, mergeLines, splitLines } from '../../../src/agent/etc/line-merge.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const file = (content: string | Uint8Array, more: Partial<FileEntry> = {}): FileEntry => ({
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  content: typeof content === 'string' ? enc.encode(content) : content,
  ...more,
});
const link = (target: string): EtcEntry => ({ type: 'symlink', target, uid: 0, gid: 0 });
const dir = (mode = 0o755): EtcEntry => ({ type: 'dir', mode, uid: 0, gid: 0 });
const tree = (entries: Record<string, EtcEntry>): EtcTree => new Map(Object.entries(entries));

function plan(base: Record<string, EtcEntry>, local: Record<string, EtcEntry>, theirs: Record<string, EtcEntry>) {
  const p = planEtcMerge(tree(base), tree(local), tree(theirs));
  const by = new Map(p.actions.map((a) => [a.path, a]));
  return { plan: p, get: (path: string): EtcAction => by.get(path) ?? ({ path, action: 'absent' } as unknown as EtcAction), by };
}
const text = (a: EtcAction) => (a.result?.type === 'file' ? dec.decode(a.result.content) : undefined);
const brief = (a: EtcAction) => `${a.action}/${a.reason}`;

t.test('text merge: local and vendor changes to different lines both land', async (t) => {
  const { get } = plan({ 'ssh/sshd_config': file('Port 22\nPermitRootLogin no\nX11Forwarding no\nUsePAM yes\n') }, { 'ssh/sshd_config': file('Port 2222\nPermitRootLogin no\nX11Forwarding no\nUsePAM yes\n') }, {
    'ssh/sshd_config': file('Port 22\nPermitRootLogin no\nX11Forwarding no\nUsePAM yes\nKbdInteractiveAuthentication no\n'),
  });
  const a = get('ssh/sshd_config');
  t.equal(brief(a), 'merged/lines-merged');
  t.equal(a.contentFrom, 'merged');
  t.equal(text(a), 'Port 2222\nPermitRootLogin no\nX11Forwarding no\nUsePAM yes\nKbdInteractiveAuthentication no\n');
  t.equal(a.larchnew, undefined);
});

t.test('text merge: overlapping changes keep local, vendor copy goes to .larchnew, conflict reported', async (t) => {
  const { get, plan: p } = plan({ motd: file('hello\nworld\n') }, { motd: file('hello admin\nworld\n') }, { motd: file('hello vendor\nworld\n') });
  const a = get('motd');
  t.equal(brief(a), 'conflict/content-conflict');
  t.equal(text(a), 'hello admin\nworld\n', 'local kept');
  t.equal(a.larchnew?.path, 'motd.larchnew');
  t.equal(dec.decode((a.larchnew!.entry as FileEntry).content), 'hello vendor\nworld\n');
  t.equal(a.conflictRegions, 1);
  t.same(planToJson(p).attention, ['motd']);
});

t.test('adjacent line changes conflict (as diff3 and git merge-file do)', async (t) => {
  const { get } = plan({ f: file('a\nb\nc\n') }, { f: file('A\nb\nc\n') }, { f: file('a\nB\nc\n') });
  t.equal(brief(get('f')), 'conflict/content-conflict');
});

t.test('the same change on both sides is no conflict', async (t) => {
  const { get } = plan({ f: file('a\nb\n') }, { f: file('a\nB\n') }, { f: file('a\nB\n') });
  t.equal(brief(get('f')), 'keep-local/same-change');
  const partial = plan({ f: file('a\nb\nc\nd\n') }, { f: file('A\nb\nc\nD\n') }, { f: file('a\nb\nc\nD\n') }).get('f');
  t.equal(brief(partial), 'keep-local/modified-locally', 'vendor change already in local: result equals local');
  t.equal(text(partial), 'A\nb\nc\nD\n');
});

t.test('one side only', async (t) => {
  const base = { f: file('a\n'), g: file('x\n') };
  const { get } = plan(base, { f: file('local\n'), g: file('x\n') }, { f: file('a\n'), g: file('vendor\n') });
  t.equal(brief(get('f')), 'keep-local/modified-locally');
  t.equal(text(get('f')), 'local\n');
  t.equal(brief(get('g')), 'take-vendor/vendor-changed');
  t.equal(text(get('g')), 'vendor\n');
  t.equal(get('g').contentFrom, 'theirs');
  const same = plan(base, base, base);
  t.same(same.plan.actions.map(brief), ['keep-local/unchanged', 'keep-local/unchanged']);
});

t.test('new local file survives; vendor-added file arrives; both added', async (t) => {
  const { get } = plan({}, { 'local.conf': file('mine\n'), both: file('same\n'), clash: file('mine\n') }, { 'vendor.conf': file('theirs\n'), both: file('same\n'), clash: file('theirs\n') });
  t.equal(brief(get('local.conf')), 'new-local/added-locally');
  t.equal(text(get('local.conf')), 'mine\n');
  t.equal(brief(get('vendor.conf')), 'take-vendor/vendor-added');
  t.equal(brief(get('both')), 'keep-local/same-change');
  t.equal(brief(get('clash')), 'conflict/add-conflict');
  t.equal(get('clash').larchnew?.path, 'clash.larchnew');
});

t.test('deletions', async (t) => {
  const base = { gone: file('v1\n'), 'gone-changed': file('v1\n'), 'vendor-drops': file('old\n'), 'vendor-drops-edited': file('old\n'), both: file('x\n') };
  const local = { 'vendor-drops': file('old\n'), 'vendor-drops-edited': file('old, edited\n') };
  const theirs = { gone: file('v1\n'), 'gone-changed': file('v2\n') };
  const { get, plan: p } = plan(base, local, theirs);
  t.equal(brief(get('gone')), 'keep-deleted/deleted-locally', 'the admin deleted it: stays deleted');
  t.equal(brief(get('gone-changed')), 'keep-deleted/deleted-locally-vendor-changed', 'stays deleted even though the vendor changed it');
  t.equal(get('gone-changed').result, null);
  t.equal(brief(get('vendor-drops')), 'delete/vendor-removed');
  t.equal(brief(get('vendor-drops-edited')), 'keep-local/vendor-removed-modified');
  t.equal(get('both').action as string, 'absent', 'removed on both sides: not in the plan');
  t.same(planToJson(p).attention, ['gone-changed', 'vendor-drops-edited']);
});

t.test('binary files merge as whole files', async (t) => {
  const bin = (s: string) => file(Uint8Array.from([0, ...enc.encode(s)]));
  const base = { a: bin('1'), b: bin('1'), c: bin('1'), d: bin('1') };
  const { get } = plan(base, { a: bin('1'), b: bin('local'), c: bin('local'), d: bin('same') }, { a: bin('vendor'), b: bin('1'), c: bin('vendor'), d: bin('same') });
  t.equal(brief(get('a')), 'take-vendor/vendor-changed', 'unchanged locally: vendor');
  t.equal(brief(get('b')), 'keep-local/modified-locally', 'unchanged by vendor: local');
  t.equal(brief(get('c')), 'conflict/binary-conflict', 'both changed differently');
  t.equal(get('c').larchnew?.path, 'c.larchnew');
  t.equal(brief(get('d')), 'keep-local/same-change');
  const invalidUtf8 = plan({ x: file(Uint8Array.from([0xff, 0x0a, 0x61, 0x0a])) }, { x: file(Uint8Array.from([0xff, 0x0a, 0x62, 0x0a])) }, { x: file(Uint8Array.from([0xfe, 0x0a, 0x61, 0x0a])) });
  t.equal(brief(invalidUtf8.get('x')), 'conflict/binary-conflict', 'invalid UTF-8 is binary, even with separate line changes');
});

t.test('large files (hashed, not held) merge as whole files', async (t) => {
  const large = (sha: string, sizeBytes = 20 << 20): FileEntry => ({ type: 'file', mode: 0o644, uid: 0, gid: 0, large: { sizeBytes, sha256: sha.repeat(64) } });
  const { get } = plan({ a: large('1'), b: large('1') }, { a: large('1'), b: large('2') }, { a: large('3'), b: large('3') });
  t.equal(brief(get('a')), 'take-vendor/vendor-changed');
  t.equal(get('a').contentFrom, 'theirs');
  t.equal(brief(get('b')), 'conflict/binary-conflict');
});

t.test('metadata merges three-way, apart from content', async (t) => {
  const base = { m: file('x\n'), both: file('a\nb\nc\n'), own: file('x\n'), clash: file('x\n'), d: dir(0o755) };
  const local = { m: file('x\n', { mode: 0o600 }), both: file('A\nb\nc\n'), own: file('x\n', { uid: 1000 }), clash: file('x\n', { mode: 0o600 }), d: dir(0o700) };
  const theirs = { m: file('x\n'), both: file('a\nb\nC\n', { mode: 0o640, gid: 42 }), own: file('x\n', { gid: 42 }), clash: file('x\n', { mode: 0o640 }), d: dir(0o755) };
  const { get } = plan(base, local, theirs);
  t.equal(brief(get('m')), 'keep-local/modified-locally', 'local chmod only');
  t.equal((get('m').result as FileEntry).mode, 0o600);
  const both = get('both');
  t.equal(brief(both), 'merged/lines-merged');
  t.equal(text(both), 'A\nb\nC\n');
  t.same([(both.result as FileEntry).mode, both.result!.gid], [0o640, 42], 'vendor mode and group arrive with the merged text');
  t.equal(brief(get('own')), 'merged/metadata-merged', 'local owner, vendor group');
  t.same([get('own').result!.uid, get('own').result!.gid], [1000, 42]);
  t.equal(brief(get('clash')), 'conflict/metadata-conflict');
  t.same(get('clash').metadataConflicts, ['mode']);
  t.equal((get('clash').result as FileEntry).mode, 0o600, 'local mode kept');
  t.equal(get('clash').larchnew, undefined, 'same content: no vendor copy');
  t.equal(brief(get('d')), 'keep-local/modified-locally');
  t.equal((get('d').result as { mode: number }).mode, 0o700);
});

t.test('xattrs are metadata too', async (t) => {
  const label = (v: string) => [[enc.encode('security.selinux'), enc.encode(v)]] as [Uint8Array, Uint8Array][];
  const { get } = plan({ f: file('x\n', { xattrs: label('etc_t') }) }, { f: file('y\n', { xattrs: label('etc_t') }) }, { f: file('x\n', { xattrs: label('shadow_t') }) });
  t.equal(brief(get('f')), 'merged/metadata-merged');
  t.equal(dec.decode(get('f').result!.xattrs![0]![1]), 'shadow_t');
  t.equal(text(get('f')), 'y\n');
});

t.test('no trailing newline, CRLF, empty files', async (t) => {
  const noEol = plan({ f: file('a\nb\nc') }, { f: file('A\nb\nc') }, { f: file('a\nb\nC') }).get('f');
  t.equal(text(noEol), 'A\nb\nC', 'the last line stays without newline');
  const addEol = plan({ f: file('a\nb\nc') }, { f: file('A\nb\nc') }, { f: file('a\nb\nc\n') }).get('f');
  t.equal(text(addEol), 'A\nb\nc\n', "vendor's added final newline lands");
  const dropEol = plan({ f: file('a\nb\nc\n') }, { f: file('a\nb\nc') }, { f: file('A\nb\nc\n') }).get('f');
  t.equal(text(dropEol), 'A\nb\nc', "local's removed final newline stays");
  const crlf = plan({ f: file('a\r\nb\r\nc\r\n') }, { f: file('A\r\nb\r\nc\r\n') }, { f: file('a\r\nb\r\nC\r\n') }).get('f');
  t.equal(text(crlf), 'A\r\nb\r\nC\r\n', 'CRLF kept');
  const mixed = plan({ f: file('a\r\nb\nc\r\n') }, { f: file('a\r\nb\nX\r\n') }, { f: file('Y\r\nb\nc\r\n') }).get('f');
  t.equal(text(mixed), 'Y\r\nb\nX\r\n', 'mixed endings kept line by line');
  const emptyBase = plan({ f: file('') }, { f: file('') }, { f: file('new\n') }).get('f');
  t.equal(brief(emptyBase), 'take-vendor/vendor-changed');
  const emptyBoth = plan({ f: file('') }, { f: file('local\n') }, { f: file('vendor\n') }).get('f');
  t.equal(brief(emptyBoth), 'conflict/content-conflict', 'both filled an empty file: an insertion at the same place');
  const emptied = plan({ f: file('a\nb\n') }, { f: file('') }, { f: file('a\nb\n') }).get('f');
  t.equal(brief(emptied), 'keep-local/modified-locally', 'admin emptied it; vendor unchanged');
  t.equal(text(emptied), '');
  const emptiedVsChange = plan({ f: file('a\nb\n') }, { f: file('') }, { f: file('a\nB\n') }).get('f');
  t.equal(brief(emptiedVsChange), 'conflict/content-conflict');
});

t.test('symlinks', async (t) => {
  const { get } = plan(
    { retarget: link('a'), mine: link('a'), clash: link('a'), same: link('a') },
    { retarget: link('a'), mine: link('mine'), clash: link('mine'), same: link('b') },
    { retarget: link('b'), mine: link('a'), clash: link('vendor'), same: link('b') },
  );
  t.equal(brief(get('retarget')), 'take-vendor/vendor-changed');
  t.same(get('retarget').result, link('b'));
  t.equal(brief(get('mine')), 'keep-local/modified-locally');
  t.equal(brief(get('clash')), 'conflict/symlink-conflict');
  t.same(get('clash').result, link('mine'));
  t.same(get('clash').larchnew, { path: 'clash.larchnew', entry: link('vendor') });
  t.equal(brief(get('same')), 'keep-local/same-change');
});

t.test('type changes', async (t) => {
  const { get, by } = plan(
    { 'resolv.conf': file('nameserver 1.1.1.1\n'), vlink: file('x\n'), both: file('x\n'), tolink: file('x\n'), 'd': dir(), 'd/a': file('a\n'), chmodded: file('x\n') },
    { 'resolv.conf': link('/run/resolv.conf'), vlink: file('x\n'), both: link('/mine'), tolink: file('x\n'), 'd': dir(), 'd/a': file('a\n'), chmodded: file('x\n', { mode: 0o600 }) },
    { 'resolv.conf': file('nameserver 1.1.1.1\n'), vlink: link('/usr/share/x'), both: file('vendor\n'), tolink: dir(), 'tolink/inside': file('i\n'), d: file('now a file\n'), chmodded: link('elsewhere') },
  );
  t.equal(brief(get('resolv.conf')), 'keep-local/modified-locally', 'admin turned a file into a symlink; vendor did not touch it');
  t.equal(brief(get('vlink')), 'take-vendor/vendor-changed', 'vendor turned an untouched file into a symlink');
  t.equal(brief(get('both')), 'conflict/type-conflict');
  t.same(get('both').larchnew?.entry, file('vendor\n'));
  t.equal(brief(get('tolink')), 'take-vendor/vendor-changed', 'vendor turned an untouched file into a directory');
  t.equal(brief(get('tolink/inside')), 'take-vendor/vendor-added');
  t.equal(brief(get('d')), 'take-vendor/vendor-changed', 'vendor turned an untouched directory into a file');
  t.equal(brief(get('d/a')), 'delete/vendor-removed');
  t.equal(brief(get('chmodded')), 'conflict/type-conflict', 'a local chmod against a vendor type change is reported, not dropped');
  t.ok(by.size > 0);
});

t.test('directories: vendor removal keeps local files; admin-deleted directories stay deleted', async (t) => {
  const { get } = plan(
    { 'cron.d': dir(), 'cron.d/job': file('1\n'), 'gone.d': dir(), 'gone.d/x': file('x\n'), 'olddir': dir(), 'olddir/f': file('f\n'), 'tofile': dir(), 'tofile/keep': file('k\n') },
    { 'cron.d': dir(), 'cron.d/job': file('1\n'), 'cron.d/mine': file('mine\n'), 'olddir': dir(), 'olddir/f': file('f\n'), 'tofile': dir(), 'tofile/keep': file('k, edited\n') },
    { 'gone.d': dir(), 'gone.d/x': file('x2\n'), 'gone.d/new': file('n\n'), tofile: file('vendor file\n') },
  );
  t.equal(brief(get('cron.d')), 'keep-local/vendor-removed-nonempty', 'vendor dropped cron.d; the admin job keeps it');
  t.equal(brief(get('cron.d/job')), 'delete/vendor-removed');
  t.equal(brief(get('cron.d/mine')), 'new-local/added-locally');
  t.equal(brief(get('olddir')), 'delete/vendor-removed', 'nothing local left in it: goes');
  t.equal(brief(get('olddir/f')), 'delete/vendor-removed');
  t.equal(brief(get('gone.d')), 'keep-deleted/deleted-locally');
  t.equal(brief(get('gone.d/x')), 'keep-deleted/deleted-locally-vendor-changed');
  t.equal(brief(get('gone.d/new')), 'keep-deleted/parent-not-directory', 'nothing new appears in a directory the admin deleted');
  t.equal(brief(get('tofile')), 'conflict/type-conflict', 'vendor turned a directory into a file, but an edited file is inside');
  t.equal(get('tofile').result?.type, 'dir');
  t.equal(get('tofile').larchnew?.path, 'tofile.larchnew');
  t.equal(brief(get('tofile/keep')), 'keep-local/vendor-removed-modified');
});

t.test('vendor directory against a local file: no vendor copy, its contents reported', async (t) => {
  const { get } = plan({ x: file('1\n') }, { x: file('2\n') }, { x: dir(), 'x/inner': file('i\n') });
  t.equal(brief(get('x')), 'conflict/type-conflict');
  t.equal(get('x').larchnew, undefined, 'a directory cannot be a .larchnew');
  t.equal(brief(get('x/inner')), 'keep-deleted/parent-not-directory');
});

t.test('.larchnew files from an earlier merge', async (t) => {
  const base = { a: file('1\n'), b: file('1\n'), 'c.larchnew': file('vendor shipped this\n'), c: file('1\n') };
  const local = { a: file('2\n'), 'a.larchnew': file('old vendor\n'), b: file('1\n'), 'b.larchnew': file('old vendor\n'), c: file('2\n'), 'c.larchnew': file('vendor shipped this\n') };
  const theirs = { a: file('3\n'), b: file('1\n'), c: file('3\n'), 'c.larchnew': file('vendor shipped this\n') };
  const { get } = plan(base, local, theirs);
  t.equal(brief(get('a')), 'conflict/content-conflict');
  t.equal(get('a').larchnew?.path, 'a.larchnew');
  t.equal(brief(get('a.larchnew')), 'delete/larchnew-refreshed', 'the stale copy is replaced by the new one');
  t.equal(brief(get('b.larchnew')), 'new-local/leftover-larchnew', 'no conflict now: kept and flagged');
  t.equal(get('c').larchnew?.path, `c${LARCHNEW_SUFFIX}.1`, 'a name the vendor uses is not overwritten');
});

t.test('trees may leave directories out (implied)', async (t) => {
  const { get } = plan({ 'a/b/c': file('1\n') }, { 'a/b/c': file('1\n') }, { 'a/b/c': file('2\n') });
  t.equal(brief(get('a/b/c')), 'take-vendor/vendor-changed');
});

t.test('root entry merges like a directory', async (t) => {
  const { get } = plan({ '': dir(0o755) }, { '': dir(0o755) }, { '': dir(0o750) });
  t.equal(brief(get('')), 'take-vendor/vendor-changed');
});

t.test('the @example of planEtcMerge', async (t) => {
  const f = (text: string) => ({ type: 'file', mode: 0o644, uid: 0, gid: 0, content: new TextEncoder().encode(text) }) as const;
  const p = planEtcMerge(new Map([['motd', f('a\nb\nc\n')]]), new Map([['motd', f('A\nb\nc\n')]]), new Map([['motd', f('a\nb\nC\n')]]));
  t.match(p.actions[0], { path: 'motd', action: 'merged', reason: 'lines-merged' });
  t.equal(text(p.actions[0]!), 'A\nb\nC\n');
});

t.test('mergeLines, splitLines, decodeText', async (t) => {
  t.same(splitLines('a\r\nb\nc'), ['a\r\n', 'b\n', 'c']);
  t.same(splitLines(''), []);
  t.same(splitLines('\n\n'), ['\n', '\n']);
  t.equal(decodeText(enc.encode('ok\n')), 'ok\n');
  t.equal(decodeText(Uint8Array.from([0x61, 0])), null, 'NUL');
  t.equal(decodeText(Uint8Array.from([0xc3, 0x28])), null, 'invalid UTF-8');
  t.equal(decodeText(enc.encode('12345'), 4), null, 'over the size bound');
  t.equal(decodeText(Uint8Array.from([0xef, 0xbb, 0xbf, 0x61])), '\ufeffa', 'a BOM is kept');
  t.same(mergeLines('a\nb\nc\nd\ne\n', 'A\nb\nc\nd\ne\n', 'a\nb\nc\nd\nE\n'), { clean: true, text: 'A\nb\nc\nd\nE\n' });
  t.same(mergeLines('a\n', 'b\n', 'c\n'), { clean: false, conflictRegions: 1 });
  t.same(mergeLines('constructor\n__proto__\n', 'constructor\n__proto__\nx\n', 'toString\nconstructor\n__proto__\n'), { clean: true, text: 'toString\nconstructor\n__proto__\nx\n' }, 'Object.prototype names are plain lines');
});

t.test('a large file with many repeated lines merges quickly', async (t) => {
  const lines = Array.from({ length: 60_000 }, (_, i) => (i % 3 === 0 ? '\n' : i % 3 === 1 ? '#\n' : `option${i} = ${i}\n`));
  const local = [...lines];
  local[10] = 'option10 = local\n';
  const theirs = [...lines];
  theirs[59_000] = 'option59000 = vendor\n';
  const started = Date.now();
  const r = mergeLines(lines.join(''), local.join(''), theirs.join(''));
  t.ok(r.clean);
  if (r.clean) t.equal(r.text, lines.map((l, i) => (i === 10 ? local[10] : i === 59_000 ? theirs[59_000] : l)).join(''));
  t.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
  // Nothing but repeated lines: no anchors, too many equal pairs for node-diff3: whole-file rules.
  const blank = '\n'.repeat(5000);
  t.same(mergeLines(blank, 'x\n' + blank, blank + 'y\n'), { clean: false, tooComplex: true });
});

t.test('reports: JSON round-trips, human summary names each action', async (t) => {
  const { plan: p } = plan(
    { same: file('s\n'), edited: file('a\nb\nc\n'), conflict: file('1\n'), gone: file('g\n') },
    { same: file('s\n'), edited: file('A\nb\nc\n'), conflict: file('2\n'), mine: file('m\n') },
    { same: file('s\n'), edited: file('a\nb\nC\n'), conflict: file('3\n'), gone: file('g\n'), added: file('n\n') },
  );
  const json = planToJson(p);
  t.same(JSON.parse(JSON.stringify(json)), json, 'plain JSON');
  t.same(json.counts, { conflict: 1, merged: 1, 'take-vendor': 1, 'new-local': 1, 'keep-local': 1, delete: 0, 'keep-deleted': 1 });
  t.same(
    json.actions.map((a) => [a.path, a.action, a.reason]),
    [
      ['added', 'take-vendor', 'vendor-added'],
      ['conflict', 'conflict', 'content-conflict'],
      ['edited', 'merged', 'lines-merged'],
      ['gone', 'keep-deleted', 'deleted-locally'],
      ['mine', 'new-local', 'added-locally'],
    ],
    'unchanged paths left out',
  );
  t.same(json.actions[1], { path: 'conflict', action: 'conflict', reason: 'content-conflict', type: 'file', content_from: 'local', mode: '0644', uid: 0, gid: 0, larchnew: 'conflict.larchnew', conflict_regions: 1 });
  t.equal(planToJson(p, { includeUnchanged: true }).actions.length, 6);
  const text = formatPlan(p, { prefix: '/etc/' });
  t.match(text, /^\/etc merge: 1 conflict, 1 merged, 1 take-vendor, 1 new-local, 1 keep-deleted, 0 local changes kept, 1 unchanged\n/);
  t.match(text, /conflict\s+\/etc\/conflict\s+local and vendor changed the same lines; local kept; vendor version in \/etc\/conflict\.larchnew/);
  t.match(text, /merged\s+\/etc\/edited\s+local and vendor changes to different lines both applied/);
  t.notMatch(text, /\/etc\/same/, 'unchanged paths only counted');
  t.notMatch(text, /\/etc\/mine/, 'plain local files only counted');
  t.match(formatPlan(p, { verbose: true }), /new-local\s+mine/);
});
