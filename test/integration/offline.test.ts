/**
 * Air-gapped updates (issue 20, must-show 2): a device with no route to any server upgrades from
 * a bundle file (`upgrade --from-file`) and from a `file://` remote; a tampered bundle, and one
 * without a delta from the release the device runs, are refused with nothing changed; the USB
 * recipe's script installs the bundle of a stick.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeBundleIndex } from '../../src/protocol/bundle.ts';
import { REF, status, vendor } from '../device-helpers.ts';
import { BIN, ROOT, larch, larchOk, tempDir } from '../helpers.ts';

t.test('upgrade --from-file with no route to the server; a tampered or a wrong bundle changes nothing', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2);
  const v3 = await v.release(3);
  const bundle = join(dir, 'update.larchb');
  await larchOk(['bundle', 'create', '--repo', v.repo, '--ref', REF, '--from', '1', '--to', '2', '--sign-key', `${v.key}.key`, '--out', bundle]);
  // No route to the server from now on.
  const config = join(dev, 'larch/config.json');
  writeFileSync(config, readFileSync(config, 'utf8').replace(v.url, 'http://127.0.0.1:9'));
  t.equal((await larch(['check', '--sysroot', dev, '--json'])).json?.error?.code, 'IO', 'the server is out of reach');

  const before = JSON.stringify(await status(dev));
  const serialBefore = JSON.parse(readFileSync(config, 'utf8')).summary_serial;
  const refused = async (file: string, code: string, what: string) => {
    const r = await larch(['upgrade', '--sysroot', dev, '--from-file', file, '--json']);
    t.equal(r.json?.error?.code, code, `${what}: ${code} (${r.json?.error?.message})`);
    const after = await status(dev);
    t.equal(after.pending, null, `${what}: nothing staged`);
    t.same(after.deployments, JSON.parse(before).deployments, `${what}: the deployments as they were`);
    return r;
  };
  // Tampered: a flipped byte in a delta part (the index names it); a forged summary is the
  // bundle unit and integration tests' (its signature fails).
  const bytes = readFileSync(bundle);
  const index = decodeBundleIndex(bytes, bytes.length);
  const part = index.files.find((f) => f.path.endsWith('/part-0'))!;
  const bad = Buffer.from(bytes);
  bad[index.dataOffset + part.offset + 7] ^= 1;
  writeFileSync(join(dir, 'bad.larchb'), bad);
  const r = await refused(join(dir, 'bad.larchb'), 'INVALID_INPUT', 'a flipped byte in a delta part');
  t.equal(r.json?.error?.data?.reason, 'bundle-member');
  // A bundle for devices on release 2: nothing from release 1 in it.
  const wrong = join(dir, 'for-2.larchb');
  await larchOk(['bundle', 'create', '--repo', v.repo, '--ref', REF, '--from', '2', '--sign-key', `${v.key}.key`, '--out', wrong]);
  await refused(wrong, 'DELTA_BASE_MISSING', 'a bundle with no delta from the booted release');

  const up = await larchOk(['upgrade', '--sysroot', dev, '--from-file', bundle, '--json']);
  t.match(up.json, { result: 'staged', to: { slot: 'B', commit: v2, version: '2' }, download: { via: 'delta' } }, 'staged from the bundle');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });
  const cfg = JSON.parse(readFileSync(config, 'utf8'));
  t.equal(cfg.remote.url, 'http://127.0.0.1:9', 'the device still follows its remote');
  t.equal(cfg.summary_serial, serialBefore, "the remote's serial floor is not a bundle's business");
  // (And a bundle's serial is no floor at all: the newer stick tried first, for-2.larchb, did not make this older one a rollback.)

  // The same device, from a file:// copy of the vendor repo (a mounted stick).
  await larchOk(['remote', 'add', '--sysroot', dev, 'usb', `file://${v.repo}`]);
  t.match((await larchOk(['rebase', '--sysroot', dev, `usb:${REF}`, '--json'])).json, { result: 'staged', to: { commit: v3, version: '3' } }, 'release 3 from the file:// remote');
});

t.test('the USB recipe: board/usb/usb-update installs the first larch-update/*.larchb of a stick', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2);
  const stick = join(dir, 'stick');
  mkdirSync(join(stick, 'larch-update'), { recursive: true });
  // The script as udev or mdev runs it, with a directory standing in for the mounted stick.
  const env = { ...process.env, USB_MOUNT: stick, LARCH: BIN, LARCH_SYSROOT: dev, LARCH_DEFAULTS: join(dir, 'no-defaults') };
  const run = () => spawnSync('sh', [join(ROOT, 'board/usb/usb-update'), '/dev/sdz1'], { env, encoding: 'utf8' });
  let r = run();
  t.equal(r.status, 0, 'a stick without a bundle: nothing to do');
  t.match(r.stdout, /no larch-update\/\*\.larchb on \/dev\/sdz1; nothing done/);
  await larchOk(['bundle', 'create', '--repo', v.repo, '--ref', REF, '--from', '1', '--sign-key', `${v.key}.key`, '--out', join(stick, 'larch-update', '2.larchb')]);
  writeFileSync(join(stick, 'larch-update', '9-not-a-bundle.txt'), 'x');
  r = run();
  t.equal(r.status, 0, `installed (${r.stderr.trim()})`);
  t.match(JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))), { result: 'staged', to: { commit: v2, version: '2' } }, "the stick's bundle is staged");
  t.match(await status(dev), { pending: { slot: 'B', commit: v2 } });
});

t.test('upgrade --from-file with a one-file delta: its signatures are the trust; a wrong base or key changes nothing', async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const dir = tempDir(t);
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2);
  const v3 = await v.release(3);
  const good = join(dir, '1-2.delta');
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v1, '--to', v2, '--sign-key', `${v.key}.key`, '--out', good]);
  const wrongBase = join(dir, '2-3.delta');
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v2, '--to', v3, '--sign-key', `${v.key}.key`, '--out', wrongBase]);
  await larchOk(['keygen', '--out', join(dir, 'other')]);
  const otherKey = join(dir, '1-2-other.delta');
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v1, '--to', v2, '--sign-key', join(dir, 'other.key'), '--out', otherKey]);
  const config = join(dev, 'larch/config.json');
  writeFileSync(config, readFileSync(config, 'utf8').replace(v.url, 'http://127.0.0.1:9'));

  for (const [file, code, what] of [[wrongBase, 'DELTA_BASE_MISSING', 'a delta from a release the device does not have'], [otherKey, 'SIGNATURE_INVALID', 'a delta signed by a key the device does not trust']] as const) {
    const r = await larch(['upgrade', '--sysroot', dev, '--from-file', file, '--json']);
    t.equal(r.json?.error?.code, code, `${what}: ${code} (${r.json?.error?.message})`);
    t.equal((await status(dev)).pending, null, `${what}: nothing staged`);
  }
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--from-file', good, '--json'])).json, { result: 'staged', to: { slot: 'B', commit: v2, version: '2' }, download: { via: 'delta' } }, 'staged from the delta file, no server');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });
});
