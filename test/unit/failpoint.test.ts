/** src/failpoint.ts and `larch failpoints`: the names, LARCH_FAILPOINT's checks, and the kill under Bun and Node. */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAILPOINTS, FAILPOINT_NAMES, checkFailpointEnv, parseFailpointSpec } from '../../src/failpoint.ts';
import { type Runtime, larch, larchOk, rejectsCode, tempDir } from '../helpers.ts';

t.test('names are module::step, each with a description', async (t) => {
  for (const name of FAILPOINT_NAMES) {
    t.match(name, /^[a-z-]+::[a-z-]+$/, `${name}: module::step`);
    t.ok(FAILPOINTS[name].length > 10, `${name}: described`);
  }
});

t.test('LARCH_FAILPOINT: NAME or NAME:N; anything else is USAGE naming the variable', async (t) => {
  t.same(parseFailpointSpec('deploy::after-etc-merge'), { name: 'deploy::after-etc-merge', hit: 1 });
  t.same(parseFailpointSpec('prune::after-object-unlink:12'), { name: 'prune::after-object-unlink', hit: 12 });
  for (const bad of ['nope', 'deploy::after-etc-merge:0', 'deploy::after-etc-merge:x', 'deploy::', ':3']) {
    await rejectsCode(t, () => checkFailpointEnv({ LARCH_FAILPOINT: bad }), 'USAGE', `'${bad}' refused, naming the variable`, { message: /^LARCH_FAILPOINT: /, data: { variable: 'LARCH_FAILPOINT', value: bad } });
  }
  t.doesNotThrow(() => checkFailpointEnv({}), 'unset: nothing to check');
});

t.test('larch failpoints lists them; a mistyped LARCH_FAILPOINT fails every command at start', async (t) => {
  t.same((await larchOk(['failpoints', '--json'])).json, FAILPOINT_NAMES, '--json: the names');
  const human = (await larchOk(['failpoints'])).stdout.trim().split('\n');
  t.equal(human.length, FAILPOINT_NAMES.length, 'one line per failpoint');
  t.match(human[0], new RegExp(`^${FAILPOINT_NAMES[0]} +\\S`), 'name, then its description');
  const r = await larch(['status', '--sysroot', '/nonexistent', '--json'], { env: { LARCH_FAILPOINT: 'update::after-typo' } });
  t.equal(r.code, 2, 'exit 2');
  t.match(r.json?.error, { code: 'USAGE', hint: "run 'larch failpoints'" }, 'USAGE with the hint');
  t.match(r.stderr, /LARCH_FAILPOINT: unknown failpoint 'update::after-typo'/, 'names the variable and the value');
});

for (const runtime of ['bun', 'node'] as Runtime[]) {
  t.test(`${runtime}: the Nth pass ends the process with SIGKILL; LARCH_FAILPOINT_LOG lists the passes`, async (t) => {
    const dir = tempDir(t);
    const repo = join(dir, 'repo');
    await larchOk(['init', '--repo', repo, '--mode', 'archive'], { runtime });
    const tree = join(dir, 'tree');
    mkdirSync(tree);
    for (let i = 0; i < 3; i++) writeFileSync(join(tree, `f${i}`), `file ${i}\n`);
    const log = join(dir, 'log');
    await larchOk(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', '1'], { runtime, env: { LARCH_FAILPOINT_LOG: log } });
    const passes = readFileSync(log, 'utf8').trim().split('\n');
    const renames = passes.filter((p) => p === 'transaction::after-object-rename').length;
    t.ok(renames >= 5, `${renames} object renames logged (3 files, a dirtree, a dirmeta, the commit)`);
    t.equal(passes.at(-1), 'commit::after-transaction', 'the last point passed');
    writeFileSync(join(tree, 'f0'), 'changed\n');
    const killed = await larch(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', '2'], { runtime, env: { LARCH_FAILPOINT: 'transaction::after-object-rename:2' } });
    t.equal(killed.signal, 'SIGKILL', 'killed by SIGKILL');
    t.equal((await larchOk(['log', '--repo', repo, 'main', '--json'], { runtime })).json.length, 1, 'the branch did not move');
  });
}
