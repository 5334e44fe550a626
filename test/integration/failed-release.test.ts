/**
 * Fleet safety on the device's decisions through the Bun binary:
 * a release that fell back is remembered (S/larch/failed.json) and refused by upgrade, the
 * daemon's periodic checks and MQTT commands (failed-here) until a newer one comes or
 * `deploy --retry-failed`; mark-bad remembers too and needs --force for the only good slot;
 * status labels each deployment by what it is; --download-only records "downloaded"; the
 * downgrade check orders versions as well as timestamps (a 1970 build clock opens nothing) and
 * a newer commit not yet local is no downgrade; a head moved back below the booted release (a
 * held rollout) is reported older by check and leaves the daemon up to date, journaled once, with
 * no error; the daemon of a device provisioned with --mqtt-url uses that broker and journals why
 * it does not act.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, expectFail, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';
import { Repo } from '../../src/store/repo.ts';
import { type Received, recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';

const topics = (id: string) => ({ status: `larch/v1/device/${id}/status`, journal: `larch/v1/device/${id}/journal`, result: `larch/v1/device/${id}/cmd/result` });

/** A device provisioned with v1 over HTTP and booted once. */
async function device(t: Test, v: Vendor, name = 'device'): Promise<string> {
  const dev = join(tempDir(t), name);
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

const journal = (dev: string): any[] => readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

t.test('a release that fell back is never staged again by itself: upgrade, the daemon and commands refuse it; v3 is taken; deploy --retry-failed stages it', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const v2 = await v.release(2);
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'B', commit: v2 } });
  for (let i = 1; i <= 3; i++) t.match((await larchOk(['sim-boot', '--sysroot', dev, '--unhealthy', '--json'])).json, { slot: 'B', check: { healthy: false, outcome: 'retry' } }, `try ${i}: unhealthy`);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { fell_back: true, from: 'B' } }, 'fell back to v1');

  // Remembered in the sysroot, with the time and the failed checks; status shows it.
  const s = await status(dev);
  t.equal(s.failed_releases.length, 1, 'one failed release');
  const failed = s.failed_releases[0];
  t.match(failed, { commit: v2, version: '2', slot: 'B', failed_checks: ['forced unhealthy (sim-boot --unhealthy)'] });
  t.ok(Date.parse(failed.time) > 0, `a time: ${failed.time}`);
  t.same(JSON.parse(readFileSync(join(dev, 'larch/failed.json'), 'utf8')).releases.map((r: any) => r.commit), [v2], 'S/larch/failed.json');
  t.same(s.deployments.map((d: any) => [d.slot, d.label]), [['A', 'booted'], ['B', 'failed']], 'the failed slot stays listed, labelled failed');
  const human = (await larchOk(['status', '--sysroot', dev])).stdout;
  t.match(human, /\n {2}failed +slot B: version 2 /, 'human status lists the failed slot');
  t.match(human, `2 failed on this device at ${failed.time} (failed checks: forced unhealthy (sim-boot --unhealthy)); waiting for a newer release`);

  // upgrade refuses it: exit 14 (REFUSED), reason failed-here, the time and the checks.
  const up = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(up.code, 14, 'exit 14 (REFUSED), as a refused downgrade');
  t.match(up.json?.error, { code: 'REFUSED', hint: /--retry-failed/, data: { reason: 'failed-here', commit: v2, version: '2', time: failed.time, failed_checks: failed.failed_checks } });
  t.match(await status(dev), { pending: null, booted: { slot: 'A', version: '1' } });
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: true, update: { commit: v2, failed_here: { time: failed.time, failed_checks: failed.failed_checks } } }, 'check reports the update with its failure');

  // The daemon (policy apply, a check every 2 s) does not stage it; its status and journal say why.
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const tp = topics('dev-failed');
  const rec = await recorder(t, broker.url, [tp.status, tp.journal, tp.result]);
  const before = journal(dev).length;
  const d = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-failed', '--policy', 'apply', '--check-interval', '2', '--jitter', '0']);
  const skipped = await rec.waitFor((m) => m.topic === tp.journal && m.json?.data?.reason === 'failed-here', 30_000, 'the failed-here decision in the journal');
  t.match(skipped.json, { event: 'check', message: /not staging version 2: 2 failed on this device at .*; waiting for a newer release/, data: { commit: v2, time: failed.time } });
  const laterCheck = (after: number) => (m: Received) => m.topic === tp.journal && m.json?.event === 'check' && m.json.seq > after;
  const c1 = await rec.waitFor(laterCheck(skipped.json.seq), 20_000, 'a later periodic check');
  await rec.waitFor(laterCheck(c1.json.seq), 20_000, 'another periodic check');
  const sent = rec.on(tp.journal).map((m) => m.json).filter((e) => e.seq >= before);
  t.notOk(sent.some((e) => e.event === 'stage' || e.event === 'download'), 'nothing downloaded or staged over three checks');
  t.equal(sent.filter((e) => e.data?.reason === 'failed-here').length, 1, 'the same decision is journaled once');
  const st = await rec.waitFor((m) => m.topic === tp.status && m.json?.last_skip?.reason === 'failed-here', 10_000, 'last_skip in the status');
  t.match(st.json, { pending: null, version: '1', last_skip: { reason: 'failed-here', message: /waiting for a newer release/, time: String }, failed_releases: [{ commit: v2, version: '2', time: failed.time }] });

  // An announcement of it is not acted on either.
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const announced = await rec.waitFor((m) => m.topic === tp.journal && m.json?.event === 'announce' && m.json.data?.reason === 'failed-here', 30_000, 'the announcement not acted on');
  t.match(announced.json, { message: /^the announced version 2: not staging version 2: 2 failed on this device/, data: { commit: v2 } });

  // A signed upgrade command is refused too.
  const cmd = await larch(['command', '--mqtt', broker.url, '--device', 'dev-failed', '--sign-key', `${v.key}.key`, '--wait', '20', '--json', 'upgrade']);
  t.match(cmd.json?.result, { result: 'refused', reason: 'failed-here', cmd: 'upgrade' }, `command refused: ${cmd.stderr}`);
  t.equal((await status(dev)).pending, null, 'still nothing staged');

  // A newer release clears the way: the daemon stages v3.
  const v3 = await v.release(3);
  const staged = await rec.waitFor((m) => m.topic === tp.status && m.json?.pending?.version === '3', 60_000, 'v3 staged by the daemon');
  t.match(staged.json, { pending: { slot: 'B', commit: v3 } });
  await d.stop();

  // Slot B now holds v3: the failure is not in the slot's record, v2 is still refused.
  expectFail(t, await larch(['deploy', '2', '--sysroot', dev, '--json']), 'REFUSED', 'deploy of the failed v2');
  // Only --retry-failed stages it again.
  const retry = await larchOk(['deploy', '2', '--retry-failed', '--sysroot', dev, '--json']);
  t.match(retry.json, { result: 'staged', to: { slot: 'B', version: '2', commit: v2 } }, 'deploy --retry-failed stages it');
  t.same((await status(dev)).failed_releases, [], 'tried again: forgotten until it fails again');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, outcome: 'confirmed' } });
});

t.test('mark-bad remembers the release; the only good slot needs --force', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const only = await larch(['mark-bad', '--sysroot', dev, '--json']);
  expectFail(t, only, 'REFUSED', 'mark-bad of the only good slot');
  t.match(only.json?.error, { data: { reason: 'only-good-slot', slot: 'A' }, hint: /--force/ });
  t.match(await status(dev), { boot: { slots: { A: { good: true } } }, failed_releases: [] }, 'nothing changed');

  const v2 = await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.match((await larchOk(['mark-bad', '--slot', 'B', '--sysroot', dev, '--json'])).json, { slot: 'B' }, 'the staged slot: A stays good');
  const s = await status(dev);
  t.match(s.failed_releases, [{ commit: v2, version: '2', reason: 'marked-bad', slot: 'B' }]);
  t.equal(s.deployments.find((d: any) => d.slot === 'B').label, 'failed');
  t.match((await larch(['upgrade', '--sysroot', dev, '--json'])).json?.error?.data, { reason: 'failed-here', commit: v2 }, 'upgrade refuses a release marked bad');
  // --force does it (the device is then left to the bootloader's rescue rule).
  t.match((await larchOk(['mark-bad', '--force', '--sysroot', dev, '--json'])).json, { slot: 'A' });
  t.match(await status(dev), { boot: { slots: { A: { good: false } } } });
});

t.test('status labels deployments by what they are; --download-only records "downloaded"', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`]);
  // Before the first boot: the only deployment boots next, it is no rollback.
  let s = await status(dev);
  t.match(s, { booted: null, rollback: null, next_boot: 'A' });
  t.same(s.deployments.map((d: any) => [d.slot, d.label]), [['A', 'next-boot']]);
  let human = (await larchOk(['status', '--sysroot', dev])).stdout;
  t.match(human, /next boot slot A: version 1/);
  t.notMatch(human, /^ +rollback +slot/m);
  await larchOk(['sim-boot', '--sysroot', dev]);

  await v.release(2);
  t.match((await larchOk(['upgrade', '--download-only', '--sysroot', dev, '--json'])).json, { result: 'downloaded' });
  t.match((await status(dev)).last_update, { action: 'upgrade', result: 'downloaded', version: '2' }, 'a download is recorded as such');
  t.match((await larchOk(['status', '--sysroot', dev])).stdout, /last update .*: upgrade downloaded \(version 2\)/);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.same((await status(dev)).deployments.map((d: any) => [d.slot, d.label]), [['A', 'booted'], ['B', 'staged']]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.same((await status(dev)).deployments.map((d: any) => [d.slot, d.label]), [['A', 'rollback'], ['B', 'booted']]);

  // After rollback the slot that boots next is labelled so (not "rollback").
  await larchOk(['rollback', '--sysroot', dev]);
  s = await status(dev);
  t.match(s, { booted: { slot: 'B' }, next_boot: 'A', rollback: null, pending: null });
  t.same(s.deployments.map((d: any) => [d.slot, d.label]), [['A', 'next-boot'], ['B', 'booted']]);
  human = (await larchOk(['status', '--sysroot', dev])).stdout;
  t.match(human, /next boot slot A: version 1/);
  t.notMatch(human, /^ +rollback +slot/m);
});

t.test('downgrades are told by version as well as timestamp; a newer commit not yet local is no downgrade', async (t) => {
  // Commits dated 1970 (a build server without a clock): the versions still order them.
  const v = await vendor(t);
  await v.release(1, { timestamp: 0 });
  const dev = await device(t, v);
  await v.release(2, { timestamp: 0 });
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { version: '2' } }, 'same timestamp, newer version: an upgrade');
  await larchOk(['sim-boot', '--sysroot', dev]);
  const down = await larch(['deploy', '1', '--sysroot', dev, '--json']);
  expectFail(t, down, 'REFUSED', 'deploy of an older version with the same 1970 timestamp');
  t.match(down.json?.error?.data, { reason: 'downgrade', by: 'version' });
  t.match((await larchOk(['deploy', '1', '--allow-downgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { version: '1' } }, '--allow-downgrade still works');

  // deploy of a commit between the booted one and the head, never downloaded: newer, so staged.
  const w = await vendor(t);
  await w.release(1);
  const dev2 = await device(t, w, 'device2');
  const w2 = await w.release(2);
  await w.release(3);
  t.match((await larchOk(['deploy', '2', '--sysroot', dev2, '--json'])).json, { result: 'staged', to: { version: '2', commit: w2 } });
});

t.test('a head moved back below the booted release (a held rollout): check says older, the daemon stays up to date, journals it once, no error; a newer head is taken', async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const dev = await device(t, v);
  const v2 = await v.release(2);
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: true, booted: { version: '1' }, update: { commit: v2, version: '2', older: false } }, 'a newer head is not older');
  await larchOk(['upgrade', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match(await status(dev), { booted: { version: '2', good: true }, pending: null }, 'healthy on v2');

  // The vendor halts the rollout of v2: the ref's head back to v1, published again (a higher serial).
  const repo = await Repo.open(v.repo);
  const lock = await repo.lock();
  await repo.writeRef(REF, v1).finally(() => lock.release());
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: true, booted: { version: '2' }, update: { commit: v1, version: '1', older: true } }, 'check still shows the head, older');
  t.match((await larchOk(['check', '--sysroot', dev])).stdout, /^no update: the head of os\/stable is version 1 \(\w{12}\), older than the booted version 2 \(a held rollout or a rollback of the ref by the vendor\); larch upgrade refuses it without --allow-downgrade\n/);

  // The daemon (policy apply, a check every 2 s): periodic checks and an announcement of v1.
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const tp = topics('dev-held');
  const rec = await recorder(t, broker.url, [tp.status, tp.journal]);
  const before = journal(dev).length;
  const d = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-held', '--policy', 'apply', '--check-interval', '2', '--jitter', '0']);
  const held = await rec.waitFor((m) => m.topic === tp.journal && m.json?.data?.reason === 'head-older', 30_000, 'the head-older decision in the journal');
  t.match(held.json, { message: /the head of os\/stable, version 1, is older than the booted version 2 \(a held rollout\): staying on 2$/, data: { commit: v1, version: '1', booted_version: '2' } });
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const announced = await rec.waitFor((m) => m.topic === tp.journal && m.json?.event === 'announce' && m.json.data?.commit === v1, 30_000, 'the announcement of v1');
  const laterCheck = (after: number) => (m: Received) => m.topic === tp.journal && m.json?.event === 'check' && m.json.seq > after;
  const c1 = await rec.waitFor(laterCheck(announced.json.seq), 20_000, 'a periodic check after the announcement');
  const c2 = await rec.waitFor(laterCheck(c1.json.seq), 20_000, 'another periodic check');
  const st = await rec.waitFor((m) => m.topic === tp.status && Date.parse(m.json?.last_skip?.time ?? '') >= Date.parse(c2.json.time), 10_000, 'a status after the last check');
  t.match(st.json, { version: '2', pending: null, update: { state: 'up-to-date' }, last_error: null, last_skip: { reason: 'head-older', message: /older than the booted version 2 \(a held rollout\)/ } });
  const sent = journal(dev).slice(before);
  t.same(sent.filter((e) => e.event === 'error'), [], 'no error journaled');
  t.notOk(sent.some((e) => e.event === 'download' || e.event === 'stage'), 'nothing downloaded or staged');
  t.equal(sent.filter((e) => e.data?.reason === 'head-older').length, 1, 'journaled once for the head, whatever the checks and the announcement');
  t.equal((await status(dev)).last_update.result, 'ok', "last-update.json keeps the v2 upgrade's: no refused downgrade recorded");

  // A release newer than the booted one is taken as usual.
  const v3 = await v.release(3);
  const staged = await rec.waitFor((m) => m.topic === tp.status && m.json?.pending?.version === '3', 60_000, 'v3 staged by the daemon');
  t.match(staged.json, { pending: { slot: 'A', commit: v3 }, last_error: null });
  await d.stop();
});

t.test('the daemon of a device provisioned with --mqtt-url uses that broker, and says why it does not act', async (t) => {
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  // larch serve with --mqtt answers the device's chunk requests through the broker.
  const v = await vendor(t, { serveArgs: ['--mqtt', broker.url] });
  await v.release(1);
  const dev = join(tempDir(t), 'dev-mq');
  await larchOk(['provision', '--sysroot', dev, '--mqtt-url', broker.url, '--ref', REF, '--keys', `${v.key}.pub`]);
  const tp = topics('dev-mq');
  const rec = await recorder(t, broker.url, [tp.status, tp.journal]);
  // No --mqtt and no daemon.conf: the provisioned broker. Not booted through larch yet. No
  // periodic check (its skip would come first): the skip under test is the announcement's.
  startDaemon(t, dev, ['--device-id', 'dev-mq', '--policy', 'apply', '--check-interval', '0']);
  await rec.waitFor((m) => m.topic === tp.status && m.json?.online === true, 20_000, 'online through the provisioned broker');
  await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const skip = await rec.waitFor((m) => m.topic === tp.status && m.json?.last_skip?.reason === 'not-booted', 30_000, 'last_skip not-booted');
  t.match(skip.json, { pending: null, last_skip: { message: /has not booted through larch yet/ } });
  t.ok(journal(dev).some((e) => e.event === 'announce' && e.data?.reason === 'not-booted'), 'journaled with its reason');
  t.equal((await status(dev)).pending, null, 'nothing staged');
});
