/**
 * Mistakes in the release pipeline cannot block or widen a rollout (through the Bun
 * binary). An unsigned delta is not made by accident and never offered to devices (publish and
 * `serve --sign-key` leave it out and say so); the rollout percentage of a ref is state of the
 * repo, so a restart of `serve --sign-key --mqtt` re-announces what was announced.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, vendor } from '../device-helpers.ts';
import { BIN, larch, larchOk, tempDir } from '../helpers.ts';
import { type Recorder, recorder, startBroker } from '../mqtt-helpers.ts';
import { decodeSummary } from '../../src/protocol/summary.ts';

/** Vendor with v1 and v2 committed and published, and no delta yet. */
async function twoReleases(t: Test): Promise<Vendor> {
  const v = await vendor(t);
  await v.release(1);
  await v.release(2, { delta: false });
  return v;
}

const generate = (v: Vendor, extra: string[]) => larch(['delta', 'generate', '--repo', v.repo, '--from', v.commits[0], '--to', v.commits[1], '--json', ...extra]);

t.test('delta generate refuses to make an unsigned delta unless --unsigned is given', async (t) => {
  const v = await twoReleases(t);
  const none = await generate(v, []);
  t.equal(none.code, 2, 'no --sign-key and no --unsigned: a usage error (exit 2)');
  t.equal(none.json?.error?.code, 'USAGE');
  t.match(none.json?.error?.message, /--sign-key K \| --unsigned/, 'the message shows the usage');
  t.notOk(existsSync(join(v.repo, 'deltas')), 'no delta written');
  const both = await generate(v, ['--unsigned', '--sign-key', `${v.key}.key`]);
  t.equal(both.json?.error?.code, 'USAGE', '--sign-key and --unsigned together: a usage error');
  const unsigned = await generate(v, ['--unsigned']);
  t.equal(unsigned.code, 0, '--unsigned makes one on purpose');
  t.same(unsigned.json.signed_by, [], 'unsigned');
});

t.test('publish leaves unsigned and untrusted deltas out, says so, and devices fetch objects', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  await v.release(2, { delta: false });
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v.commits[0], '--to', v.commits[1], '--unsigned']);
  const other = join(v.dir, 'other');
  await larchOk(['keygen', '--out', other]);
  await larchOk(['delta', 'generate', '--repo', v.repo, '--to', v.commits[1], '--sign-key', `${other}.key`]);
  const pub = await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--json']);
  t.same(pub.json.deltas, [], 'neither delta is listed');
  const reasons = Object.fromEntries(pub.json.skipped.map((s: { name: string; reason: string }) => [s.name.split('-')[0], s.reason]));
  t.same(reasons, { [v.commits[0]]: 'unsigned', empty: 'untrusted' }, 'skipped names each delta with its reason');
  const human = await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  t.match(human.stderr, new RegExp(`delta ${v.commits[0]}-${v.commits[1]} left out \\(unsigned\\)`), 'the human output says the unsigned delta was left out');
  t.match(human.stderr, /left out \(untrusted\)/, 'and the untrusted one');
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: true, update: { version: '2', via: 'objects' } }, 'devices are offered the objects');
  // Once the delta is signed by the vendor key, it is listed again.
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v.commits[0], '--to', v.commits[1], '--sign-key', `${v.key}.key`]);
  t.equal((await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--json'])).json.deltas.length, 1, 'a signed delta is listed');
});

/** `larch serve` with these arguments; resolves with the process once it said `until` on stderr. */
function serveUntil(t: Test, args: string[], until: RegExp): Promise<{ child: ChildProcess; said: () => string }> {
  const child = spawn(BIN, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let said = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`larch serve did not say ${until} within 30 s: ${said}`)), 30_000);
    child.stderr!.on('data', (d) => {
      said += d;
      if (!until.test(said)) return;
      clearTimeout(timer);
      resolve({ child, said: () => said });
    });
    child.on('exit', (code) => reject(new Error(`larch serve exited ${code}: ${said}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

t.test('serve --sign-key leaves an unsigned delta out of the summary it publishes', async (t) => {
  const v = await twoReleases(t);
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v.commits[0], '--to', v.commits[1], '--unsigned']);
  const s = await serveUntil(t, ['--repo', v.repo, '--log', join(v.dir, 'auto.log'), '--sign-key', `${v.key}.key`, '--watch-interval', '200'], /left out/);
  t.match(s.said(), new RegExp(`delta ${v.commits[0]}-${v.commits[1]} left out \\(unsigned\\)`), 'it says the unsigned delta was left out');
  const summary = decodeSummary(readFileSync(join(v.repo, 'summary')));
  t.same(summary.deltas, [], 'the summary lists no delta');
  t.same(Object.keys(summary.refs), [REF], 'and the ref');
  await stop(s.child);
});

t.test('a restart of serve --sign-key --mqtt re-announces the rollout that was announced', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const topic = `larch/v1/announce/${REF}`;
  /** The rollouts announced while the recorder listened (not the retained one it found). */
  const rollouts = (rec: Recorder) => rec.messages.filter((m) => m.topic === topic && !m.retain).map((m) => JSON.parse(m.json.body).rollout as number);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '5']);
  t.match(JSON.parse(readFileSync(join(v.repo, 'rollout.json'), 'utf8')), { refs: { [REF]: { rollout: 5 } } }, 'the rollout is recorded in R/rollout.json');

  const serveArgs = ['--repo', v.repo, '--log', join(v.dir, 'auto.log'), '--mqtt', broker.url, '--sign-key', `${v.key}.key`, '--watch-interval', '200'];
  const rec = await recorder(t, broker.url, [topic]);
  let s = await serveUntil(t, serveArgs, /announced/);
  await rec.waitFor(() => rollouts(rec).length === 1, 20_000, 'the announcement at start');
  t.same(rollouts(rec), [5], 'serve announces the canary at 5%, not 100%');
  await stop(s.child);

  // A restart, and a new release while the canary runs: both announced at the ref's rollout.
  s = await serveUntil(t, serveArgs, /announced/);
  await rec.waitFor(() => rollouts(rec).length === 2, 20_000, 'the announcement after a restart');
  const v2 = await v.release(2);
  await rec.waitFor((m) => m.topic === topic && !m.retain && JSON.parse(m.json.body).commit === v2, 20_000, 'the announcement of v2');
  t.same([...new Set(rollouts(rec))], [5], `a restart and a new commit keep 5% (${rollouts(rec).join(' ')})`);
  await stop(s.child);

  // Only an explicit --rollout widens it.
  const before = rollouts(rec).length;
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '50']);
  s = await serveUntil(t, serveArgs, /announced/);
  await rec.waitFor(() => rollouts(rec).length === before + 2, 20_000, 'the announcement after the widening');
  t.same(rollouts(rec).slice(before), [50, 50], 'announce --rollout 50 widened it, and the restart kept 50%');
  await stop(s.child);
});
