/**
 * Hostile and malformed images (issue 21 must-show 4, docs/oci.md "Refusals"): each is refused
 * with its exit code, error code and data.reason, and leaves the repo as it was (refs, objects,
 * R/tmp) and nothing written outside it (a canary directory that symlinks in the image name).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TapTest, larch, larchOk, tempDir } from '../helpers.ts';
import { type EntrySpec, type ImageSpec, compress, tarOf, writeLayout } from '../oci-helpers.ts';

const dir = tempDir(t);
const repo = join(dir, 'repo');
const canary = join(dir, 'canary');
mkdirSync(canary);

/** Every file under the repo but its lock, sorted: what a refusal must leave as it was. */
const state = () => execFileSync('sh', ['-c', `cd '${repo}' && find . -path ./lock -prune -o -print | sort`], { encoding: 'utf8' });

let n = 0;
async function refused(t: TapTest, what: string, image: ImageSpec | ((path: string) => void) | EntrySpec[][], expect: { exit: number; code: string; reason: string }, args: string[] = []): Promise<void> {
  const path = join(dir, `image-${++n}`);
  if (typeof image === 'function') image(path);
  else writeLayout(path, Array.isArray(image) ? { layers: await Promise.all(image.map(tarOf)), labels: { 'org.opencontainers.image.version': '1' } } : image);
  const before = state();
  const r = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', path, ...args, '--json']);
  t.same({ exit: r.code, code: r.json?.error?.code, reason: r.json?.error?.data?.reason }, expect, `${what}: refused (${r.json?.error?.message ?? r.stderr.trim()})`);
  t.equal(state(), before, `${what}: refs, objects and R/tmp as before`);
  t.same(readdirSync(canary), [], `${what}: nothing written outside the repo`);
}

const bad = (reason: string, exit = 4, code = 'INVALID_INPUT') => ({ exit, code, reason });
const v1 = { 'org.opencontainers.image.version': '1' };

t.before(async () => {
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
  // A commit on the branch already, so "as before" covers a moved ref too.
  writeLayout(join(dir, 'good'), { layers: [await tarOf([{ name: 'etc/os-release', content: 'ID=good\n' }])], labels: v1 });
  await larchOk(['commit', '--repo', repo, '-b', 'os', '--oci', join(dir, 'good')]);
});

t.test('paths and the merged tree', async (t) => {
  await refused(t, "a '..' component", [[{ name: 'usr/../../etc/passwd', content: 'x' }]], bad('dotdot'));
  await refused(t, "a hard link with '..'", [[{ name: 'a', content: 'a' }, { name: 'b', type: 'link', linkname: '../../a' }]], bad('dotdot'));
  await refused(t, 'an absolute symlink escape', [[{ name: 'etc', type: 'symlink', linkname: canary }], [{ name: 'etc/pwned', content: 'x' }]], bad('through-symlink'));
  await refused(t, 'a relative symlink escape', [[{ name: 'up', type: 'symlink', linkname: '../../../..' }, { name: 'up/tmp/pwned', content: 'x' }]], bad('through-symlink'));
  await refused(t, 'a whiteout under a symlink', [[{ name: 'l', type: 'symlink', linkname: canary }], [{ name: 'l/.wh.x', content: '' }]], bad('through-symlink'));
  await refused(t, 'a hard link through a symlink', [[{ name: 'l', type: 'symlink', linkname: '/etc' }, { name: 'h', type: 'link', linkname: 'l/passwd' }]], bad('through-symlink'));
  await refused(t, 'a whiteout of its own parent', [[{ name: 'etc/.wh..', content: '' }]], bad('whiteout-parent'));
  await refused(t, 'an empty whiteout name', [[{ name: 'etc/.wh.', content: '' }]], bad('whiteout-parent'));
  await refused(t, 'an AUFS name that is no OCI whiteout', [[{ name: 'etc/.wh..wh.plnk', content: '' }]], bad('whiteout-name'));
  await refused(t, 'a symlink as the root', [[{ name: './', type: 'symlink', linkname: '/' }]], bad('root-type'));
  await refused(t, 'a hard link to nothing', [[{ name: 'h', type: 'link', linkname: 'missing' }]], bad('link-target'));
  await refused(t, 'a hard link to a directory', [[{ name: 'd/' }, { name: 'h', type: 'link', linkname: 'd' }]], bad('link-target'));
  await refused(t, 'a device outside /dev', [[{ name: 'etc/sda', type: 'block-device', devmajor: 8, devminor: 0 }]], bad('device', 4, 'UNSUPPORTED_FILE_TYPE'));
  await refused(t, 'an overlayfs whiteout (0:0 char device)', [[{ name: 'etc/motd', type: 'character-device', devmajor: 0, devminor: 0 }]], bad('device', 4, 'UNSUPPORTED_FILE_TYPE'));
});

t.test('sizes and bombs', async (t) => {
  const big = Buffer.alloc(65 * 1024 * 1024);
  await refused(t, 'an entry larger than the image may unpack to', [[{ name: 'big', content: big }]], bad('entry-size'), ['--max-unpacked-size', '64M']);
  const trailing = Buffer.concat([await tarOf([{ name: 'small', content: 's' }]), Buffer.alloc(2 * 1024 * 1024)]);
  await refused(t, 'plain bytes past --max-unpacked-size', { layers: [trailing], labels: v1 }, bad('unpacked-size'), ['--max-unpacked-size', '1M']);
  const bomb = await tarOf([{ name: 'zeros', content: Buffer.alloc(96 * 1024 * 1024) }]);
  await refused(t, 'a zstd bomb (96 MiB of zeros)', { layers: [bomb], compression: 'zstd', labels: v1 }, bad('ratio'));
  await refused(t, 'a layer descriptor past the cap', { layers: [await tarOf([{ name: 'a', content: 'a' }])], labels: v1, manifestEdit: (m) => (m.layers[0].size = 2 ** 40) }, bad('descriptor-size'), ['--max-unpacked-size', '1G']);
  await refused(t, 'more than 256 layers', { layers: [await tarOf([{ name: 'a', content: 'a' }])], labels: v1, manifestEdit: (m) => (m.layers = Array(257).fill(m.layers[0])) }, bad('too-many-layers'));
  await refused(t, 'an index.json over 4 MiB', (p) => {
    writeLayout(p, { layers: [], labels: v1 });
    writeFileSync(join(p, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [], pad: 'x'.repeat(4 * 1024 * 1024) }));
  }, bad('too-large'));
});

t.test('digests, media types and documents', async (t) => {
  const layer = await tarOf([{ name: 'etc/os-release', content: 'ID=x\n' }]);
  await refused(t, 'a layer blob changed', { layers: [layer], labels: v1, tamper: (blobs) => {
    const [d, b] = [...blobs].find(([, b]) => b[0] === 0x1f)!;
    blobs.set(d, Buffer.concat([b.subarray(0, b.length - 1), Buffer.from([b[b.length - 1] ^ 1])]));
  } }, bad('digest-mismatch'));
  await refused(t, 'a diff_id that is not the plain tar', { layers: [layer], labels: v1, config: { rootfs: { type: 'layers', diff_ids: [`sha256:${'0'.repeat(64)}`] } } }, bad('digest-mismatch'));
  await refused(t, 'a manifest blob changed', { layers: [layer], labels: v1, tamper: (blobs) => {
    const [d, b] = [...blobs].find(([, b]) => b.includes('"schemaVersion"'))!;
    blobs.set(d, Buffer.from(b.toString().replace('"schemaVersion":2', '"schemaVersion": 2')));
  } }, bad('digest-mismatch'));
  await refused(t, 'a config blob changed', { layers: [layer], labels: v1, tamper: (blobs) => {
    const [d, b] = [...blobs].find(([, b]) => b.includes('"rootfs"'))!;
    blobs.set(d, Buffer.from(b.toString().replace('"os":"linux"', '"os": "linux"')));
  } }, bad('digest-mismatch'));
  await refused(t, 'a digest that is a path', { layers: [layer], labels: v1, manifestEdit: (m) => (m.layers[0].digest = 'sha256:../../../etc/passwd') }, bad('digest'));
  await refused(t, 'a digest of another algorithm', { layers: [layer], labels: v1, manifestEdit: (m) => (m.layers[0].digest = `sha512:${'a'.repeat(128)}`) }, bad('digest-algorithm'));
  await refused(t, 'an encrypted layer', { layers: [layer], labels: v1, manifestEdit: (m) => (m.layers[0].mediaType += '+encrypted') }, bad('media-type'));
  await refused(t, 'gzip said, plain given', { layers: [layer], labels: v1, compression: 'none', manifestEdit: (m) => (m.layers[0].mediaType += '+gzip') }, bad('compression-mismatch'));
  await refused(t, 'a config for windows', { layers: [layer], labels: v1, config: { os: 'windows' } }, bad('not-an-image'));
  await refused(t, 'a layer that is no tar', { layers: [Buffer.from('this is not a tar archive, just text that goes on'.repeat(20))], compression: 'none', labels: v1 }, bad('not-a-tar'));
  await refused(t, 'a blob that is a symlink', (p) => {
    const img = writeLayout(p, { layers: [layer], labels: v1 });
    const blob = join(p, 'blobs', 'sha256', img.layerDigests[0].slice(7));
    rmSync(blob);
    symlinkSync('/etc/passwd', blob);
  }, bad('blob-not-regular'));
  await refused(t, 'a missing blob', (p) => {
    const img = writeLayout(p, { layers: [layer], labels: v1 });
    rmSync(join(p, 'blobs', 'sha256', img.layerDigests[0].slice(7)));
  }, bad('missing-blob'));
  await refused(t, 'a directory that is no image', (p) => mkdirSync(p), bad('not-an-image'));
});

t.test('archives', async (t) => {
  const archive = async (p: string, entries: EntrySpec[]) => writeFileSync(p, await tarOf(entries));
  const dup = join(dir, 'dup.tar');
  await archive(dup, [{ name: 'oci-layout', content: '{}' }, { name: 'oci-layout', content: '{}' }]);
  const r1 = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', dup, '--json']);
  t.same([r1.code, r1.json.error.data.reason], [4, 'archive-member'], 'a member twice: refused');
  const esc = join(dir, 'escape.tar');
  await archive(esc, [{ name: 'index.json', type: 'symlink', linkname: '/etc/passwd' }]);
  const r2 = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', esc, '--json']);
  t.same([r2.code, r2.json.error.data.reason], [4, 'archive-member'], 'a member linking out of the archive: refused');
  const junk = join(dir, 'junk.tar.gz');
  writeFileSync(junk, compress(Buffer.from('not a tar at all'.repeat(100)), 'gzip'));
  const r3 = await larch(['commit', '--repo', repo, '-b', 'os', '--oci', junk, '--json']);
  t.same([r3.code, r3.json.error.data.reason], [4, 'not-a-tar'], 'a compressed file that is no tar: refused');
  t.same(readdirSync(join(repo, 'tmp')), [], 'R/tmp empty after each');
});
