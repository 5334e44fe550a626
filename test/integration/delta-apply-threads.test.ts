/**
 * `delta apply --threads 2` (LARCH_APPLY_THREADS=2): the part with the largest source view (the
 * kernel's) is applied on a second thread while the first applies the rest. The Bun binary and
 * Node rebuild B exactly; a damaged part on the second thread is refused as on the first, the
 * other parts stay stored and the staging directories go; failpoints count hits over both
 * threads, so the last hit of the run ends it, and a second run finishes the apply; a thread
 * count other than 1 or 2 is a usage error.
 */
import t, { type Test } from 'tap';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bzImage, changelog, codeLike, compressWith, diffSnapshots, larch, larchOk, missingTools, snapshotTree, tempDir, testNeeding } from '../helpers.ts';

const TOOLS = ['gzip', 'lz4'];

/** Release `v`: a kernel whose view is over 1 MiB (so its part has scratch), and other files in parts of their own. */
function makeTree(dir: string, v: number): void {
  mkdirSync(join(dir, 'boot'), { recursive: true });
  mkdirSync(join(dir, 'usr/lib/larch-test'), { recursive: true });
  mkdirSync(join(dir, 'usr/share/doc/larch-test'), { recursive: true });
  writeFileSync(join(dir, 'boot/vmlinuz-6.1.0-1-amd64'), bzImage(codeLike(v, 1_500_000, 40 * v), 9, Buffer.from(`signature ${v}`.repeat(30))));
  for (let i = 0; i < 4; i++) writeFileSync(join(dir, `usr/lib/larch-test/lib${i}.so`), codeLike(v + 10 * i, 150_000, 8 * v));
  writeFileSync(join(dir, 'usr/share/doc/larch-test/changelog.Debian.gz'), compressWith('gzip', ['-9n'], changelog(200 + v, 1)));
}

const cannot = missingTools(TOOLS).length ? `missing ${missingTools(TOOLS).join(', ')}` : false;

await testNeeding(t, 'the kernel part on a second thread', cannot, {}, async (t) => {
  const dir = tempDir(t);
  const server = join(dir, 'server');
  await larchOk(['init', '--repo', server, '--mode', 'archive']);
  for (const v of [1, 2]) makeTree(join(dir, `t${v}`), v);
  const commit = async (v: number) => (await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', join(dir, `t${v}`), '--owner', '0:0', '--version', String(v), '--timestamp', String(1_700_000_000 + v), '--json'])).json.commit as string;
  const a = await commit(1);
  const b = await commit(2);
  const out = join(dir, 'ab.delta');
  await larchOk(['delta', 'generate', '--repo', server, '--from', a, '--to', b, '--unsigned', '--part-size', '65536', '--out', out]);
  const parts = (await larchOk(['delta', 'show', out, '--json'])).json.parts as { scratch: number; size: number }[];
  const kernelPart = parts.findIndex((p) => p.scratch > 1024 * 1024);
  t.ok(parts.length >= 3 && kernelPart >= 0, `${parts.length} parts, part ${kernelPart + 1} expands the kernel's view (${parts[kernelPart]?.scratch} bytes)`);
  const reference = join(dir, 'ref');
  await larchOk(['checkout', '--repo', server, b, reference]);
  const want = await snapshotTree(reference, { owners: true });
  const device = async (name: string) => {
    const dev = join(dir, name);
    await larchOk(['init', '--repo', dev, '--mode', 'bare-user']);
    await larchOk(['pull-local', '--repo', dev, server, a]);
    return dev;
  };
  const sameTree = async (t: Test, dev: string, what: string) => {
    await larchOk(['fsck', '--repo', dev]);
    const co = join(dir, `co-${what.replace(/\W+/g, '-')}`);
    await larchOk(['checkout', '--repo', dev, b, co]);
    t.same(diffSnapshots(want, await snapshotTree(co, { owners: true })), [], `${what}: the checkout is identical to the vendor's`);
  };

  t.test('Bun and Node: B rebuilt, the kernel part on the second thread', async (t) => {
    for (const [runtime, how] of [['bun', 'flag'], ['node', 'flag'], ['bun', 'env']] as const) {
      const dev = await device(`dev-${runtime}-${how}`);
      const log = join(dir, `memory-${runtime}-${how}.log`);
      const args = ['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--ref', 'os', '--json', ...(how === 'flag' ? ['--threads', '2'] : [])];
      const r = await larchOk(args, { runtime, env: { LARCH_MEMORY_LOG: log, ...(how === 'env' ? { LARCH_APPLY_THREADS: '2' } : {}) } });
      t.same([r.json.to, r.json.parts_applied, r.json.parts_skipped], [b, parts.length, 0], `${runtime} (${how}): every part applied`);
      const points = readFileSync(log, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).at as string);
      t.ok(points.includes(`part ${kernelPart + 1}/${parts.length} (second thread)`), `${runtime} (${how}): the kernel's part went to the second thread`);
      t.equal(points.filter((p) => p.endsWith('(second thread)')).length, 1, `${runtime} (${how}): only that part`);
      await sameTree(t, dev, `${runtime} ${how}`);
    }
    const one = await device('dev-one');
    const log = join(dir, 'memory-one.log');
    await larchOk(['delta', 'apply', '--repo', one, out, '--allow-unsigned', '--json'], { env: { LARCH_MEMORY_LOG: log } });
    t.notMatch(readFileSync(log, 'utf8'), /second thread/, 'without --threads 2, no second thread');
  });

  t.test('a damaged part on the second thread: refused, the other parts kept, nothing staged left', async (t) => {
    const dev = await device('dev-damaged');
    const shown = (await larchOk(['delta', 'show', out, '--json'])).json;
    // Parts follow the envelope in order: the kernel part's last byte is the byte before the next part.
    const bytes = Buffer.from(readFileSync(out));
    const end = bytes.length - parts.slice(kernelPart + 1).reduce((n, p) => n + p.size, 0);
    bytes[end - 1] ^= 0xff;
    const damaged = join(dir, 'damaged.delta');
    writeFileSync(damaged, bytes);
    t.equal(shown.parts.length, parts.length);
    const r = await larch(['delta', 'apply', '--repo', dev, damaged, '--allow-unsigned', '--threads', '2', '--json']);
    t.equal(r.code, 5, 'exit 5');
    t.equal(r.json.error.code, 'DELTA_CORRUPT', 'DELTA_CORRUPT');
    t.equal(r.json.error.data.part, kernelPart, 'data.part names the damaged part');
    t.match(r.json.error.message, new RegExp(`^part ${kernelPart + 1}/${parts.length}: checksum mismatch`), `the message says which part and what: ${r.json.error.message}`);
    t.same(readdirSync(join(dev, 'tmp')), [], 'no staging directory or view file left in R/tmp/');
    const again = await larchOk(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--threads', '2', '--json']);
    // The first thread finishes the part it is in when the second fails, then stops.
    t.ok(again.json.parts_skipped >= 1, `run again with the good delta: the parts the first thread applied were kept (${again.json.parts_skipped})`);
    t.equal(again.json.parts_skipped + again.json.parts_applied, parts.length, 'and the rest applied');
    await sameTree(t, dev, 'after the damaged part');
  });

  t.test("failpoints count over both threads: the run's last hit ends it, a second run finishes", async (t) => {
    const counted = await device('dev-count');
    const passed = join(dir, 'failpoints.log');
    await larchOk(['delta', 'apply', '--repo', counted, out, '--allow-unsigned', '--threads', '2'], { env: { LARCH_FAILPOINT_LOG: passed } });
    const renames = readFileSync(passed, 'utf8').split('\n').filter((l) => l === 'transaction::after-object-rename').length;
    t.ok(renames > parts.length, `${renames} object renames over ${parts.length} parts`);
    const dev = await device('dev-killed');
    const killed = await larch(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--threads', '2'], { env: { LARCH_FAILPOINT: `transaction::after-object-rename:${renames}` } });
    t.equal(killed.signal, 'SIGKILL', `the ${renames}th rename, the run's last, ended the process (whichever thread passed it)`);
    const resumed = await larchOk(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--threads', '2', '--json']);
    t.ok(resumed.json.parts_skipped >= 1, `a second run skips what the first stored (${resumed.json.parts_skipped} parts) and applies the rest (${resumed.json.parts_applied})`);
    await sameTree(t, dev, 'after the kill');
  });

  t.test('a thread count other than 1 or 2 is a usage error', async (t) => {
    const dev = await device('dev-usage');
    const flag = await larch(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--threads', '3', '--json']);
    t.equal(flag.code, 2, '--threads 3: exit 2');
    t.match(flag.json.error.message, /--threads must be 1 or 2, not '3'/, flag.json.error.message);
    const env = await larch(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--json'], { env: { LARCH_APPLY_THREADS: 'all' } });
    t.equal(env.code, 2, 'LARCH_APPLY_THREADS=all: exit 2');
    t.match(env.json.error.message, /LARCH_APPLY_THREADS must be 1 or 2, not 'all'/, env.json.error.message);
    t.equal((await larchOk(['delta', 'apply', '--repo', dev, out, '--allow-unsigned', '--threads', '1', '--json'])).json.to, b, '--threads 1 applies');
  });
});
