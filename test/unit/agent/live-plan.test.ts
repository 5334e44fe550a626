/** What keeps a staged update from going live (src/agent/live/plan.ts): each reason on its own, and the /usr and /etc changes reported. */
import t from 'tap';
import type { DeploymentRecord } from '../../../src/agent/deploy.ts';
import { etcChanges, liveBlocks, usrChanges } from '../../../src/agent/live/plan.ts';

const record = (over: Partial<DeploymentRecord> = {}): DeploymentRecord => ({ slot: 'A', commit: 'a'.repeat(64), version: '1', timestamp: '2026-01-01T00:00:00Z', subject: 's', origin: { remote: 'r', ref: 'os/stable' }, signedBy: [], deployedAt: '2026-01-01T00:00:00Z', bootFiles: ['vmlinuz', 'initrd.img'], etcMerge: null, agent: null, ...over }) as DeploymentRecord;
const diff = (modified: string[], added: string[] = [], removed: string[] = []) => ({ added, removed, modified });

t.test('userspace only: nothing blocks', async (t) => {
  t.same(liveBlocks(diff(['/usr/bin/app', '/etc/app.conf'], ['/usr/share/new']), record(), record({ slot: 'B' })), []);
});

t.test('each reason that needs a reboot', async (t) => {
  const reasons = (d: ReturnType<typeof diff>, a = record(), b = record({ slot: 'B' })) => liveBlocks(d, a, b).map((x) => x.reason);
  t.same(reasons(diff(['/boot/vmlinuz-6.1.0-1'])), ['kernel-changed'], 'a kernel');
  t.same(reasons(diff([], ['/boot/dtbs/board.dtb'])), ['kernel-changed'], 'a device tree');
  t.same(reasons(diff(['/boot/initrd.img-6.1.0-1'])), ['initramfs-changed'], 'an initramfs');
  t.same(reasons(diff([], [], ['/usr/lib/modules/6.1.0-1/kernel/x.ko'])), ['modules-changed'], 'kernel modules');
  t.same(reasons(diff([]), record({ kargs: ['quiet'] }), record({ slot: 'B', kargs: ['quiet', 'debug'] })), ['kargs-changed'], 'kernel arguments');
  t.same(reasons(diff([]), record(), record({ slot: 'B', etcMerge: { conflicts: ['/etc/a.conf'] } as DeploymentRecord['etcMerge'] })), ['etc-conflicts'], '/etc conflicts');
  t.same(reasons(diff(['/boot/vmlinuz-2', '/boot/initrd.img-2', '/usr/lib/modules/2/m.ko'])), ['kernel-changed', 'initramfs-changed', 'modules-changed'], 'all of them, in order');
  t.same(liveBlocks(diff(['/boot/vmlinuz-2']), record(), record({ slot: 'B' }))[0].paths, ['/boot/vmlinuz-2'], 'naming the paths');
});

t.test('the changes reported', async (t) => {
  const d = diff(['/usr/bin/app', '/usr/etc/app.conf', '/etc/other.conf', '/boot/x'], ['/usr/share/n/', '/usr/share/n/f'], ['/usr/lib/old']);
  t.same(usrChanges(d), { added: ['/usr/share/n/', '/usr/share/n/f'], removed: ['/usr/lib/old'], modified: ['/usr/bin/app'] }, '/usr, without the vendor /etc kept under it');
  t.same(etcChanges(d), ['/etc/app.conf', '/etc/other.conf'], 'the vendor /etc as /etc paths');
});
