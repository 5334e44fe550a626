/** apply-live's process scan: which processes use a changed file, by exe, memory map or open fd (design §6.2 "Processes"). */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { devMajorMinor, parseMapsLine, processesUsing, unitFromCgroup, watch } from '../../../src/agent/live/procs.ts';
import { type TapTest, tempDir, waitUntil } from '../../helpers.ts';

/** A shell that opens `file` as fd 3 and waits on its stdin (a pipe kept open) until the test ends. */
async function holder(t: TapTest, file: string): Promise<ChildProcess> {
  const child = spawn('sh', ['-c', 'exec 3<"$1"; read x', 'holder', file], { stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  await waitUntil(() => existsSync(`/proc/${child.pid}/fd/3`), 20_000, 'the holder to open its file');
  return child;
}

const hex = (n: number) => n.toString(16).padStart(2, '0');

t.test('a real process holding a file open is found by its fd; a file nobody holds is not', async (t) => {
  const dir = tempDir(t);
  const held = join(dir, 'held');
  const idle = join(dir, 'idle');
  writeFileSync(held, 'old bytes\n');
  writeFileSync(idle, 'nobody opens me\n');
  const child = await holder(t, held);
  // This process holds it too: the scan must not count itself (it is the one about to change things).
  const ownFd = openSync(held, 'r');
  t.teardown(() => closeSync(ownFd));
  const watched = [(await watch(held, '/usr/libexec/held'))!, (await watch(idle, '/usr/share/idle'))!];
  const uses = await processesUsing(watched);
  const mine = uses.filter((u) => u.pid === child.pid);
  t.equal(mine.length, 1, 'the holder is listed once');
  t.same(mine[0]?.files, [{ path: '/usr/libexec/held', via: 'fd' }], 'by fd, under the name it was watched as');
  t.equal(mine[0]?.comm, 'sh', 'comm is the kernel name of the process');
  t.notOk(uses.some((u) => u.files.some((f) => f.path === '/usr/share/idle')), 'the file nobody holds names no process');
  t.notOk(uses.some((u) => u.pid === process.pid), 'the scanning process itself is not listed, though it holds the file');
});

t.test('a file renamed and removed after it was watched still finds its holder (matched by inode)', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'bin');
  writeFileSync(file, 'v1\n');
  const w = (await watch(file))!;
  const child = await holder(t, file);
  renameSync(file, join(dir, 'bin.old'));
  rmSync(join(dir, 'bin.old'));
  const uses = await processesUsing([w]);
  t.same(uses.find((u) => u.pid === child.pid)?.files, [{ path: file, via: 'fd' }]);
});

t.test("a real process's executable is found by exe, and mapped by map", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'held');
  writeFileSync(file, 'x');
  const child = await holder(t, file);
  const shell = realpathSync(`/proc/${child.pid}/exe`);
  const uses = await processesUsing([(await watch('/bin/sh'))!]);
  const mine = uses.find((u) => u.pid === child.pid);
  t.ok(mine, `the holder (pid ${child.pid}) runs ${shell}, which /bin/sh names`);
  t.same(mine?.files, [{ path: '/bin/sh', via: 'exe' }, { path: '/bin/sh', via: 'map' }], 'as exe and as a memory map');
});

t.test('watch: dev and ino of the file a path names (through symlinks); null when there is none', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'real'), 'x');
  symlinkSync('real', join(dir, 'link'));
  const st = statSync(join(dir, 'real'));
  t.same(await watch(join(dir, 'link'), '/usr/link'), { path: '/usr/link', dev: st.dev, ino: st.ino });
  t.same(await watch(join(dir, 'real')), { path: join(dir, 'real'), dev: st.dev, ino: st.ino }, 'shown as its own path by default');
  t.equal(await watch(join(dir, 'missing')), null);
  t.equal(await watch(join(dir, 'real', 'below')), null, 'a path through a file (ENOTDIR) names nothing either');
});

t.test('a fake /proc tree: exe, maps (spaces, deleted), fd, cgroup v1 and v2, and what is not a process', async (t) => {
  const dir = tempDir(t);
  const proc = join(dir, 'proc');
  const files = join(dir, 'files');
  mkdirSync(files);
  const paths = { exe: join(files, 'daemon'), lib: join(files, 'lib with space.so'), conf: join(files, 'conf'), other: join(files, 'other') };
  for (const p of Object.values(paths)) writeFileSync(p, p);
  const st = (p: string) => statSync(p);
  const mm = (p: string) => {
    const { major, minor } = devMajorMinor(st(p).dev);
    return `${hex(major)}:${hex(minor)}`;
  };
  const fakeProcess = (pid: string, f: { comm: string; cgroup: string; maps: string; exe?: string; fds?: Record<string, string> }) => {
    const d = join(proc, pid);
    mkdirSync(join(d, 'fd'), { recursive: true });
    writeFileSync(join(d, 'comm'), `${f.comm}\n`);
    writeFileSync(join(d, 'cgroup'), f.cgroup);
    writeFileSync(join(d, 'maps'), f.maps);
    if (f.exe) symlinkSync(f.exe, join(d, 'exe'));
    for (const [fd, target] of Object.entries(f.fds ?? {})) symlinkSync(target, join(d, 'fd', fd));
  };
  // pid 123: a systemd (v2) service whose exe is the daemon and which maps a deleted library with a space in its name.
  fakeProcess('123', {
    comm: 'daemon',
    cgroup: '0::/system.slice/demo.service\n',
    exe: paths.exe,
    maps: [
      `00400000-00452000 r-xp 00000000 ${mm(paths.exe)} ${st(paths.exe).ino}        ${paths.exe}`,
      `7f0000000000-7f0000001000 r-xp 00000000 ${mm(paths.lib)} ${st(paths.lib).ino}    ${paths.lib} (deleted)`,
      `7f0000002000-7f0000003000 rw-p 00000000 00:00 0 `,
      `7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]`,
      '',
    ].join('\n'),
    fds: { '0': '/dev/null', '3': paths.conf, '4': join(files, 'closed-meanwhile') },
  });
  // pid 7: cgroup v1, the service under name=systemd, holding the conf file; its exe and maps name nothing watched.
  fakeProcess('7', {
    comm: 'worker',
    cgroup: '12:memory:/system.slice/other.service\n3:cpu,cpuacct:/\n1:name=systemd:/system.slice/worker.service\n0::/\n',
    exe: paths.other,
    maps: `00400000-00452000 r-xp 00000000 ${mm(paths.other)} ${st(paths.other).ino}  ${paths.other}\n`,
    fds: { '5': paths.conf },
  });
  // pid 99: a login shell (a scope, no service), mapping the library by another name (its maps path is not what matches).
  fakeProcess('99', {
    comm: 'sh',
    cgroup: '0::/user.slice/user-1000.slice/session-2.scope\n',
    maps: `55d000000000-55d000001000 r--p 00000000 ${mm(paths.lib)} ${st(paths.lib).ino} /some/other name\n`,
  });
  // pid 50: uses nothing watched; 'self' and 'net': not processes, though they hold what a process would.
  fakeProcess('50', { comm: 'idle', cgroup: '0::/system.slice/idle.service\n', maps: '', exe: paths.other });
  fakeProcess('self', { comm: 'nope', cgroup: '0::/system.slice/nope.service\n', maps: '', exe: paths.exe, fds: { '3': paths.conf } });
  mkdirSync(join(proc, 'net'));
  writeFileSync(join(proc, 'uptime'), '1.0 1.0\n');
  // A process whose entries vanished mid-scan (exited): no comm, maps, fd; skipped without error.
  mkdirSync(join(proc, '200'));

  const watched = await Promise.all([
    watch(paths.exe, '/usr/sbin/daemon'),
    watch(paths.lib, '/usr/lib/lib with space.so'),
    watch(paths.conf, '/usr/share/demo/conf'),
  ]);
  const uses = await processesUsing(watched.map((w) => w!), { procRoot: proc });
  t.same(uses, [
    { pid: 7, comm: 'worker', unit: 'worker.service', files: [{ path: '/usr/share/demo/conf', via: 'fd' }] },
    { pid: 99, comm: 'sh', unit: null, files: [{ path: '/usr/lib/lib with space.so', via: 'map' }] },
    {
      pid: 123,
      comm: 'daemon',
      unit: 'demo.service',
      files: [
        { path: '/usr/lib/lib with space.so', via: 'map' },
        { path: '/usr/sbin/daemon', via: 'exe' },
        { path: '/usr/sbin/daemon', via: 'map' },
        { path: '/usr/share/demo/conf', via: 'fd' },
      ],
    },
  ]);
  t.same(await processesUsing([], { procRoot: proc }), [], 'no files: no processes');
});

t.test('parseMapsLine: hex device, decimal inode, a path with spaces and (deleted)', async (t) => {
  t.same(parseMapsLine('7f2c1a000000-7f2c1a021000 r-xp 00001000 fe:01 1048577                    /usr/lib/x86_64-linux-gnu/a b.so (deleted)'), {
    major: 0xfe,
    minor: 1,
    inode: 1048577,
    path: '/usr/lib/x86_64-linux-gnu/a b.so',
    deleted: true,
  });
  t.same(parseMapsLine('00400000-00401000 r--p 00000000 103:0a 42 /usr/bin/x'), { major: 0x103, minor: 0x0a, inode: 42, path: '/usr/bin/x', deleted: false });
  t.equal(parseMapsLine('7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]'), null, 'anonymous: inode 0');
  t.equal(parseMapsLine(''), null);
  t.equal(parseMapsLine('garbage'), null);
});

t.test('unitFromCgroup: the first .service of the systemd hierarchy, v1 or v2', async (t) => {
  t.equal(unitFromCgroup('0::/system.slice/larch-demo.service\n'), 'larch-demo.service');
  t.equal(unitFromCgroup('0::/system.slice/docker.service/inner\n'), 'docker.service', 'a sub-cgroup the service made');
  t.equal(unitFromCgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service\n'), 'user@1000.service', "a user's service: the unit the system manager knows");
  t.equal(unitFromCgroup('4:memory:/system.slice/a.service\n1:name=systemd:/system.slice/b.service\n'), 'b.service', 'v1: only name=systemd counts');
  t.equal(unitFromCgroup('4:memory:/system.slice/a.service\n'), null, 'no systemd hierarchy');
  t.equal(unitFromCgroup('0::/user.slice/user-0.slice/session-1.scope\n'), null, 'a scope is no service');
  t.equal(unitFromCgroup('0::/\n'), null);
  t.equal(unitFromCgroup('0::/x/.service\n'), null, 'a bare .service names nothing');
});

t.test('devMajorMinor: glibc major/minor, checked against known numbers', async (t) => {
  t.same(devMajorMinor(0x801), { major: 8, minor: 1 }, '/dev/sda1');
  t.same(devMajorMinor(0xfe00), { major: 0xfe, minor: 0 }, '/dev/vda');
  // makedev(0x12345, 0xabcde): minor's high bits at 12.., major's high bits above 32.
  t.same(devMajorMinor(0x12000abc345de), { major: 0x12345, minor: 0xabcde });
  t.same(devMajorMinor(0), { major: 0, minor: 0 });
});

t.test("devMajorMinor: the kernel's own major:minor for real files (mountinfo, and this process's maps)", async (t) => {
  // The temp dir's mount: the longest mount point of mountinfo that holds the file.
  const dir = tempDir(t);
  const file = realpathSync(dir);
  let best: { point: string; mm: string } | null = null;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const point = f[4].replace(/\\040/g, ' ');
    const holds = point === '/' || file === point || file.startsWith(`${point}/`);
    if (holds && (!best || point.length >= best.point.length)) best = { point, mm: f[2] };
  }
  const { major, minor } = devMajorMinor(statSync(file).dev);
  t.equal(`${major}:${minor}`, best?.mm, `${file} is on ${best?.point}`);

  // The node binary: its maps line names the device in hex.
  const exe = realpathSync(process.execPath);
  const line = readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.endsWith(` ${exe}`));
  const entry = parseMapsLine(line ?? '');
  t.ok(entry, `${exe} is mapped`);
  t.same(devMajorMinor(statSync(exe).dev), { major: entry?.major, minor: entry?.minor }, 'the maps device of the node binary');
  t.equal(entry?.inode, statSync(exe).ino, 'and its inode');
});
