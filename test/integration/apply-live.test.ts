/**
 * larch apply-live (issue 20, must-show 4, on a directory standing in for the running root): in
 * a mount namespace of the test's own, a "running system" whose /usr and /etc are slot A's runs
 * two sysvinit services; release 2 changes the program one of them holds open. --dry-run names
 * the changed file, the process that holds it (fd) and its service; apply-live binds slot B's
 * tree over the running one, restarts that service only, and the restarted service reads the
 * new bytes without a reboot. While live, an upgrade that would rewrite slot B is refused; the
 * next (simulated) boot comes up on the commit that was live. A release that changes the kernel
 * is refused with nothing changed. The QEMU boards' run is the HIL scenario `live`.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, makeTree, status, vendor } from '../device-helpers.ts';
import { BIN, IS_ROOT, larch, larchOk, tempDir } from '../helpers.ts';

/** A service as a board's rc runs it: start-stop by pid file; `demo` keeps its program open (fd 3), as a shell keeps its script. */
const service = (name: string, holds: boolean) => `#!/bin/sh
R="$LIVE_ROOT"
case "$1" in
  start)
    ${holds ? `sh -c 'exec 3<"$1/usr/libexec/demo"; cat "$1/usr/libexec/demo" > "$1/run/${name}.out"; exec sleep 1000' sh "$R" &` : 'sleep 1000 &'}
    echo $! > "$R/run/${name}.pid" ;;
  stop) kill "$(cat "$R/run/${name}.pid")" 2>/dev/null; rm -f "$R/run/${name}.pid" ;;
  restart) echo restart >> "$R/run/${name}.log"; "$0" stop; "$0" start ;;
esac
`;

t.test('apply-live: the report, the switch, the restart of the one service whose file changed; a kernel change refused', async (t) => {
  if (!IS_ROOT) {
    t.fail('apply-live binds mounts in a mount namespace of its own: run this test as root (CI does)');
    return;
  }
  const v = await vendor(t);
  const dir = tempDir(t);
  const tree = (n: number) => join(dir, `tree${n}`);
  makeTree(tree(1), 1, { files: { 'usr/libexec/demo': 'demo program, release 1\n', 'etc/init.d/demo': service('demo', true), 'etc/init.d/idle': service('idle', false) } });
  for (const s of ['demo', 'idle']) chmodSync(join(tree(1), 'etc/init.d', s), 0o755);
  // Release 2: the program changes and a file is added; the kernel, initramfs and modules do not.
  cpSync(tree(1), tree(2), { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(tree(2), 'usr/libexec/demo'), 'demo program, release 2\n');
  writeFileSync(join(tree(2), 'usr/libexec/new-tool'), 'new in release 2\n');
  // Release 3: one byte of the kernel.
  cpSync(tree(2), tree(3), { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(tree(3), 'boot/vmlinuz-6.1.0-1'), 'kernel 1, patched\n');

  await v.release(1, { tree: tree(1) });
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2, { tree: tree(2) });
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'B', commit: v2 } });
  await v.release(3, { tree: tree(3) });

  // The running system: slot A's /usr and /etc at ROOT, its services started, in a mount namespace of this test.
  const root = join(dir, 'root');
  const out = join(dir, 'out');
  const script = `set -e
mkdir -p '${root}/usr' '${root}/etc' '${root}/run' '${out}'
mount --bind '${dev}/larch/deploy/A/usr' '${root}/usr'
mount --bind '${dev}/larch/deploy/A/etc' '${root}/etc'
'${root}/etc/init.d/demo' start
'${root}/etc/init.d/idle' start
while [ ! -s '${root}/run/demo.out' ]; do sleep 0.05; done
cp '${root}/run/demo.pid' '${out}/demo.pid.before'; cp '${root}/run/idle.pid' '${out}/idle.pid.before'
L='${BIN}'
"$L" apply-live --sysroot '${dev}' --live-root '${root}' --dry-run --json > '${out}/dry.json'
"$L" apply-live --sysroot '${dev}' --live-root '${root}' --json > '${out}/applied.json'
cat '${root}/usr/libexec/demo' > '${out}/usr-demo'
while [ ! -s '${root}/run/demo.out' ] || ! grep -q 'release 2' '${root}/run/demo.out'; do sleep 0.05; done
cp '${root}/run/demo.out' '${out}/demo.out'
"$L" upgrade --sysroot '${dev}' --json > '${out}/upgrade.json' || echo $? > '${out}/upgrade.exit'
"$L" status --sysroot '${dev}' --json > '${out}/status.json'
for s in demo idle; do kill "$(cat '${root}/run/'$s.pid)" 2>/dev/null || true; done
`;
  // The services outlive the namespace's script when it fails midway: end them with the test.
  t.teardown(() => {
    for (const s of ['demo', 'idle']) {
      const pid = Number(existsSync(join(root, `run/${s}.pid`)) ? readFileSync(join(root, `run/${s}.pid`), 'utf8') : 0);
      if (pid > 0) spawnSync('kill', [String(pid)]);
    }
  });
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { env: { ...process.env, LIVE_ROOT: root }, encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, `the running system's script ran (${r.stderr.trim().slice(-500)})`);
  const json = (name: string) => JSON.parse(readFileSync(join(out, name), 'utf8'));

  const dry = json('dry.json');
  const demoPid = Number(readFileSync(join(out, 'demo.pid.before'), 'utf8'));
  t.match(dry, { result: 'dry-run', slot: 'B', to: { commit: v2 }, init: 'sysvinit', refused: [], restarted: [] }, 'dry-run: it can go live');
  t.same(dry.files.modified, ['/usr/libexec/demo'], 'the changed file');
  t.same(dry.files.added, ['/usr/libexec/new-tool'], 'the added file');
  t.match(dry.processes, [{ pid: demoPid, files: [{ path: '/usr/libexec/demo', via: 'fd' }] }], 'the process that holds it open');
  t.same(dry.units.map((u: { name: string }) => u.name), ['demo'], 'the service to restart, and only it');

  const applied = json('applied.json');
  t.match(applied, { result: 'applied', restarted: [{ name: 'demo', exit_code: 0 }] }, 'applied, demo restarted');
  t.equal(readFileSync(join(out, 'usr-demo'), 'utf8'), 'demo program, release 2\n', 'the running /usr is release 2');
  t.equal(readFileSync(join(out, 'demo.out'), 'utf8'), 'demo program, release 2\n', 'the restarted service runs the new program, no reboot');
  t.equal(readFileSync(join(root, 'run/demo.log'), 'utf8'), 'restart\n', 'demo restarted once');
  t.notOk(existsSync(join(root, 'run/idle.log')), 'idle not restarted');
  t.equal(readFileSync(join(out, 'upgrade.exit'), 'utf8').trim(), '14', 'an upgrade that would rewrite the live slot: exit 14');
  t.match(json('upgrade.json').error, { code: 'REFUSED', data: { reason: 'live-applied', slot: 'B' } });
  const s = json('status.json');
  t.match(s, { live: { slot: 'B', commit: v2, state: 'live' }, pending: { slot: 'B', commit: v2 }, booted: { slot: 'A' } }, 'status: B is live and still staged for the next boot');

  // The next boot is the live commit's, confirmed as usual.
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });
  const after = await status(dev);
  t.match(after, { booted: { slot: 'B', commit: v2 }, live: null }, 'booted on the commit that was live; live ended with the boot');

  // A kernel change is refused, before anything is mounted.
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { slot: 'A', version: '3' } });
  const kdry = await larchOk(['apply-live', '--sysroot', dev, '--live-root', root, '--dry-run', '--json']);
  t.match(kdry.json.refused, [{ reason: 'kernel-changed', paths: ['/boot/vmlinuz-6.1.0-1'] }], 'dry-run names the kernel change');
  const k = await larch(['apply-live', '--sysroot', dev, '--live-root', root, '--json']);
  t.equal(k.code, 14, 'refused: exit 14');
  t.match(k.json?.error, { code: 'REFUSED', data: { reason: 'kernel-changed' } });
  t.equal((await status(dev)).live, null, 'nothing live');
});
