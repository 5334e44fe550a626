/**
 * Factory provisioning through the Bun binary: idempotent (a re-run with the same options is a
 * no-op, other options are refused naming them, --force redoes it), atomic (a run that fails or is
 * killed half-way leaves nothing trusted), keys stored by key id, and the device identity written
 * where `larch daemon` reads it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { REF, type Test, expectFail, vendor } from '../device-helpers.ts';
import { BIN, larch, larchOk, tempDir, waitUntil } from '../helpers.ts';
import { makePki, startDaemon } from '../mqtt-helpers.ts';

const provisionArgs = (dev: string, url: string, keys: string[], extra: string[] = []) => ['provision', '--sysroot', dev, '--repo-url', url, '--ref', REF, ...keys.flatMap((k) => ['--keys', k]), '--json', ...extra];

/** The key ids the device trusts: S/larch/keys/KEYID.pub. */
const trustedFiles = (dev: string) => readdirSync(join(dev, 'larch', 'keys')).sort();

async function anotherKey(t: Test, name = 'other'): Promise<string> {
  const base = join(tempDir(t), name);
  await larchOk(['keygen', '--out', base]);
  return `${base}.pub`;
}

t.test('a re-run with the same options is a no-op; other options are refused, naming them; --force redoes it', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  await v.release(2);
  const dev = join(tempDir(t), 'dev');
  const vendorKey = `${v.key}.pub`;
  const first = await larchOk(provisionArgs(dev, v.url, [vendorKey], ['--version', '1', '--tries', '3']));
  t.match(first.json, { result: 'provisioned', version: '1' });
  const config = readFileSync(join(dev, 'larch', 'config.json'), 'utf8');

  const again = await larch(provisionArgs(dev, v.url, [vendorKey], ['--version', '1', '--tries', '3']));
  t.equal(again.code, 0, 'the same options: exit 0');
  t.match(again.json, { result: 'already-provisioned', version: '1', download: { bytes: 0 } });
  t.match((await larch(provisionArgs(dev, v.url, [vendorKey]))).json, { result: 'already-provisioned' }, 'no --version, default --tries: the same (any installed version matches)');

  const other = await anotherKey(t);
  for (const [extra, keys, differs] of [
    [['--tries', '5'], [vendorKey], ['tries']],
    [['--version', '2'], [vendorKey], ['version']],
    [[], [vendorKey, other], ['keys']],
    [['--tries', '5', '--version', '2', '--device-id', 'dev-9'], [vendorKey], ['tries', 'version', 'device_id']],
  ] as const) {
    const r = await larch(provisionArgs(dev, v.url, [...keys], [...extra]));
    t.equal(r.code, 11, `${extra.join(' ')} ${keys.length} keys: exit 11 (${r.stderr.trim()})`);
    expectFail(t, r, 'EXISTS', `${extra.join(' ')} ${keys.length} keys`);
    t.same(r.json?.error?.data?.differs, differs, `data.differs names ${differs.join(', ')}`);
  }
  t.equal(readFileSync(join(dev, 'larch', 'config.json'), 'utf8'), config, 'nothing changed');
  t.same(trustedFiles(dev).length, 1, 'still one trusted key');

  // What failed on this device is the device's memory, not provisioning state: --force keeps it.
  const failed = { format: 1, releases: [{ commit: 'c'.repeat(64), version: '1.5', time: '2026-12-01T00:00:00.000Z', reason: 'fell-back', failed_checks: ['app'], slot: 'B' }] };
  writeFileSync(join(dev, 'larch', 'failed.json'), JSON.stringify(failed));
  const forced = await larch(provisionArgs(dev, v.url, [other, vendorKey], ['--version', '2', '--tries', '5', '--force']));
  t.equal(forced.code, 0, `--force: ${forced.stderr}`);
  t.match(forced.json, { result: 'provisioned', version: '2' });
  t.equal(JSON.parse(readFileSync(join(dev, 'larch', 'config.json'), 'utf8')).tries, 5, 'the new tries');
  t.equal(trustedFiles(dev).length, 2, 'the new keys');
  t.same(JSON.parse(readFileSync(join(dev, 'larch', 'failed.json'), 'utf8')), failed, '--force keeps the releases that failed here');
  t.match(JSON.parse(readFileSync(join(dev, 'larch', 'deploy', 'A.json'), 'utf8')), { version: '2' }, 'slot A holds the new version');
  t.match((await larch(provisionArgs(dev, v.url, [vendorKey, other], ['--version', '2', '--tries', '5']))).json, { result: 'already-provisioned' }, 'and a re-run of that is a no-op');

  // --force with fewer keys: the old ones are no longer trusted.
  await larchOk(provisionArgs(dev, v.url, [vendorKey], ['--force']));
  t.equal(trustedFiles(dev).length, 1, 'after --force with one key, only that key is trusted');
  t.notOk(existsSync(join(dev, '.larch-provision')), 'no staging folder left');
});

t.test('keys are stored by key id: two vendor.pub from different folders are both trusted', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  copyFileSync(`${v.key}.pub`, join(dir, 'a', 'vendor.pub'));
  copyFileSync(await anotherKey(t, 'second-vendor'), join(dir, 'b', 'vendor.pub'));
  const dev = join(dir, 'dev');
  const r = await larch(provisionArgs(dev, v.url, [join(dir, 'a', 'vendor.pub'), join(dir, 'b', 'vendor.pub')]));
  t.equal(r.code, 0, `provisioned (the signing key was not overwritten by the other vendor.pub): ${r.stderr}`);
  const files = trustedFiles(dev);
  t.equal(files.length, 2, 'two keys trusted');
  for (const f of files) t.match(f, /^[0-9a-f]{16}\.pub$/, `${f}: named by key id`);
});

t.test('a provision that fails half-way leaves nothing trusted; the re-run trusts only its own keys', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const other = await anotherKey(t);
  const dev = join(tempDir(t), 'dev');

  // Fails after the keys are in place (the ref is looked up in the summary after that).
  const early = await larch(provisionArgs(dev, v.url, [other, `${v.key}.pub`], ['--ref', 'os/nope']));
  expectFail(t, early, 'NOT_FOUND', 'an unknown ref');
  t.notOk(existsSync(join(dev, 'larch')), 'S/larch is not there: not provisioned');
  t.equal((await larch(['status', '--sysroot', dev, '--json'])).json?.error?.code, 'NOT_FOUND', 'status: not provisioned');

  // Fails at the very end: the env named by the board's fw_env.config cannot be written.
  const boardConfig = join(tempDir(t), 'fw_env.config');
  writeFileSync(boardConfig, `${join(dev, 'no-such-dir', 'uboot.env')}\t0x0\t0x4000\n`);
  const boardDefaults = join(tempDir(t), 'u-boot-initial-env');
  writeFileSync(boardDefaults, 'bootcmd=run distro_bootcmd\n');
  const late = await larch(provisionArgs(dev, v.url, [other, `${v.key}.pub`], ['--fw-env-config', boardConfig, '--env-defaults', boardDefaults]));
  t.not(late.code, 0, `the env write fails: ${late.json?.error?.message}`);
  t.notOk(existsSync(join(dev, 'larch')), 'S/larch is not there: not provisioned');

  const r = await larch(provisionArgs(dev, v.url, [`${v.key}.pub`]));
  t.equal(r.code, 0, `the re-run provisions: ${r.stderr}`);
  t.equal(r.json?.result, 'provisioned');
  t.equal(trustedFiles(dev).length, 1, 'only the key of this run is trusted');
  t.notOk(existsSync(join(dev, '.larch-provision')) || existsSync(join(dev, 'boot', '.larch-provision')), 'no staging folders left');
});

t.test('a provision killed half-way (SIGKILL while it downloads) leaves nothing trusted', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const other = await anotherKey(t);
  const dev = join(tempDir(t), 'dev');
  // A server that accepts and never answers: provision waits for the summary with its keys staged.
  const sockets: Socket[] = [];
  const silent = createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}/`;
  const child = spawn(BIN, provisionArgs(dev, url, [other]), { stdio: 'ignore' });
  // The summary is asked for once the keys are written (staged).
  await waitUntil(() => sockets.length > 0, 20_000, 'the summary requested');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  t.notOk(existsSync(join(dev, 'larch')), 'killed: S/larch is not there, not provisioned');

  const r = await larch(provisionArgs(dev, v.url, [`${v.key}.pub`]));
  t.equal(r.code, 0, `the re-run provisions: ${r.stderr}`);
  t.equal(trustedFiles(dev).length, 1, "only the re-run's key is trusted");
  t.notOk(existsSync(join(dev, '.larch-provision')), "the killed run's staging folder is gone");
});

t.test('provision writes the device identity where the daemon reads it', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  mkdirSync(join(dir, 'pki'));
  const pki = makePki(join(dir, 'pki'));
  const files = { ca: pki.ca, ...pki.client('dev-7') };
  const dropin = join(dir, '50-policy.conf');
  // mqtts to a closed port: the daemon reads the TLS files when it starts (a missing one stops it), then retries the broker.
  writeFileSync(dropin, 'policy = "apply"\nmqtt_url = "mqtts://127.0.0.1:1"\n');
  const dev = join(dir, 'dev');
  const r = await larch(provisionArgs(dev, v.url, [`${v.key}.pub`], ['--device-id', 'dev-7', '--mqtt-ca', files.ca, '--mqtt-cert', files.cert, '--mqtt-key', files.key, '--daemon-conf', dropin]));
  t.equal(r.code, 0, `provisioned: ${r.stderr}`);
  const larchDir = join(dev, 'larch');
  t.equal(readFileSync(join(larchDir, 'identity', 'mqtt-client.crt'), 'utf8'), readFileSync(files.cert, 'utf8'), 'the certificate copied');
  t.equal(statSync(join(larchDir, 'identity', 'mqtt-client.key')).mode & 0o777, 0o600, 'the key is 0600');
  t.match(readFileSync(join(larchDir, 'daemon.conf.d', '00-provision.conf'), 'utf8'), /device_id = "dev-7"\n(.|\n)*mqtt_cert_file = "identity\/mqtt-client.crt"/, 'the provision drop-in names them');
  t.equal(readFileSync(join(larchDir, 'daemon.conf.d', '50-policy.conf'), 'utf8'), readFileSync(dropin, 'utf8'), 'the --daemon-conf drop-in copied');

  const d = startDaemon(t, dev, []);
  await waitUntil(() => /daemon: device /.test(d.stderr()) || d.child.exitCode !== null, 20_000, 'the daemon start line');
  t.match(d.stderr(), /daemon: device dev-7, ref os\/stable, policy apply/, 'the daemon runs as dev-7 with the drop-in policy, no flags');
  t.notMatch(d.stderr(), /NOT_FOUND|no such file/, 'it found the TLS files');
  await d.stop();

  const bad = join(dir, 'bad.conf');
  writeFileSync(bad, 'polcy = "apply"\n');
  const refused = await larch(provisionArgs(join(dir, 'dev2'), v.url, [`${v.key}.pub`], ['--daemon-conf', bad]));
  expectFail(t, refused, 'INVALID_INPUT', 'a drop-in with an unknown key');
  t.notOk(existsSync(join(dir, 'dev2', 'larch')), 'refused before anything was written');
});
