/**
 * `image build --rev` of a commit composed for another architecture than the board's is refused
 * before any work (exit 4), and one for other hardware than --compatible before any disk is
 * written (exit 14), through the Bun binary. No image is built here (image.test.ts does that).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { larch, larchOk, tempDir } from '../helpers.ts';

t.test('image build --rev refuses a commit of another architecture before any work', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  const key = join(dir, 'vendor');
  await larchOk(['keygen', '--out', key]);
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'etc'), { recursive: true });
  writeFileSync(join(tree, 'etc/os-release'), 'NAME=test\n');
  const commit = async (branch: string, metadata: string[]) => (await larchOk(['commit', '--repo', repo, '-b', branch, '--tree', tree, '--version', '1', '--subject', branch, '--sign-key', `${key}.key`, '--json', ...metadata])).json.commit as string;
  // As compose records it (larch.architecture), and, for a commit without it, by its package list.
  const arm64 = await commit('os/arm64', ['--metadata', 'larch.architecture=arm64']);
  const packagesJson = join(dir, 'packages.json');
  writeFileSync(packagesJson, JSON.stringify({ 'larch.packages': [['base-files', '12.4', 'amd64'], ['tzdata', '2024a', 'all']] }));
  const amd64 = await commit('os/amd64', ['--metadata-json', packagesJson]);

  for (const [rev, id, board, arch, boardArch] of [
    ['os/arm64', arm64, 'qemu-x86_64-grub', 'arm64', 'amd64'],
    ['os/amd64', amd64, 'qemu-arm64-uboot', 'amd64', 'arm64'],
  ] as const) {
    const out = join(dir, `${board}.img`);
    const r = await larch(['image', 'build', '--rev', rev, '--board', board, '--out', out, '--repo', repo, '--sign-key', `${key}.key`, '--json']);
    t.equal(r.code, 4, `${rev} on ${board}: exit 4 (${r.stderr.trim()})`);
    t.match(r.json?.error, { code: 'INVALID_INPUT', data: { commit: id, architecture: arch, board, board_architecture: boardArch } }, `${rev} on ${board}: INVALID_INPUT naming both architectures`);
    t.match(r.json?.error?.message, new RegExp(`is for ${arch}, board ${board} is ${boardArch}`), 'the message says which is which');
    t.notOk(existsSync(out), 'no image written');
  }
  t.notOk(existsSync(join(repo, 'summary')), 'refused before publishing the summary (no work done)');

  // The device an image makes is bound to its hardware: --compatible other than the commit's is refused.
  await commit('os/board-a', ['--metadata', 'larch.architecture=amd64', '--compatible', 'board-a']);
  const out = join(dir, 'board-b.img');
  const r = await larch(['image', 'build', '--rev', 'os/board-a', '--board', 'qemu-x86_64-grub', '--compatible', 'board-b', '--out', out, '--repo', repo, '--sign-key', `${key}.key`, '--json']);
  t.equal(r.code, 14, `--compatible board-b of a board-a commit: exit 14 (${r.stderr.trim()})`);
  t.match(r.json?.error, { code: 'REFUSED', data: { reason: 'incompatible', device: 'board-b', offered: 'board-a' } }, 'REFUSED incompatible, naming both ids');
  t.notOk(existsSync(out), 'no image written');
});
