/**
 * What an agent may install (src/agent/compat.ts): larch.min_agent_version against the running
 * agent, the barrier a device below one is offered, the summary's barriers field (absent: the
 * bytes of a 0.1 summary), and the daemon's staleness rule.
 */
import t from 'tap';
import { pendingBarrier, requireAgent } from '../../../src/agent/compat.ts';
import { isStale } from '../../../src/agent/daemon/status-message.ts';
import { type SummaryRef, decodeSummary, encodeSummary } from '../../../src/protocol/summary.ts';

const id = (c: string) => c.repeat(64);
const meta = (v?: unknown) => new Map(v === undefined ? [] : [['larch.min_agent_version', v as string]]);

t.test('min_agent_version: equal or newer passes, older is refused with what is needed and the barrier', async (t) => {
  const target = { commit: id('c'), version: '3' };
  requireAgent({ ...target, metadata: meta() }, '0.1.0', null);
  requireAgent({ ...target, metadata: meta('0.1.0') }, '0.1.0', null);
  requireAgent({ ...target, metadata: meta('0.2.0~rc1') }, '0.2.0', null);
  const barrier = { commit: id('b'), version: '2', timestamp: 2 };
  t.throws(() => requireAgent({ ...target, metadata: meta('0.2.0') }, '0.1.9', barrier), {
    code: 'REFUSED',
    message: /needs larch 0\.2\.0 or newer; this agent is larch 0\.1\.9; update to version 2 \(a barrier release\) first, then to 3/,
    data: { reason: 'agent-too-old', required: '0.2.0', agent: '0.1.9', commit: id('c'), barrier: { version: '2', commit: id('b') } },
  });
  t.throws(() => requireAgent({ ...target, metadata: meta('0.10.0') }, '0.9.0', null), { message: /needs larch 0\.10\.0/, data: { reason: 'agent-too-old', barrier: null }, hint: /install a release whose agent is larch 0\.10\.0 or newer/ }, 'numeric, not string, order');
  // A requirement this agent cannot read is one it cannot tell it meets.
  for (const bad of ['not a version!', 7]) {
    t.throws(() => requireAgent({ ...target, metadata: meta(bad) }, '9.0', null), { message: /needs larch/, data: { reason: 'agent-too-old', required: String(bad) } }, `refused: ${bad}`);
  }
});

t.test('barriers: the oldest one the device has not been through; by release counter when both have one, else by time', async (t) => {
  const ref = (barriers: SummaryRef['barriers']): SummaryRef => ({ commit: id('f'), version: '9', timestamp: 900, barriers });
  const b3 = { commit: id('3'), version: '3', timestamp: 300 };
  const b5 = { commit: id('5'), version: '5', timestamp: 500 };
  t.equal(pendingBarrier(ref(undefined), { commit: id('1'), timestamp: 100 }), null, 'no barriers');
  t.same(pendingBarrier(ref([b5, b3]), { commit: id('1'), timestamp: 100 }), b3, 'two ahead: the oldest first');
  t.same(pendingBarrier(ref([b3, b5]), { commit: id('3'), timestamp: 300 }), b5, 'on the first barrier: the next');
  t.equal(pendingBarrier(ref([b3, b5]), { commit: id('6'), timestamp: 600 }), null, 'past both');
  t.equal(pendingBarrier(ref([{ ...b5, commit: id('f') }]), { commit: id('1'), timestamp: 100 }), null, 'a barrier that is the head is just the head');
  // Release counters decide when both carry one, whatever the clocks say.
  const r = { commit: id('7'), version: '7', timestamp: 50, release: 7 };
  t.same(pendingBarrier(ref([r]), { commit: id('1'), timestamp: 100, release: 6 }), r, 'counter 7 is after counter 6 (its timestamp is older)');
  t.equal(pendingBarrier(ref([{ ...r, timestamp: 5000 }]), { commit: id('1'), timestamp: 100, release: 8 }), null, 'counter 7 is before counter 8 (its timestamp is newer)');
});

t.test('summary barriers: round trip; without them the encoding is unchanged', async (t) => {
  const base = { serial: 1, created: 10, expires: 20, deltas: [] };
  const plain = { ...base, refs: { 'os/stable': { commit: id('a'), version: '1', timestamp: 5 } } };
  const withEmpty = { ...base, refs: { 'os/stable': { commit: id('a'), version: '1', timestamp: 5, barriers: [] } } };
  t.same(encodeSummary(withEmpty), encodeSummary(plain), 'an empty list is not encoded');
  t.equal(decodeSummary(encodeSummary(plain)).refs['os/stable'].barriers, undefined);
  const barriers = [{ commit: id('b'), version: '0.9', timestamp: 4 }, { commit: id('c'), version: '0.95', timestamp: 4, release: 12 }];
  const s = { ...base, refs: { 'os/stable': { commit: id('a'), version: '1', timestamp: 5, barriers } } };
  t.same(decodeSummary(encodeSummary(s)), s, 'decoded as encoded');
});

t.test('stale: periodic checks on and none successful for more than 3 intervals', async (t) => {
  t.equal(isStale(null, 1000, 0, 99999), false, 'checks off: never stale');
  t.equal(isStale(null, 1000, 100, 1300), false, 'no check yet, 3 intervals since the start');
  t.equal(isStale(null, 1000, 100, 1301), true, 'no check for more than 3 intervals since the start');
  t.equal(isStale(5000, 1000, 100, 5250), false);
  t.equal(isStale(5000, 1000, 100, 5301), true);
});
