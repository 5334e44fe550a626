/**
 * The device binary's hot loops run in JavaScriptCore's top tier. The update commands run with
 * `BUN_JSC_maximumFTLCandidateBytecodeCost=2000` (src/cli/runtime-options.ts): FTL then compiles
 * only functions below that bytecode cost, to keep what its compilations allocate out of the
 * apply's peak. The LZ4HC match search (`widerMatch`, ~1,900 in the bundle) sits just under it; a
 * few more lines there put it over, and a kernel's fold then ran in the tier below, ~50% slower
 * (bench/lz4-view.ts on the corpus kernel: 2.46 s against 1.61-1.66 s), with nothing else to show
 * it. So this applies a delta with a kernel view through the Bun binary, with JSC's own report of
 * its FTL compilations on (`BUN_JSC_reportFTLCompileTimes`), and asserts each hot loop is in it.
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RUNTIME_ENV } from '../../src/cli/runtime-options.ts';
import { bzImage, codeLike, larch, larchOk, missingTools, tempDir, testNeeding } from '../helpers.ts';

/** The LZ4HC encoder's search and parse (src/delta/view/_lz4-compress.ts): most of a kernel's fold. */
const HOT_LOOPS = ['widerMatch', 'compressHashChain'];

const cannot = missingTools(['lz4']).length ? 'missing lz4' : false;

await testNeeding(t, 'the LZ4HC loops are compiled by FTL in the device binary', cannot, {}, async (t) => {
  const dir = tempDir(t);
  const server = join(dir, 'server');
  await larchOk(['init', '--repo', server, '--mode', 'archive']);
  const commits: string[] = [];
  for (const v of [1, 2]) {
    const tree = join(dir, `t${v}`);
    mkdirSync(join(tree, 'boot'), { recursive: true });
    // 3 MB of code-like bytes at lz4 -9, the kernel's level: enough searches for FTL to take them.
    writeFileSync(join(tree, 'boot/vmlinuz-6.1.0-1-amd64'), bzImage(codeLike(v, 3_000_000, 40 * v), 9, Buffer.from(`signature ${v}`.repeat(30))));
    commits.push((await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', tree, '--owner', '0:0', '--version', String(v), '--timestamp', String(1_700_000_000 + v), '--json'])).json.commit as string);
  }
  const out = join(dir, 'ab.delta');
  await larchOk(['delta', 'generate', '--repo', server, '--from', commits[0], '--to', commits[1], '--unsigned', '--out', out]);
  const views = (await larchOk(['delta', 'show', out, '--json'])).json.parts as { scratch: number }[];
  t.ok(views.some((p) => p.scratch > 1024 * 1024), 'the delta folds the kernel from its view (a part with scratch)');
  const dev = join(dir, 'dev');
  await larchOk(['init', '--repo', dev, '--mode', 'bare-user']);
  await larchOk(['pull-local', '--repo', dev, server, commits[0]]);
  const r = await larch(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--json'], { env: { BUN_JSC_reportFTLCompileTimes: '1' } });
  t.equal(r.code, 0, 'the apply succeeds');
  t.equal(r.json?.to, commits[1], 'B is stored');
  // JSC's line: "Optimized NAME#HASH:[..., BYTECODE_COST (...)] using FTL[ForOSREntry] with FTL into ...".
  const ftl = new Map<string, number>();
  for (const m of r.stderr.matchAll(/Optimized (\w+)#\w+:\[[^\]]*?, (\d+) \([^\]]*\] using FTL/g)) ftl.set(m[1], Number(m[2]));
  t.ok(ftl.size > 0, `JSC reported FTL compilations (${ftl.size} functions)`);
  for (const name of HOT_LOOPS) t.ok(ftl.has(name), `${name} is compiled by FTL (bytecode cost ${ftl.get(name) ?? 'over the limit: not compiled'}, limit ${RUNTIME_ENV.BUN_JSC_maximumFTLCandidateBytecodeCost})`);
});
