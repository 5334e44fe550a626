/**
 * `larch commit --oci` against the ways round it, on the same image, in one run: the real Debian
 * packages of test-setup's fidelity list unpacked into a tree, committed by larch, exported with
 * `larch export-oci` (one gzip layer), then
 *   - larch commit --oci LAYOUT (the Bun binary; streams the layer into objects);
 *   - umoci unpack --rootless, then larch commit --tree of its rootfs;
 *   - ostree commit --tree=tar= of the layer's plain tar.
 * Wall time and peak RSS (GNU time) of each step; the trees are checked equal (larch's two).
 *
 *   node --import tsx bench/oci.ts [--json]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './corpus.ts';

const BIN = join(ROOT, 'dist', 'larch');

function timed(cmd: string, args: string[], what: string): { s: number; peakMiB: number; stdout: string } {
  const out = join(tmpdir(), `larch-bench-oci-time-${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', out, cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${what}: ${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const [s, kib] = readFileSync(out, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  rmSync(out, { force: true });
  return { s, peakMiB: Math.round((kib / 1024) * 10) / 10, stdout: r.stdout };
}

const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

const { values } = parseArgs({ options: { json: { type: 'boolean' } } });
for (const tool of ['/usr/bin/time', 'umoci', 'ostree', 'dpkg-deb', BIN]) if (!(tool.startsWith('/') ? existsSync(tool) : spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0)) throw new Error(`${tool} is missing`);
const dir = mkdtempSync(join(tmpdir(), 'larch-bench-oci-'));
try {
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  const debDir = join(ROOT, '.cache', 'debs');
  const debs = readdirSync(debDir).filter((f) => f.endsWith('.deb'));
  for (const d of debs) run('dpkg-deb', ['-x', join(debDir, d), tree]);
  run(BIN, ['init', '--repo', join(dir, 'src'), '--mode', 'bare-user']);
  const base = JSON.parse(run(BIN, ['commit', '--repo', join(dir, 'src'), '-b', 'os', '--tree', tree, '--version', '1', '--owner', '0:0', '--no-xattrs', '--timestamp', '2026-12-01T00:00:00Z', '--metadata', 'larch.architecture=amd64', '--json']));
  const exported = JSON.parse(run(BIN, ['export-oci', '--repo', join(dir, 'src'), 'os', '--out', join(dir, 'layout'), '--tag', '1', '--json']));
  const layerPath = join(dir, 'layout', 'blobs', 'sha256', exported.layer.digest.slice(7));
  const plainTar = join(dir, 'layer.tar');
  run('sh', ['-c', `gzip -dc '${layerPath}' > '${plainTar}'`]);

  run(BIN, ['init', '--repo', join(dir, 'oci'), '--mode', 'bare-user']);
  const oci = timed(BIN, ['commit', '--repo', join(dir, 'oci'), '-b', 'os', '--oci', `${join(dir, 'layout')}:1`, '--version', '1-import', '--json'], 'larch commit --oci');
  const ociRoot = JSON.parse(run(BIN, ['show', '--repo', join(dir, 'oci'), 'os', '--json'])).root.tree;

  const umoci = timed('umoci', ['unpack', '--rootless', '--image', `${join(dir, 'layout')}:1`, join(dir, 'bundle')], 'umoci unpack');
  run(BIN, ['init', '--repo', join(dir, 'viaumoci'), '--mode', 'bare-user']);
  const afterUmoci = timed(BIN, ['commit', '--repo', join(dir, 'viaumoci'), '-b', 'os', '--tree', join(dir, 'bundle', 'rootfs'), '--version', '1', '--owner', '0:0', '--no-xattrs', '--json'], 'larch commit --tree');
  const umociRoot = JSON.parse(run(BIN, ['show', '--repo', join(dir, 'viaumoci'), 'os', '--json'])).root.tree;

  run('ostree', ['init', `--repo=${join(dir, 'ostree')}`, '--mode=bare-user']);
  const ostree = timed('ostree', ['commit', `--repo=${join(dir, 'ostree')}`, '--branch=os', `--tree=tar=${plainTar}`, '--owner-uid=0', '--owner-gid=0', '--no-xattrs'], 'ostree commit');

  const result = {
    image: { packages: debs.length, entries: exported.layer.entries, layer_gzip_bytes: exported.layer.size, plain_tar_bytes: exported.layer.unpacked_bytes, base_commit: base.commit },
    larch_commit_oci: { s: oci.s, peak_mib: oci.peakMiB },
    umoci_unpack: { s: umoci.s, peak_mib: umoci.peakMiB },
    larch_commit_tree_of_umoci_rootfs: { s: afterUmoci.s, peak_mib: afterUmoci.peakMiB },
    umoci_then_larch_total_s: Math.round((umoci.s + afterUmoci.s) * 100) / 100,
    ostree_commit_tar: { s: ostree.s, peak_mib: ostree.peakMiB },
    ratio_oci_to_umoci_then_larch: Math.round((oci.s / (umoci.s + afterUmoci.s)) * 100) / 100,
    ratio_oci_to_ostree_tar: Math.round((oci.s / ostree.s) * 100) / 100,
    same_tree_as_umoci_path: ociRoot === umociRoot,
  };
  if (!result.same_tree_as_umoci_path) throw new Error(`the two larch trees differ: ${ociRoot} vs ${umociRoot}`);
  console.log(values.json ? JSON.stringify(result) : JSON.stringify(result, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
