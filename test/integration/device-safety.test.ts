/**
 * The device protects itself, through the Bun binary:
 *   - a signed tree whose /usr is a symlink out of the sysroot, or whose boot file is a symlink to
 *     the host's /etc/shadow, is refused before anything is written; boot symlinks inside /boot
 *     are resolved and the kernel is stored once, under the name the boards load;
 *   - one device-wide lock: a second command fails with LOCKED after LARCH_LOCK_TIMEOUT, and the
 *     daemon's upgrade waits its turn;
 *   - a prune stopped at an unlink leaves fsck clean and deploy working (commits go first);
 *   - a flipped byte in a stored object is fetched again, never deployed; so are the missing
 *     trees and files of a partial commit;
 *   - a finalize that did not complete is reported at the next boot (status, history);
 *   - objects only old deployments used are pruned after a slot is confirmed good;
 *   - the journal is rotated at 256 KiB, and refused MQTT commands are rate-limited in it;
 *   - a signed MQTT cleanup command runs.
 * Tests that mount (a read-only bind mount stands in for an unlink or a write that fails half-way)
 * need root, as CI runs.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, expectFail, status, vendor } from '../device-helpers.ts';
import { IS_ROOT, diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir } from '../helpers.ts';
import { recorder, startBroker, startDaemon } from '../mqtt-helpers.ts';
import { formatCommand } from '../../src/mqtt/format.ts';

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const history = async (dev: string) => (await larchOk(['history', '--sysroot', dev, '--json'])).json as { event: string; message: string; data?: Record<string, unknown> }[];

async function provisioned(t: Test, bootloader = 'uboot') {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', bootloader]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return { v, dev };
}

/** What a refused upgrade must leave as it was: both slots, the boot files and the env. */
async function sysrootSnapshot(dev: string) {
  return { deploy: await snapshotTree(join(dev, 'larch/deploy')), boot: await snapshotTree(join(dev, 'boot')) };
}
async function assertUntouched(t: Test, dev: string, before: Awaited<ReturnType<typeof sysrootSnapshot>>, what: string) {
  const after = await sysrootSnapshot(dev);
  t.same(diffSnapshots(before.deploy, after.deploy), [], `${what}: deployments untouched`);
  t.same(diffSnapshots(before.boot, after.boot), [], `${what}: boot files and env untouched`);
  t.equal((await status(dev)).pending, null, `${what}: nothing staged`);
}

/** Mounts dir read-only onto itself until the returned function is called (root only). */
function readOnly(t: Test, dir: string): () => void {
  sh(`mount --bind '${dir}' '${dir}' && mount -o remount,bind,ro '${dir}'`);
  let mounted = true;
  const undo = () => {
    if (mounted) sh(`umount '${dir}'`);
    mounted = false;
  };
  t.teardown(undo);
  return undo;
}

t.test('a malformed signed tree never reaches outside the sysroot (§11)', async (t) => {
  const { v, dev } = await provisioned(t);
  const outside = join(tempDir(t), 'outside');
  mkdirSync(outside);
  const before = await sysrootSnapshot(dev);

  await v.release(2, { symlinks: { usr: outside } });
  const usr = await larch(['upgrade', '--sysroot', dev, '--json']);
  expectFail(t, usr, 'HOSTILE_TREE', '/usr a symlink out of the tree');
  t.equal(usr.code, 5);
  t.match(usr.json?.error?.message, /\/usr is a symlink to '.*outside', not a directory/, 'the message names /usr and where it points');
  t.same(readdirSync(outside), [], 'nothing was moved or written outside the sysroot');
  await assertUntouched(t, dev, before, '/usr symlink');

  await v.release(3, { symlinks: { 'boot/vmlinuz-9.9': '/etc/shadow' } });
  const shadow = await larch(['upgrade', '--sysroot', dev, '--json']);
  expectFail(t, shadow, 'HOSTILE_TREE', 'a boot file linked to /etc/shadow');
  t.match(shadow.json?.error?.message, /\/boot\/vmlinuz-9\.9 is a symlink to '\/etc\/shadow', which is not a file in the tree's \/boot/);
  await assertUntouched(t, dev, before, 'boot symlink to /etc/shadow');
  t.notOk(existsSync(join(dev, 'boot/B')), 'no slot B boot files were written');
});

t.test('boot symlinks inside /boot are resolved; the kernel is stored once, under the name the boards load (§8, §11)', async (t) => {
  const { v, dev } = await provisioned(t);
  t.same(readdirSync(join(dev, 'boot/A')).sort(), ['initrd.img', 'vmlinuz'], 'slot A: the kernel and initramfs once each, not also as vmlinuz-6.1.0-1');
  const recA = JSON.parse(readFileSync(join(dev, 'larch/deploy/A.json'), 'utf8'));
  t.same(recA.boot_aliases, { vmlinuz: 'vmlinuz-6.1.0-1', 'initrd.img': 'initrd.img-6.1.0-1' }, 'the record says which versioned files they are');

  // The Debian layout with link_in_boot: vmlinuz -> vmlinuz-6.1.0-2 (relative), initrd.img -> /boot/initrd.img-6.1.0-2.
  await v.release(2, { symlinks: { 'boot/vmlinuz': 'vmlinuz-6.1.0-2', 'boot/initrd.img': '/boot/initrd.img-6.1.0-2' } });
  const up = (await larchOk(['upgrade', '--sysroot', dev, '--json'])).json;
  t.equal(up.result, 'staged');
  t.equal(readFileSync(join(dev, 'boot/B/vmlinuz'), 'utf8'), 'kernel 2\n', 'vmlinuz is the file its symlink names');
  t.equal(readFileSync(join(dev, 'boot/B/initrd.img'), 'utf8'), 'initrd 2\n', 'an absolute /boot/... link resolved inside the tree');
  t.same(readdirSync(join(dev, 'boot/B')).sort(), ['initrd.img', 'vmlinuz'], 'no second copy of the kernel');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, outcome: 'confirmed' } });
});

t.test('one device-wide lock: a second command fails with LOCKED, the daemon waits its turn (§9)', async (t) => {
  const { v, dev } = await provisioned(t);
  const v2 = await v.release(2);
  // Another process holds the device lock, as a running upgrade would.
  // Its own process group: the lock is inherited by the sleep, which must go with it.
  const holder = spawn('flock', ['-x', join(dev, 'larch/lock'), 'sh', '-c', 'echo locked; exec sleep 600'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const release = () => holder.exitCode === null && holder.signalCode === null && process.kill(-holder.pid!, 'SIGKILL');
  t.teardown(release);
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on('data', (d) => String(d).includes('locked') && resolve());
    holder.once('exit', (code) => reject(new Error(`flock exited ${code}`)));
  });

  const env = { LARCH_LOCK_TIMEOUT: '1' };
  for (const cmd of [['upgrade'], ['cleanup'], ['rollback'], ['mark-good'], ['pin'], ['boot-check', '--no-reboot']]) {
    const r = await larch([...cmd, '--sysroot', dev, '--json'], { env });
    t.equal(r.code, 7, `${cmd[0]}: exit 7`);
    t.equal(r.json?.error?.code, 'LOCKED', `${cmd[0]}: LOCKED (${r.json?.error?.message})`);
  }
  t.match((await larch(['upgrade', '--sysroot', dev, '--json'], { env })).json?.error, { message: /device lock .*larch\/lock/, hint: /LARCH_LOCK_TIMEOUT/ });
  const s = await status(dev);
  t.equal(s.pending, null, 'nothing staged while another holds the lock');
  t.equal(s.pinned, false, 'pin did not run either');

  // The daemon's upgrade waits for the lock too (here 1 s, then it reports and tries again).
  process.env.LARCH_LOCK_TIMEOUT = '1';
  t.teardown(() => void delete process.env.LARCH_LOCK_TIMEOUT);
  const d = startDaemon(t, dev, ['--policy', 'apply', '--check-interval', '1']);
  const until = async (cond: () => boolean | Promise<boolean>, what: string) => {
    const end = Date.now() + 60_000;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; daemon stderr: ${d.stderr().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await until(() => /LOCKED/.test(d.stderr()), 'the daemon to report LOCKED');
  t.equal((await status(dev)).pending, null, 'the daemon staged nothing while the lock was held');
  release();
  await until(async () => (await status(dev)).pending?.commit === v2, 'the daemon to stage v2 once the lock is free');
  await d.stop();
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, version: '2' } });
});

t.test('a prune stopped at any unlink leaves the repo whole: fsck, deploy and cleanup work (§9)', async (t) => {
  const { v, dev } = await provisioned(t);
  const v1 = v.commits[0]!;
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  await v.release(3);
  await larchOk(['upgrade', '--sysroot', dev]); // slot A now holds 3: version 1's objects are garbage
  const objects = (root: string) => readdirSync(join(root, 'larch/repo/objects')).flatMap((sub) => readdirSync(join(root, 'larch/repo/objects', sub)).map((n) => `${sub}/${n}`));
  // Which objects a cleanup deletes: run it on a copy.
  const copy = join(tempDir(t), 'copy');
  cpSync(dev, copy, { recursive: true, verbatimSymlinks: true });
  await larchOk(['cleanup', '--sysroot', copy]);
  const kept = new Set(objects(copy));
  const dead = objects(dev).filter((o) => !kept.has(o));
  t.ok(dead.includes(`${v1.slice(0, 2)}/${v1.slice(2)}.commit`), "version 1's commit is garbage");
  t.ok(dead.filter((o) => !o.endsWith('.commit') && !o.endsWith('.sig')).length >= 2, `version 1 has trees and files to delete (${dead.length} objects)`);
  // Stop the prune just after its first tree or file unlink (an older larch unlinked in
  // objects/00..ff order, so a stop there could leave version 1's commit without some of its
  // trees; every unlink is enumerated by failpoints.test.ts).
  const stopped = await larch(['cleanup', '--sysroot', dev, '--json'], { env: { LARCH_FAILPOINT: 'prune::after-object-unlink:1' } });
  t.equal(stopped.signal, 'SIGKILL', 'the prune was killed after its first tree or file unlink');

  const fsck = await larch(['fsck', '--repo', join(dev, 'larch/repo'), '--json']);
  t.equal(fsck.code, 0, `fsck finds no commit with missing trees (${JSON.stringify(fsck.json?.problems ?? fsck.json?.error)})`);
  const back = await larch(['deploy', '1', '--allow-downgrade', '--sysroot', dev, '--json']);
  t.equal(back.code, 0, `deploy of version 1 works (${back.json?.error?.message})`);
  t.match(back.json, { result: 'staged', to: { version: '1', commit: v1 } });
  t.equal((await larch(['cleanup', '--sysroot', dev, '--json'])).code, 0, 'cleanup works');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { healthy: true, version: '1' } });
});

t.test('a flipped byte in a stored object is fetched again, never deployed (§9)', async (t) => {
  const { v, dev } = await provisioned(t);
  // The deployed file is a hardlink of the repo object: editing it in place damages the object.
  const deployed = join(dev, 'larch/deploy/A/bin/busybox');
  t.ok(statSync(deployed).nlink > 1, 'the deployment hardlinks the repo object');
  const fd = openSync(deployed, 'r+');
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, 4096);
  writeSync(fd, Buffer.from([byte[0]! ^ 0x01]), 0, 1, 4096);
  closeSync(fd);
  await v.release(2);
  const up = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(up.code, 0, `upgrade succeeds (${up.json?.error?.message})`);
  t.equal(sha(join(dev, 'larch/deploy/B/bin/busybox')), sha(join(v.dir, 'v2/bin/busybox')), "slot B's busybox is the vendor's, not the damaged object");
  t.ok((await history(dev)).some((e) => e.event === 'download' && /corrupt/.test(e.message) && Array.isArray(e.data?.corrupt)), 'the journal says which objects were fetched again');
  t.equal((await larch(['fsck', '--repo', join(dev, 'larch/repo'), '--json'])).code, 0, 'the repo is whole again');
});

t.test('a commit whose trees and files are partly missing (a prune of an older larch) is completed at deploy (§9)', async (t) => {
  const { v, dev } = await provisioned(t);
  const objectsDir = join(dev, 'larch/repo/objects');
  const objects = () => new Set(readdirSync(objectsDir).flatMap((sub) => readdirSync(join(objectsDir, sub)).map((n) => join(sub, n))));
  const before = objects();
  await v.release(2);
  await larchOk(['upgrade', '--download-only', '--sysroot', dev]);
  const added = [...objects()].filter((o) => !before.has(o));
  const gone = added.filter((o) => o.endsWith('.dirtree') || o.endsWith('.file'));
  t.ok(gone.some((o) => o.endsWith('.dirtree')) && gone.some((o) => o.endsWith('.file')), `version 2 brought new trees and files (${gone.length})`);
  for (const o of gone) rmSync(join(objectsDir, o));
  const up = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(up.code, 0, `upgrade succeeds (${up.json?.error?.message})`);
  t.match(up.json, { result: 'staged', to: { version: '2' } });
  t.equal(readFileSync(join(dev, 'larch/deploy/B/usr/etc/os-release'), 'utf8'), 'NAME=larch-test\nVERSION=2\n', "slot B holds version 2's files");
  t.ok((await history(dev)).some((e) => e.event === 'download' && Array.isArray(e.data?.missing)), 'the journal says the missing objects were fetched again');
  t.equal((await larch(['fsck', '--repo', join(dev, 'larch/repo'), '--json'])).code, 0, 'the repo is whole again');
});

t.test('a finalize that did not complete is reported at the next boot (§9)', async (t) => {
  if (!IS_ROOT) return void t.fail('this test bind-mounts a slot read-only and needs root (CI runs as root)');
  const { v, dev } = await provisioned(t);
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  // The admin edits /etc after the upgrade; the finalize at shutdown fails half-way.
  writeFileSync(join(dev, 'larch/deploy/A/etc/late.conf'), 'edited after the upgrade\n');
  const undo = readOnly(t, join(dev, 'larch/deploy/B'));
  t.not((await larch(['finalize', '--sysroot', dev, '--json'])).code, 0, 'finalize failed half-way');
  undo();
  const boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
  t.match(boot, { slot: 'B', check: { healthy: true } });
  const s = await status(dev);
  t.match(s.booted, { slot: 'B', finalize_interrupted: { from_slot: 'A' } }, 'status says the finalize of the booted slot did not complete');
  t.match((await larchOk(['status', '--sysroot', dev])).stdout, /FINALIZE INTERRUPTED/);
  const entry = (await history(dev)).find((e) => e.event === 'finalize' && e.data?.interrupted === true);
  t.match(entry?.message, /did not complete: \/etc edits made on slot A after the upgrade may be missing/, 'and so does the journal');
  t.notOk(existsSync(join(dev, 'larch/deploy/B/etc/late.conf')), '(the late edit is indeed not in slot B)');
});

t.test('objects only older deployments used are pruned once a slot is confirmed good (§8)', async (t) => {
  const { v, dev } = await provisioned(t);
  const v1 = v.commits[0]!;
  for (const n of [2, 3]) {
    await v.release(n);
    await larchOk(['upgrade', '--sysroot', dev]);
    await larchOk(['sim-boot', '--sysroot', dev]);
  }
  t.match(await status(dev), { booted: { slot: 'A', version: '3', good: true }, rollback: { version: '2' } });
  t.notOk(existsSync(join(dev, 'larch/repo/objects', v1.slice(0, 2), `${v1.slice(2)}.commit`)), "version 1's commit was pruned after version 3 was marked good");
  t.equal((await larchOk(['cleanup', '--sysroot', dev, '--json'])).json.objects_deleted, 0, 'nothing left for a manual cleanup');
  t.ok((await history(dev)).some((e) => e.event === 'cleanup' && /[1-9]\d* objects/.test(e.message)), 'the journal records the automatic cleanup');
});

t.test('the journal is bounded: rotated to journal.1.jsonl at 256 KiB (§8)', async (t) => {
  const { dev } = await provisioned(t);
  const path = join(dev, 'larch/journal.jsonl');
  // A journal just under the bound (as years of checks leave it).
  const line = JSON.stringify({ time: '2026-01-01T00:00:00.000Z', event: 'check', message: 'x'.repeat(200) }) + '\n';
  const room = 256 * 1024 - 20 - statSync(path).size;
  const last = JSON.stringify({ time: '2026-01-01T00:00:00.000Z', event: 'check', message: '' });
  const full = Math.floor((room - last.length - 1) / line.length);
  const lastLine = last.replace('""', `"${'y'.repeat(room - full * line.length - last.length - 1)}"`) + '\n';
  writeFileSync(path, line.repeat(full) + lastLine, { flag: 'a' });
  t.equal(statSync(path).size, 256 * 1024 - 20, 'journal.jsonl is 20 bytes short of 256 KiB');
  const entriesBefore = (await history(dev)).length;
  await larchOk(['pin', '--sysroot', dev]);
  t.ok(statSync(path).size < 4096, `journal.jsonl starts again small (${statSync(path).size} bytes)`);
  t.ok(statSync(join(dev, 'larch/journal.1.jsonl')).size <= 256 * 1024, 'the rotated file holds at most 256 KiB');
  const all = await history(dev);
  t.equal(all.length, entriesBefore + 1, 'history reads both files: nothing lost by the rotation');
  t.equal(all.at(-1)?.event, 'pin', 'the newest entry last');
  // What proves slot A good after a damaged env (the provision entry) is carried into the new file.
  const current = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.match(current[0], { event: 'provision', slot: 'A', carried: true }, "slot A's last state entry is carried over");
  t.equal(all.filter((e) => e.event === 'provision').length, 1, 'history shows it once');
  await larchOk(['unpin', '--sysroot', dev]);
  t.ok(statSync(path).size + statSync(join(dev, 'larch/journal.1.jsonl')).size <= 2 * 256 * 1024, 'the journal never holds more than twice the bound');
});

t.test('refused commands are rate-limited in the journal; a signed cleanup command runs (§8)', async (t) => {
  const { v, dev } = await provisioned(t);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const id = 'dev-flood';
  const resultTopic = `larch/v1/device/${id}/cmd/result`;
  const rec = await recorder(t, broker.url, [`larch/v1/device/${id}/status`, resultTopic]);
  const d = startDaemon(t, dev, ['--mqtt', broker.url, '--device-id', id, '--policy', 'none']);
  await rec.waitFor((m) => m.topic === `larch/v1/device/${id}/status` && m.json?.online === true, 20_000, 'online');
  const journalSize = () => statSync(join(dev, 'larch/journal.jsonl')).size;
  const before = journalSize();

  // 200 unsigned commands from anyone who can publish to the broker: each is answered...
  const now = Math.floor(Date.now() / 1000);
  const FLOOD = 200;
  for (let i = 0; i < FLOOD; i++) {
    const body = formatCommand({ cmd: 'upgrade', device: id, nonce: `flood-${String(i).padStart(12, '0')}`, issued: now, expires: now + 300 });
    await rec.publish(`larch/v1/device/${id}/cmd`, JSON.stringify({ body, sigs: [] }));
  }
  await rec.waitFor((m) => m.topic === resultTopic && m.json?.nonce === `flood-${String(FLOOD - 1).padStart(12, '0')}`, 60_000, 'the last refusal answered');
  t.equal(rec.messages.filter((m) => m.topic === resultTopic && m.json?.reason === 'unsigned').length, FLOOD, 'every refusal is answered');
  // ...but only a few are written to the journal.
  const refusals = (await history(dev)).filter((e) => e.event === 'command' && e.data?.result === 'refused');
  // 10 a minute (20 if the flood straddled two windows on a slow machine).
  t.ok(refusals.length >= 10 && refusals.length <= 20, `${refusals.length} of ${FLOOD} refusals journaled`);
  t.ok(journalSize() - before < 10 * 1024, `the journal grew by ${journalSize() - before} bytes, not ${FLOOD} entries' worth`);

  // cleanup, signed, runs on the device.
  const r = await larch(['command', '--mqtt', broker.url, '--device', id, '--sign-key', `${v.key}.key`, '--wait', '30', '--json', 'cleanup']);
  t.equal(r.code, 0, `cleanup command exit 0 (${r.stderr})`);
  t.match(r.json?.result, { result: 'ok', cmd: 'cleanup', output: { removed_slot: null, objects_deleted: Number, bytes_freed: Number } });
  await d.stop();
});
