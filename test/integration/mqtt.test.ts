/**
 * MQTT with a real Mosquitto on loopback, devices as sysroot directories, `larch daemon` as the
 * Bun binary: status reports in order and the last will on kill -9; the journal in order and
 * not resent after a restart; signed commands (unsigned, wrongly signed, tampered, replayed
 * and stale ones refused and reported, a valid one run once); announcements run the policy
 * (apply stages over HTTP, check only reports); phased rollout; broker login.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, makeTree, startServe, status, vendor } from '../device-helpers.ts';
import { BIN, larch, larchOk, tempDir, waitUntil } from '../helpers.ts';
import { type Broker, type Received, freePort, makePki, recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { encodeSigned, formatCommand } from '../../src/mqtt/format.ts';
import { inRollout, rolloutPosition } from '../../src/mqtt/rollout.ts';
import { readSecretKey } from '../../src/store/sign.ts';

const statusTopic = (id: string) => `larch/v1/device/${id}/status`;
const journalTopic = (id: string) => `larch/v1/device/${id}/journal`;
const resultTopic = (id: string) => `larch/v1/device/${id}/cmd/result`;

/** A device provisioned with v1 and booted once (so its booted slot is known). */
async function device(t: Test, v: Vendor, name: string): Promise<string> {
  const dev = join(tempDir(t), name);
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

async function setup(t: Test): Promise<{ v: Vendor; broker: Broker }> {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  return { v, broker };
}

const online = (id: string) => (m: Received) => m.topic === statusTopic(id) && m.json?.online === true;

t.test('status in order, the journal in order, and the last will on kill -9', async (t) => {
  const { v, broker } = await setup(t);
  const dev = await device(t, v, 'dev-a');
  const rec = await recorder(t, broker.url, [statusTopic('dev-a'), journalTopic('dev-a')]);
  let d = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-a', '--policy', 'check']);
  const first = await rec.waitFor(online('dev-a'), 20_000, 'the first status');
  t.match(first.json, { format: 1, online: true, device: 'dev-a', version: '1', slot: 'A', boot: { state: 'good' }, pending: null, policy: 'check', pinned: false });
  t.ok(first.retain === false || first.retain === true, 'status received');

  // Changes made by other larch commands show up, in order.
  await larchOk(['pin', '--sysroot', dev]);
  const pinnedMsg = await rec.waitFor((m) => m.topic === statusTopic('dev-a') && m.json?.pinned === true, 10_000, 'pinned status');
  await larchOk(['unpin', '--sysroot', dev]);
  const last = await rec.waitFor((m) => m.topic === statusTopic('dev-a') && m.json?.pinned === false && m.json.seq > pinnedMsg.json.seq, 10_000, 'unpinned status');
  const statuses = rec.on(statusTopic('dev-a')).map((m) => m.json);
  const seqs = statuses.map((s) => s.seq);
  t.same(seqs, [...seqs].sort((a, b) => a - b), `status seq increases: ${seqs.join(' ')}`);
  t.equal(new Set(seqs).size, seqs.length, 'no status twice');
  const pinned = statuses.map((s) => s.pinned);
  t.ok(pinned.indexOf(true) > 0 && pinned.lastIndexOf(false) > pinned.indexOf(true), `pinned goes false, true, false in order: ${pinned.join(' ')}`);
  t.ok(last.json.seq > first.json.seq, 'a later status');

  // The journal: every entry, in order, seq 0..n-1.
  const journalLines = () => readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  await rec.waitFor((m) => m.topic === journalTopic('dev-a') && m.json?.seq === journalLines().length - 1, 10_000, 'the last journal entry');
  const sent = rec.on(journalTopic('dev-a')).map((m) => m.json);
  t.same(sent.map((e) => e.seq), journalLines().map((_, i) => i), 'journal entries sent once each, in order');
  t.same(sent.map((e) => e.event), journalLines().map((e) => e.event), 'the same events as the journal file');
  t.match(sent.at(-1), { event: 'pin', device: 'dev-a' });

  // kill -9 (once the daemon has recorded what the broker acknowledged: a kill between the
  // acknowledgement and the cursor write sends that entry again, with the same seq).
  const cursor = join(dev, 'larch/mqtt/journal-cursor.json');
  await waitUntil(() => existsSync(cursor) && JSON.parse(readFileSync(cursor, 'utf8')).seq === journalLines().length, 5000, 'the journal cursor');
  await d.kill9();
  const will = await rec.waitFor((m) => m.topic === statusTopic('dev-a') && m.json?.online === false, 10_000, 'the last will');
  t.same(will.json, { format: 1, online: false, device: 'dev-a' }, 'the last will says offline');
  const late = await recorder(t, broker.url, [statusTopic('dev-a')]);
  const retained = await late.waitFor((m) => m.topic === statusTopic('dev-a'), 5000, 'the retained status');
  t.equal(retained.json.online, false, 'a new subscriber sees the device offline (retained will)');

  // Restarted: online again; the journal goes on from where it was, nothing resent.
  const before = rec.on(journalTopic('dev-a')).length;
  d = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-a', '--policy', 'check']);
  await rec.waitFor((m) => online('dev-a')(m) && m.json.seq >= 1 && m.json.started !== first.json.started, 20_000, 'online after restart');
  await larchOk(['pin', '--sysroot', dev]);
  // New entries only (the pin, and the daemon's own check at start, in either order: the check
  // may finish after the pin): none of before the kill again.
  const isNew = (event: string) => (m: { topic: string; json?: { event?: string; seq?: number } }) => m.topic === journalTopic('dev-a') && m.json?.event === event && (m.json.seq ?? -1) >= before;
  await rec.waitFor(isNew('pin'), 10_000, 'the pin journal entry');
  await rec.waitFor(isNew('check'), 20_000, "the daemon's check journal entry");
  const next = await rec.waitFor((m) => m.topic === journalTopic('dev-a') && m.json?.seq === journalLines().length - 1, 10_000, 'the new journal entry');
  const resumed = rec.on(journalTopic('dev-a')).slice(before).map((m) => m.json.seq);
  t.same(resumed, Array.from({ length: next.json.seq - before + 1 }, (_, i) => before + i), 'only new entries were sent after the restart, in order');
  t.ok(rec.on(journalTopic('dev-a')).slice(before).some((m) => m.json.event === 'pin'), 'the pin is among them');
  // A clean stop publishes online false with the full status.
  await d.stop();
  const stopped = await rec.waitFor((m) => m.topic === statusTopic('dev-a') && m.json?.online === false && m.json.version === '1', 10_000, 'the stop status');
  t.match(stopped.json, { online: false, device: 'dev-a', version: '1', pinned: true });
});

t.test('signed commands: refusals are reported, a valid command runs once', async (t) => {
  const { v, broker } = await setup(t);
  const dev = await device(t, v, 'dev-b');
  const rogue = join(tempDir(t), 'rogue');
  await larchOk(['keygen', '--out', rogue]);
  const rec = await recorder(t, broker.url, [statusTopic('dev-b'), resultTopic('dev-b')]);
  const d1 = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-b', '--policy', 'none']);
  await rec.waitFor(online('dev-b'), 20_000, 'online');
  const base = ['command', '--mqtt', broker.url, '--device', 'dev-b', '--wait', '20', '--json'];

  // A valid check runs and answers.
  const ok = await larch([...base, '--sign-key', `${v.key}.key`, '--nonce', 'nonce-valid-000001', 'check']);
  t.equal(ok.code, 0, `valid command exit 0: ${ok.stderr}`);
  t.match(ok.json.result, { result: 'ok', cmd: 'check', nonce: 'nonce-valid-000001', output: { available: false, booted: { version: '1' } } });

  // Replayed: the same nonce again (a new signature, same nonce), then the identical message bytes.
  const replay = await larch([...base, '--sign-key', `${v.key}.key`, '--nonce', 'nonce-valid-000001', 'check']);
  t.equal(replay.code, 4, 'replay refused: exit 4');
  t.match(replay.json.result, { result: 'refused', reason: 'replayed', nonce: 'nonce-valid-000001' });

  // Wrongly signed: a key the device does not trust.
  const wrong = await larch([...base, '--sign-key', `${rogue}.key`, 'upgrade']);
  t.match(wrong.json.result, { result: 'refused', reason: 'untrusted', cmd: 'upgrade' });

  // Stale: issued an hour ago, valid for a minute.
  const stale = await larch([...base, '--sign-key', `${v.key}.key`, '--issued', String(Math.floor(Date.now() / 1000) - 3600), '--expires-in', '60', 'rollback']);
  t.match(stale.json.result, { result: 'refused', reason: 'stale', cmd: 'rollback' });

  // Unsigned and tampered messages, published by hand.
  const key = await readSecretKey(`${v.key}.key`);
  const now = Math.floor(Date.now() / 1000);
  const body = (nonce: string) => formatCommand({ cmd: 'reboot', device: 'dev-b', nonce, issued: now, expires: now + 300 });
  await rec.publish('larch/v1/device/dev-b/cmd', JSON.stringify({ body: body('nonce-unsigned-0001'), sigs: [] }));
  const unsigned = await rec.waitFor((m) => m.topic === resultTopic('dev-b') && m.json?.nonce === 'nonce-unsigned-0001', 10_000, 'unsigned result');
  t.match(unsigned.json, { result: 'refused', reason: 'unsigned', cmd: 'reboot' });
  const signed = JSON.parse(Buffer.from(await encodeSigned('command', body('nonce-tampered-0001'), [key])).toString());
  signed.body = signed.body.replace('"reboot"', '"upgrade"');
  await rec.publish('larch/v1/device/dev-b/cmd', JSON.stringify(signed));
  const tampered = await rec.waitFor((m) => m.topic === resultTopic('dev-b') && m.json?.nonce === 'nonce-tampered-0001', 10_000, 'tampered result');
  t.match(tampered.json, { result: 'refused', reason: 'invalid', cmd: 'upgrade' });
  // An announcement signature is not a command signature (domain separation).
  const asAnnounce = JSON.parse(Buffer.from(await encodeSigned('announce', body('nonce-domain-00001'), [key])).toString());
  await rec.publish('larch/v1/device/dev-b/cmd', JSON.stringify(asAnnounce));
  t.match((await rec.waitFor((m) => m.topic === resultTopic('dev-b') && m.json?.nonce === 'nonce-domain-00001', 10_000, 'domain result')).json, { result: 'refused', reason: 'invalid' });
  // For another device.
  const other = formatCommand({ cmd: 'check', device: 'dev-other', nonce: 'nonce-otherdev-001', issued: now, expires: now + 300 });
  await rec.publish('larch/v1/device/dev-b/cmd', await encodeSigned('command', other, [key]));
  t.match((await rec.waitFor((m) => m.topic === resultTopic('dev-b') && m.json?.nonce === 'nonce-otherdev-001', 10_000, 'other device result')).json, { result: 'refused', reason: 'wrong-device' });

  // Nothing refused changed the device; the journal has every refusal with its reason.
  const s = await status(dev);
  t.match(s, { booted: { slot: 'A', version: '1' }, pending: null });
  t.notOk(existsSync(join(dev, 'larch/daemon/reboot-requested.json')), 'no reboot recorded');
  const journal = readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.event === 'command');
  t.same(journal.map((e) => e.data.reason ?? e.data.result), ['ok', 'replayed', 'untrusted', 'stale', 'unsigned', 'invalid', 'invalid', 'wrong-device'], 'journal: each command and its outcome, in order');
  t.equal(journal.filter((e) => e.data.nonce === 'nonce-valid-000001' && e.data.result === 'ok').length, 1, 'the valid command ran once');

  // The nonce log survives a restart: the replay is still refused; a valid reboot is recorded.
  const results = rec.on(resultTopic('dev-b')).length;
  await d1.stop();
  const d2 = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-b', '--policy', 'none']);
  await rec.waitFor((m) => online('dev-b')(m) && m.json.seq === 1 && m.json.started !== undefined && m.json.time > new Date(Date.now() - 20000).toISOString() && d2.child.pid !== undefined, 20_000, 'online again');
  const again = await larch([...base, '--sign-key', `${v.key}.key`, '--nonce', 'nonce-valid-000001', 'check']);
  t.match(again.json?.result, { result: 'refused', reason: 'replayed' }, `replay refused after a restart too: ${again.stderr}`);
  const reboot = await larch([...base, '--sign-key', `${v.key}.key`, 'reboot']);
  t.match(reboot.json.result, { result: 'ok', cmd: 'reboot' });
  await waitUntil(() => existsSync(join(dev, 'larch/daemon/reboot-requested.json')), 5000);
  t.ok(rec.on(resultTopic('dev-b')).length >= results + 2, 'results published');
});

t.test('an announcement runs the policy: apply stages over HTTP, check only reports', async (t) => {
  const { v, broker } = await setup(t);
  const applyDev = await device(t, v, 'dev-apply');
  const checkDev = await device(t, v, 'dev-check');
  const rec = await recorder(t, broker.url, [statusTopic('dev-apply'), statusTopic('dev-check')]);
  startDaemon(t, applyDev, ['--mqtt', broker.url, '--device-id', 'dev-apply', '--policy', 'apply']);
  startDaemon(t, checkDev, ['--mqtt', broker.url, '--device-id', 'dev-check', '--policy', 'check']);
  await rec.waitFor(online('dev-apply'), 20_000, 'apply online');
  await rec.waitFor(online('dev-check'), 20_000, 'check online');

  const v2 = await v.release(2);
  const ann = await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--json']);
  t.match(ann.json.announcements, [{ ref: REF, commit: v2, version: '2', rollout: 100, topic: `larch/v1/announce/${REF}` }]);

  const staged = await rec.waitFor((m) => m.topic === statusTopic('dev-apply') && m.json?.pending?.version === '2', 60_000, 'the staged update in the retained status');
  t.match(staged.json, { online: true, version: '1', slot: 'A', pending: { slot: 'B', version: '2', commit: v2, good: false }, update: { announced: { commit: v2, version: '2', rollout: 100, selected: true } } });
  await rec.waitFor((m) => m.topic === statusTopic('dev-apply') && m.json?.update?.state === 'staged', 10_000, 'state staged');
  t.match(await status(applyDev), { booted: { version: '1' }, pending: { version: '2', commit: v2 } }, 'status --json shows pending.version');
  const reported = await rec.waitFor((m) => m.topic === statusTopic('dev-check') && m.json?.update?.state === 'available', 30_000, 'check reports the update');
  t.match(reported.json, { pending: null, version: '1', update: { announced: { version: '2' } } });
  t.equal((await status(checkDev)).pending, null, 'policy check stages nothing');

  // The device boots the staged update; its status says so.
  await larchOk(['sim-boot', '--sysroot', applyDev]);
  const booted = await rec.waitFor((m) => m.topic === statusTopic('dev-apply') && m.json?.version === '2' && m.json.boot.state === 'good', 10_000, 'booted v2');
  t.match(booted.json, { slot: 'B', pending: null, rollback: { version: '1' } });

  // An unsigned announcement (a rogue publisher on the broker) changes nothing.
  await rec.publish(`larch/v1/announce/${REF}`, JSON.stringify({ body: JSON.stringify({ type: 'announce', format: 1, ref: REF, commit: 'a'.repeat(64), version: '666', timestamp: 1, summary_serial: 1, rollout: 100, created: 9_999_999_999 }), sigs: [] }));
  await waitUntil(() => readFileSync(join(checkDev, 'larch/journal.jsonl'), 'utf8').includes('refused an announcement'), 10_000, 'refusal journaled');
  t.equal((await status(checkDev)).pending, null);
});

t.test('an announced update that fails is tried again: with the objects away it fails, once back it stages', async (t) => {
  const { v, broker } = await setup(t);
  const dev = await device(t, v, 'dev-retry');
  const metricsPort = await freePort();
  writeFileSync(join(dev, 'larch/daemon.conf'), `retry_interval_s = 2\nmetrics_listen = "127.0.0.1:${metricsPort}"\n`);
  const rec = await recorder(t, broker.url, [statusTopic('dev-retry')]);
  startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-retry', '--policy', 'apply']);
  await rec.waitFor(online('dev-retry'), 20_000, 'online');
  await v.release(2);
  // The summary names v2, but neither its objects nor its deltas can be fetched (HTTP 404).
  for (const dir of ['objects', 'deltas']) renameSync(join(v.repo, dir), join(v.repo, `${dir}.away`));
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url]);
  const failed = await rec.waitFor((m) => m.topic === statusTopic('dev-retry') && m.json?.update?.state === 'error' && m.json.update.retry !== null, 60_000, 'the failure with a retry planned');
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  for (const dir of ['objects', 'deltas']) renameSync(join(v.repo, `${dir}.away`), join(v.repo, dir));
  t.match(failed.json, { pending: null, update: { retry: { failures: 1 } }, last_error: { code: String } }, `failed, reported with the error (${failed.json.last_error?.message}) and the retry`);
  const retryInMs = Date.parse(failed.json.update.retry.at) - Date.parse(failed.json.time);
  // Planned 1-2 s after the failure (retry_interval_s 2, half to all of it); the status that says so is built a moment later.
  t.ok(retryInMs > 0 && retryInMs <= 2100, `the retry is planned at most 2 s later: ${retryInMs} ms after the status`);
  t.match(metrics, /^larch_update_retry_failures [12]$/m, '/metrics shows the failed attempts');
  t.match(metrics, /^larch_update_retry_timestamp_seconds [1-9]\d{9}$/m, '/metrics shows when the next one runs');
  const staged = await rec.waitFor((m) => m.topic === statusTopic('dev-retry') && m.json?.update?.state === 'staged', 60_000, 'staged on a later attempt');
  t.match(staged.json, { pending: { version: '2' }, update: { retry: null } }, 'staged without a new announcement; no retry left');
  t.match(await status(dev), { pending: { version: '2' } });
});

t.test('serve --sign-key --mqtt publishes and announces each new commit and delta by itself', async (t) => {
  const { v, broker } = await setup(t);
  const dev = await device(t, v, 'dev-auto');
  const rec = await recorder(t, broker.url, ['larch/v1/announce/#']);
  const announced = () => rec.messages.filter((m) => m.topic === `larch/v1/announce/${REF}`).map((m) => JSON.parse(m.json.body));
  const serve = spawn(BIN, ['serve', '--repo', v.repo, '--port', '0', '--log', join(v.dir, 'auto.log'), '--mqtt', broker.url, '--sign-key', `${v.key}.key`, '--rollout', '40', '--watch-interval', '200'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  serve.stderr!.on('data', (d) => (said += d));
  t.teardown(() => {
    serve.kill('SIGKILL');
  });
  await rec.waitFor((m) => m.topic === `larch/v1/announce/${REF}`, 20_000, 'the announcement of v1 at start');
  t.match(announced()[0], { ref: REF, commit: v.commits[0], version: '1', rollout: 40 }, 'v1 announced at start, with --rollout');

  // A commit alone (no publish, no delta): published and announced within a round or two.
  const tree = join(v.dir, 'v2');
  makeTree(tree, 2);
  const c = await larchOk(['commit', '--repo', v.repo, '-b', REF, '--tree', tree, '--version', '2', '--sign-key', `${v.key}.key`, '--owner', '0:0', '--json']);
  const v2 = c.json.commit as string;
  await rec.waitFor((m) => m.topic === `larch/v1/announce/${REF}` && JSON.parse(m.json.body).commit === v2, 20_000, 'the announcement of v2');
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: true, update: { version: '2', via: 'objects' } }, 'the summary was published: v2 on offer, no delta yet');

  // The delta, once complete: the summary lists it and v2 is announced again.
  const before = announced().length;
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v.commits[0], '--to', v2, '--sign-key', `${v.key}.key`]);
  await waitUntil(() => announced().length > before, 20_000, 'v2 announced again with its delta');
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: true, update: { version: '2', via: 'delta' } }, 'the delta is on offer');
  const serials = announced().map((a) => a.summary_serial);
  t.same(serials, [...serials].sort((a, b) => a - b), `announcements follow the summary serials: ${serials.join(' ')}`);

  // Nothing changes: nothing more is announced. The marker, a commit on another ref, is announced
  // by a later round; that round compares REF's listing too, so an unchanged REF announced again
  // by any round up to it would arrive before the marker.
  const settled = announced().length;
  const marker = 'os/marker';
  await larchOk(['commit', '--repo', v.repo, '-b', marker, '--tree', tree, '--version', '9', '--sign-key', `${v.key}.key`, '--owner', '0:0']);
  await rec.waitFor((m) => m.topic === `larch/v1/announce/${marker}`, 20_000, 'the announcement of the marker ref');
  t.equal(announced().length, settled, `no announcement of ${REF} without a change`);
  t.same(rec.messages.filter((m) => m.topic === `larch/v1/announce/${marker}`).map((m) => JSON.parse(m.json.body).ref), [marker], 'the marker announced once, alone');
  // At start the summary of v1 was current: not published again; then once per change.
  t.equal((said.match(/published summary/g) ?? []).length, 3, `published three times (commit, delta, marker): ${said}`);
});

t.test('phased rollout: 25% takes exactly the devices placed below 25, then 100% takes all', async (t) => {
  // The pure decision on 40 ids: exactly the ones whose stable position is below 25.
  const ids = Array.from({ length: 40 }, (_, i) => `gw-${String(i).padStart(4, '0')}`);
  const positions = ids.map(rolloutPosition);
  t.same(ids.filter((id) => inRollout(id, 25)), ids.filter((_, i) => positions[i] < 25), 'the 40 ids that act are those under 25');
  t.same(ids.map(rolloutPosition), positions, 'positions are stable');

  const { v, broker } = await setup(t);
  // Two devices under 25 and two above, picked by the same function.
  const early = ids.filter((id) => rolloutPosition(id) < 25).slice(0, 2);
  const late = ids.filter((id) => rolloutPosition(id) >= 25).slice(0, 2);
  const fleet = [...early, ...late];
  const devs = await Promise.all(fleet.map((id) => device(t, v, id)));
  const rec = await recorder(t, broker.url, fleet.map(statusTopic));
  fleet.forEach((id, i) => startDaemon(t, devs[i], ['--mqtt', broker.url, '--device-id', id, '--policy', 'apply']));
  for (const id of fleet) await rec.waitFor(online(id), 20_000, `${id} online`);

  const v2 = await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '25']);
  for (const id of early) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.update?.state === 'staged', 60_000, `${id} staged`);
  for (const id of late) {
    const w = await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.update?.state === 'waiting-rollout', 30_000, `${id} waits`);
    t.match(w.json.update.announced, { rollout: 25, selected: false }, `${id} (position ${rolloutPosition(id)}) waits`);
  }
  const pend = await Promise.all(devs.map(async (d) => (await status(d)).pending?.version ?? null));
  t.same(pend, ['2', '2', null, null], 'only the early devices staged v2');

  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '100']);
  for (const id of late) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.pending?.commit === v2, 60_000, `${id} staged at 100%`);
  t.same(await Promise.all(devs.map(async (d) => (await status(d)).pending?.version ?? null)), ['2', '2', '2', '2'], 'at 100% every device staged v2');
});

t.test('broker login from daemon.conf and its drop-ins; a wrong password is refused', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'), { users: { fleet: 's3cret-device', vendor: 'vendor-pw' } });
  const dev = await device(t, v, 'dev-auth');
  mkdirSync(join(dev, 'larch/daemon.conf.d'), { recursive: true });
  writeFileSync(join(dev, 'larch/password'), 's3cret-device\n');
  writeFileSync(join(dev, 'larch/daemon.conf'), `# fleet settings\npolicy = "none"\nmqtt_url = "${broker.url}"\ndevice_id = "dev-auth"\nmqtt_username = "fleet"\n`);
  writeFileSync(join(dev, 'larch/daemon.conf.d/50-local.conf'), `mqtt_password_file = "${join(dev, 'larch/password')}"\npolicy = "check"  # a drop-in overrides\n`);
  const rec = await recorder(t, broker.url, [statusTopic('dev-auth')], { username: 'vendor', password: 'vendor-pw' });
  startDaemon(t, dev, []);
  const s = await rec.waitFor(online('dev-auth'), 20_000, 'online with a password');
  t.equal(s.json.policy, 'check', 'the drop-in set the policy');
  const pw = join(tempDir(t), 'pw');
  writeFileSync(pw, 'wrong\n');
  const bad = await larch(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--mqtt-username', 'vendor', '--mqtt-password-file', pw, '--json']);
  t.equal(bad.code, 9, 'a wrong password: exit 9');
  t.equal(bad.json?.error?.code, 'IO');
  writeFileSync(pw, 'vendor-pw\n');
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--mqtt-username', 'vendor', '--mqtt-password-file', pw]);
  // A bad config line is refused with its file and line.
  writeFileSync(join(dev, 'larch/daemon.conf.d/60-bad.conf'), 'policy = "sometimes"\n');
  const r = await larch(['daemon', '--sysroot', dev, '--json']);
  t.equal(r.json?.error?.code, 'INVALID_INPUT');
  t.match(r.json?.error?.data, { line: 1 });
});

t.test('TLS with client certificates: the certificate is the login, the ACL keeps each device to its own topics', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t, 'larch-mosquitto-');
  const pki = makePki(dir);
  // As docs/fleet.md advises: the certificate's CN is the user name; a device may use only its
  // own topics, announcements are read-only to devices, chunk replies go to the asking client.
  const acl = [
    'pattern readwrite larch/v1/device/%u/#',
    'pattern read larch/v1/announce/#',
    'pattern write larch/v1/fetch',
    'pattern read larch/v1/fetch/reply/%c',
    'user vendor',
    'topic write larch/v1/announce/#',
    'user responder',
    'topic read larch/v1/fetch',
    'topic write larch/v1/fetch/reply/#',
    'user dashboard',
    'topic read larch/v1/device/+/status',
  ];
  const broker = await startBroker(t, dir, { tls: pki, acl });
  t.match(broker.url, /^mqtts:/);
  const tlsArgs = (cn: string) => ['--mqtt-ca', pki.ca, '--mqtt-cert', pki.client(cn).cert, '--mqtt-key', pki.client(cn).key];

  // A device over HTTP for files, MQTT over TLS for control, settings in daemon.conf.
  const dev = await device(t, v, 'dev-tls');
  const devCert = pki.client('dev-tls');
  writeFileSync(join(dev, 'larch/daemon.conf'), `policy = "check"\nmqtt_url = "${broker.url}"\ndevice_id = "dev-tls"\nmqtt_ca_file = "${pki.ca}"\nmqtt_cert_file = "${devCert.cert}"\nmqtt_key_file = "${devCert.key}"\n`);
  const dash = pki.client('dashboard');
  const rec = await recorder(t, broker.url, ['larch/v1/device/+/status'], { ca: pki.ca, ...dash });
  startDaemon(t, dev, []);
  await rec.waitFor(online('dev-tls'), 20_000, 'online over TLS with its certificate');

  await v.release(2);
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, ...tlsArgs('vendor')]);
  await rec.waitFor((m) => m.topic === statusTopic('dev-tls') && m.json?.update?.state === 'available', 30_000, 'the announcement reached the device over TLS');

  // Refused: no client certificate, a certificate of another CA, a broker the client does not trust.
  const rogue = makePki(tempDir(t), 'rogue-ca');
  const announceWith = (extra: string[]) => larch(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--json', ...extra]);
  for (const [what, extra] of [
    ['no client certificate', ['--mqtt-ca', pki.ca]],
    ['a certificate of another CA', ['--mqtt-ca', pki.ca, '--mqtt-cert', rogue.client('vendor').cert, '--mqtt-key', rogue.client('vendor').key]],
    ["a broker certificate the client's CA did not sign", ['--mqtt-ca', rogue.ca, ...tlsArgs('vendor').slice(2)]],
  ] as const) {
    const r = await announceWith([...extra]);
    t.equal(r.code, 9, `${what}: exit 9`);
    t.equal(r.json?.error?.code, 'IO', `${what}: ${r.json?.error?.message}`);
  }

  // The ACL: dev-tls's certificate cannot speak for another device.
  const other = await device(t, v, 'dev-other');
  writeFileSync(join(other, 'larch/daemon.conf'), `mqtt_url = "${broker.url}"\ndevice_id = "dev-other"\nmqtt_ca_file = "${pki.ca}"\nmqtt_cert_file = "${devCert.cert}"\nmqtt_key_file = "${devCert.key}"\n`);
  const impostor = startDaemon(t, other, []);
  const denied = /Denied PUBLISH from larch-dev-other .*larch\/v1\/device\/dev-other\/status/;
  await waitUntil(() => denied.test(readFileSync(join(dir, 'mosquitto.log'), 'utf8')), 20_000, 'the broker denying the status of dev-other');
  t.equal(rec.on(statusTopic('dev-other')).length, 0, 'no status for dev-other from a dev-tls certificate (the broker denied it: it did connect)');
  await impostor.kill9();

  // A device whose only path is the broker, over TLS: provision copies the files into the sysroot and names them in its config.
  const responder = spawn(BIN, ['serve', '--repo', v.repo, '--port', '0', '--log', join(v.dir, 'tls-responder.log'), '--mqtt', broker.url, ...tlsArgs('responder'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    responder.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    responder.stdout!.on('data', (d) => String(d).includes('"mqtt"') && resolve());
    responder.on('exit', (code) => reject(new Error(`larch serve exited ${code}`)));
  });
  // The "mqtt" line comes once the broker acknowledged the responder's subscription.
  const mq = join(tempDir(t), 'dev-mq');
  const mqTls = tlsArgs('dev-mq');
  const p = await larchOk(['provision', '--sysroot', mq, '--mqtt-url', broker.url, '--ref', REF, '--keys', `${v.key}.pub`, '--json', ...mqTls]);
  t.equal(p.json.version, '2', 'provisioned over MQTT with TLS');
  t.match(JSON.parse(readFileSync(join(mq, 'larch/config.json'), 'utf8')).remote, { kind: 'mqtt', url: broker.url, mqtt: { ca_file: 'identity/mqtt-ca.crt', cert_file: 'identity/mqtt-client.crt', key_file: 'identity/mqtt-client.key' } }, 'the TLS files are in the device config, relative to S/larch');
  t.equal(readFileSync(join(mq, 'larch/identity/mqtt-client.crt'), 'utf8'), readFileSync(mqTls[3], 'utf8'), 'copied into the sysroot');
  t.match((await larchOk(['check', '--sysroot', mq, '--json'])).json, { available: false }, 'later commands log in with them');
});

t.test('the session survives a broker restart: the daemon reconnects and still gets its commands', async (t) => {
  const { v, broker } = await setup(t);
  const dev = await device(t, v, 'dev-r');
  const rec = await recorder(t, broker.url, [statusTopic('dev-r')]);
  startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-r', '--policy', 'none']);
  await rec.waitFor(online('dev-r'), 20_000, 'online');
  await broker.stop();
  await broker.start();
  const since = rec.messages.length;
  const back = await rec.waitFor((m) => rec.messages.indexOf(m) >= since && online('dev-r')(m), 30_000, 'online after the broker restart');
  t.ok(back.json.seq > 1, 'the same daemon run reconnected');
  const r = await larch(['command', '--mqtt', broker.url, '--device', 'dev-r', '--sign-key', `${v.key}.key`, '--wait', '20', '--json', 'check']);
  t.match(r.json?.result, { result: 'ok', cmd: 'check' }, `a command after the restart runs: ${r.stderr}`);
});

t.test('the device verbs over MQTT (§13.3): pin, unpin, deploy, rebase, cancel, install, uninstall', async (t) => {
  const { v, broker } = await setup(t);
  const dev = await device(t, v, 'dev-v');
  await v.release(2);
  const v3 = await v.release(3);
  const rec = await recorder(t, broker.url, [statusTopic('dev-v'), resultTopic('dev-v')]);
  startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', 'dev-v', '--policy', 'none']);
  await rec.waitFor(online('dev-v'), 20_000, 'online');
  const send = async (...words: string[]) => {
    const r = await larch(['command', '--mqtt', broker.url, '--device', 'dev-v', '--sign-key', `${v.key}.key`, '--wait', '60', '--json', ...words]);
    if (r.json?.result?.result !== "ok") t.comment(`${words.join(" ")}: ${JSON.stringify(r.json?.result)} ${r.stderr}`);
    return r.json?.result ?? { stderr: r.stderr };
  };

  t.match(await send('pin'), { result: 'ok', cmd: 'pin', output: { pinned: true } });
  t.equal((await status(dev)).pinned, true, 'pinned');
  t.match(await send('unpin'), { result: 'ok', cmd: 'unpin', output: { pinned: false } });
  t.equal((await status(dev)).pinned, false, 'unpinned');

  t.match(await send('deploy', '2'), { result: 'ok', cmd: 'deploy', output: { result: 'staged', to: { slot: 'B', version: '2' }, newest: { version: '3' } } }, 'deploy 2: staged, and the newest named');
  t.match((await status(dev)).pending, { version: '2' });

  await larchOk(['remote', 'add', '--sysroot', dev, 'mirror', v.url]);
  t.match(await send('rebase', `mirror:${REF}`), { result: 'ok', cmd: 'rebase', output: { result: 'staged', to: { commit: v3 }, following: { remote: 'mirror', ref: REF } } }, 'rebase to the mirror stages its newest');
  t.equal((await status(dev)).following, 'mirror', 'the device follows the mirror');
  t.match(await send('rebase', `nosuch:${REF}`), { result: 'error', cmd: 'rebase', code: 'NOT_FOUND' }, 'a remote the device lacks: NOT_FOUND');

  t.match(await send('cancel'), { result: 'ok', cmd: 'cancel', output: { result: 'idle' } }, 'nothing running: idle');

  // A download from a slow server, cancelled over MQTT: it does not wait behind the download.
  const slow = await startServe(t, v.repo, join(v.dir, 'slow.log'), ['--rate', '20000']);
  await v.release(4, { files: { 'usr/lib/noise': randomBytes(1 << 20) } });
  const cfg = join(dev, 'larch/config.json');
  writeFileSync(cfg, readFileSync(cfg, 'utf8').replaceAll(v.url, slow));
  await larchOk(['rollback', '--sysroot', dev]);
  const upgrading = larch(['command', '--mqtt', broker.url, '--device', 'dev-v', '--sign-key', `${v.key}.key`, '--wait', '120', '--json', 'upgrade']);
  const owner = () => (existsSync(join(dev, 'larch/lock.owner')) ? JSON.parse(readFileSync(join(dev, 'larch/lock.owner'), 'utf8')).command : null);
  await waitUntil(() => owner() === "command 'upgrade'" && existsSync(join(dev, 'larch/download')), 60_000, "the upgrade command's download");
  const asked = Date.now();
  t.match(await send('cancel'), { result: 'ok', cmd: 'cancel', output: { result: 'cancelled', phase: 'download', command: "command 'upgrade'" } }, 'cancel stops it');
  t.ok(Date.now() - asked < 30_000, `answered in ${((Date.now() - asked) / 1000).toFixed(1)} s, not after the ~50 s download`);
  t.match((await upgrading).json?.result, { result: 'error', cmd: 'upgrade', code: 'IO' }, 'the upgrade command ends as cancelled');
  t.equal((await status(dev)).pending, null, 'nothing staged');

  // Layering needs a tree with a dpkg database (layering.test.ts): here the command reaches it and gets its answer.
  t.match(await send('install', 'jq'), { result: 'error', cmd: 'install', code: 'INVALID_INPUT' }, 'install runs as larch install');
  t.match(await send('uninstall', 'jq'), { result: 'error', cmd: 'uninstall', code: 'NOT_FOUND' }, 'uninstall runs as larch uninstall');
});
