/**
 * A large file (old and new together 16 MiB or more) is chosen for on the generator's second
 * thread while the loop goes on, in a part of its own: the Bun binary and Node generate the same
 * parts, the files before and after it are in parts of their own, and the delta rebuilds B
 * exactly.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { changelog, codeLike, diffSnapshots, larchOk, snapshotTree, tempDir } from '../helpers.ts';

/** Release `v`: small files before and after a large binary that changes a little. */
function makeTree(dir: string, v: number): void {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  mkdirSync(join(dir, 'usr/lib/larch-test'), { recursive: true });
  mkdirSync(join(dir, 'var/lib'), { recursive: true });
  writeFileSync(join(dir, 'etc/os-release'), `VERSION_ID=${v}\n`);
  // 8.5 MB each: old and new together over 16 MiB.
  writeFileSync(join(dir, 'usr/lib/larch-test/big.so'), codeLike(v, 8_500_000, 30 * v));
  writeFileSync(join(dir, 'usr/lib/larch-test/small.so'), codeLike(v + 5, 200_000, 10 * v));
  writeFileSync(join(dir, 'var/lib/changelog'), changelog(100 + v, 1));
}

t.test('a large file in a part of its own, chosen for on the second thread; Bun and Node agree; B rebuilt', async (t) => {
  const dir = tempDir(t);
  const server = join(dir, 'server');
  await larchOk(['init', '--repo', server, '--mode', 'archive']);
  for (const v of [1, 2]) makeTree(join(dir, `t${v}`), v);
  const commit = async (v: number) => (await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', join(dir, `t${v}`), '--owner', '0:0', '--version', String(v), '--timestamp', String(1_700_000_000 + v), '--json'])).json.commit as string;
  const a = await commit(1);
  const b = await commit(2);

  const generated: Record<string, string[]> = {};
  for (const runtime of ['bun', 'node'] as const) {
    const report = join(dir, `report-${runtime}.tsv`);
    const out = join(dir, `${runtime}.delta`);
    const gen = await larchOk(['delta', 'generate', '--repo', server, '--from', a, '--to', b, '--unsigned', '--out', out, '--json'], { runtime, env: { LARCH_DELTA_REPORT: report } });
    const line = readFileSync(report, 'utf8').split('\n').find((l) => l.startsWith('/usr/lib/larch-test/big.so\t')) ?? '';
    t.match(line, /\tchosen=patch\t.*\tchosen-on=second-thread$/, `${runtime}: big.so was patched, chosen for on the second thread`);
    t.match(readFileSync(report, 'utf8'), /^\/usr\/lib\/larch-test\/small\.so\t(?!.*second-thread).*chosen=patch/m, `${runtime}: small.so on the loop's own thread`);
    const shown = (await larchOk(['delta', 'show', out, '--json'])).json;
    t.equal(gen.json.parts, 3, `${runtime}: three parts: before big.so, big.so, after it`);
    t.same(shown.parts.map((p: { objects: number }) => p.objects === 1), [false, true, false], `${runtime}: big.so alone in the middle one`);
    t.ok(shown.parts[1].size < 500_000, `${runtime}: its patch is small (${shown.parts[1].size} bytes compressed, ${shown.parts[1].raw} raw)`);
    generated[runtime] = shown.parts.map((p: { sha256: string }) => p.sha256);
  }
  t.same(generated.node, generated.bun, 'Bun and Node generate the same parts');

  const reference = join(dir, 'ref');
  await larchOk(['checkout', '--repo', server, b, reference]);
  const dev = join(dir, 'dev');
  await larchOk(['init', '--repo', dev, '--mode', 'bare-user']);
  await larchOk(['pull-local', '--repo', dev, server, a]);
  const applied = await larchOk(['delta', 'apply', '--repo', dev, join(dir, 'bun.delta'), '--allow-unsigned', '--ref', 'os', '--json']);
  t.equal(applied.json.to, b, 'applied');
  await larchOk(['fsck', '--repo', dev]);
  await larchOk(['checkout', '--repo', dev, b, join(dir, 'co')]);
  t.same(diffSnapshots(await snapshotTree(reference, { owners: true }), await snapshotTree(join(dir, 'co'), { owners: true })), [], 'the checkout is identical to the vendor\'s');
});
