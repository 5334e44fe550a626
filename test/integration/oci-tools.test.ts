/**
 * larch and the real container tools (issue 21 must-shows 1 and 2): a base committed by larch and
 * exported, a Containerfile built on it by buildah (one layer per instruction, the overlay
 * driver: a deleted file, a deleted directory, an opaque directory, a hard link to a file of the
 * base layer, buildah's own placeholders), saved as an OCI layout, an oci-archive, a
 * docker-archive and a zstd copy (skopeo). Each import must equal, entry by entry (type, mode,
 * owner, size, content, target, xattrs), what `umoci unpack` and `podman export` make of the same
 * image; the commit id must be the same from every form, run and runtime. Then the import is
 * exported and run by podman.
 *
 * This machine's limits (docs/oci.md, "Interop"): crun refuses the VM's hybrid cgroups, so podman
 * runs with runc and cgroupfs, and RLIMIT_NOFILE/NPROC are capped below the hard limits. Runs as
 * root with its own --root/--runroot, so nothing touches the host's container storage.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Runtime, type TapTest, BIN, IS_ROOT, ROOT, debs, diffSnapshots, freePort, larch, larchOk, missingTools, snapshotTree, tempDir, testNeeding, waitUntil } from '../helpers.ts';
import { REF, makeTree, status, vendor } from '../device-helpers.ts';

const TOOLS = ['buildah', 'podman', 'skopeo', 'umoci', 'runc', 'dpkg-deb', 'tar', 'docker-registry'];
const cannot = missingTools(TOOLS).length > 0 ? `missing ${missingTools(TOOLS).join(', ')}` : !IS_ROOT ? 'needs root (buildah and podman with their own storage)' : false;

const CONTAINERFILE = `FROM oci-archive:base.tar
RUN rm /etc/motd
RUN rm -rf /usr/share/doc/larch-test
RUN rm -rf /etc/larch/health.d && mkdir -p /etc/larch/health.d/required.d && echo ok > /etc/larch/health.d/required.d/10-ok
RUN ln /bin/busybox /bin/busybox-link && echo new > /etc/new && chown 1000:1000 /etc/new
LABEL org.opencontainers.image.version=1.1
`;

/** A small base that runs: libc6 and busybox from Debian, a few files the Containerfile removes. */
function baseTree(dir: string): string {
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  for (const pkg of ['libc6', 'busybox']) {
    const deb = debs().find((d) => d.split('/').pop()!.startsWith(`${pkg}_`));
    if (!deb) throw new Error(`no ${pkg} .deb in .cache/debs (scripts/test-setup.mjs)`);
    execFileSync('dpkg-deb', ['-x', deb, tree]);
  }
  for (const applet of ['sh', 'rm', 'mkdir', 'ln', 'echo', 'cat', 'true', 'chown']) symlinkSync('busybox', join(tree, 'bin', applet));
  mkdirSync(join(tree, 'etc', 'larch', 'health.d'), { recursive: true });
  mkdirSync(join(tree, 'usr', 'share', 'doc', 'larch-test'), { recursive: true });
  mkdirSync(join(tree, 'tmp'), { mode: 0o1777 });
  writeFileSync(join(tree, 'etc', 'motd'), 'motd\n');
  writeFileSync(join(tree, 'etc', 'os-release'), 'ID=larch-test\n');
  execFileSync('setfattr', ['-n', 'user.larch', '-v', 'base', join(tree, 'etc', 'os-release')]);
  writeFileSync(join(tree, 'etc', 'larch', 'health.d', '00-base'), 'ok\n');
  writeFileSync(join(tree, 'usr', 'share', 'doc', 'larch-test', 'README'), 'doc\n');
  return tree;
}

t.test('images built by buildah and saved by podman/skopeo: larch flattens them as umoci and podman do', { timeout: 900_000 }, async (t) => {
  await testNeeding(t, 'buildah, podman, skopeo, umoci', cannot, { timeout: 900_000 }, async (t) => {
    const dir = tempDir(t);
    const S = ['--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--storage-driver', 'overlay'];
    t.teardown(() => {
      spawnSync('podman', [...S, 'rm', '-a', '-f'], { stdio: 'ignore' });
      // overlay mounts of the storage go first, or the temp dir cannot be removed.
      spawnSync('sh', ['-c', `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
    });
    const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
    const repo = join(dir, 'vendor');
    await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
    const base = await larchOk(['commit', '--repo', repo, '-b', 'os/stable', '--tree', baseTree(dir), '--version', '1.0', '--timestamp', '2026-11-01T00:00:00Z', '--metadata', 'larch.architecture=amd64', '--json']);
    await larchOk(['export-oci', '--repo', repo, 'os/stable', '--out', join(dir, 'base.tar'), '--tag', '1.0']);

    writeFileSync(join(dir, 'Containerfile'), CONTAINERFILE);
    run('buildah', [...S, 'build', '--layers', '--isolation', 'chroot', '-t', 'localhost/larch-test:1.1', '-f', 'Containerfile', '.']);
    run('buildah', [...S, 'push', 'localhost/larch-test:1.1', `oci:${join(dir, 'layout')}:1.1`]);
    run('podman', [...S, 'save', '--format', 'oci-archive', '-o', join(dir, 'image.tar'), 'localhost/larch-test:1.1']);
    run('podman', [...S, 'save', '--format', 'docker-archive', '-o', join(dir, 'docker.tar'), 'localhost/larch-test:1.1']);
    run('skopeo', ['copy', '--dest-compress-format', 'zstd', `oci:${join(dir, 'layout')}:1.1`, `oci:${join(dir, 'zstd')}:1.1`]);

    const imported = async (source: string, name: string, runtime: Runtime = 'bun') => {
      const r = join(dir, `repo-${name}`);
      await larchOk(['init', '--repo', r, '--mode', 'bare-user'], { runtime });
      const c = (await larchOk(['commit', '--repo', r, '-b', 'os/stable', '--oci', source, '--json'], { runtime })).json;
      const show = (await larchOk(['show', '--repo', r, 'os/stable', '--json'], { runtime })).json;
      return { repo: r, commit: c.commit as string, root: show.root.tree as string, json: c };
    };
    const layout = await imported(`${join(dir, 'layout')}:1.1`, 'layout');
    t.equal(layout.json.version, '1.1', "the version from the Containerfile's LABEL, not the base's inherited one");
    t.equal(layout.json.restore_skipped, 'root-differs', "the base's carried commit is not this image's");
    const layerCount = layout.json.image.layers.length;
    t.ok(layerCount >= 5, `a layer per RUN (${layerCount} layers)`);
    t.ok(layout.json.image.whiteouts >= 2 && layout.json.image.opaque_dirs >= 1 && layout.json.image.hardlinks >= 1, `whiteouts ${layout.json.image.whiteouts}, opaque dirs ${layout.json.image.opaque_dirs}, hard links ${layout.json.image.hardlinks}: the layers hold each kind`);
    const again = await imported(`${join(dir, 'layout')}:1.1`, 'layout-again');
    t.equal(again.commit, layout.commit, 'a second import in a fresh repo: the same commit id');
    const archive = await imported(join(dir, 'image.tar'), 'archive', 'node');
    t.equal(archive.commit, layout.commit, 'podman save --format oci-archive, imported by Node: the same commit id');
    const docker = await imported(join(dir, 'docker.tar'), 'docker');
    t.equal(docker.root, layout.root, 'podman save --format docker-archive: the same tree');
    const zstd = await imported(`${join(dir, 'zstd')}:1.1`, 'zstd', 'node');
    t.equal(zstd.root, layout.root, 'skopeo --dest-compress-format zstd: the same tree');
    t.same(readdirSync(join(layout.repo, 'tmp')), [], 'nothing left in R/tmp');

    const checkout = join(dir, 'checkout');
    await larchOk(['checkout', '--repo', layout.repo, 'os/stable', checkout]);
    const ours = await snapshotTree(checkout, { owners: true, xattrs: true });
    run('umoci', ['unpack', '--image', `${join(dir, 'layout')}:1.1`, join(dir, 'umoci')]);
    t.same(diffSnapshots(await snapshotTree(join(dir, 'umoci', 'rootfs'), { owners: true, xattrs: true }), ours), [], 'equal to umoci unpack, entry by entry (type, mode, owner, size, content, target, xattrs)');
    const cid = run('podman', [...S, 'create', '--network', 'none', 'localhost/larch-test:1.1', '/bin/true']).trim().split('\n').pop()!;
    run('podman', [...S, 'export', cid, '-o', join(dir, 'export.tar')]);
    mkdirSync(join(dir, 'podman'));
    run('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', join(dir, 'export.tar'), '-C', join(dir, 'podman')]);
    t.same(diffSnapshots(await snapshotTree(join(dir, 'podman'), { owners: true, xattrs: true }), ours, true), [], 'equal to podman export of a container of the image (its root directory aside: the export has no entry for it)');
    t.equal(ours.get(Buffer.from('etc/os-release').toString('hex'))?.xattrs, 'user.larch=0x62617365', "the base's xattr survived the layers");
    t.equal(ours.get(Buffer.from('etc/new').toString('hex'))?.uid, 1000, 'an owner set in a RUN');

    // Must-show 2: the import exported again runs under podman, and comes back as itself.
    await larchOk(['export-oci', '--repo', layout.repo, 'os/stable', '--out', join(dir, 'out.tar'), '--tag', '1.1']);
    const roundTrip = await imported(join(dir, 'out.tar'), 'round-trip');
    t.same([roundTrip.commit, roundTrip.json.restored], [layout.commit, true], 'export, then import: the same commit id');
    const loaded = run('podman', [...S, 'load', '-i', join(dir, 'out.tar')]);
    const id = /Loaded image: (\S+)/.exec(loaded)?.[1];
    t.ok(id, `podman load: ${loaded.trim()}`);
    const podmanRun = spawnSync('podman', [...S, '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', id!, '/bin/sh', '-c', 'cat /etc/larch/health.d/required.d/10-ok /etc/new'], { encoding: 'utf8' });
    t.same([podmanRun.status, podmanRun.stdout], [0, 'ok\nnew\n'], `podman run of the exported image (${podmanRun.stderr.trim() || 'no errors'})`);
    t.not(base.json.commit, layout.commit, '(the derived image is a new commit)');
  });
});

/** The .debs test-setup fetched for the pipeline's base (dpkg and its libraries). */
function ociDebs(): string[] {
  const dir = join(ROOT, '.cache', 'debs-oci');
  if (!existsSync(dir)) throw new Error(`${dir} is missing: run 'node scripts/test-setup.mjs' (npm test does)`);
  return readdirSync(dir).filter((f) => f.endsWith('.deb')).map((f) => join(dir, f));
}
const cachedDeb = (pkg: string) => {
  const deb = [...debs(), ...ociDebs()].find((d) => d.split('/').pop()!.startsWith(`${pkg}_`));
  if (!deb) throw new Error(`no ${pkg} .deb cached (scripts/test-setup.mjs)`);
  return deb;
};

/**
 * A device tree (device-helpers' makeTree: boot files, health check, busybox) that can run `dpkg
 * -i` in a container: libc6, dpkg, its libraries, GNU tar and ldconfig (libc-bin) unpacked, each recorded as installed in
 * /var/lib/dpkg (status, file lists), as a debootstrapped tree would have them.
 */
function dpkgBase(tree: string): void {
  makeTree(tree, 1);
  // makeTree unpacks hostname too; the pipeline installs it, so the base must not have it.
  for (const line of debFiles(cachedDeb('hostname'))) {
    const p = join(tree, line);
    if (line && !line.endsWith('/') && existsSync(p)) rmSync(p);
  }
  const packages = ['libc6', 'zlib1g', 'busybox', 'tar', 'libacl1', ...['dpkg', 'libc-bin', 'libbz2-1.0', 'liblzma5', 'libmd0', 'libselinux1', 'libpcre2-8-0', 'libzstd1']];
  const admin = join(tree, 'var', 'lib', 'dpkg');
  mkdirSync(join(admin, 'info'), { recursive: true });
  mkdirSync(join(admin, 'updates'), { recursive: true });
  let statusText = '';
  for (const pkg of packages) {
    const deb = cachedDeb(pkg);
    execFileSync('dpkg-deb', ['-x', deb, tree]);
    statusText += execFileSync('dpkg-deb', ['-f', deb], { encoding: 'utf8' }).replace(/^Package: .*\n/, (m) => `${m}Status: install ok installed\n`).trimEnd() + '\n\n';
    const files = debFiles(deb).join('\n');
    const name = execFileSync('dpkg-deb', ['-f', deb, 'Package', 'Architecture'], { encoding: 'utf8' }).split('\n');
    const multiArch = /Multi-Arch: same/.test(execFileSync('dpkg-deb', ['-f', deb], { encoding: 'utf8' }));
    const listName = multiArch ? `${pkg}:${name[1].replace('Architecture: ', '')}` : pkg;
    writeFileSync(join(admin, 'info', `${listName}.list`), files.split('\n').filter(Boolean).map((f) => (f === './' ? '/.' : f.replace(/^\.\/?/, '/').replace(/(.)\/$/, '$1'))).join('\n') + '\n');
  }
  writeFileSync(join(admin, 'status'), statusText);
  writeFileSync(join(admin, 'available'), '');
  // busybox's applets for what dpkg runs (sh, rm, diff; tar is GNU tar: dpkg-deb needs its options) and the Containerfile's shell.
  for (const applet of ['sh', 'rm', 'diff', 'cat', 'ls']) {
    const p = join(tree, 'bin', applet);
    if (!existsSync(p)) symlinkSync('busybox', p);
  }
  for (const d of ['tmp', 'usr/sbin', 'sbin', 'var/log']) mkdirSync(join(tree, d), { recursive: true });
}

/** The paths a .deb holds, as `dpkg-deb -c` lists them ('./usr/bin/x'). */
const debFiles = (deb: string) => execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile '${deb}' | tar -t`], { encoding: 'utf8', maxBuffer: 1 << 26 }).split('\n').filter(Boolean);

/** docker-registry on loopback, its storage in dir; resolves once /v2/ answers. */
async function startRegistry(t: TapTest, dir: string): Promise<string> {
  const port = await freePort();
  const config = join(dir, 'registry.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'registry')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGTERM'));
  const up = async () => {
    const r = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => null);
    return r?.status === 200;
  };
  await waitUntil(up, 30_000, 'docker-registry to answer /v2/');
  return `127.0.0.1:${port}`;
}

t.test('the vendor pipeline: a registry, a Containerfile adding Debian packages, larch deltas to devices, following tags', { timeout: 900_000 }, async (t) => {
  await testNeeding(t, 'docker-registry, buildah, skopeo', cannot, { timeout: 900_000 }, async (t) => {
    const v = await vendor(t);
    const dir = v.dir;
    const S = ['--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--storage-driver', 'overlay'];
    t.teardown(() => spawnSync('sh', ['-c', `grep -o '${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' }));
    const tree = join(dir, 'base');
    dpkgBase(tree);
    const base = await v.release(1, { tree, commitArgs: ['--metadata', 'larch.architecture=amd64'] });
    const dev = join(dir, 'device');
    await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
    await larchOk(['sim-boot', '--sysroot', dev]);

    const registry = await startRegistry(t, dir);
    const image = `${registry}/os`;
    const env = { ...process.env, LARCH: BIN, BUILDAH_ARGS: S.join(' '), TLS_VERIFY: 'false' };
    const pipeline = (...args: string[]) => execFileSync('sh', [join(ROOT, 'images', 'oci', 'pipeline.sh'), ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const debsOf = (name: string, pkgs: string[]) => {
      const d = join(dir, name);
      mkdirSync(d);
      for (const p of pkgs) execFileSync('cp', [cachedDeb(p), d]);
      return d;
    };
    pipeline('base', v.repo, REF, image, '1');
    pipeline('build', image, '1', '1.1', debsOf('debs-1.1', ['hostname']));
    const committed = JSON.parse(pipeline('commit', v.repo, REF, image, '1.1', `${v.key}.key`));
    t.same([committed.version, committed.image.source, committed.changed], ['1.1', 'registry', true], 'the pipeline commits docker://.../os:1.1 to the ref');
    t.equal(committed.parent, base, 'on top of the base release');

    // What a device downloads: the larch delta, against what a container pull of 1.1 ships (the layers it adds).
    const deltas = (await larchOk(['delta', 'list', '--repo', v.repo, '--json'])).json as { from: string; to: string; bytes: number }[];
    const delta = deltas.find((d) => d.from === base && d.to === committed.commit);
    t.ok(delta, 'the pipeline generated a delta from the base to it');
    const deltaBytes = delta?.bytes ?? 0;
    const manifestOf = (tag: string) => JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${image}:${tag}`], { encoding: 'utf8' }));
    const baseLayers = new Set(manifestOf('1').layers.map((l: { digest: string }) => l.digest));
    const addedLayerBytes = manifestOf('1.1').layers.filter((l: { digest: string }) => !baseLayers.has(l.digest)).reduce((n: number, l: { size: number }) => n + l.size, 0);
    t.comment(`update 1 -> 1.1 (hostname added): larch delta ${deltaBytes} bytes; the image layers 1.1 adds ${addedLayerBytes} bytes (ratio ${(deltaBytes / addedLayerBytes).toFixed(2)})`);
    t.ok(deltaBytes > 0 && addedLayerBytes > 0 && deltaBytes <= 2 * addedLayerBytes, `the delta (${deltaBytes} B) is within twice the added layers (${addedLayerBytes} B)`);

    await larchOk(['upgrade', '--sysroot', dev]);
    await larchOk(['sim-boot', '--sysroot', dev]);
    const st = await status(dev);
    t.equal(st.booted.version, '1.1', 'the device boots 1.1: the tag is the version it shows');
    const db = (await larchOk(['db', 'list', '--sysroot', dev, '--json'])).json;
    t.ok(JSON.stringify(db).includes('"hostname"'), "the package the Containerfile installed is in the device's package list");

    // Build 4: tags followed onto a ref of their own, and a device rebased to it.
    pipeline('build', image, '1.1', '1.2', debsOf('debs-1.2', ['grep']));
    pipeline('follow', v.repo, 'os/containers', image, `${v.key}.key`);
    const followed = (await larchOk(['log', '--repo', v.repo, 'os/containers', '--json'])).json as { version: string }[];
    t.same(followed.map((c) => c.version), ['1.2', '1.1', '1'], 'follow committed every tag, oldest first');
    const before = (await larchOk(['show', '--repo', v.repo, 'os/containers', '--json'])).json.commit;
    pipeline('follow', v.repo, 'os/containers', image, `${v.key}.key`);
    t.equal((await larchOk(['show', '--repo', v.repo, 'os/containers', '--json'])).json.commit, before, 'following again commits nothing');
    const refused = await larch(['rebase', '--sysroot', dev, `docker://${image}:1.2`, '--json']);
    t.same([refused.code, refused.json?.error?.data?.reason], [2, 'image-reference'], 'rebase refuses an image reference');
    await larchOk(['rebase', '--sysroot', dev, 'os/containers']);
    await larchOk(['sim-boot', '--sysroot', dev]);
    const after = await status(dev);
    t.same([after.booted.version, after.booted.origin?.ref ?? after.ref], ['1.2', 'os/containers'], 'rebased: the device boots 1.2 of os/containers');

    // A registry that serves other bytes than the manifest names: refused, no ref moved.
    const layer = manifestOf('1.2').layers.at(-1).digest.slice('sha256:'.length);
    const blob = join(dir, 'registry', 'docker', 'registry', 'v2', 'blobs', 'sha256', layer.slice(0, 2), layer, 'data');
    const bytes = readFileSync(blob);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(blob, bytes);
    const tampered = await larch(['commit', '--repo', v.repo, '-b', 'os/tampered', '--oci', `docker://${image}:1.2`, '--json']);
    t.same([tampered.code, tampered.json?.error?.data?.reason], [4, 'digest-mismatch'], `a blob changed in the registry's storage: refused (${tampered.json?.error?.message})`);
    t.notOk((await larchOk(['refs', '--repo', v.repo, '--json'])).json.some((r: { branch: string }) => r.branch === 'os/tampered'), 'no ref made');
  });
});
