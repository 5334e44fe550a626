/**
 * image build's provisioning step (provisionFromRepo): the sysroot is provisioned from the
 * vendor repo's files through the local fetcher, with a summary signed for the build in memory;
 * the repo's published summary is never written, and the device's serial is the published one.
 */
import t from 'tap';
import { readFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readDeployment } from '../../../src/agent/deploy.ts';
import { Sysroot } from '../../../src/agent/sysroot.ts';
import { provisionFromRepo } from '../../../src/image/build.ts';
import { publish } from '../../../src/server/publish.ts';
import { Repo } from '../../../src/store/repo.ts';
import { generateKey, writeKeyPair } from '../../../src/store/sign.ts';
import { createCommit } from '../../../src/store/write-commit.ts';
import { tempDir } from '../../helpers.ts';

async function vendorRepo(dir: string) {
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'boot'), { recursive: true });
  mkdirSync(join(tree, 'etc'), { recursive: true });
  writeFileSync(join(tree, 'boot', 'vmlinuz-6.1.0-1'), 'kernel\n');
  writeFileSync(join(tree, 'boot', 'initrd.img-6.1.0-1'), 'initrd\n');
  writeFileSync(join(tree, 'etc', 'os-release'), 'NAME=test\n');
  const key = await generateKey();
  const keyFiles = await writeKeyPair(join(dir, 'vendor'), key);
  const repo = await Repo.init(join(dir, 'srv'), 'archive');
  const c = await createCommit(repo, { source: { tree }, branch: 'os', version: '1', xattrs: false, owner: { uid: 0, gid: 0 }, signKeys: [key] });
  return { repo, key, pub: keyFiles.public, commit: c.commit };
}

const config = (sysroot: string) => JSON.parse(readFileSync(join(sysroot, 'larch', 'config.json'), 'utf8'));

t.test('provisioned from the repo directory; the repo gains no summary', async (t) => {
  const dir = tempDir(t);
  const v = await vendorRepo(dir);
  const sysroot = join(dir, 'sysroot');
  mkdirSync(sysroot);
  await provisionFromRepo(v.repo, sysroot, { ref: 'os', commit: v.commit, signKeys: [v.key], trustedKeys: [v.pub], repoUrl: 'http://10.0.2.2:8080/', bootloader: 'grub' });
  t.match(config(sysroot), { remote: { kind: 'http', url: 'http://10.0.2.2:8080/' }, ref: 'os', summary_serial: 0 }, 'the device points at --repo-url; no published serial yet');
  t.equal((await readDeployment(new Sysroot(sysroot), 'A'))?.commit, v.commit, 'slot A holds the commit');
  t.notOk(existsSync(join(v.repo.path, 'summary')), 'no summary written into the vendor repo');
  t.notOk(existsSync(join(v.repo.path, 'summary.sig')), 'nor its signature');
});

t.test('the device takes the serial of the published summary, which stays as it was', async (t) => {
  const dir = tempDir(t);
  const v = await vendorRepo(dir);
  const published = await publish(v.repo, { signKeys: [v.key], expiresInSeconds: 3600, now: 1_900_000_000 });
  const before = readFileSync(join(v.repo.path, 'summary'));
  const sysroot = join(dir, 'sysroot');
  mkdirSync(sysroot);
  await provisionFromRepo(v.repo, sysroot, { ref: 'os', commit: v.commit, signKeys: [v.key], trustedKeys: [v.pub], repoUrl: 'http://updates.example/os', bootloader: 'grub' });
  t.equal(config(sysroot).summary_serial, published.serial, "the published summary's serial: the device accepts it and every later one");
  t.same(readFileSync(join(v.repo.path, 'summary')), before, 'the published summary is unchanged');
});
