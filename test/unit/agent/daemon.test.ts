/**
 * The daemon's pure parts: the retained status message built from a status and the daemon's view
 * (docs/formats.md §13.4), the signed command checks and the refusal limit, the retry schedule.
 */
import t from 'tap';
import { generateKey } from '../../../src/store/sign.ts';
import { encodeSigned, formatCommand } from '../../../src/mqtt/format.ts';
import { REFUSALS_JOURNALED_PER_MINUTE, RefusalLimiter, preemptingCommand, vetCommand } from '../../../src/agent/daemon/commands.ts';
import { RetrySchedule } from '../../../src/agent/daemon/retry.ts';
import { type DaemonView, IDLE_UPDATE, offlineMessage, statusMessage } from '../../../src/agent/daemon/status-message.ts';
import { type DeploymentStatus, type Status, layerStatus } from '../../../src/agent/status.ts';

const NOW = new Date('2026-03-01T12:00:00.000Z');

function deployment(slot: 'A' | 'B', version: string, good: boolean): DeploymentStatus {
  return { slot, commit: slot.toLowerCase().repeat(64), version, timestamp: '2026-02-01T00:00:00Z', subject: 's', origin: { remote: 'r', ref: 'os/stable', name: null }, signed_by: ['k'], deployed_at: '2026-02-02T00:00:00Z', good, tries_left: good ? 0 : 2, etc_conflicts: [], agent: { version: null, path: null, in_tree: false }, kargs: null, ...layerStatus(slot.toLowerCase().repeat(64), version, null) };
}

function deviceStatus(over: Partial<Status> = {}): Status {
  return {
    sysroot: '/s', remote: 'http://r', ref: 'os/stable', following: 'origin', bootloader: 'grub', pinned: false,
    booted: deployment('A', '1.0', true), pending: deployment('B', '2.0', false), rollback: null,
    boot: { order: ['B', 'A'], last_good: 'A', rescue: false, slots: { A: { good: true, tries_left: 0, deployed: true }, B: { good: false, tries_left: 2, deployed: true } } },
    last_boot: null, last_update: null, deployments: [], next_boot: 'B', failed_releases: [], boot_env: 'ok', boot_env_detail: null, trust: { version: null, keys: [] }, hil_hold: false, live: null,
    ...over,
  };
}

const view = (over: Partial<DaemonView> = {}): DaemonView => ({ device: 'dev-1', seq: 7, started: '2026-03-01T11:00:00.000Z', policy: 'apply', update: { ...IDLE_UPDATE, state: 'staged' }, lastError: null, ...over });

t.test('status message: every field from the status and the daemon view, stamped with the clock passed in', async (t) => {
  const m = statusMessage(deviceStatus(), view(), NOW);
  t.same(Object.keys(m), ['format', 'online', 'device', 'seq', 'time', 'started', 'version', 'commit', 'slot', 'ref', 'boot', 'pending', 'rollback', 'pinned', 'policy', 'update', 'last_boot', 'last_update', 'last_error', 'last_skip', 'last_check', 'stale', 'failed_releases'], 'the documented keys, in order');
  t.match(m, { format: 1, online: true, device: 'dev-1', seq: 7, time: '2026-03-01T12:00:00.000Z', started: '2026-03-01T11:00:00.000Z', version: '1.0', commit: 'a'.repeat(64), slot: 'A', ref: 'os/stable', policy: 'apply', pinned: false });
  t.same(m.boot, { state: 'good', order: ['B', 'A'], last_good: 'A', rescue: false });
  t.same(m.pending, { slot: 'B', version: '2.0', commit: 'b'.repeat(64), good: false, tries_left: 2 }, 'a deployment is cut to five fields');
  t.equal(m.rollback, null);
  t.same(m.update, { ...IDLE_UPDATE, state: 'staged' });
  t.equal(m.last_error, null);
  t.equal(m.last_skip, null);
  t.equal(m.last_check, null, 'no check this run');
  t.equal(m.stale, false);
  t.match(statusMessage(deviceStatus(), { ...view(), lastCheck: { time: '2026-03-01T11:30:00.000Z', stale: true } }, NOW), { last_check: '2026-03-01T11:30:00.000Z', stale: true }, 'the daemon view says when it last checked');
  t.equal(statusMessage(deviceStatus(), view(), NOW, false).online, false, 'the last message of a clean stop');
});

t.test('status message: boot state rescue / unconfirmed / unknown', async (t) => {
  t.equal((statusMessage(deviceStatus({ boot: { ...deviceStatus().boot, rescue: true } }), view(), NOW).boot as { state: string }).state, 'rescue');
  t.equal((statusMessage(deviceStatus({ booted: deployment('A', '1.0', false) }), view(), NOW).boot as { state: string }).state, 'unconfirmed');
  const none = statusMessage(deviceStatus({ booted: null }), view(), NOW);
  t.equal((none.boot as { state: string }).state, 'unknown');
  t.same([none.version, none.commit, none.slot], [null, null, null], 'not booted through larch: no version');
});

t.test("status message: last_error is the daemon's own, else the last update's error with its time", async (t) => {
  const lastUpdate = { time: '2026-03-01T10:00:00.000Z', action: 'upgrade', result: 'error' as const, version: null, commit: null, error: { code: 'IO', message: 'cut', hint: 'again' } };
  t.same(statusMessage(deviceStatus({ last_update: lastUpdate }), view(), NOW).last_error, { code: 'IO', message: 'cut', hint: 'again', time: '2026-03-01T10:00:00.000Z' });
  const own = { code: 'LOCKED', message: 'busy', time: '2026-03-01T11:30:00.000Z' };
  t.same(statusMessage(deviceStatus({ last_update: lastUpdate }), view({ lastError: own }), NOW).last_error, own);
  const skip = { reason: 'pinned', message: 'pinned', time: '2026-03-01T11:40:00.000Z' };
  t.same(statusMessage(deviceStatus(), view({ lastSkip: skip }), NOW).last_skip, skip);
  const failed = { commit: 'c'.repeat(64), version: '3.0', time: '2026-03-01T09:00:00.000Z', reason: 'health-check', failed_checks: ['net'], extra: 1 };
  t.same(statusMessage(deviceStatus({ failed_releases: [failed as never] }), view(), NOW).failed_releases, [{ commit: 'c'.repeat(64), version: '3.0', time: '2026-03-01T09:00:00.000Z', reason: 'health-check', failed_checks: ['net'] }], 'only the documented fields');
  t.same(offlineMessage('dev-1'), { format: 1, online: false, device: 'dev-1' });
});

t.test('signed commands: run when signed, for this device, fresh and unused; else a refusal with its reason', async (t) => {
  const key = await generateKey();
  const stranger = await generateKey();
  const nowS = 1_800_000_000;
  const cmd = (over: Record<string, unknown> = {}, k = key) => encodeSigned('command', formatCommand({ cmd: 'rollback', device: 'dev-1', nonce: 'n'.repeat(16), issued: nowS - 10, expires: nowS + 600, ...over } as never), [k]);
  const used = new Set<string>();
  const check = { trusted: [key.publicKey], deviceId: 'dev-1', clockSkewS: 300, used: (n: string) => used.has(n), nowS };
  const ok = await vetCommand(await cmd(), check);
  t.ok(ok.ok, 'accepted');
  t.same(ok.ok && ok.command.cmd, 'rollback');
  const reasonOf = async (payload: Uint8Array) => {
    const v = await vetCommand(payload, check);
    return v.ok ? 'ok' : v.reason;
  };
  t.equal(await reasonOf(await cmd({}, stranger)), 'untrusted');
  t.equal(await reasonOf(new TextEncoder().encode('{}')), 'malformed');
  t.equal(await reasonOf(await cmd({ device: 'dev-2' })), 'wrong-device');
  t.equal(await reasonOf(await cmd({ issued: nowS - 1000, expires: nowS - 700 })), 'stale');
  t.equal(await reasonOf(await cmd({ issued: nowS + 1000, expires: nowS + 1600 })), 'not-yet-valid');
  used.add('n'.repeat(16));
  const replay = await vetCommand(await cmd(), check);
  t.match(replay, { ok: false, reason: 'replayed', nonce: 'n'.repeat(16), cmd: 'rollback' });
  t.equal(await preemptingCommand(await cmd({ nonce: 'm'.repeat(16) }), check).then((c) => c?.nonce), 'm'.repeat(16), 'a fresh rollback may end a transfer');
  t.equal(await preemptingCommand(await cmd({ cmd: 'upgrade', nonce: 'p'.repeat(16) }), check), null, 'another command waits its turn');
  t.equal(await preemptingCommand(await cmd({ cmd: 'cancel', nonce: 'q'.repeat(16) }), check).then((c) => c?.cmd), 'cancel', 'so may a fresh cancel');
  t.equal(await preemptingCommand(await cmd(), check), null, 'a replayed rollback does not');
});

t.test('refusals: at most the limit journaled a minute, the rest counted into the next one journaled', async (t) => {
  const r = new RefusalLimiter();
  const t0 = 1_000_000;
  const admitted = Array.from({ length: REFUSALS_JOURNALED_PER_MINUTE + 3 }, () => r.admit({}, t0)).filter(Boolean).length;
  t.equal(admitted, REFUSALS_JOURNALED_PER_MINUTE);
  const data: Record<string, unknown> = {};
  t.equal(r.admit(data, t0 + 60_000), true, 'a new minute');
  t.equal(data.suppressed, 3, 'carries the count of those left out');
});

t.test('retry: the wait doubles up to the maximum, off when the interval is 0; clear forgets', async (t) => {
  const r = new RetrySchedule({ retryIntervalS: 60, retryMaxS: 150 }, () => 1);
  const fired: number[] = [];
  const waits = [1, 2, 3].map((i) => r.fail(() => fired.push(i), 0)?.ms);
  t.same(waits, [60_000, 120_000, 150_000]);
  t.equal(r.failures, 3);
  r.clear();
  t.equal(r.failures, 0);
  t.equal(new RetrySchedule({ retryIntervalS: 0, retryMaxS: 0 }, () => 1).fail(() => fired.push(9), 0), null, 'retries off');
  t.same(fired, [], 'a cleared schedule runs nothing');
});
