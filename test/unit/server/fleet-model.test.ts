/**
 * src/server/fleet/model.ts: device records folded from what devices put on the broker, their
 * relations to releases, one state word, the rollout counts, and the memory a record costs when
 * a device sends the most it may.
 */
import t from 'tap';
import { statusMessage, IDLE_UPDATE } from '../../../src/agent/daemon/status-message.ts';
import type { Status } from '../../../src/agent/status.ts';
import { type DeviceRecord, MAX_MESSAGE_BYTES, apiDevice, applyCommandResult, applyJournal, applyStatus, deviceState, emptyRecord, fallbacksByCheck, parseBody, relations, rolloutCounts, topicDevice, versionCounts } from '../../../src/server/fleet/model.ts';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const body = (o: unknown) => Buffer.from(JSON.stringify(o));

/** A status as the daemon sends it (its own builder), with the fields a test sets. */
function status(device: string, over: Partial<Status> = {}, update: Partial<typeof IDLE_UPDATE> = {}, seq = 1): Record<string, unknown> {
  const s = {
    ref: 'os/stable',
    booted: { slot: 'a', version: '1.0', commit: A, good: true, tries_left: null },
    pending: null,
    rollback: null,
    boot: { rescue: false, order: ['a', 'b'], last_good: 'a' },
    pinned: [],
    last_boot: null,
    last_update: null,
    failed_releases: [],
    ...over,
  } as unknown as Status;
  return statusMessage(s, { device, seq, started: '2026-12-06T00:00:00.000Z', policy: 'download', update: { ...IDLE_UPDATE, ...update }, lastError: null }, new Date('2026-12-06T10:00:00Z'));
}

const fold = (device: string, ...messages: Record<string, unknown>[]): DeviceRecord => messages.reduce<DeviceRecord>((r, m) => applyStatus(r, m) ?? r, emptyRecord(device));

t.test('topics and bodies: only a valid device describing itself, format 1, at most 64 KiB', async (t) => {
  t.same(topicDevice('larch/v1/device/gw-1/status'), { device: 'gw-1', kind: 'status' });
  t.same(topicDevice('larch/v1/device/gw-1/cmd/result'), { device: 'gw-1', kind: 'result' });
  t.equal(topicDevice('larch/v1/device/../status'), null, 'an invalid id');
  t.equal(topicDevice('larch/v1/device/gw-1/other'), null);
  t.ok(parseBody(body({ format: 1, device: 'gw-1' }), 'gw-1'));
  t.equal(parseBody(body({ format: 1, device: 'gw-2' }), 'gw-1'), null, 'a body naming another device');
  t.equal(parseBody(body({ format: 2, device: 'gw-1' }), 'gw-1'), null, 'another format');
  t.equal(parseBody(Buffer.from('{not json'), 'gw-1'), null, 'not JSON');
  t.equal(parseBody(body({ format: 1, device: 'gw-1', pad: 'x'.repeat(MAX_MESSAGE_BYTES) }), 'gw-1'), null, 'over 64 KiB');
});

t.test('statuses in order; a retained older one and the last will do not erase what is known', async (t) => {
  const r1 = fold('gw-1', status('gw-1', {}, {}, 5));
  t.same([r1.version, r1.commit, r1.boot_state, r1.online, r1.seq], ['1.0', A, 'good', true, 5]);
  t.equal(applyStatus(r1, status('gw-1', {}, {}, 4)), null, 'a lower seq of the same run is dropped');
  const next = applyStatus(r1, { ...status('gw-1', { booted: { slot: 'b', version: '2.0', commit: B, good: true } } as unknown as Partial<Status>, {}, 1), started: '2026-12-06T09:00:00.000Z' });
  t.equal(next?.version, '2.0', 'a new run starts its seq again');
  const will = applyStatus(r1, { format: 1, online: false, device: 'gw-1' })!;
  t.same([will.online, will.version, will.commit], [false, '1.0', A], 'the will: offline, last known release kept');
});

t.test('relations, one per commit, and the state word', async (t) => {
  const fellBack = fold('d', status('d', { failed_releases: [{ commit: B, version: '2.0', time: 't', reason: 'fell-back', failed_checks: ['10-services'] }], last_boot: { time: 't', slot: 'b', healthy: false, fell_back: true, outcome: 'x' } } as unknown as Partial<Status>));
  t.same(relations(fellBack).map((x) => [x.commit === A ? 'A' : 'B', x.relation]), [['A', 'booted-good'], ['B', 'fell-back']]);
  t.equal(deviceState(fellBack, B), 'fell-back');
  const staged = fold('d', status('d', { pending: { slot: 'b', version: '2.0', commit: B, good: false, tries_left: 3 } } as unknown as Partial<Status>));
  t.equal(deviceState(staged, B), 'staged');
  const announced = { ref: 'os/stable', commit: B, version: '2.0', rollout: 50, created: 1, selected: true, position: 12.5 };
  const downloading = fold('d', status('d', {}, { state: 'downloading', announced, progress: { done: 10, total: 100 } }));
  t.equal(deviceState(downloading, B), 'downloading');
  t.same(apiDevice(downloading, B).progress, { done: 10, total: 100 });
  const transient = fold('d', status('d', { last_update: { time: 't', action: 'upgrade', result: 'error', version: '2.0', commit: B, error: { code: 'IO', message: 'reset', hint: '' } } } as unknown as Partial<Status>));
  t.notOk(relations(transient).some((x) => x.relation === 'failed'), 'an IO error is retried by the daemon: no verdict');
  const failed = fold('d', status('d', { last_update: { time: 't', action: 'upgrade', result: 'error', version: '2.0', commit: B, error: { code: 'SIGNATURE_INVALID', message: 'bad', hint: '' } } } as unknown as Partial<Status>));
  t.equal(deviceState(failed, B), 'failed', 'a refused release is a failure');
  const retried = fold('d', status('d', {}, { state: 'idle', announced, retry: { at: 't', failures: 3 } }));
  t.equal(deviceState(retried, B), 'failed', 'three failed attempts at the announced release');
  const rescue = fold('d', status('d', { boot: { rescue: true, order: [], last_good: null } } as unknown as Partial<Status>));
  t.equal(deviceState(rescue), 'rescue');
  t.equal(apiDevice(emptyRecord('x')).state, 'unknown', 'nothing known yet');
});

t.test('rollout counts: the denominator is the devices that decided', async (t) => {
  const records: DeviceRecord[] = [];
  const announced = { ref: 'os/stable', commit: B, version: '2.0', rollout: 50, created: 1, selected: true, position: 1 };
  for (let i = 0; i < 6; i++) records.push(fold(`good-${i}`, status(`good-${i}`, { booted: { slot: 'b', version: '2.0', commit: B, good: true, tries_left: null } } as unknown as Partial<Status>)));
  for (let i = 0; i < 2; i++) records.push(fold(`fb-${i}`, status(`fb-${i}`, { failed_releases: [{ commit: B, version: '2.0', time: 't', reason: 'tries-exhausted', failed_checks: i ? [] : ['10-services'] }] } as unknown as Partial<Status>)));
  records.push(fold('staged', status('staged', { pending: { slot: 'b', version: '2.0', commit: B, good: false, tries_left: 3 } } as unknown as Partial<Status>)));
  records.push(fold('dl', status('dl', {}, { state: 'downloading', announced })));
  records.push(fold('idle', status('idle')));
  records.push(fold('other', { ...status('other'), ref: 'os/beta' }));
  t.same(rolloutCounts(records, 'os/stable', B), { devices: 11, online: 11, not_moved: 1, downloading: 1, staged: 1, trying: 0, good: 6, fell_back: 2, failed: 0, took: 9, decided: 8, failure_pct: 25 });
  const v2 = versionCounts(records, 'os/stable').find((v) => v.commit === B)!;
  t.same([v2.booted_good, v2.fell_back, v2.staged, v2.downloading], [6, 2, 1, 1]);
  t.same(fallbacksByCheck(records, 'os/stable').map((f) => [f.check, f.devices]), [['(none reported)', 1], ['10-services', 1]]);
});

t.test('journal lines and command results: duplicates dropped, the last five kept', async (t) => {
  let r = emptyRecord('d');
  for (const seq of [1, 2, 2, 3, 4, 5, 6, 7]) r = applyJournal(r, { format: 1, device: 'd', seq, time: 't', event: 'stage', message: `line ${seq}` }) ?? r;
  t.same(r.journal.map((l) => l.seq), [3, 4, 5, 6, 7]);
  t.same(applyCommandResult(r, { result: 'ok', cmd: 'check', time: 't' })?.last_command, { cmd: 'check', result: 'ok', time: 't' });
});

/** Heap bytes per record of 10,000 folded from `message` (each under its own device id). */
function heapPerRecord(message: Record<string, unknown>): number {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const bytes = body(message);
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept: DeviceRecord[] = [];
  for (let i = 0; i < 10_000; i++) kept.push(applyStatus(emptyRecord(`gw-${i}`), { ...parseBody(bytes, String(message.device))!, device: `gw-${i}` })!);
  gc();
  const per = (process.memoryUsage().heapUsed - before) / kept.length;
  if (kept.length !== 10_000) throw new Error('records lost');
  return per;
}

t.test('what a record costs: a typical device, and one that sends the most it may', async (t) => {
  t.ok((globalThis as { gc?: () => void }).gc, 'run with --expose-gc (tap does)');
  const typical = status('d', { failed_releases: [{ commit: B, version: '2.0', time: '2026-12-06T09:00:00.000Z', reason: 'fell-back', failed_checks: ['10-services'] }] } as unknown as Partial<Status>);
  // As much as a message may carry (64 KiB), spread over the fields a record keeps.
  const long = 'x'.repeat(550);
  const hostile = { ...status('d'), ref: long, version: long, last_error: { code: long, message: long, time: long }, failed_releases: Array.from({ length: 10 }, () => ({ commit: B, version: long, time: long, reason: 'fell-back', failed_checks: Array(8).fill(long) })) };
  t.ok(body(hostile).length <= MAX_MESSAGE_BYTES, 'the hostile status fits a message');
  const perTypical = heapPerRecord(typical);
  const perHostile = heapPerRecord(hostile);
  t.comment(`heap per record, 10,000 records: typical ${Math.round(perTypical)} B; from a ${Math.round(body(hostile).length / 1024)} KiB hostile status ${Math.round(perHostile)} B`);
  t.ok(perTypical < 6 * 1024, `a typical device: under 6 KiB (${Math.round(perTypical)} B)`);
  t.ok(perHostile < 24 * 1024, `the most a device can make it keep: under 24 KiB (${Math.round(perHostile)} B), not the message's size`);
});
