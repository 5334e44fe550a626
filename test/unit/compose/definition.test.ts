/** Image definition parsing: every field, and the errors that name the file and the field. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDefinition } from '../../../src/compose/definition.ts';
import { ROOT, rejectsCode } from '../../helpers.ts';

const MINIMAL = 'ref = "os/x"\nversion = "1"\narchitecture = "amd64"\npackages = ["busybox"]\n';

t.test('a full definition', async (t) => {
  const def = parseDefinition(
    `ref = "vendor/gw/stable"
version = "2026.11.1"
architecture = "arm64"
timestamp = 2026-01-01T00:00:00Z
subject = "gateway"
packages = ["zlib1g", "busybox", "libc6=2.36-9+deb12u7"]
kernel = "linux-image-6.1.0-56-arm64"
commands = ["mkdir -p etc/x"]
[[overlay]]
source = "overlay/common/"
[[overlay]]
source = "./files/hostname"
target = "/etc//hostname"
[boot]
files = ["boot/vmlinuz-*", "usr/lib/linux-image-*/broadcom/*.dtb"]
`,
    'gw.toml',
  );
  t.same(def, {
    ref: 'vendor/gw/stable',
    version: '2026.11.1',
    architecture: 'arm64',
    timestamp: 1767225600,
    subject: 'gateway',
    packages: [{ name: 'busybox' }, { name: 'libc6', version: '2.36-9+deb12u7' }, { name: 'linux-image-6.1.0-56-arm64', version: undefined }, { name: 'zlib1g' }],
    kernel: { name: 'linux-image-6.1.0-56-arm64', version: undefined },
    overlays: [{ source: 'overlay/common', target: '' }, { source: 'files/hostname', target: 'etc/hostname' }],
    commands: ['mkdir -p etc/x'],
    bootFiles: ['boot/vmlinuz-*', 'usr/lib/linux-image-*/broadcom/*.dtb'],
    exact: false,
    recommends: false,
    localPackages: [],
  });
  t.equal(parseDefinition(MINIMAL + 'timestamp = 1700000000\n', 'x.toml').timestamp, 1700000000, 'timestamp as seconds');
  t.equal(parseDefinition(MINIMAL, 'x.toml').timestamp, undefined, 'no timestamp');
});

t.test('min_agent_version: optional, a version', async (t) => {
  t.equal(parseDefinition(MINIMAL, 'x.toml').minAgentVersion, undefined);
  t.equal(parseDefinition(MINIMAL + 'min_agent_version = "0.2.0~rc1"\n', 'x.toml').minAgentVersion, '0.2.0~rc1');
});

t.test('exact, recommends, local_packages: optional; recommends and local .deb files need a resolved compose', async (t) => {
  t.match(parseDefinition(MINIMAL, 'x.toml'), { exact: false, recommends: false, localPackages: [] }, 'resolved, no recommends, by default');
  t.match(parseDefinition(MINIMAL + 'exact = true\n', 'x.toml'), { exact: true });
  t.match(parseDefinition(MINIMAL + 'recommends = true\nlocal_packages = ["debs/./a_1_all.deb"]\n', 'x.toml'), { recommends: true, localPackages: ['debs/a_1_all.deb'] });
  t.throws(() => parseDefinition(MINIMAL + 'exact = "yes"\n', 'x.toml'), { code: 'INVALID_INPUT', data: { field: 'exact' } });
  t.throws(() => parseDefinition(MINIMAL + 'exact = true\nrecommends = true\n', 'x.toml'), { code: 'INVALID_INPUT', data: { field: 'recommends' } });
  t.throws(() => parseDefinition(MINIMAL + 'exact = true\nlocal_packages = ["a.deb"]\n', 'x.toml'), { code: 'INVALID_INPUT', data: { field: 'local_packages' } });
  t.throws(() => parseDefinition(MINIMAL + 'local_packages = ["../a.deb"]\n', 'x.toml'), { code: 'INVALID_INPUT', data: { field: 'local_packages[0]' } });
  t.throws(() => parseDefinition(MINIMAL + 'local_packages = ["a.tar"]\n', 'x.toml'), { code: 'INVALID_INPUT', data: { field: 'local_packages[0]' } });
});

t.test('the demo definitions in images/ parse', async (t) => {
  for (const name of ['qemu-arm64-uboot.toml', 'qemu-x86_64-grub.toml']) {
    const def = parseDefinition(readFileSync(join(ROOT, 'images', name), 'utf8'), name);
    t.ok(def.kernel, `${name} names a kernel`);
    t.ok(def.packages.some((p) => p.name === 'busybox'), `${name} has busybox`);
  }
});

const INVALID: [string, string, string][] = [
  ['not TOML', 'ref = ', ''],
  ['missing ref', 'version = "1"\narchitecture = "amd64"\npackages = ["a1"]\n', 'ref'],
  ['ref with ..', MINIMAL.replace('os/x', 'os/../x'), 'ref'],
  ['version not a string', MINIMAL.replace('"1"', '1'), 'version'],
  ['min_agent_version not a version', MINIMAL + 'min_agent_version = "next please"\n', 'min_agent_version'],
  ['min_agent_version not starting with a digit', MINIMAL + 'min_agent_version = "soon"\n', 'min_agent_version'],
  ['bad architecture', MINIMAL.replace('amd64', 'AMD 64'), 'architecture'],
  ['no packages', MINIMAL.replace('["busybox"]', '[]'), 'packages'],
  ['bad package name', MINIMAL.replace('busybox', 'Busy_Box'), 'packages[0]'],
  ['bad pinned version', MINIMAL.replace('busybox', 'busybox=1 0'), 'packages[0]'],
  ['listed twice', MINIMAL.replace('"busybox"', '"busybox", "busybox=1.0"'), 'packages[1]'],
  ['kernel pinned twice differently', MINIMAL.replace('"busybox"', '"busybox", "linux-image-x=1"') + 'kernel = "linux-image-x=2"\n', 'kernel'],
  ['unknown field', MINIMAL + 'pacakges = []\n', 'pacakges'],
  ['overlay not an array of tables', MINIMAL + 'overlay = "x"\n', 'overlay'],
  ['overlay without source', MINIMAL + '[[overlay]]\ntarget = "/"\n', 'overlay[0].source'],
  ['overlay source absolute', MINIMAL + '[[overlay]]\nsource = "/etc"\n', 'overlay[0].source'],
  ['overlay source with ..', MINIMAL + '[[overlay]]\nsource = "a/../../b"\n', 'overlay[0].source'],
  ['overlay source is the directory', MINIMAL + '[[overlay]]\nsource = "./"\n', 'overlay[0].source'],
  ['overlay target relative', MINIMAL + '[[overlay]]\nsource = "a"\ntarget = "etc"\n', 'overlay[0].target'],
  ['overlay target with ..', MINIMAL + '[[overlay]]\nsource = "a"\ntarget = "/etc/../.."\n', 'overlay[0].target'],
  ['overlay unknown key', MINIMAL + '[[overlay]]\nsource = "a"\nmode = 1\n', 'overlay[0].mode'],
  ['commands not strings', MINIMAL + 'commands = [1]\n', 'commands[0]'],
  ['boot files with ..', MINIMAL + '[boot]\nfiles = ["../x"]\n', 'boot.files[0]'],
  ['boot unknown key', MINIMAL + '[boot]\nkernel = "x"\n', 'boot.kernel'],
  ['negative timestamp', MINIMAL + 'timestamp = -1\n', 'timestamp'],
  ['float timestamp', MINIMAL + 'timestamp = 1.5\n', 'timestamp'],
];

t.test('invalid definitions: INVALID_INPUT naming the file and the field', async (t) => {
  for (const [comment, text, field] of INVALID) {
    const e = await rejectsCode(t, () => parseDefinition(text, 'images/bad.toml'), 'INVALID_INPUT', `${comment}: names the file`, { message: /^image definition 'images\/bad\.toml'/, data: { file: 'images/bad.toml' } });
    if (field) t.equal(e.data.field, field, `${comment}: names field ${field}`);
    else t.ok(typeof e.data.line === 'number', `${comment}: names the line`);
  }
});
