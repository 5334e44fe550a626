/**
 * The cancel request of a process (src/cancellation.ts) and how it reaches the device lock's
 * holder (src/agent/lock-owner.ts): only a request naming the armed lock session cancels; a
 * cancel point throws the cancel error of its phase; lock.owner names a live process exactly.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { armCancel, cancelRequested, cancelSignal, checkCancel, disarmCancel, enterPhase, isCancelled, requestCancel, stoppedAt } from '../../src/cancellation.ts';
import { CANCEL_POINTS, FAILPOINTS, failpoint } from '../../src/failpoint.ts';
import { bootId, claimLock, ownerAlive, processStartTicks, readLockOwner, releaseClaim } from '../../src/agent/lock-owner.ts';
import { Sysroot } from '../../src/agent/sysroot.ts';
import { tempDir } from '../helpers.ts';

const session = (lockId: string) => ({ lockId, requestPath: '/nonexistent/cancel.json', readRequest: () => {} });

t.test('a request names its lock session; a cancel point throws with its phase', async (t) => {
  t.teardown(disarmCancel);
  t.equal(requestCancel('a'), false, 'nothing armed: nothing to cancel');
  t.equal(cancelSignal(), undefined);
  armCancel(session('a'));
  t.doesNotThrow(() => checkCancel('download'), 'no request: a cancel point passes');
  t.equal(requestCancel('b'), false, "another session's request is ignored");
  t.notOk(cancelRequested());
  enterPhase('download');
  t.equal(requestCancel('a'), true, 'its own session is cancelled');
  t.ok(cancelSignal()!.aborted, 'the transfers signal is aborted');
  t.match(cancelSignal()!.reason, { code: 'IO', data: { reason: 'cancelled', phase: 'download' } }, 'with the phase the command was in');
  t.throws(() => checkCancel('staging'), { code: 'IO', data: { reason: 'cancelled', phase: 'staging' } }, 'the next cancel point throws');
  t.equal(stoppedAt(), 'staging');
  armCancel(session('c'));
  t.notOk(cancelRequested(), 'a new lock session starts uncancelled');
  t.ok(isCancelled(cancelSignal()!.reason ?? { data: { reason: 'cancelled' } }) === false, 'its signal carries no reason yet');
  requestCancel('c');
  t.ok(isCancelled(cancelSignal()!.reason), 'isCancelled knows the cancel error');
  t.notOk(isCancelled(new Error('cancelled')), 'and nothing else');
});

t.test('every cancel point is a failpoint before the point of no return, and failpoint() checks it', async (t) => {
  t.teardown(disarmCancel);
  for (const name of Object.keys(CANCEL_POINTS)) t.ok(name in FAILPOINTS, `${name} is a failpoint`);
  t.notOk('deploy::after-record-unlink' in CANCEL_POINTS, 'nothing past the point of no return');
  armCancel(session('x'));
  requestCancel('x');
  t.doesNotThrow(() => failpoint('deploy::after-boot-files'), 'a failpoint past the point of no return does not stop');
  t.throws(() => failpoint('deploy::after-checkout'), { code: 'IO' }, 'a cancel point does');
  t.equal(stoppedAt(), 'staging', 'in the staging phase');
});

t.test('lock.owner: written on claim, removed on release; alive only as the process it names', async (t) => {
  t.teardown(disarmCancel);
  const root = tempDir(t);
  mkdirSync(join(root, 'larch'), { recursive: true });
  const sysroot = new Sysroot(root);
  const owner = await claimLock(sysroot, 'larch test');
  t.match(await readLockOwner(sysroot), { pid: process.pid, command: 'larch test', lock_id: owner.lock_id, boot_id: bootId() });
  t.ok(ownerAlive(owner), 'this process is alive');
  t.equal(processStartTicks(process.pid), owner.start_ticks);
  const dead = spawnSync('true').pid!;
  t.equal(processStartTicks(dead), null, 'a process that ended has no start time');
  t.notOk(ownerAlive({ ...owner, pid: dead }), 'a dead pid is not the owner');
  t.notOk(ownerAlive({ ...owner, start_ticks: owner.start_ticks + 1 }), 'a reused pid (another start time) is not the owner');
  t.notOk(ownerAlive({ ...owner, boot_id: 'another-boot' }), 'nor one of another boot');

  // The request file, read as the SIGUSR2 handler and a pause point read it.
  const request = { lock_id: owner.lock_id, pid: process.pid, start_ticks: owner.start_ticks, requested: new Date().toISOString(), nonce: 'n' };
  writeFileSync(join(root, 'larch/cancel.json'), JSON.stringify({ ...request, start_ticks: 1 }));
  process.emit('SIGUSR2', 'SIGUSR2');
  t.notOk(cancelRequested(), 'a request for another start time is ignored');
  writeFileSync(join(root, 'larch/cancel.json'), JSON.stringify(request));
  process.emit('SIGUSR2', 'SIGUSR2');
  t.ok(cancelRequested(), 'its own request cancels');
  await releaseClaim(sysroot, { phase: 'download' });
  t.equal(await readLockOwner(sysroot), null, 'lock.owner is gone');
  t.match(JSON.parse(readFileSync(join(root, 'larch/cancel.json'), 'utf8')), { nonce: 'n', outcome: 'cancelled', phase: 'download' }, 'the answer is written into the request');
  writeFileSync(join(root, 'larch/lock.owner'), '{"pid": ');
  t.equal(await readLockOwner(sysroot), null, 'a cut lock.owner reads as none');
});
