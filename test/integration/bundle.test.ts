/**
 * `larch bundle create` (issue 20, stage 2; the device side, `upgrade --from-file`, is not wired
 * yet): the bundle read back through the bundle fetcher and the one Remote every transport
 * uses, so its summary verifies under the vendor key, its deltas bring their commits into a
 * repo that has the base, and a tampered bundle is refused.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleFetcher } from '../../src/agent/remote/bundle-fetch.ts';
import { remoteOver } from '../../src/agent/remote/remote.ts';
import { findDelta } from '../../src/protocol/summary.ts';
import { decodeBundleIndex, encodeBundleIndex } from '../../src/protocol/bundle.ts';
import { Repo } from '../../src/store/repo.ts';
import { fsck } from '../../src/store/fsck.ts';
import { readPublicKey } from '../../src/store/sign.ts';
import { REF, vendor } from '../device-helpers.ts';
import { larchOk, tempDir } from '../helpers.ts';

t.test('bundle create: from nothing to release 1, then from 1 to the head; each read as a remote', async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const v2 = await v.release(2, { delta: false });
  const dir = tempDir(t);
  const first = join(dir, 'first.larchb');
  const second = join(dir, 'second.larchb');
  const a = await larchOk(['bundle', 'create', '--repo', v.repo, '--ref', REF, '--to', '1', '--sign-key', `${v.key}.key`, '--out', first, '--json']);
  t.match(a.json, { ref: REF, commit: v1, version: '1', deltas: [{ from: null, to: v1, generated: true }] });
  const b = await larchOk(['bundle', 'create', '--repo', v.repo, '--ref', REF, '--from', '1', '--sign-key', `${v.key}.key`, '--out', second, '--json']);
  t.match(b.json, { commit: v2, version: '2', deltas: [{ from: v1, to: v2, generated: true }] });
  t.ok(b.json.expires_s - b.json.serial >= 89 * 86400, 'a bundle is good for 90 days by default');

  const key = await readPublicKey(`${v.key}.pub`);
  const now = Math.floor(Date.now() / 1000);
  const target = join(dir, 'device-repo');
  await larchOk(['init', '--repo', target, '--mode', 'bare-user']);
  const repo = await Repo.open(target);
  for (const [file, commit, from] of [[first, v1, null], [second, v2, v1]] as const) {
    const remote = remoteOver(await bundleFetcher(file));
    const summary = await remote.fetchSummary({ trusted: [key], now });
    t.same(Object.keys(summary.refs), [REF]);
    t.equal(summary.refs[REF]!.commit, commit, `${file}: the summary names the target`);
    const delta = findDelta(summary, from, commit);
    t.ok(delta, 'and the delta from the base');
    const downloadDir = join(dir, `dl-${commit.slice(0, 8)}`);
    mkdirSync(downloadDir);
    const r = await remote.pull(repo, commit, { delta, trusted: [key], downloadDir });
    t.equal(r.via, 'delta', `${commit.slice(0, 12)} came through the bundle's delta`);
    t.ok(await repo.hasObject('commit', commit));
  }
  t.same((await fsck(repo)).problems, [], 'the repo the bundles filled is clean');

  // Tampered. A byte flipped on the stick: the index's hash names the member. The same byte with
  // the index made to match (what an attacker would do): the signatures refuse it.
  const bytes = readFileSync(second);
  const index = decodeBundleIndex(bytes, bytes.length);
  const member = (path: string) => index.files.find((f) => f.path === path)!;
  const flipped = (path: string, at: number) => {
    const m = member(path);
    const out = Buffer.from(bytes);
    out[index.dataOffset + m.offset + at] ^= 1;
    return out;
  };
  const reopened = async (b: Uint8Array, name: string) => {
    writeFileSync(join(dir, name), b);
    return remoteOver(await bundleFetcher(join(dir, name)));
  };
  const code = (p: Promise<unknown>) => p.then(() => 'accepted', (e) => `${e.code}:${e.data?.reason ?? ''}`);
  const part = `deltas/${v1}-${v2}/part-0`;
  t.equal(await code((await reopened(flipped('summary', 5), 'summary-flip.larchb')).fetchSummary({ trusted: [key], now })), 'INVALID_INPUT:bundle-member', 'a flipped summary byte, named by the index');
  const reindexed = (b: Buffer) => {
    const files = index.files.map((f) => {
      const content = b.subarray(index.dataOffset + f.offset, index.dataOffset + f.offset + f.size);
      return { path: f.path, size: f.size, sha256: createHash('sha256').update(content).digest('hex'), content };
    });
    const { header, order } = encodeBundleIndex(files);
    return Buffer.concat([header, ...order.map((p) => files.find((f) => f.path === p)!.content)]);
  };
  t.equal(await code((await reopened(reindexed(flipped('summary', 5)), 'summary-forged.larchb')).fetchSummary({ trusted: [key], now })), 'SIGNATURE_INVALID:modified', 'a changed summary with a matching index: its signature fails');
  const forgedPart = await reopened(reindexed(flipped(part, 3)), 'part-forged.larchb');
  const s2 = await forgedPart.fetchSummary({ trusted: [key], now });
  const fresh = join(dir, 'fresh-repo');
  await larchOk(['init', '--repo', fresh, '--mode', 'bare-user']);
  const freshRepo = await Repo.open(fresh);
  const s1 = await remoteOver(await bundleFetcher(first)).fetchSummary({ trusted: [key], now });
  mkdirSync(join(dir, 'dl-fresh'));
  await remoteOver(await bundleFetcher(first)).pull(freshRepo, v1, { delta: findDelta(s1, null, v1), trusted: [key], downloadDir: join(dir, 'dl-fresh') });
  const fallback: string[] = [];
  mkdirSync(join(dir, 'dl-forged'));
  const pulled = await code(forgedPart.pull(freshRepo, v2, { delta: findDelta(s2, v1, v2), trusted: [key], downloadDir: join(dir, 'dl-forged'), onFallback: async (f) => void fallback.push(f.reason) }));
  t.not(pulled, 'accepted', `a changed delta part with a matching index is not applied (${pulled}; delta given up as ${fallback.join(', ')})`);
  t.notOk(await freshRepo.hasObject('commit', v2), 'nothing of it stored');
  writeFileSync(join(dir, 'cut.larchb'), bytes.subarray(0, bytes.length - 1));
  await t.rejects(bundleFetcher(join(dir, 'cut.larchb')), { code: 'INVALID_INPUT' }, 'a cut bundle');
});
