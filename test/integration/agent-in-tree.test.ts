/**
 * The agent ships in the tree (issue 16, Build 1 and must-show 1): a device provisioned at v1
 * (agent A1 at /usr/bin/larch) upgrades to v2 (agent A2); after the simulated reboot status
 * shows A2, A2 ran boot-check, and the rollback slot still boots with A1. A device provisioned
 * the old way (agent in S/larch/bin) moves to the new layout. The two agents are real Bun builds
 * that differ only in their version, built once for the file.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildAgent, larchOk, sh, tempDir } from '../helpers.ts';
import { REF, type Vendor, status, vendor } from '../device-helpers.ts';

const V1 = '9.1.0-a1';
const V2 = '9.2.0-a2';

const agents = tempDir(t, 'larch-agents-');
const [A1, A2] = await Promise.all([buildAgent(V1, join(agents, 'a1', 'larch')), buildAgent(V2, join(agents, 'a2', 'larch'))]);

// One vendor for the file: each release carrying a 110 MB agent costs seconds to compress.
const v = await vendor(t);
const provision = (v: Vendor, dev: string) => larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot', '--json']);
const simBoot = async (dev: string) => (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
/** The journal entries of boot-check's verdicts (mark-good, or boot with an outcome), oldest first. */
const verdicts = (dev: string) =>
  readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((e) => e.data?.outcome !== undefined);

t.test('larch --version prints package.json version; a build-time override gives another', async (t) => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8'));
  t.equal((await larchOk(['--version'])).stdout, `larch ${pkg.version}\n`, 'dist/larch: package.json version');
  t.equal(sh(`'${A1}' --version`), `larch ${V1}\n`, 'LARCH_BUILD_VERSION at build time');
  t.equal(sh(`'${A2}' --version`), `larch ${V2}\n`);
});

t.test('must-show 1: v1 with agent A1 upgrades to v2 with A2; A2 runs boot-check; the rollback slot boots with A1', async (t) => {
  const dev = join(tempDir(t), 'dev');
  await v.release(1, { agent: A1, delta: false });
  const p = await provision(v, dev);
  t.same(p.json.agent, { version: V1 }, 'provision took the agent from the commit it installed');

  let boot = await simBoot(dev);
  t.equal(boot.slot, 'A');
  t.equal(boot.agent_path, join(dev, 'larch/deploy/A/usr/bin/larch'), "the deployment's own agent ran boot-check");
  t.equal(boot.check.agent_version, V1);
  let s = await status(dev);
  t.same(s.booted.agent, { version: V1, path: join(dev, 'larch/deploy/A/usr/bin/larch'), in_tree: true }, 'status: booted agent A1');

  await v.release(2, { agent: A2, delta: false });
  await larchOk(['upgrade', '--sysroot', dev]);
  s = await status(dev);
  t.equal(s.pending.agent.version, V2, 'the staged deployment carries A2');
  t.equal(s.booted.agent.version, V1);

  boot = await simBoot(dev);
  t.equal(boot.slot, 'B');
  t.equal(boot.check.outcome, 'confirmed');
  t.equal(boot.check.agent_version, V2, 'A2 ran the boot-check of v2');
  t.equal(boot.agent_path, join(dev, 'larch/deploy/B/usr/bin/larch'));
  const confirmed = verdicts(dev).at(-1);
  t.match(confirmed, { event: 'mark-good', slot: 'B', version: '2', data: { agent_version: V2 } }, 'the journal says A2 marked v2 good');
  s = await status(dev);
  t.match(s.booted, { slot: 'B', version: '2', agent: { version: V2, in_tree: true } }, 'status after the reboot: agent A2');
  t.match(s.rollback, { slot: 'A', version: '1', agent: { version: V1, in_tree: true } }, 'the rollback slot keeps A1');
  t.match(s.last_boot, { slot: 'B', agent_version: V2 });
  const human = (await larchOk(['status', '--sysroot', dev])).stdout;
  t.match(human, `agent: larch ${V2} (${join(dev, 'larch/deploy/B/usr/bin/larch')})`, 'human status names the agent of each deployment');
  t.match(human, `agent: larch ${V1} (`);

  await larchOk(['rollback', '--sysroot', dev]);
  boot = await simBoot(dev);
  t.equal(boot.slot, 'A', 'rolled back to slot A');
  t.equal(boot.check.agent_version, V1, 'the rollback slot boots with A1: A1 ran its boot-check');
  t.match(verdicts(dev).at(-1), { slot: 'A', version: '1', data: { agent_version: V1 } });
  s = await status(dev);
  t.match(s.booted, { slot: 'A', agent: { version: V1 } });
  t.match(s.rollback, { slot: 'B', agent: { version: V2 } });
  t.equal(sh(`'${s.booted.agent.path}' --version`), `larch ${V1}\n`, 'agent.path is the binary itself');
});

t.test('a device provisioned the old way (agent in S/larch/bin) moves to agents in the tree', async (t) => {
  const dev = join(tempDir(t), 'dev');
  const legacy = join(dev, 'larch/bin/larch');
  await v.release(3, { delta: false });
  await provision(v, dev);
  // What `image build` does for a commit without an agent: the device's agent in S/larch/bin.
  sh(`mkdir -p '${join(dev, 'larch/bin')}' && cp '${A1}' '${legacy}'`);
  let boot = await simBoot(dev);
  t.equal(boot.agent_path, null, 'a deployment without an agent: boot-check not run by a tree agent');
  let s = await status(dev);
  t.same(s.booted.agent, { version: null, path: legacy, in_tree: false }, 'status: the legacy agent runs it');

  await v.release(4, { agent: A2, delta: false });
  await larchOk(['upgrade', '--sysroot', dev]);
  boot = await simBoot(dev);
  t.match(boot, { slot: 'B', check: { outcome: 'confirmed', agent_version: V2 } }, 'v4 booted with its own agent');
  t.ok(existsSync(legacy), 'the legacy agent stays while slot A (v3) lacks an agent of its own');

  await v.release(5, { agent: A2, delta: false });
  await larchOk(['upgrade', '--sysroot', dev]);
  boot = await simBoot(dev);
  t.match(boot, { slot: 'A', check: { outcome: 'confirmed', agent_version: V2 } });
  t.notOk(existsSync(legacy), 'every deployment carries its agent: the legacy one is removed');
  s = await status(dev);
  t.equal(s.rollback.agent.in_tree, true);
  const journal = readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8');
  t.match(journal, /"legacy_agent_removed":true/, 'the journal says so');

  // A commit without an agent stays valid: the device keeps the agent it runs.
  await v.release(6, { delta: false });
  await larchOk(['upgrade', '--sysroot', dev]);
  t.equal(sh(`'${legacy}' --version`), `larch ${V2}\n`, "the booted deployment's agent is kept in S/larch/bin for v6");
  s = await status(dev);
  t.same(s.pending.agent, { version: null, path: legacy, in_tree: false });
  boot = await simBoot(dev);
  t.match(boot, { slot: 'B', agent_path: null, check: { outcome: 'confirmed' } });
  t.ok(existsSync(legacy), 'kept while v6 lacks an agent');
});
