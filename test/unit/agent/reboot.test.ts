/** The reboot capability: the device's own root reboots the machine; a test sysroot records the request instead. */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rebootFor, rebootRequestPath } from '../../../src/agent/reboot.ts';
import { readJournal } from '../../../src/agent/journal.ts';
import { DEFAULT_SYSROOT, Sysroot } from '../../../src/agent/sysroot.ts';
import { tempDir } from '../../helpers.ts';

t.test('real device: a property of the sysroot, true for / and /sysroot unless told', async (t) => {
  t.equal(new Sysroot(DEFAULT_SYSROOT).realDevice, true);
  t.equal(new Sysroot('/sysroot/').realDevice, true, 'the path is resolved first');
  t.equal(new Sysroot('/').realDevice, true);
  t.equal(new Sysroot('/tmp/dev').realDevice, false);
  t.equal(new Sysroot('/tmp/dev', {}, { realDevice: true }).realDevice, true);
});

t.test('on the device: systemctl reboot, then reboot when that fails; nothing recorded', async (t) => {
  const dir = tempDir(t);
  const ran: string[] = [];
  const logged: string[] = [];
  const status: Record<string, number | null> = { systemctl: 1, reboot: 0 };
  const reboot = rebootFor(new Sysroot(dir, {}, { realDevice: true }), { log: (l) => logged.push(l), run: (cmd, args) => (ran.push([cmd, ...args].join(' ')), status[cmd]!) });
  await reboot('version 2 staged');
  t.same(ran, ['systemctl reboot', 'reboot'], 'the fallback when systemctl fails');
  t.same(logged, ['rebooting: version 2 staged']);
  ran.length = 0;
  status.systemctl = 0;
  await reboot('again');
  t.same(ran, ['systemctl reboot'], 'no fallback when systemctl works');
  t.notOk(existsSync(rebootRequestPath(new Sysroot(dir))), 'a real reboot records no request');
});

t.test('on a test sysroot: the request is recorded in S/larch/daemon/reboot-requested.json and the journal', async (t) => {
  const dir = tempDir(t);
  const sysroot = new Sysroot(dir);
  const ran: string[] = [];
  const reboot = rebootFor(sysroot, { run: (cmd) => (ran.push(cmd), 0) });
  await reboot('command reboot (nonce n1)');
  const path = join(dir, 'larch/daemon/reboot-requested.json');
  t.match(JSON.parse(readFileSync(path, 'utf8')), { reason: 'command reboot (nonce n1)', time: /^\d{4}-\d\d-\d\dT/ });
  t.same(ran, [], 'no reboot command on a test sysroot');
  const entries = await readJournal(sysroot.journalPath);
  t.match(entries.at(-1), { event: 'reboot', message: /reboot requested \(test sysroot: recorded, not done; larch sim-boot stands in\): command reboot \(nonce n1\)/ });
});
