/**
 * `kill -9` of `larch commit` at 30 random moments. After each kill the
 * repo passes fsck and every ref names a complete commit; afterwards the next commit succeeds
 * and `prune` removes the stray temporary files.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, debs, larch, larchOk, sh, tempDir } from '../helpers.ts';

/** A small seeded PRNG (mulberry32) so a failing run can be repeated with LARCH_CRASH_SEED. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function commitAndKill(args: string[], delayMs: number): Promise<'killed' | 'finished'> {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { stdio: 'ignore' });
    let finished = false;
    const timer = setTimeout(() => {
      if (!finished) child.kill('SIGKILL');
    }, delayMs);
    child.on('exit', (code, signal) => {
      finished = true;
      clearTimeout(timer);
      resolve(signal === 'SIGKILL' ? 'killed' : code === 0 ? 'finished' : (() => { throw new Error(`commit exited ${code}`); })());
    });
  });
}

t.test('kill -9 during commit at 30 random moments', async (t) => {
  const seed = Number(process.env.LARCH_CRASH_SEED ?? Date.now() % 100000);
  t.comment(`seed ${seed} (LARCH_CRASH_SEED=${seed} repeats this run)`);
  const random = prng(seed);
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  // A tree of ~25 MB: big enough that a kill lands mid-commit, small enough for 30 fscks.
  const wanted = ['bash', 'coreutils', 'tzdata', 'ncurses-base', 'sudo', 'busybox', 'procps', 'grep', 'sed'];
  for (const deb of debs().filter((d) => wanted.some((w) => d.includes(`/${w}_`)))) sh(`dpkg-deb -x '${deb}' '${tree}'`);

  // How long a full commit takes in each mode: the kill moments are spread over that.
  // How long a commit takes in each mode, into a fresh repo and into one that already has
  // most objects: the kill moments are spread over those durations.
  const fullMs: Record<string, number> = {};
  const incrementalMs: Record<string, number> = {};
  const repos: Record<string, string> = {};
  for (const mode of ['archive', 'bare-user']) {
    repos[mode] = join(dir, `repo-${mode}`);
    await larchOk(['init', '--repo', repos[mode], '--mode', mode]);
    let start = Date.now();
    await larchOk(['commit', '--repo', repos[mode], '-b', 'main', '--tree', tree, '--version', '0']);
    fullMs[mode] = Date.now() - start;
    writeFileSync(join(tree, 'calibrate.bin'), Buffer.alloc(256 * 1024, 7));
    start = Date.now();
    await larchOk(['commit', '--repo', repos[mode], '-b', 'main', '--tree', tree, '--version', '0.1']);
    incrementalMs[mode] = Date.now() - start;
  }
  t.comment(`a full commit takes ${JSON.stringify(fullMs)} ms, an incremental one ${JSON.stringify(incrementalMs)} ms`);

  const outcomes = { killed: 0, finished: 0 };
  for (let i = 0; i < 30; i++) {
    const mode = i % 2 === 0 ? 'archive' : 'bare-user';
    // Every third kill hits a fresh repo (every object new), the others an existing one
    // whose refs must survive; each round adds new content so there is always work to do.
    const fresh = i % 3 === 0;
    const repo = fresh ? join(dir, `fresh-${i}`) : repos[mode];
    if (fresh) await larchOk(['init', '--repo', repo, '--mode', mode]);
    writeFileSync(join(tree, `round-${i}.bin`), Buffer.alloc(256 * 1024 + i, i));
    writeFileSync(join(tree, 'etc', 'larch-round'), `round ${i}\n`);
    const before = (await larchOk(['refs', '--repo', repo, '--json'])).json;
    const delayMs = Math.floor(random() * (fresh ? fullMs[mode] : incrementalMs[mode]) * 0.9);
    const outcome = await commitAndKill(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', String(i + 1)], delayMs);
    outcomes[outcome]++;
    const f = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(f.code, 0, `round ${i} (${mode}, ${fresh ? 'fresh' : 'existing'} repo, kill after ${delayMs} ms, ${outcome}): fsck clean`);
    if (f.code !== 0) t.comment(JSON.stringify(f.json?.problems?.slice(0, 3)));
    const after = (await larchOk(['refs', '--repo', repo, '--json'])).json;
    for (const ref of after) {
      const prev = before.find((r: { branch: string }) => r.branch === ref.branch);
      if (prev && prev.commit !== ref.commit) {
        // The kill can land after the ref moved (while cleaning up): then the commit is complete.
        const shown = (await larchOk(['show', '--repo', repo, ref.commit, '--json'])).json;
        t.equal(shown.version, String(i + 1), `round ${i}: a moved ref names this round's complete commit`);
      }
    }
  }
  t.comment(`outcomes: ${JSON.stringify(outcomes)}`);
  t.ok(outcomes.killed >= 15, `most rounds were killed mid-commit (${outcomes.killed} of 30)`);

  for (const mode of ['archive', 'bare-user']) {
    const repo = repos[mode];
    const c = await larch(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', 'after', '--json']);
    t.equal(c.code, 0, `${mode}: the next commit succeeds`);
    t.equal((await larchOk(['show', '--repo', repo, 'main', '--json'])).json.version, 'after', `${mode}: and the ref names it`);
    const p = await larchOk(['prune', '--repo', repo, '--json']);
    t.comment(`${mode}: prune removed ${p.json.temp_entries_removed} temporary entries`);
    t.same(readdirSync(join(repo, 'tmp')), [], `${mode}: tmp/ is empty after prune`);
    t.equal((await larch(['fsck', '--repo', repo])).code, 0, `${mode}: fsck clean after prune`);
    const co = join(dir, `checkout-${mode}`);
    await larchOk(['checkout', '--repo', repo, 'main', co]);
    t.ok(existsSync(join(co, 'round-29.bin')), `${mode}: the last tree checks out`);
  }
});
