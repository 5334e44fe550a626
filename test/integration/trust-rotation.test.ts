/**
 * Key rotation and revocation end to end (issue 16, must-show 3), through the Bun binary: a
 * vendor moves from provisioned keys to a trust document (roles: root R1, commit K1, summary S,
 * command C), then rotates the commit key K1 to K2 and the root R1 to R2, revoking K1. Devices
 * over HTTP (larch serve) and over MQTT (real Mosquitto, chunk responder, the daemon acting on
 * announcements) pick the trust chain up by themselves, accept K2-signed commits and refuse a
 * K1-signed commit published afterwards (upgrade, deploy, the daemon, the delta path). Trust
 * documents signed by only one of the old and new roots, or of a lower version, are refused.
 * Also the two defects: fast-forward (serial 2^53-1 by a stolen key) and one role for every key.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, expectFail, startServe, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir, waitUntil } from '../helpers.ts';
import { type Received, recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { decodeSummary, encodeSummary, signSummary } from '../../src/protocol/summary.ts';
import { readSecretKey } from '../../src/store/sign.ts';

async function keys<N extends string>(dir: string, ...names: N[]): Promise<Record<N, string>> {
  const out = {} as Record<N, string>;
  for (const n of names) {
    out[n] = join(dir, n);
    await larchOk(['keygen', '--out', out[n]]);
  }
  return out;
}

async function device(t: Test, name: string, remote: string[], keyFiles: string[]): Promise<string> {
  const dev = join(tempDir(t), name);
  await larchOk(['provision', '--sysroot', dev, ...remote, '--ref', REF, ...keyFiles.flatMap((k) => ['--keys', `${k}.pub`]), '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

async function bootsGood(t: Test, dev: string, version: string): Promise<void> {
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { check: { healthy: true, version } }, `${dev.split('/').pop()} boots version ${version}`);
}

const history = async (dev: string) => (await larchOk(['history', '--sysroot', dev, '--json'])).json as { event: string; message: string; commit?: string; data?: any }[];

t.test('rotation end to end over HTTP and MQTT: K2 accepted, K1 revoked everywhere, bad trust documents refused', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const k = { K1: v.key, ...(await keys(v.dir, 'R1', 'R2', 'S', 'C', 'K2')) };
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  await startServe(t, v.repo, join(v.dir, 'responder.log'), ['--mqtt', broker.url]);
  // Both devices provisioned the old way: K1 counts for every role.
  const devH = await device(t, 'dev-http', ['--repo-url', v.url], [v.key]);
  const devM = await device(t, 'dev-mqtt', ['--mqtt-url', broker.url], [v.key]);
  t.match((await status(devH)).trust, { version: null, keys: [{ roles: ['root', 'commit', 'summary', 'command'] }] }, 'without a trust document the provisioned key has every role');

  // Trust version 1: roles apart; signed by its root and by K1 (a provisioned key vouches for it).
  const t1 = join(v.dir, 'v1.trust');
  await larchOk(['trust', 'create', '--out', t1, '--root', `${k.R1}.pub`, '--commit', `${k.K1}.pub`, '--summary', `${k.S}.pub`, '--command', `${k.C}.pub`, '--sign-key', `${k.R1}.key`, '--sign-key', `${k.K1}.key`]);
  t.equal((await larchOk(['trust', 'publish', '--repo', v.repo, t1, '--json'])).json.version, 1);
  await v.release(2, { publishKey: k.S });
  const summary2 = decodeSummary(readFileSync(join(v.repo, 'summary')));
  t.equal(summary2.trustVersion, 1, 'the summary names trust version 1');
  // Over HTTP by the CLI, over MQTT chunks by the CLI: the summary is signed by S, which only the chain names.
  t.match((await larchOk(['upgrade', '--sysroot', devH, '--json'])).json, { result: 'staged', to: { version: '2' } }, 'HTTP: trust v1 picked up, v2 staged');
  t.match((await larchOk(['upgrade', '--sysroot', devM, '--json'])).json, { result: 'staged', to: { version: '2' } }, 'MQTT: trust v1 picked up, v2 staged');
  await bootsGood(t, devH, '2');
  await bootsGood(t, devM, '2');
  t.equal((await status(devM)).trust.version, 1, 'the MQTT device holds trust version 1');

  // Trust version 2: commit K1 -> K2 (K1 revoked), root R1 -> R2. Signed by one root only: refused.
  const t2 = join(v.dir, 'v2.trust');
  await larchOk(['trust', 'rotate', t1, '--out', t2, '--add', `commit=${k.K2}.pub`, '--revoke', `${k.K1}.pub`, '--add', `root=${k.R2}.pub`, '--revoke', `${k.R1}.pub`, '--sign-key', `${k.R2}.key`]);
  const newOnly = join(v.dir, 'v2-new-only.trust');
  writeFileSync(newOnly, readFileSync(t2));
  expectFail(t, await larch(['trust', 'install', '--sysroot', devH, newOnly, '--json']), 'SIGNATURE_INVALID', 'signed by the new root only');
  expectFail(t, await larch(['trust', 'publish', '--repo', v.repo, newOnly, '--json']), 'SIGNATURE_INVALID', 'publish: signed by the new root only');
  const oldOnly = join(v.dir, 'v2-old-only.trust');
  await larchOk(['trust', 'rotate', t1, '--out', oldOnly, '--add', `commit=${k.K2}.pub`, '--revoke', `${k.K1}.pub`, '--add', `root=${k.R2}.pub`, '--revoke', `${k.R1}.pub`, '--sign-key', `${k.R1}.key`]);
  const oldOnlyResult = await larch(['trust', 'install', '--sysroot', devH, oldOnly, '--json']);
  expectFail(t, oldOnlyResult, 'SIGNATURE_INVALID', 'signed by the old root only');
  t.equal(oldOnlyResult.json?.error?.data?.reason, 'root-threshold');
  await larchOk(['trust', 'sign', t2, '--sign-key', `${k.R1}.key`]);
  await larchOk(['trust', 'publish', '--repo', v.repo, t2]);
  const shown = (await larchOk(['trust', 'show', t2, '--json'])).json;
  t.match(shown, { version: 2, roles: { commit: { threshold: 1 } } });
  t.equal(shown.signed_by.length, 2, 'v2 signed by both roots');

  // v3 signed by K2: accepted on both devices, the MQTT one by its daemon acting on an announcement.
  const v3 = await v.release(3, { signKey: k.K2, publishKey: k.S });
  t.match((await larchOk(['upgrade', '--sysroot', devH, '--json'])).json, { result: 'staged', to: { version: '3' }, download: { via: 'delta' } }, 'HTTP: K2-signed v3 staged through its delta');
  await bootsGood(t, devH, '3');
  const st = await status(devH);
  t.equal(st.trust.version, 2, 'trust version 2 on the HTTP device');
  t.same(st.trust.keys.filter((x: any) => x.roles.includes('commit')).map((x: any) => x.id), st.booted.signed_by, 'the booted v3 is signed by the one commit-role key, K2');

  const statusTopic = 'larch/v1/device/dev-mqtt/status';
  const rec = await recorder(t, broker.url, [statusTopic]);
  let d = startDaemon(t, devM, ['--mqtt', broker.url, '--device-id', 'dev-mqtt', '--policy', 'apply']);
  await rec.waitFor((m: Received) => m.topic === statusTopic && m.json?.online === true, 20_000, 'the daemon online');
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${k.S}.key`, '--mqtt', broker.url]);
  await waitUntil(async () => (await status(devM)).pending?.commit === v3, 40_000, 'the daemon stages K2-signed v3');
  t.equal((await status(devM)).trust.version, 2, 'the daemon walked the chain to version 2 over MQTT');
  await d.stop();
  await bootsGood(t, devM, '3');

  // v4 signed by the revoked K1 (the repo's keyring still lists K1, so its delta is even offered).
  await larchOk(['trust', '--repo', v.repo, `${k.K1}.pub`]);
  const v4 = await v.release(4, { signKey: k.K1, publishKey: k.S });
  const sum4 = decodeSummary(readFileSync(join(v.repo, 'summary')));
  t.ok(sum4.deltas.some((x) => x.to === v4), 'the K1-signed delta is in the summary');
  const up = await larch(['upgrade', '--sysroot', devH, '--json']);
  expectFail(t, up, 'SIGNATURE_INVALID', 'upgrade to K1-signed v4');
  // Refused on its commit object alone, before its delta is fetched (the delta's own check of the
  // commit it carries is product-binding.test.ts's 'commit-untrusted').
  t.match(up.json?.error?.message, new RegExp(v4), 'the refusal names the K1-signed commit');
  t.notOk((await history(devH)).some((e) => e.event === 'download' && e.commit === v4), 'nothing of v4 was downloaded: neither its delta nor its objects');
  expectFail(t, await larch(['deploy', '--sysroot', devH, '4', '--json']), 'SIGNATURE_INVALID', 'deploy K1-signed v4');
  expectFail(t, await larch(['upgrade', '--sysroot', devM, '--json']), 'SIGNATURE_INVALID', 'MQTT upgrade to K1-signed v4');
  d = startDaemon(t, devM, ['--mqtt', broker.url, '--device-id', 'dev-mqtt', '--policy', 'apply']);
  const since = (await history(devM)).length;
  await rec.waitFor((m: Received) => m.topic === statusTopic && m.json?.online === true && m.json?.version === '3', 20_000, 'the daemon online again');
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${k.S}.key`, '--mqtt', broker.url]);
  await waitUntil(async () => (await history(devM)).slice(since).some((e) => e.event === 'error' && e.data?.code === 'SIGNATURE_INVALID'), 40_000, 'the daemon refuses K1-signed v4');
  await d.stop();
  for (const dev of [devH, devM]) t.match(await status(dev), { booted: { version: '3' }, pending: null }, 'nothing staged from K1');

  // A lower version (v1 again) is refused, by hand and in the repo.
  const lower = await larch(['trust', 'install', '--sysroot', devH, t1, '--json']);
  expectFail(t, lower, 'SIGNATURE_INVALID', 'trust version 1 after 2');
  t.equal(lower.json?.error?.data?.reason, 'trust-rollback');
  t.equal((await larchOk(['trust', 'install', '--sysroot', devH, t2, '--json'])).json.installed, false, 'the current document again changes nothing');
});

/** Writes R/summary with `serial`, signed by `key` (what a thief of the summary key can do). */
async function forgeSummary(v: Vendor, key: string, serial?: number): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const old = decodeSummary(readFileSync(join(v.repo, 'summary')));
  serial ??= old.serial + 1;
  const bytes = encodeSummary({ ...old, serial, created: now, expires: now + 3600 });
  writeFileSync(join(v.repo, 'summary.sig'), await signSummary(bytes, [await readSecretKey(`${key}.key`)]));
  writeFileSync(join(v.repo, 'summary'), bytes);
}

t.test('fast-forward: serial 2^53-1 by a stolen key; publish says so; a new trust document is the way out', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const k = { K1: v.key, ...(await keys(v.dir, 'R1', 'S2')) };
  const dev = await device(t, 'dev', ['--repo-url', v.url], [v.key]);
  await forgeSummary(v, v.key, Number.MAX_SAFE_INTEGER);
  t.match((await larchOk(['check', '--sysroot', dev, '--json'])).json, { available: false }, 'the device accepts the forged summary (its key was valid)');
  const pub = await larch(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--json']);
  expectFail(t, pub, 'INVALID_INPUT', 'publish on top of serial 2^53-1');
  t.equal(pub.json?.error?.data?.reason, 'serial-at-limit', 'publish names the cause');
  t.match(pub.stderr, /rotate the trust document/, 'and the way out');

  // The way out: a trust document whose summary role drops the stolen key; publish resets the serial.
  const t1 = join(v.dir, 'v1.trust');
  await larchOk(['trust', 'create', '--out', t1, '--root', `${k.R1}.pub`, '--commit', `${k.K1}.pub`, '--summary', `${k.S2}.pub`, '--command', `${k.R1}.pub`, '--sign-key', `${k.R1}.key`, '--sign-key', `${k.K1}.key`]);
  await larchOk(['trust', 'publish', '--repo', v.repo, t1]);
  await v.release(2, { publishKey: k.S2 });
  t.ok(decodeSummary(readFileSync(join(v.repo, 'summary'))).serial < Number.MAX_SAFE_INTEGER, 'the new summary has a fresh serial');
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { version: '2' } }, 'the device is not frozen: v2 staged');
  // The thief's key left the summary role: another forged summary is refused, whatever its serial.
  await forgeSummary(v, v.key, Number.MAX_SAFE_INTEGER);
  const forged = await larch(['check', '--sysroot', dev, '--json']);
  expectFail(t, forged, 'SIGNATURE_INVALID', 'a summary signed by the stolen key after the rotation');
  t.equal(forged.json?.error?.data?.reason, 'untrusted');
});

t.test('one role for every key: without a trust document a provisioned key has every role; with one, a command key signs no OS', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const k = { K1: v.key, ...(await keys(v.dir, 'R1', 'C')) };
  // The operator's command key C is provisioned beside the vendor key K1.
  const dev = await device(t, 'dev', ['--repo-url', v.url], [k.K1, k.C]);
  const t1 = join(v.dir, 'v1.trust');
  await larchOk(['trust', 'create', '--out', t1, '--root', `${k.R1}.pub`, '--commit', `${k.K1}.pub`, '--summary', `${k.K1}.pub`, '--command', `${k.C}.pub`, '--sign-key', `${k.R1}.key`, '--sign-key', `${k.K1}.key`]);
  t.match((await larchOk(['trust', 'install', '--sysroot', dev, t1, '--json'])).json, { installed: true, version: 1, previous: null }, 'installed by hand (vouched by K1)');
  t.match((await status(dev)).trust, { version: 1 }, 'status shows trust version 1');
  t.same((await status(dev)).trust.keys.map((x: any) => x.roles).sort(), [['command'], ['commit', 'summary'], ['root']].sort());
  await larchOk(['trust', 'publish', '--repo', v.repo, t1]);
  // A commit signed only by C, in a summary signed by K1: the commit is refused.
  const byC = await v.release(2, { signKey: k.C, publishKey: k.K1, delta: false });
  const commitByC = await larch(['upgrade', '--sysroot', dev, '--json']);
  expectFail(t, commitByC, 'SIGNATURE_INVALID', 'commit signed by the command key only');
  t.match(commitByC.json?.error?.message, new RegExp(`commit ${byC}.* not signed by`), 'the commit by C is the one refused');
  // The same summary signed only by C (publish refuses to: forged as a holder of C would).
  expectFail(t, await larch(['publish', '--repo', v.repo, '--sign-key', `${k.C}.key`, '--json']), 'SIGNATURE_INVALID', 'publish with a key outside the summary role');
  await forgeSummary(v, k.C);
  const summaryByC = await larch(['upgrade', '--sysroot', dev, '--json']);
  expectFail(t, summaryByC, 'SIGNATURE_INVALID', 'summary signed by the command key only');
  t.equal(summaryByC.json?.error?.data?.reason, 'untrusted');
  t.match(await status(dev), { booted: { version: '1' }, pending: null }, 'nothing staged');
});
