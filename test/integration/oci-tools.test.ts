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
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Runtime, IS_ROOT, debs, diffSnapshots, larchOk, missingTools, snapshotTree, tempDir, testNeeding } from '../helpers.ts';

const TOOLS = ['buildah', 'podman', 'skopeo', 'umoci', 'runc', 'dpkg-deb', 'tar'];
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
