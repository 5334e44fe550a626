/**
 * A newer larch reads every format an older one wrote: the frozen vectors of larch 0.1 in
 * test/vectors/compat/v0.1/ (made once by scripts/make-compat-vectors.ts, never regenerated)
 * are read by today's code: the archive repo passes fsck and its signed summary verifies, the
 * one-file delta applies onto commit 1, and the provisioned sysroot (v1 booted, v2 staged)
 * reports its status and boots v2 with sim-boot; and the frozen format-2 delta of v0.2/ (view
 * records, docs/formats.md §8.6) and format-3 delta of v0.3/ (zero-run coded diff bytes, §8.3, on
 * v0.2's commits) apply and rebuild their commit exactly.
 */
import t from 'tap';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, larchOk, sh, tempDir } from '../helpers.ts';
import { decodeSummary, verifySummary } from '../../src/protocol/summary.ts';
import type { Test } from '../device-helpers.ts';

const DIR = join(ROOT, 'test/vectors/compat/v0.1');
const vectors = JSON.parse(readFileSync(join(DIR, 'vectors.json'), 'utf8'));
const [c1, c2] = vectors.commits as { commit: string; version: string }[];

function unpack(t: Test, file: string): string {
  const dir = join(tempDir(t), file.replace(/\.tar\.gz$/, ''));
  mkdirSync(dir);
  sh(`tar -xzf '${join(DIR, file)}' -C '${dir}'`);
  return dir;
}

async function fsckClean(t: Test, repo: string, what: string): Promise<void> {
  const r = (await larchOk(['fsck', '--repo', repo, '--json'])).json;
  t.equal(r.commits, 2, `${what}: both commits`);
  t.same(r.problems, [], `${what}: fsck finds nothing wrong`);
}

t.test('the 0.1 archive repo: fsck, refs, and its signed summary', async (t) => {
  const repo = unpack(t, 'repo.tar.gz');
  await fsckClean(t, repo, 'the repo');
  const log = await larchOk(['log', '--repo', repo, vectors.ref, '--json']);
  t.same(log.json.map((c: { commit: string }) => c.commit), [c2.commit, c1.commit], 'the history of the ref');
  const bytes = readFileSync(join(repo, 'summary'));
  const summary = await verifySummary(bytes, readFileSync(join(repo, 'summary.sig')), { trusted: [Buffer.from(vectors.public_key.split(' ')[1], 'base64')], now: vectors.summary.created_s });
  t.match(summary, { serial: vectors.summary.serial, expires: vectors.summary.expires_s, refs: { [vectors.ref]: { commit: c2.commit, version: '2' } } });
  t.equal(summary.refs[vectors.ref].barriers, undefined, 'no barriers in a 0.1 summary');
  t.equal(summary.deltas.length, 1, 'the delta is listed');
  t.same(decodeSummary(bytes), summary);
});

t.test('the 0.1 one-file delta applies onto commit 1', async (t) => {
  const src = unpack(t, 'repo.tar.gz');
  const repo = join(tempDir(t), 'dest');
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
  await larchOk(['pull-local', '--repo', repo, src, c1.commit]);
  const key = join(tempDir(t), 'vendor.pub');
  sh(`printf '%s\\n' '${vectors.public_key}' > '${key}'`);
  const r = await larchOk(['delta', 'apply', '--repo', repo, join(DIR, 'delta.larchdelta'), '--key', key, '--json']);
  t.match(r.json, { to: c2.commit });
  await fsckClean(t, repo, 'after the apply');
  t.equal((await larchOk(['show', '--repo', repo, c2.commit, '--json'])).json.version, '2');
});

t.test('the 0.1 sysroot: status, then sim-boot boots the staged v2', async (t) => {
  const dev = unpack(t, 'sysroot.tar.gz');
  const before = (await larchOk(['status', '--sysroot', dev, '--json'])).json;
  t.match(before, { booted: { ...vectors.sysroot.booted, good: true }, pending: vectors.sysroot.pending }, 'status reads the old records');
  await fsckClean(t, join(dev, 'larch/repo'), 'the device repo');
  await larchOk(['sim-boot', '--sysroot', dev]);
  const after = (await larchOk(['status', '--sysroot', dev, '--json'])).json;
  t.match(after, { booted: { slot: 'B', commit: c2.commit, version: '2', good: true }, rollback: { slot: 'A', commit: c1.commit } }, 'v2 booted good');
});

for (const [set, format, what] of [['v0.2', 2, 'view records'], ['v0.3', 3, 'view records, zero-run coded diff bytes']] as const) {
  t.test(`the frozen format-${format} delta (${what}) applies onto its commit 1 and rebuilds commit 2 exactly`, async (t) => {
    const dir2 = join(ROOT, 'test/vectors/compat', set);
    const v2 = JSON.parse(readFileSync(join(dir2, 'vectors.json'), 'utf8'));
    const [a, b] = v2.commits as { commit: string }[];
    const scratch = tempDir(t);
    const src = join(scratch, 'src');
    mkdirSync(src);
    // v0.3 holds only a delta: its commits are v0.2's.
    sh(`tar -xzf '${join(ROOT, 'test/vectors/compat/v0.2', 'repo.tar.gz')}' -C '${src}'`);
    const repo = join(scratch, 'dest');
    await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
    await larchOk(['pull-local', '--repo', repo, src, a.commit]);
    const key = join(scratch, 'vendor.pub');
    sh(`printf '%s\\n' '${v2.public_key}' > '${key}'`);
    t.equal(readFileSync(join(dir2, 'delta.larchdelta')).readUInt32BE(8), format, `the file is format ${format}`);
    t.match((await larchOk(['delta', 'apply', '--repo', repo, join(dir2, 'delta.larchdelta'), '--key', key, '--json'])).json, { to: b.commit });
    t.same((await larchOk(['fsck', '--repo', repo, '--json'])).json.problems, [], 'fsck finds nothing wrong');
    await larchOk(['checkout', '--repo', repo, b.commit, join(scratch, 'applied')]);
    await larchOk(['checkout', '--repo', src, b.commit, join(scratch, 'vendor')]);
    t.equal(sh(`diff -r --no-dereference '${join(scratch, 'applied')}' '${join(scratch, 'vendor')}' && echo same`).trim(), 'same', "the checkout is the vendor's");
  });
}
