/** The rollout state of a vendor repo (R/rollout.json): recorded per ref, 100 when unset, a damaged file refused naming it. */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rejectsCode } from '../../helpers.ts';
import { readRolloutState, rolloutOf, writeRollout } from '../../../src/server/rollout-state.ts';
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
