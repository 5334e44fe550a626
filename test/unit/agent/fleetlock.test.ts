/**
 * The FleetLock client against a FleetLock test server on loopback (test/fleetlock-server.ts: no
 * FleetLock server is packaged in Debian): the requests as the protocol says, a full semaphore
 * refused and retried until a slot is given back, recursive locks, and errors as "not now".
 */
import t from 'tap';
import { fleetLockRequest, fleetLockUntilOk } from '../../../src/agent/fleetlock.ts';
import { startFleetLock } from '../../fleetlock-server.ts';

t.test('pre-reboot takes a slot, steady-state gives it back; a full group is refused', async (t) => {
  const fl = await startFleetLock(t, 1);
  t.same(await fleetLockRequest(fl.url, 'pre-reboot', 'gw-1', 'default'), { ok: true, status: 200, reason: 'ok' });
  t.same([...fl.holders.get('default')!], ['gw-1'], 'the server saw id and group in client_params');
  t.equal((await fleetLockRequest(fl.url + '/', 'pre-reboot', 'gw-1', 'default')).ok, true, 'recursive: the holder may ask again (and a trailing / in the base is fine)');
  const refused = await fleetLockRequest(fl.url, 'pre-reboot', 'gw-2', 'default');
  t.match(refused, { ok: false, status: 409, reason: /HTTP 409 failed_lock: all 1 slots of group default are held \(gw-1\)/ });
  t.equal((await fleetLockRequest(fl.url, 'pre-reboot', 'gw-2', 'canary')).ok, true, 'another group has its own slots');
  t.equal((await fleetLockRequest(fl.url, 'steady-state', 'gw-1', 'default')).ok, true);
  t.equal((await fleetLockRequest(fl.url, 'pre-reboot', 'gw-2', 'default')).ok, true, 'free again');
  t.same(fl.requests.map((r) => r.status), [200, 200, 409, 200, 200, 200], 'no request was refused as malformed (400)');
});

t.test('no server, or a server error, is "not now", never a throw', async (t) => {
  const fl = await startFleetLock(t, 1);
  fl.failWith = 503;
  t.match(await fleetLockRequest(fl.url, 'pre-reboot', 'gw-1', 'default'), { ok: false, status: 503, reason: /HTTP 503 unavailable/ });
  await fl.close();
  t.match(await fleetLockRequest(fl.url, 'pre-reboot', 'gw-1', 'default'), { ok: false, status: null, reason: 'ECONNREFUSED' });
});

t.test('retries with backoff until a slot is free; an abort ends the wait', async (t) => {
  const fl = await startFleetLock(t, 1);
  fl.holders.set('default', new Set(['other']));
  const retries: number[] = [];
  // The other device gives its slot back during the second wait: the third attempt gets it.
  const onRetry = (_a: unknown, n: number, ms: number) => (retries.push(ms), n === 2 && fl.holders.get('default')!.delete('other'));
  const ok = await fleetLockUntilOk(fl.url, 'pre-reboot', 'gw-1', 'default', { maxDelayS: 1, signal: new AbortController().signal, random: () => 0.5, onRetry });
  t.equal(ok, true);
  t.same(retries, [1000, 1000], 'granted only once the other device gave its slot back; waits capped at maxDelayS');
  t.same([...fl.holders.get('default')!], ['gw-1']);
  const ac = new AbortController();
  fl.holders.set('default', new Set(['other']));
  let waits = 0;
  t.equal(await fleetLockUntilOk(fl.url, 'pre-reboot', 'gw-2', 'default', { maxDelayS: 60, signal: ac.signal, onRetry: () => (waits++, ac.abort()) }), false, 'aborted during its first wait: false');
  t.equal(waits, 1, 'no attempt after the abort');
});
