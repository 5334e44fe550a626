/**
 * The /etc merge on real trees: /etc of real Debian packages (an older sudo fetched with
 * `apt-get download` as the booted commit, the cached debs as the new one), admin edits made
 * the way an admin makes them, vendor changes made programmatically (the bookworm point releases
 * of sudo, openssh-client, openssl, systemd, apache2 and nginx-common ship byte-identical /etc,
 * checked with dpkg-deb -x and diff -r). Asserts exact contents, the .larchnew files and the plan,
 * then runs the same merge under Bun and compares.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mergeEtc, mergeResultToJson, readEtcTree } from '../../src/agent/etc/tree-io.ts';
import { formatPlan } from '../../src/agent/etc/plan.ts';
import { IS_ROOT, ROOT, debs, sh, tempDir } from '../helpers.ts';

const OLD_SUDO = 'sudo=1.9.13p3-1+deb12u2';

function replaceIn(path: string, from: string, to: string): void {
  const text = readFileSync(path, 'utf8');
  if (!text.includes(from)) throw new Error(`${path} does not contain ${JSON.stringify(from)}: the package changed, update the test`);
  writeFileSync(path, text.replace(from, to));
}

/** base, local and theirs /etc trees; returns their paths and the original texts the assertions use. */
function makeTrees(dir: string) {
  const download = join(dir, 'download');
  mkdirSync(download);
  // No skip: a test that quietly stops testing the real package upgrade is worse than a red one.
  const got = spawnSync('apt-get', ['download', OLD_SUDO], { cwd: download, encoding: 'utf8' });
  const oldSudo = readdirSync(download).find((f) => f.endsWith('.deb'));
  if (got.status !== 0 || !oldSudo) throw new Error(`'apt-get download ${OLD_SUDO}' failed (exit ${got.status}): ${got.stderr}`);

  const cached = debs();
  const oldRoot = join(dir, 'old');
  const newRoot = join(dir, 'new');
  for (const deb of cached) {
    if (!deb.includes('/sudo_')) sh(`dpkg-deb -x '${deb}' '${oldRoot}'`);
    sh(`dpkg-deb -x '${deb}' '${newRoot}'`);
  }
  sh(`dpkg-deb -x '${join(download, oldSudo)}' '${oldRoot}'`);
  const base = join(oldRoot, 'etc');
  const theirs = join(newRoot, 'etc');
  const local = join(dir, 'local-etc');
  sh(`cp -a '${base}' '${local}'`);

  // Both trees get a binary file and a symlink, as a built image would have.
  for (const etc of [base, local, theirs]) {
    writeFileSync(join(etc, 'ld.so.cache'), Buffer.from([0x6c, 0x64, 0, 1, 2, 3]));
    symlinkSync('/usr/share/zoneinfo/Etc/UTC', join(etc, 'localtime'));
  }

  const original = {
    sudoers: readFileSync(join(base, 'sudoers'), 'utf8'),
    sysctl: readFileSync(join(base, 'sysctl.conf'), 'utf8'),
    pamSudo: readFileSync(join(base, 'pam.d/sudo'), 'utf8'),
    bashrc: readFileSync(join(base, 'bash.bashrc'), 'utf8'),
    profile: readFileSync(join(base, 'skel/.profile'), 'utf8'),
  };

  // The admin's edits.
  replaceIn(join(local, 'sudoers'), '%sudo\tALL=(ALL:ALL) ALL\n', '%sudo\tALL=(ALL:ALL) ALL\nops\tALL=(ALL:ALL) NOPASSWD: /usr/bin/systemctl\n');
  replaceIn(join(local, 'sysctl.conf'), '#net.ipv4.ip_forward=1\n', 'net.ipv4.ip_forward=1\n');
  chmodSync(join(local, 'pam.d/sudo'), 0o600);
  appendFileSync(join(local, 'skel/.profile'), 'export EDITOR=vi\n');
  unlinkSync(join(local, 'default/useradd'));
  unlinkSync(join(local, 'pam.d/chfn'));
  appendFileSync(join(local, 'sysctl.d/README.sysctl'), '# local note\n');
  writeFileSync(join(local, 'sudoers.d/ops'), 'Defaults:ops !lecture\n', { mode: 0o440 });
  chmodSync(join(local, 'sudoers.d/ops'), 0o440);
  mkdirSync(join(local, 'network'));
  writeFileSync(join(local, 'network/interfaces'), 'auto eth0\niface eth0 inet dhcp\n');
  unlinkSync(join(local, 'localtime'));
  symlinkSync('/usr/share/zoneinfo/Europe/Berlin', join(local, 'localtime'));
  sh(`mkfifo '${join(local, 'initctl')}'`);
  if (IS_ROOT) chownSync(join(local, 'network/interfaces'), 1000, 1000);

  // The vendor's changes.
  replaceIn(join(theirs, 'sudoers'), 'Defaults\tmail_badpass\n', 'Defaults\tmail_badpass\nDefaults\tlogfile="/var/log/sudo.log"\n');
  replaceIn(join(theirs, 'sysctl.conf'), '#net.ipv4.ip_forward=1\n', '#net.ipv4.ip_forward=0\n');
  appendFileSync(join(theirs, 'pam.d/sudo'), 'session    optional   pam_umask.so\n');
  appendFileSync(join(theirs, 'bash.bashrc'), '# vendor: larch image\n');
  appendFileSync(join(theirs, 'default/useradd'), '# vendor tweak\n');
  rmSync(join(theirs, 'ld.so.conf.d'), { recursive: true });
  rmSync(join(theirs, 'sysctl.d/README.sysctl'));
  writeFileSync(join(theirs, 'larch-release'), 'VERSION=2\n');
  writeFileSync(join(theirs, 'ld.so.cache'), Buffer.from([0x6c, 0x64, 0, 9, 9, 9]));

  return { base, local, theirs, original };
}

t.test('merge of real /etc trees', async (t) => {
  const dir = tempDir(t, 'larch-etc-merge-');
  const { base, local, theirs, original } = makeTrees(dir);
  const out = join(dir, 'out-etc');
  const result = await mergeEtc({ base, local, theirs, out });
  const json = mergeResultToJson(result);
  const read = (p: string) => readFileSync(join(out, p), 'utf8');

  t.test('the plan', async (t) => {
    t.same(
      json.actions.map((a) => `${a.path} ${a.action} ${a.reason}${a.larchnew ? ' ' + a.larchnew : ''}`),
      [
        'bash.bashrc take-vendor vendor-changed',
        'default/useradd keep-deleted deleted-locally-vendor-changed',
        'larch-release take-vendor vendor-added',
        'ld.so.cache take-vendor vendor-changed',
        'ld.so.conf.d delete vendor-removed',
        'ld.so.conf.d/x86_64-linux-gnu.conf delete vendor-removed',
        'localtime keep-local modified-locally',
        'network new-local added-locally',
        'network/interfaces new-local added-locally',
        'pam.d/chfn keep-deleted deleted-locally',
        'pam.d/sudo merged metadata-merged',
        'skel/.profile keep-local modified-locally',
        'sudoers merged lines-merged',
        'sudoers.d/ops new-local added-locally',
        'sysctl.conf conflict content-conflict sysctl.conf.larchnew',
        'sysctl.d/README.sysctl keep-local vendor-removed-modified',
      ],
    );
    t.same(json.attention, ['default/useradd', 'sysctl.conf', 'sysctl.d/README.sysctl']);
    t.same(json.skipped, { base: [], local: [{ path: 'initctl', reason: 'fifo' }], theirs: [] }, 'the FIFO is reported, not copied');
    t.equal(json.counts.conflict, 1);
    t.same(JSON.parse(JSON.stringify(json)), json);
    const text = formatPlan(result.plan, { prefix: '/etc/' });
    t.match(text, /conflict\s+\/etc\/sysctl\.conf\s+.*vendor version in \/etc\/sysctl\.conf\.larchnew/);
    t.match(text, /keep-deleted\s+\/etc\/default\/useradd\s+deleted locally; stays deleted although the vendor changed it/);
  });

  t.test('file contents', async (t) => {
    t.equal(
      read('sudoers'),
      original.sudoers
        .replace('Defaults\tmail_badpass\n', 'Defaults\tmail_badpass\nDefaults\tlogfile="/var/log/sudo.log"\n')
        .replace('%sudo\tALL=(ALL:ALL) ALL\n', '%sudo\tALL=(ALL:ALL) ALL\nops\tALL=(ALL:ALL) NOPASSWD: /usr/bin/systemctl\n'),
      'admin and vendor lines both in sudoers',
    );
    t.equal(read('sysctl.conf'), original.sysctl.replace('#net.ipv4.ip_forward=1\n', 'net.ipv4.ip_forward=1\n'), 'conflict: local kept');
    t.equal(read('sysctl.conf.larchnew'), original.sysctl.replace('#net.ipv4.ip_forward=1\n', '#net.ipv4.ip_forward=0\n'), 'vendor version beside it');
    t.equal(read('pam.d/sudo'), original.pamSudo + 'session    optional   pam_umask.so\n', 'vendor content...');
    t.equal(lstatSync(join(out, 'pam.d/sudo')).mode & 0o7777, 0o600, '...with the local mode');
    t.equal(read('bash.bashrc'), original.bashrc + '# vendor: larch image\n');
    t.equal(read('skel/.profile'), original.profile + 'export EDITOR=vi\n');
    t.equal(read('larch-release'), 'VERSION=2\n');
    t.same([...readFileSync(join(out, 'ld.so.cache'))], [0x6c, 0x64, 0, 9, 9, 9]);
    t.equal(readlinkSync(join(out, 'localtime')), '/usr/share/zoneinfo/Europe/Berlin');
    t.equal(read('sudoers.d/ops'), 'Defaults:ops !lecture\n');
    t.equal(lstatSync(join(out, 'sudoers.d/ops')).mode & 0o7777, 0o440);
    t.equal(read('sysctl.d/README.sysctl'), readFileSync(join(local, 'sysctl.d/README.sysctl'), 'utf8'));
    for (const gone of ['default/useradd', 'pam.d/chfn', 'ld.so.conf.d', 'initctl']) t.notOk(existsSync(join(out, gone)), `${gone} absent`);
    if (IS_ROOT) t.same([lstatSync(join(out, 'network/interfaces')).uid, lstatSync(join(out, 'network/interfaces')).gid], [1000, 1000], 'owner kept');
  });

  t.test('every unchanged path is the vendor version, and a copy', async (t) => {
    const unchanged = result.plan.actions.filter((a) => a.reason === 'unchanged');
    t.ok(unchanged.length > 20, `${unchanged.length} unchanged paths`);
    for (const a of unchanged) {
      const st = lstatSync(join(out, a.path));
      const vendor = lstatSync(join(theirs, a.path));
      if (a.result?.type === 'file') {
        t.same(readFileSync(join(out, a.path)), readFileSync(join(theirs, a.path)), a.path);
        t.equal(st.nlink, 1, `${a.path}: a copy, not a hardlink`);
      }
      t.equal(st.mode, vendor.mode, `${a.path}: mode`);
    }
    t.equal(lstatSync(out).mode & 0o7777, lstatSync(theirs).mode & 0o7777, 'root mode');
    t.same(
      readdirSync(out).filter((n) => n.startsWith('.larch-tmp')),
      [],
      'no temp files left',
    );
  });

  t.test('re-reading the result gives the planned tree', async (t) => {
    const { tree } = await readEtcTree(out);
    const planned = result.plan.actions.filter((a) => a.result).map((a) => a.path);
    const larchnew = result.plan.actions.flatMap((a) => (a.larchnew ? [a.larchnew.path] : []));
    t.same([...tree.keys()].sort(), [...planned, ...larchnew].sort());
  });

  t.test('the same merge under Bun gives the same plan', async (t) => {
    const script = `import { mergeEtc, mergeResultToJson } from ${JSON.stringify(join(ROOT, 'src/agent/etc/tree-io.ts'))};
const r = await mergeEtc({ base: ${JSON.stringify(base)}, local: ${JSON.stringify(local)}, theirs: ${JSON.stringify(theirs)}, out: '', dryRun: true });
process.stdout.write(JSON.stringify(mergeResultToJson(r)));`;
    const r = spawnSync(join(ROOT, 'node_modules/.bin/bun'), ['-e', script], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.same(JSON.parse(r.stdout), json);
  });

  t.test('dry run writes nothing; a non-empty destination is refused', async (t) => {
    const dry = join(dir, 'dry');
    const r = await mergeEtc({ base, local, theirs, out: dry, dryRun: true });
    t.equal(r.written, null);
    t.notOk(existsSync(dry));
    await t.rejects(mergeEtc({ base, local, theirs, out }), { name: 'LarchError', code: 'EXISTS', data: { path: out } });
    await t.rejects(mergeEtc({ base, local: join(dir, 'nope'), theirs, out: join(dir, 'o2') }), { name: 'LarchError', code: 'NOT_FOUND' });
  });
});

t.test('files over the in-memory bound merge as whole files, copied and verified', async (t) => {
  const dir = tempDir(t, 'larch-etc-merge-large-');
  const [base, local, theirs, out] = ['base', 'local', 'theirs', 'out'].map((n) => join(dir, n));
  for (const d of [base, local, theirs]) mkdirSync(d);
  const big = (fill: string) => `${fill}\n`.repeat(50_000);
  writeFileSync(join(base, 'big.conf'), big('a'));
  writeFileSync(join(local, 'big.conf'), big('a'));
  writeFileSync(join(theirs, 'big.conf'), big('b'));
  writeFileSync(join(base, 'both.conf'), big('a'));
  writeFileSync(join(local, 'both.conf'), 'x\n' + big('a'));
  writeFileSync(join(theirs, 'both.conf'), big('a') + 'y\n');
  const r = await mergeEtc({ base, local, theirs, out, maxFileBytesInMemory: 1024 });
  const by = new Map(r.plan.actions.map((a) => [a.path, `${a.action} ${a.reason}`]));
  t.equal(by.get('big.conf'), 'take-vendor vendor-changed');
  t.equal(by.get('both.conf'), 'conflict binary-conflict', 'too large to merge by line, even though the edits are separate');
  t.equal(readFileSync(join(out, 'big.conf'), 'utf8'), big('b'));
  t.equal(readFileSync(join(out, 'both.conf'), 'utf8'), 'x\n' + big('a'));
  t.equal(readFileSync(join(out, 'both.conf.larchnew'), 'utf8'), big('a') + 'y\n');
});

t.test('a commit without /etc: absent vendor trees read as empty when allowed', async (t) => {
  const dir = tempDir(t, 'larch-etc-merge-missing-');
  const local = join(dir, 'local');
  mkdirSync(local);
  writeFileSync(join(local, 'hostname'), 'gw-17\n');
  await t.rejects(mergeEtc({ base: join(dir, 'none'), local, theirs: join(dir, 'none'), out: join(dir, 'o1') }), { name: 'LarchError', code: 'NOT_FOUND' });
  const r = await mergeEtc({ base: join(dir, 'none'), local, theirs: join(dir, 'none'), out: join(dir, 'out'), allowMissingVendor: true });
  t.same(r.plan.actions.map((a) => `${a.path || '.'} ${a.action}`), ['. new-local', 'hostname new-local']);
  t.equal(readFileSync(join(dir, 'out', 'hostname'), 'utf8'), 'gw-17\n');
});

t.test('a large file changed between planning and writing is refused', async (t) => {
  const dir = tempDir(t, 'larch-etc-merge-race-');
  const [base, local, theirs, out] = ['base', 'local', 'theirs', 'out'].map((n) => join(dir, n));
  for (const d of [base, local, theirs]) mkdirSync(d);
  writeFileSync(join(base, 'f'), 'a'.repeat(4096));
  writeFileSync(join(local, 'f'), 'a'.repeat(4096));
  writeFileSync(join(theirs, 'f'), 'b'.repeat(4096));
  const { planEtcMerge } = await import('../../src/agent/etc/plan.ts');
  const { writeEtcMerge } = await import('../../src/agent/etc/tree-io.ts');
  const trees = await Promise.all([base, local, theirs].map((d) => readEtcTree(d, { maxFileBytesInMemory: 100 })));
  const plan = planEtcMerge(trees[0]!.tree, trees[1]!.tree, trees[2]!.tree);
  writeFileSync(join(theirs, 'f'), 'c'.repeat(4096));
  await t.rejects(writeEtcMerge(plan, out, { local, theirs }), { name: 'LarchError', code: 'IO', message: /changed during the \/etc merge/ });
  t.notOk(existsSync(out), 'nothing half-written left behind');
});
