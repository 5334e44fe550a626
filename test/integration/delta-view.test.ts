/**
 * Deltas through views (issue 18): files holding compressed streams made by the real tools
 * (GNU gzip -9n, a two-member gzip, a bzImage-shaped kernel with an `lz4 -l -9` payload) are
 * sent as patches between their views; the Bun binary and Node both rebuild the new commit
 * exactly; streams the device cannot rebuild (`lz4 -l -12`, zstd) fall back by themselves;
 * `--format 1` keeps a delta every agent reads; a format newer than the agent's and a damaged
 * source object are refused with clear errors, storing nothing.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IS_ROOT, type Runtime, bzImage, changelog, codeLike, compressWith, diffSnapshots, larch, larchOk, missingTools, snapshotTree, tempDir, testNeeding } from '../helpers.ts';

const TOOLS = ['gzip', 'lz4', 'zstd'];

/** Release `v` of a tree whose compressed files change between releases. */
function makeTree(dir: string, v: number): void {
  const doc = join(dir, 'usr/share/doc/larch-test');
  mkdirSync(doc, { recursive: true });
  mkdirSync(join(dir, 'boot'), { recursive: true });
  writeFileSync(join(doc, 'changelog.Debian.gz'), compressWith('gzip', ['-9n'], changelog(300 + v, 1)));
  // Two members, as `cat a.gz b.gz` or pigz writes: both change.
  writeFileSync(join(doc, 'NEWS.gz'), Buffer.concat([compressWith('gzip', ['-9n'], changelog(120 + v, 2)), compressWith('gzip', ['-6n'], changelog(80 + v, 3))]));
  writeFileSync(join(doc, 'README.zst'), compressWith('zstd', ['-19', '-q', '-c'], changelog(200 + v, 4)));
  const tail = Buffer.from(`signature of release ${v}`.repeat(20));
  writeFileSync(join(dir, 'boot/vmlinuz-6.1.0-1-amd64'), bzImage(codeLike(v, 1_200_000, 40 * v), 9, tail));
  writeFileSync(join(dir, 'boot/vmlinuz-6.1.0-1-alt'), bzImage(codeLike(v + 10, 300_000, 40 * v), 12, tail));
  writeFileSync(join(dir, 'usr/share/doc/larch-test/copyright'), 'plain text, unchanged\n'.repeat(50));
}

const cannot = missingTools(TOOLS).length ? `missing ${missingTools(TOOLS).join(', ')}` : false;

await testNeeding(t, 'files with compressed streams travel through their views; Bun and Node rebuild B exactly', cannot, {}, async (t) => {
  const dir = tempDir(t);
  const server = join(dir, 'server');
  await larchOk(['init', '--repo', server, '--mode', 'archive']);
  await larchOk(['keygen', '--out', join(dir, 'k')]);
  for (const v of [1, 2]) makeTree(join(dir, `t${v}`), v);
  const commit = async (v: number) => (await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', join(dir, `t${v}`), '--owner', '0:0', '--version', String(v), '--timestamp', String(1_700_000_000 + v), '--sign-key', join(dir, 'k.key'), '--json'])).json.commit as string;
  const a = await commit(1);
  const b = await commit(2);

  const out = join(dir, 'ab.delta');
  const report = join(dir, 'report.tsv');
  const gen = await larchOk(['delta', 'generate', '--repo', server, '--from', a, '--to', b, '--sign-key', join(dir, 'k.key'), '--out', out, '--json'], { env: { LARCH_DELTA_REPORT: report } });
  const r = gen.json;
  // The kernel's plain patch is built on the generator's second thread (src/delta/diff-worker.ts),
  // an entry point of its own in the binary; Node loads it from source.
  const kernelLine = readFileSync(report, 'utf8').split('\n').find((l) => l.startsWith('/boot/vmlinuz-6.1.0-1-amd64\t')) ?? '';
  t.match(kernelLine, /\tplain-on=second-thread(\t|$)/, 'Bun: the kernel\'s plain patch was built on the second thread');
  const onNode = await larchOk(['delta', 'generate', '--repo', server, '--from', a, '--to', b, '--sign-key', join(dir, 'k.key'), '--out', join(dir, 'node.delta'), '--json'], { runtime: 'node', env: { LARCH_DELTA_REPORT: report } });
  t.match(readFileSync(report, 'utf8'), /^\/boot\/vmlinuz-6\.1\.0-1-amd64\t.*\tplain-on=second-thread(\t|$)/m, 'Node: so was it');
  const partHashes = async (file: string) => (await larchOk(['delta', 'show', file, '--json'])).json.parts.map((p: { sha256: string }) => p.sha256);
  t.same(await partHashes(join(dir, 'node.delta')), await partHashes(out), `Bun and Node generate the same parts (${onNode.json.parts} parts)`);
  t.equal(r.format, 3, 'the default delta is format 3 (view records, zero-run coded diff bytes)');
  t.equal(readFileSync(out).readUInt32BE(8), 3, 'and says so in its preamble');
  t.equal(r.view_patched, 3, 'the gzip file, the two-member gzip and the lz4 -9 kernel went through their views');
  const reasons = r.streams.fallbacks.map((f: { path: string; reason: string }) => `${f.path} ${f.reason}`).sort();
  t.same(reasons, ['/boot/vmlinuz-6.1.0-1-alt lz4-no-level', '/usr/share/doc/larch-test/README.zst no-encoder'], 'lz4 -12 and zstd fell back by themselves, with the reason');
  t.equal(r.streams.used, 4, 'four streams used (two gzip members count twice)');
  const kinds = r.by_kind as Record<string, { objects: number; view: number; estimate_before: number; estimate_after: number }>;
  t.equal(Object.values(kinds).reduce((n, k) => n + k.objects, 0), r.patched + r.literal, 'by_kind counts every file object once');
  t.equal(kinds.kernel.view, 1, 'the kernel is in the kernel row');
  t.equal(kinds.gzip.view, 2, 'the gzip files in the gzip row');
  t.ok(kinds.gzip.estimate_after < kinds.gzip.estimate_before / 3, `the gzip files cost a third or less through their views (${kinds.gzip.estimate_before} -> ${kinds.gzip.estimate_after})`);
  t.ok(kinds.kernel.estimate_after < kinds.kernel.estimate_before, `so does the kernel (${kinds.kernel.estimate_before} -> ${kinds.kernel.estimate_after})`);

  const shown = (await larchOk(['delta', 'show', out, '--json'])).json;
  t.equal(shown.format, 3, 'delta show: format 3');
  // Over 1 MiB, so the device expands it into R/tmp/ (the changelogs' views it holds in memory).
  t.ok(shown.parts[0].scratch > 1024 * 1024, `delta show: the part's scratch is the kernel's view (${shown.parts[0].scratch} bytes)`);

  const plain = await larchOk(['delta', 'generate', '--repo', server, '--from', a, '--to', b, '--sign-key', join(dir, 'k.key'), '--out', join(dir, 'plain.delta'), '--format', '1', '--json']);
  t.equal(plain.json.format, 1, '--format 1: format 1');
  t.equal(plain.json.view_patched, 0, '--format 1: no view record');
  t.equal(readFileSync(join(dir, 'plain.delta')).readUInt32BE(8), 1, '--format 1: the preamble says 1');
  t.ok(r.bytes < plain.json.bytes, `the view delta is smaller (${r.bytes} vs ${plain.json.bytes} bytes)`);
  const two = join(dir, 'two.delta');
  const gen2 = await larchOk(['delta', 'generate', '--repo', server, '--from', a, '--to', b, '--sign-key', join(dir, 'k.key'), '--out', two, '--format', '2', '--json']);
  t.equal(gen2.json.format, 2, '--format 2: format 2 (views, the diff bytes not coded)');
  t.equal(gen2.json.view_patched, 3, '--format 2: the same files through their views');
  t.equal(readFileSync(two).readUInt32BE(8), 2, '--format 2: the preamble says 2');

  const reference = join(dir, 'ref');
  await larchOk(['checkout', '--repo', server, b, reference]);
  const want = await snapshotTree(reference, { owners: true });
  for (const [runtime, file] of [['bun', out], ['node', out], ['bun', two]] as [Runtime, string][]) {
    const dev = join(dir, `dev-${runtime}-${file === out ? 3 : 2}`);
    await larchOk(['init', '--repo', dev, '--mode', 'bare-user']);
    await larchOk(['pull-local', '--repo', dev, server, a]);
    const memoryLog = join(dir, `memory-${runtime}-${file === out ? 3 : 2}.log`);
    const applied = await larchOk(['delta', 'apply', '--repo', dev, '--key', join(dir, 'k.pub'), file, '--ref', 'os', '--json'], { runtime, env: { LARCH_MEMORY_LOG: memoryLog } });
    t.equal(applied.json.to, b, `${runtime}: applied`);
    // The kernel's source view is over 1 MiB: LARCH_MEMORY_LOG marks its expansion into R/tmp/ (src/_memory-log.ts).
    const points = readFileSync(memoryLog, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).at as string);
    const expanding = points.findIndex((at) => /^view of source [0-9a-f]{64} \(\d+ bytes\)$/.test(at));
    t.ok(expanding > 0 && points[expanding + 1] === `${points[expanding].split(' (')[0]} written`, `${runtime}: the memory log marks the kernel's view being written (${points[expanding]})`);
    await larchOk(['fsck', '--repo', dev], { runtime });
    await larchOk(['checkout', '--repo', dev, b, join(dir, `co-${runtime}-${file === out ? 3 : 2}`)]);
    t.same(diffSnapshots(want, await snapshotTree(join(dir, `co-${runtime}-${file === out ? 3 : 2}`), { owners: true })), [], `${runtime}, format ${file === out ? 3 : 2}: the checkout is identical to the vendor's`);
    t.same(spawnSync('sh', ['-c', `ls '${join(dev, 'tmp')}' | grep view- || true`], { encoding: 'utf8' }).stdout, '', `${runtime}: no view file left in R/tmp/`);
  }

  // A format newer than this larch reads: refused up front, with what to do.
  const future = Buffer.from(readFileSync(out));
  future.writeUInt32BE(4, 8);
  writeFileSync(join(dir, 'future.delta'), future);
  const dev3 = join(dir, 'dev-future');
  await larchOk(['init', '--repo', dev3, '--mode', 'bare-user']);
  await larchOk(['pull-local', '--repo', dev3, server, a]);
  const refused = await larch(['delta', 'apply', '--repo', dev3, '--key', join(dir, 'k.pub'), join(dir, 'future.delta'), '--json']);
  t.equal(refused.code, 5, 'a newer format: exit 5');
  t.equal(refused.json.error.code, 'DELTA_UNSUPPORTED', 'DELTA_UNSUPPORTED');
  t.match(refused.json.error.message, /delta format 4 is newer than this larch reads \(1-3\)/, 'the message says which formats it reads');
  t.match(refused.json.error.hint, /update larch/, 'the hint says what to do');

  // A damaged source object on the device: the view cannot be expanded; nothing is stored.
  const dev4 = join(dir, 'dev-damaged');
  await larchOk(['init', '--repo', dev4, '--mode', 'bare-user']);
  await larchOk(['pull-local', '--repo', dev4, server, a]);
  const [entry] = (await larchOk(['ls', '--repo', dev4, a, '/usr/share/doc/larch-test/changelog.Debian.gz', '--json'])).json as { object: string }[];
  const path = join(dev4, 'objects', entry.object.slice(0, 2), `${entry.object.slice(2)}.file`);
  const bytes = Buffer.from(readFileSync(path));
  bytes.fill(0x41, 10, 400); // garbage inside the deflate stream, the size kept
  spawnSync('chmod', ['u+w', path]);
  writeFileSync(path, bytes);
  const damaged = await larch(['delta', 'apply', '--repo', dev4, '--key', join(dir, 'k.pub'), out, '--json']);
  t.equal(damaged.json?.error?.code, 'DELTA_CORRUPT', `a source that does not expand: DELTA_CORRUPT (${damaged.json?.error?.message})`);
  t.match(damaged.json.error.message, /source [0-9a-f]{64}/, 'the message names the source object');
  t.equal((await larch(['show', '--repo', dev4, b])).code === 0, false, 'the new commit is not stored');
  t.same(spawnSync('sh', ['-c', `ls '${join(dev4, 'tmp')}' | grep view- || true`], { encoding: 'utf8' }).stdout, '', 'no view file left in R/tmp/');

  // R/tmp/ too small for the largest source view the superblock announces: refused before the first part.
  await testNeeding(t, 'no room for the view file: NO_SPACE before anything is stored', IS_ROOT ? false : 'needs root to mount a small tmpfs', {}, async (t) => {
    const dev5 = join(dir, 'dev-small');
    await larchOk(['init', '--repo', dev5, '--mode', 'bare-user']);
    await larchOk(['pull-local', '--repo', dev5, server, a]);
    const tmp = join(dev5, 'tmp');
    mkdirSync(tmp, { recursive: true });
    spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', tmp]);
    t.teardown(() => void spawnSync('umount', [tmp]));
    const full = await larch(['delta', 'apply', '--repo', dev5, '--key', join(dir, 'k.pub'), out, '--json']);
    t.equal(full.json?.error?.code, 'NO_SPACE', `NO_SPACE (${full.json?.error?.message})`);
    t.match(full.json.error.message, new RegExp(`filesystem of ${tmp}.*expands a file of \\d+ bytes`), 'the message says where and how much');
    t.ok(full.json.error.data.need > 600_000 && full.json.error.data.free < full.json.error.data.need, `data: need ${full.json.error.data.need} (the kernel's view), free ${full.json.error.data.free}`);
    t.equal((await larch(['show', '--repo', dev5, b])).code === 0, false, 'the new commit is not stored');
  });
});
