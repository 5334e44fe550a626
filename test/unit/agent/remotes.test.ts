/**
 * The named remotes of config.json (src/agent/remotes.ts): a config from before remotes reads as
 * origin alone, the followed remote must be `remote`, each remote keeps its own serial floor, and
 * config.json stores them in snake_case and reads them back.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LarchError } from '../../../src/errors.ts';
import { ORIGIN, addRemote, checkConsistent, deleteRemote, follow, followedChannel, recordFloor, remotesOf, scopeOf, splitRebaseTarget } from '../../../src/agent/remotes.ts';
import { type DeviceConfig, Sysroot } from '../../../src/agent/sysroot.ts';
import { parseRebaseTarget } from '../../../src/cli/commands/remote.ts';

const legacy = (): DeviceConfig => ({ larch: 1, remote: { url: 'http://stable/repo', kind: 'http' }, ref: 'os/stable', bootloader: 'grub', tries: 3, pinned: false, summarySerial: 100, summaryTrustVersion: 0 });
const beta = { url: 'http://beta/repo', kind: 'http' as const, trust: 'own' as const };
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof LarchError ? `${e.code}${e.data.reason ? `:${e.data.reason}` : ''}` : String(e);
  }
  return 'no error';
};

t.test('a config from before remotes is origin alone, with the top-level floor', async (t) => {
  t.same(remotesOf(legacy()), { origin: { url: 'http://stable/repo', kind: 'http', trust: 'own', summarySerial: 100, summaryTrustVersion: 0 } });
  t.match(followedChannel(legacy()), { name: ORIGIN, ref: 'os/stable', remote: { url: 'http://stable/repo' } });
  t.same(recordFloor(legacy(), ORIGIN, { summarySerial: 101, summaryTrustVersion: 0 }), { ...legacy(), summarySerial: 101 }, 'its floor stays at the top level: config.json as before remotes');
});

t.test('add, follow and floors: each remote its own, the followed one mirrored at the top level', async (t) => {
  const two = addRemote(legacy(), 'beta', beta);
  t.same(Object.keys(remotesOf(two)), ['origin', 'beta']);
  t.equal(code(() => addRemote(two, 'beta', beta)), 'EXISTS');
  t.equal(code(() => addRemote(two, 'origin', beta)), 'EXISTS');
  t.equal(code(() => addRemote(two, 'Beta!', beta)), 'USAGE');
  const raised = recordFloor(two, 'beta', { summarySerial: 5, summaryTrustVersion: 0 });
  t.equal(raised.summarySerial, 100, "another remote's serial does not touch the followed floor");
  t.equal(remotesOf(raised).beta!.summarySerial, 5);
  const onBeta = follow(raised, { name: 'beta', ref: 'os/beta' });
  t.match(onBeta, { remote: { url: 'http://beta/repo', kind: 'http' }, ref: 'os/beta', following: 'beta', summarySerial: 5 }, 'following beta: remote, ref and the floor are beta');
  t.notOk('trust' in onBeta.remote, "remote keeps only what older agents read");
  t.equal(remotesOf(onBeta).origin!.summarySerial, 100, "origin's floor is kept in remotes");
  checkConsistent(onBeta);
  const back = follow(recordFloor(onBeta, 'beta', { summarySerial: 7, summaryTrustVersion: 0 }), { name: ORIGIN, ref: 'os/stable' });
  t.match(back, { remote: { url: 'http://stable/repo' }, following: 'origin', summarySerial: 100 });
  t.equal(remotesOf(back).beta!.summarySerial, 7, "beta's floor, raised while followed, is kept");
});

t.test('config.json that contradicts itself is INVALID_INPUT; delete refuses what is in use', async (t) => {
  const onBeta = follow(addRemote(legacy(), 'beta', beta), { name: 'beta', ref: 'os/beta' });
  t.equal(code(() => checkConsistent({ ...onBeta, remote: { url: 'http://elsewhere', kind: 'http' } })), 'INVALID_INPUT');
  t.equal(code(() => checkConsistent({ ...onBeta, following: 'gone' })), 'INVALID_INPUT');
  t.equal(code(() => deleteRemote(onBeta, 'beta', [], false)), 'REFUSED:remote-in-use', 'the followed one');
  t.equal(code(() => deleteRemote(onBeta, ORIGIN, [], true)), 'REFUSED:remote-in-use', 'origin');
  const onOrigin = follow(onBeta, { name: ORIGIN, ref: 'os/stable' });
  t.equal(code(() => deleteRemote(onOrigin, 'beta', ['beta'], false)), 'REFUSED:remote-in-use', 'a deployment came from it');
  t.same(Object.keys(remotesOf(deleteRemote(onOrigin, 'beta', ['beta'], true))), ['origin'], '--force');
  t.equal(code(() => deleteRemote(onOrigin, 'nope', [], true)), 'NOT_FOUND');
});

t.test('config.json stores remotes in snake_case and reads them back; trust scopes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'larch-remotes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sysroot = new Sysroot(dir);
  const config = follow(recordFloor(addRemote(legacy(), 'beta', { ...beta, kind: 'mqtt', url: 'mqtt://broker', mqtt: { username: 'u', caFile: join(sysroot.larchDir, 'identity/ca.crt') } }), 'beta', { summarySerial: 9, summaryTrustVersion: 1 }), { name: 'beta', ref: 'os/beta' });
  await sysroot.writeConfig(config);
  const raw = JSON.parse(readFileSync(sysroot.configPath, 'utf8'));
  t.match(raw.remotes.beta, { summary_serial: 9, summary_trust_version: 1, trust: 'own', mqtt: { username: 'u', ca_file: 'identity/ca.crt' } }, 'snake_case, files relative to S/larch');
  t.same(await sysroot.readConfig(), config, 'read back as written');
  t.same(scopeOf(sysroot, 'beta', remotesOf(config).beta!), { remote: 'beta', keysDir: join(sysroot.larchDir, 'remotes/beta/keys'), trustPath: join(sysroot.larchDir, 'remotes/beta/trust.cbor') });
  t.equal(scopeOf(sysroot, 'usb', { ...beta, trust: 'origin' }).keysDir, sysroot.keysDir, "a remote without keys of its own: the origin's trust");
});

t.test('rebase [REMOTE:]REF', async (t) => {
  t.same(parseRebaseTarget('beta:os/beta', 'origin'), { name: 'beta', ref: 'os/beta' });
  t.same(parseRebaseTarget('os/beta', 'beta'), { name: 'beta', ref: 'os/beta' }, 'REF alone: the followed remote');
  t.equal(code(() => parseRebaseTarget('beta:', 'origin')), 'USAGE');
});

t.test('rebase takes larch refs: an image reference is a usage error that says what to do', async (t) => {
  for (const arg of ['docker://127.0.0.1:5000/os:1.1', 'oci:layout:1.1', 'oci-archive:os.tar', 'docker-archive:os.tar', 'containers-storage:localhost/os:1.1']) {
    t.throws(() => splitRebaseTarget(arg), { code: 'USAGE', data: { reason: 'image-reference' } }, arg);
  }
  t.same(splitRebaseTarget('vendor:os/stable'), { remote: 'vendor', ref: 'os/stable' }, 'REMOTE:REF as before');
  t.same(splitRebaseTarget('os/containers'), { remote: null, ref: 'os/containers' }, 'REF as before');
});
