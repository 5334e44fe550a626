/** The rollout state of a vendor repo (R/rollout.json): recorded per ref, 100 when unset, a damaged file refused naming it. */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rejectsCode } from '../../helpers.ts';
import { readRolloutState, rolloutOf, updateRolloutState, writeRollout } from '../../../src/server/rollout-state.ts';
import { Repo } from '../../../src/store/repo.ts';

t.test('recorded per ref; a ref never set is at 100', async (t) => {
  const repo = await Repo.init(join(t.testdir(), 'repo'), 'archive');
  t.same(await readRolloutState(repo), {}, 'no file: no state');
  t.equal(rolloutOf(await readRolloutState(repo), 'os/stable'), 100, 'unset: 100');
  await writeRollout(repo, ['os/stable', 'os/beta'], 5, new Date('2026-12-04T11:00:00Z'));
  await writeRollout(repo, ['os/beta'], 50);
  const state = await readRolloutState(repo);
  t.same(state['os/stable'], { rollout: 5, set: '2026-12-04T11:00:00.000Z' }, 'one ref keeps its percentage and time');
  t.equal(rolloutOf(state, 'os/beta'), 50, 'the other was widened alone');
  t.equal(rolloutOf(state, 'os/other'), 100);
});

t.test('a damaged file is refused naming it, never read as 100', async (t) => {
  const repo = await Repo.init(join(t.testdir(), 'repo'), 'archive');
  for (const text of ['{', '{"refs": []}', '{"refs": {"os/stable": {"rollout": 500}}}']) {
    writeFileSync(join(repo.path, 'rollout.json'), text);
    await rejectsCode(t, readRolloutState(repo), 'INVALID_INPUT', `${text}: the message names the file`, { message: /rollout\.json/ });
  }
});

t.test('format 1 while refs hold only percentages, 2 once a ref has more; writeRollout keeps the rest', async (t) => {
  const repo = await Repo.init(join(t.testdir(), 'repo'), 'archive');
  const file = join(repo.path, 'rollout.json');
  await writeRollout(repo, ['os/stable'], 5);
  t.equal(JSON.parse(readFileSync(file, 'utf8')).format, 1, 'percentages only: format 1 (an older larch reads it)');
  const commit = 'a'.repeat(64);
  await updateRolloutState(repo, (s) => {
    s['os/stable'] = { ...s['os/stable']!, commit, version: '2', halt_rule: { failures_pct: 20, min_devices: 10 } };
  });
  t.equal(JSON.parse(readFileSync(file, 'utf8')).format, 2, 'a halt rule: format 2');
  await writeRollout(repo, ['os/stable'], 50);
  const s = await readRolloutState(repo);
  t.equal(s['os/stable']!.rollout, 50, 'widened');
  t.same(s['os/stable']!.halt_rule, { failures_pct: 20, min_devices: 10 }, 'writeRollout kept the halt rule');
  t.equal(s['os/stable']!.commit, commit, '... and the release in flight');
});

t.test('the history keeps the newest 16 entries', async (t) => {
  const repo = await Repo.init(join(t.testdir(), 'repo'), 'archive');
  const commit = 'b'.repeat(64);
  await updateRolloutState(repo, (s) => {
    s['os/stable'] = { rollout: 100, set: new Date(0).toISOString(), history: Array.from({ length: 20 }, (_, i) => ({ event: 'resume' as const, time: new Date(i * 1000).toISOString(), commit, version: String(i) })) };
  });
  const h = (await readRolloutState(repo))['os/stable']!.history!;
  t.equal(h.length, 16);
  t.equal(h[0]!.version, '4', 'the oldest four dropped');
});

t.test('a format 2 file with a damaged halt, plan or release is refused naming the ref', async (t) => {
  const repo = await Repo.init(join(t.testdir(), 'repo'), 'archive');
  const ok = { rollout: 10, set: '2026-12-06T10:00:00.000Z' };
  for (const bad of [{ commit: 'zz', version: '1' }, { plan: { start: 5 } }, { halt_rule: { failures_pct: 20, min_devices: 0 } }, { halted: { commit: 'c'.repeat(64), version: '2', rollout: 10, to: 'x' } }, { last_good: { commit: 'c'.repeat(64) } }]) {
    writeFileSync(join(repo.path, 'rollout.json'), JSON.stringify({ format: 2, refs: { 'os/stable': { ...ok, ...bad } } }));
    await rejectsCode(t, readRolloutState(repo), 'INVALID_INPUT', `${JSON.stringify(bad)}: refused`, { message: /os\/stable/ });
  }
  writeFileSync(join(repo.path, 'rollout.json'), JSON.stringify({ format: 3, refs: {} }));
  await rejectsCode(t, readRolloutState(repo), 'INVALID_INPUT', 'format 3 (a newer larch): refused, never half read', { message: /format/ });
});
