/** apply-live's services: which to restart (systemd and sysvinit) and restarting them (design §6.2 "Units"). */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessUse } from '../../../src/agent/live/procs.ts';
import { initSystemOf, restartUnits, serviceOfUnitFile, sysvinitServicesOf, unitsToRestart } from '../../../src/agent/live/units.ts';
import { type TapTest, rejectsCode, tempDir } from '../../helpers.ts';

const read = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '');

function executable(path: string, text: string): void {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

/**
 * A sysvinit root: init scripts `demo` and `idle` that log `NAME restart` (and a line on stderr),
 * `broken` that fails with exit 3, and /run/demo.pid naming pid 4242.
 */
function sysvinitRoot(t: TapTest): { root: string; log: string } {
  const root = tempDir(t);
  const log = join(root, 'restarts.log');
  mkdirSync(join(root, 'etc/init.d'), { recursive: true });
  mkdirSync(join(root, 'run'));
  for (const name of ['demo', 'idle']) {
    executable(join(root, 'etc/init.d', name), `#!/bin/sh\ncase "$1" in restart) echo "${name} restart" >> '${log}'; echo "restarting ${name}" >&2 ;; *) exit 2 ;; esac\n`);
  }
  executable(join(root, 'etc/init.d/broken'), `#!/bin/sh\necho "broken $1" >> '${log}'\necho 'first line' >&2\necho 'cannot start broken: no config' >&2\nexit 3\n`);
  writeFileSync(join(root, 'run/demo.pid'), '4242\n');
  writeFileSync(join(root, 'run/idle.pid'), '5151\n');
  return { root, log };
}

const use = (pid: number, unit: string | null, ...paths: string[]): ProcessUse => ({ pid, comm: 'sh', unit, files: paths.map((path) => ({ path, via: 'fd' as const })) });

t.test('initSystemOf: systemd when ROOT/run/systemd/system is a directory', async (t) => {
  const root = tempDir(t);
  t.equal(initSystemOf(root), 'sysvinit');
  mkdirSync(join(root, 'run/systemd'), { recursive: true });
  writeFileSync(join(root, 'run/systemd/system'), '');
  t.equal(initSystemOf(root), 'sysvinit', 'a file there is no running systemd');
  const other = tempDir(t);
  mkdirSync(join(other, 'run/systemd/system'), { recursive: true });
  t.equal(initSystemOf(other), 'systemd');
});

t.test('sysvinit: the service whose pid file names a process using a changed file; restarted by its real script, idle never', async (t) => {
  const { root, log } = sysvinitRoot(t);
  const units = await unitsToRestart(['/usr/libexec/demo', '/usr/share/doc/x'], [use(4242, null, '/usr/libexec/demo'), use(777, null, '/usr/share/doc/x')], { root, init: 'sysvinit' });
  t.same(units, [{ name: 'demo', init: 'sysvinit', why: ['process'], files: ['/usr/libexec/demo'] }], 'demo only: pid 777 is in no service');
  const restarted = await restartUnits(units, { root, init: 'sysvinit' });
  t.same(restarted, [{ name: 'demo', exit_code: 0, stderr: 'restarting demo' }]);
  t.equal(read(log), 'demo restart\n', 'the script ran once, with restart; idle never');
});

t.test('sysvinit: a changed init script lists its service; a cgroup unit means nothing without systemd', async (t) => {
  const { root } = sysvinitRoot(t);
  t.same(await unitsToRestart(['/etc/init.d/idle', '/etc/init.d.conf', '/etc/default/idle'], [], { root, init: 'sysvinit' }), [
    { name: 'idle', init: 'sysvinit', why: ['unit-file'], files: ['/etc/init.d/idle'] },
  ]);
  t.same(
    await unitsToRestart(['/etc/init.d/demo', '/usr/bin/d'], [use(4242, 'ignored.service', '/usr/bin/d'), use(4242, null, '/usr/bin/d')], { root, init: 'sysvinit' }),
    [{ name: 'demo', init: 'sysvinit', why: ['unit-file', 'process'], files: ['/etc/init.d/demo', '/usr/bin/d'] }],
    'both reasons, each unit once, its files once',
  );
});

t.test('sysvinitServicesOf: pid files of existing scripts only, first line, numbers only', async (t) => {
  const { root } = sysvinitRoot(t);
  writeFileSync(join(root, 'run/orphan.pid'), '6000\n'); // no /etc/init.d/orphan: nothing could restart it
  writeFileSync(join(root, 'run/broken.pid'), 'not a pid\n');
  const byPid = await sysvinitServicesOf([4242, 5151, 6000, 1], root);
  t.same([...byPid], [[4242, 'demo'], [5151, 'idle']]);
  t.same([...(await sysvinitServicesOf([4242], join(root, 'nowhere')))], [], 'a root without init.d');
});

t.test('sysvinit: a failing restart gets its exit code and stderr tail; the others still run', async (t) => {
  const { root, log } = sysvinitRoot(t);
  const units = [
    { name: 'broken', init: 'sysvinit' as const, why: ['unit-file' as const], files: ['/etc/init.d/broken'] },
    { name: 'demo', init: 'sysvinit' as const, why: ['process' as const], files: ['/usr/libexec/demo'] },
    { name: 'gone', init: 'sysvinit' as const, why: ['unit-file' as const], files: ['/etc/init.d/gone'] },
    { name: 'idle', init: 'sysvinit' as const, why: ['process' as const], files: ['/usr/libexec/idle'] },
  ];
  const restarted = await restartUnits(units, { root, init: 'sysvinit' });
  t.same(restarted.map((r) => [r.name, r.exit_code]), [['broken', 3], ['demo', 0], ['gone', 127], ['idle', 0]]);
  t.equal(restarted[0].stderr, 'first line; cannot start broken: no config', "the last lines of the script's stderr");
  t.match(restarted[2].stderr, /cannot run .*etc\/init\.d\/gone/, 'a missing script is named');
  t.equal(read(log), 'broken restart\ndemo restart\nidle restart\n', 'in order, and past the failures');
});

t.test('sysvinit: a script whose daemon keeps its stderr open still returns, with what it wrote before its exit', { timeout: 15_000 }, async (t) => {
  const { root } = sysvinitRoot(t);
  const daemonPid = join(root, 'daemon.pid');
  // The "daemon" inherits the script's stderr and holds it long after the script exits.
  executable(join(root, 'etc/init.d/demo'), `#!/bin/sh\necho 'starting demo' >&2\nsleep 300 &\necho $! > '${daemonPid}'\nexit 0\n`);
  t.teardown(() => {
    const pid = Number(read(daemonPid));
    try {
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  });
  const restarted = await restartUnits([{ name: 'demo', init: 'sysvinit', why: ['process'], files: ['/usr/libexec/demo'] }], { root, init: 'sysvinit' });
  t.same(restarted, [{ name: 'demo', exit_code: 0, stderr: 'starting demo' }]);
  t.ok(Number(read(daemonPid)) > 0, 'the daemon was started (and is still running)');
});

/** A systemd root and a fake systemctl, first on PATH, that logs its arguments (and fails as told by ROOT/fail-ARG). */
function systemdRoot(t: TapTest): { root: string; log: string; env: NodeJS.ProcessEnv } {
  const root = tempDir(t);
  const bin = join(root, 'bin');
  const log = join(root, 'systemctl.log');
  mkdirSync(join(root, 'run/systemd/system'), { recursive: true });
  mkdirSync(bin);
  executable(join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> '${log}'\nlast=""; for a; do last="$a"; done\nif [ -e '${root}/fail-'"$last" ]; then echo "Failed: $last" >&2; exit 5; fi\n`);
  return { root, log, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } };
}

t.test('systemd: a changed unit file and the unit of a process; daemon-reload first, then the restarts in name order', async (t) => {
  const { root, log, env } = systemdRoot(t);
  t.equal(initSystemOf(root), 'systemd');
  const changed = ['/usr/lib/systemd/system/foo.service', '/usr/bin/bar', '/usr/lib/systemd/system/multi-user.target.wants/foo.service', '/usr/lib/systemd/user/u.service'];
  const units = await unitsToRestart(changed, [use(10, 'bar.service', '/usr/bin/bar'), use(11, null, '/usr/bin/bar'), use(12, 'bar.service', '/usr/bin/bar')], { root, init: 'systemd' });
  t.same(units, [
    { name: 'bar.service', init: 'systemd', why: ['process'], files: ['/usr/bin/bar'] },
    { name: 'foo.service', init: 'systemd', why: ['unit-file'], files: ['/usr/lib/systemd/system/foo.service'] },
  ]);
  const restarted = await restartUnits(units, { root, init: 'systemd', env });
  t.same(restarted, [
    { name: 'bar.service', exit_code: 0, stderr: '' },
    { name: 'foo.service', exit_code: 0, stderr: '' },
  ]);
  t.equal(read(log), 'daemon-reload\nrestart bar.service\nrestart foo.service\n');
});

t.test('systemd: without a unit-file reason no daemon-reload; a failing restart does not stop the next', async (t) => {
  const { root, log, env } = systemdRoot(t);
  writeFileSync(join(root, 'fail-a.service'), '');
  const units = await unitsToRestart(['/usr/bin/x'], [use(1, 'b.service', '/usr/bin/x'), use(2, 'a.service', '/usr/bin/x')], { root, init: 'systemd' });
  const restarted = await restartUnits(units, { root, init: 'systemd', env });
  t.same(restarted, [
    { name: 'a.service', exit_code: 5, stderr: 'Failed: a.service' },
    { name: 'b.service', exit_code: 0, stderr: '' },
  ]);
  t.equal(read(log), 'restart a.service\nrestart b.service\n');
});

t.test('systemd: a failed daemon-reload leaves the unit-file units unrestarted, with its exit code', async (t) => {
  const { root, log, env } = systemdRoot(t);
  writeFileSync(join(root, 'fail-daemon-reload'), '');
  const units = await unitsToRestart(['/etc/systemd/system/a.service.d/override.conf', '/usr/bin/b'], [use(1, 'b.service', '/usr/bin/b')], { root, init: 'systemd' });
  t.same(units.map((u) => [u.name, u.why]), [['a.service', ['unit-file']], ['b.service', ['process']]], 'a drop-in names its service');
  const restarted = await restartUnits(units, { root, init: 'systemd', env });
  t.same(restarted, [
    { name: 'a.service', exit_code: 5, stderr: 'systemctl daemon-reload failed: Failed: daemon-reload' },
    { name: 'b.service', exit_code: 0, stderr: '' },
  ]);
  t.equal(read(log), 'daemon-reload\nrestart b.service\n');
});

t.test('systemd: no systemctl on PATH is TOOL_MISSING', async (t) => {
  const root = tempDir(t);
  mkdirSync(join(root, 'empty-bin'));
  const units = [{ name: 'foo.service', init: 'systemd' as const, why: ['process' as const], files: ['/usr/bin/foo'] }];
  await rejectsCode(t, restartUnits(units, { root, init: 'systemd', env: { PATH: join(root, 'empty-bin') } }), 'TOOL_MISSING', 'restart without systemctl', { data: { tool: 'systemctl', package: 'systemd' } });
  t.same(await restartUnits([], { root, init: 'systemd', env: { PATH: join(root, 'empty-bin') } }), [], 'nothing to restart: systemctl is not needed');
});

t.test('serviceOfUnitFile: unit files and drop-ins of services in the system unit directories', async (t) => {
  const cases: [string, string | null][] = [
    ['/usr/lib/systemd/system/foo.service', 'foo.service'],
    ['/etc/systemd/system/foo.service', 'foo.service'],
    ['/usr/lib/systemd/system/foo.service.d/10-larch.conf', 'foo.service'],
    ['/etc/systemd/system/foo.service.d/override.conf', 'foo.service'],
    ['/usr/lib/systemd/system/foo.socket', null],
    ['/usr/lib/systemd/system/getty@.service', null],
    ['/usr/lib/systemd/system/getty@.service.d/x.conf', null],
    ['/usr/lib/systemd/system/.service', null],
    ['/usr/lib/systemd/system/sockets.target.wants/foo.service', null],
    ['/usr/lib/systemd/user/foo.service', null],
    ['/lib/systemd/system-foo.service', null],
    ['/usr/share/foo.service', null],
  ];
  for (const [path, name] of cases) t.equal(serviceOfUnitFile(path), name, path);
});
