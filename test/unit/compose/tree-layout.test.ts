/** Where a resolved tree's paths go in the commit (layout.ts treeMemberPath), and a dpkg status file read as a package list. */
import t from 'tap';
import { ADMINDIR_CONFIG, treeMemberPath } from '../../../src/compose/layout.ts';
import { parseDpkgStatus } from '../../../src/packages/dpkg-status.ts';

t.test('the dpkg database moves under /usr; build state, host files and per-device secrets are left out', async (t) => {
  const cases: [string, string | null][] = [
    ['var/lib/dpkg', 'usr/lib/sysimage/dpkg'],
    ['var/lib/dpkg/status', 'usr/lib/sysimage/dpkg/status'],
    ['var/lib/dpkg/info/openssh-server.postinst', 'usr/lib/sysimage/dpkg/info/openssh-server.postinst'],
    ['var/lib/dpkg/status-old', null],
    ['var/lib/dpkg/lock-frontend', null],
    ['var/lib/dpkg/triggers/Lock', null],
    ['var/lib/dpkg/triggers/File', 'usr/lib/sysimage/dpkg/triggers/File'],
    ['var/cache/debconf/config.dat', null],
    ['var/log/dpkg.log', null],
    ['var/lib/apt/lists/lock', null],
    ['var/lib/ucf/registry', 'usr/share/factory/var/lib/ucf/registry'],
    ['var', 'var'],
    ['etc/ssh/ssh_host_ed25519_key', null],
    ['etc/ssh/ssh_host_rsa_key.pub', null],
    ['etc/ssh/sshd_config', 'etc/ssh/sshd_config'],
    ['etc/machine-id', null],
    ['etc/hostname', null],
    ['etc/resolv.conf', null],
    ['etc/apt/apt.conf.d/99mmdebstrap', null],
    ['dev', 'dev'],
    ['dev/null', null],
    ['tmp/x', null],
    ['usr/bin/dpkg', 'usr/bin/dpkg'],
    ['bin', 'bin'],
  ];
  for (const [from, to] of cases) t.equal(treeMemberPath(from), to, `${from} -> ${to}`);
  t.match(ADMINDIR_CONFIG['etc/dpkg/dpkg.cfg.d/larch'], /^admindir \/usr\/lib\/sysimage\/dpkg$/m);
  t.match(ADMINDIR_CONFIG['etc/apt/apt.conf.d/50larch'], /^Dir::State::status "\/usr\/lib\/sysimage\/dpkg\/status";$/m);
});

t.test('a dpkg status file: installed packages only, sorted', async (t) => {
  const status = [
    'Package: zlib1g\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nMulti-Arch: same\nVersion: 1:1.2.13.dfsg-1\nDescription: compression\n library',
    'Package: gone\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 1',
    'Package: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134\nDepends: passwd',
    'Package: half\nStatus: install reinstreq half-installed\nArchitecture: all\nVersion: 2',
  ].join('\n\n');
  t.same(parseDpkgStatus(`${status}\n`), [
    { name: 'adduser', version: '3.134', architecture: 'all' },
    { name: 'zlib1g', version: '1:1.2.13.dfsg-1', architecture: 'amd64' },
  ]);
  t.same(parseDpkgStatus(''), []);
});
