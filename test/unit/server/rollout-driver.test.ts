/**
 * The rollout driver (src/server/rollout-driver.ts) over a real repo and a fleet view built by
 * hand: a due plan step, no halt while the view is not synced or too few decided, a halt to the
 * halted commit's parent (then summaryContents lists it), journal lines for steps, halts and the
 * resumes other processes record.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../../../src/store/repo.ts';
import { createCommit } from '../../../src/store/write-commit.ts';
import { type DeviceRecord, emptyRecord } from '../../../src/server/fleet/model.ts';
import { startRolloutDriver } from '../../../src/server/rollout-driver.ts';
import { readRolloutState, updateRolloutState } from '../../../src/server/rollout-state.ts';
import { applyChoices } from '../../../src/server/rollout-rules.ts';
import { summaryContents } from '../../../src/server/publish.ts';
import { tempDir } from '../../helpers.ts';

const REF = 'os/stable';

async function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'a'), 'a\n');
  const repo = await Repo.init(join(dir, 'repo'), 'archive');
  const commit = async (version: string) => (await createCommit(repo, { source: { tree }, branch: REF, version, subject: version, xattrs: false, owner: { uid: 0, gid: 0 }, timestamp: 1_700_000_000 + Number(version) })).commit;
  const v1 = await commit('1');
  writeFileSync(join(tree, 'a'), 'b\n');
  const v2 = await commit('2');
  return { dir, repo, v1, v2 };
}

/** A device of the ref that booted `commit` good, or fell back from it to `to`. */
function device(id: string, commit: string, version: string, outcome: 'good' | 'fell-back' | 'staged', to?: { commit: string; version: string }): DeviceRecord {
  const r = { ...emptyRecord(id), online: true, ref: REF, boot_state: 'good' as const };
  if (outcome === 'good') return { ...r, commit, version };
  if (outcome === 'staged') return { ...r, commit: to!.commit, version: to!.version, pending: { commit, version } };
  return { ...r, commit: to!.commit, version: to!.version, failed_releases: [{ commit, version, reason: 'tries-exhausted', time: null, failed_checks: ['10-services'] }] };
}

t.test('a plan step when due, a halt when the rule holds over a synced view, and the summary lists the last good release', async (t) => {
  const { dir, repo, v1, v2 } = await setup(t);
  const stateDir = join(dir, 'fleet');
  let now = new Date('2026-12-06T10:00:00.000Z');
  await updateRolloutState(repo, (s) => {
    s[REF] = { ...applyChoices(REF, undefined, { rollout: 10, over_s: 60, halt_rule: { failures_pct: 20, min_devices: 5 } }, now), commit: v2, version: '2' };
  });
  const devices = new Map<string, DeviceRecord>();
  const view = { devices, synced: false };
  const log: string[] = [];
  const driver = await startRolloutDriver(repo, { stateDir, fleet: async () => view, log: (l) => log.push(l), now: () => now });

  t.same(await driver.round(), [], 'nothing due at once');
  now = new Date(now.getTime() + 10_000);
  t.same(await driver.round(), [REF], 'a step due 10 s later (6 steps over 60 s)');
  t.equal((await readRolloutState(repo))[REF]!.rollout, 25, 'widened to 25%');
  t.same(await driver.round(), [], 'the next step is not due yet');

  // 2 of 4 decided fell back, 10 staged: too few decided.
  for (let i = 0; i < 2; i++) devices.set(`g${i}`, device(`g${i}`, v2, '2', 'good'));
  for (let i = 0; i < 2; i++) devices.set(`f${i}`, device(`f${i}`, v2, '2', 'fell-back', { commit: v1, version: '1' }));
  for (let i = 0; i < 10; i++) devices.set(`s${i}`, device(`s${i}`, v2, '2', 'staged', { commit: v1, version: '1' }));
  t.same(await driver.round(), [], '4 decided: below min_devices, no halt');
  devices.set('g2', device('g2', v2, '2', 'good'));
  t.same(await driver.round(), [], '2 of 5 fell back, but the view is not synced: never judged');
  view.synced = true;
  t.same(await driver.round(), [REF], 'synced: 40% of 5 > 20%: halt');
  const r = (await readRolloutState(repo))[REF]!;
  t.match(r.halted, { commit: v2, version: '2', rollout: 25, to: { commit: v1, version: '1' }, failures: 2, decided: 5, took: 15, failure_pct: 40 }, 'the halt names the parent as the last good release and the counts');
  t.match(log.join('\n'), /HALTED: version 2 at 25%: 2 of 5 .* announcing version 1/, 'said on the log');
  now = new Date(now.getTime() + 60_000);
  t.same(await driver.round(), [], 'halted: no step, no second halt');
  t.equal((await readRolloutState(repo))[REF]!.rollout, 25, 'the plan is frozen');
  const listed = await summaryContents(repo, []);
  t.equal(listed.refs[REF]!.commit, v1, 'the summary lists v1 while v2 is the head');
  t.equal(listed.refs[REF]!.version, '1');
  t.equal(await repo.readRef(REF), v2, 'the ref is untouched');

  // A resume by `larch announce` (another process): journaled by the driver.
  await updateRolloutState(repo, (s) => {
    s[REF] = applyChoices(REF, s[REF], { resume: true }, now);
  });
  t.same(await driver.round(), [], 'resumed over the same evidence: no halt again');
  const events = readFileSync(join(stateDir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.same(events.map((e) => e.event), ['step', 'halt', 'resume'], 'events.jsonl: the step, the halt, the resume');
  t.ok(driver.progress(REF).length >= 2, 'progress samples kept for the chart');
  t.equal((await summaryContents(repo, [])).refs[REF]!.commit, v2, 'resumed: v2 is listed again');
});
