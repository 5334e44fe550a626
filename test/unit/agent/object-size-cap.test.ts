/**
 * The object pull's cap on a file object: with a format-2 tree, every .filez is
 * asked for with the bound of its signed size (whatever the transport: HTTP and MQTT fetchers
 * both enforce the maxBytes they are given); with a format-1 tree, with the 4 GiB cap. A fetcher
 * refusing a body past the bound gives an INVALID_INPUT naming the object and both lengths.
 */
import t from 'tap';
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LarchError } from '../../../src/errors.ts';
import type { FileFetcher } from '../../../src/agent/remote/fetcher.ts';
import { pullObjects } from '../../../src/agent/remote/pull.ts';
import { Repo, maxFilezBytes } from '../../../src/store/repo.ts';
import { createCommit } from '../../../src/store/write-commit.ts';
import { tempDir } from '../../helpers.ts';

/** A fetcher over an archive repo's directory that records the maxBytes of each .filez request. */
function diskFetcher(root: string, asked: Map<string, number>, tooLarge?: string): FileFetcher {
  const f: FileFetcher = {
    url: 'disk:/',
    where: (path) => `disk:/${path}`,
    exchange: (_signal, fn) => fn(f),
    async fetchBytes(path, opts) {
      const bytes = await readFile(join(root, path)).catch(() => Promise.reject(new LarchError('NOT_FOUND', `no ${path}`, { data: { url: path } })));
      if (bytes.length > opts.maxBytes) throw new LarchError('INVALID_INPUT', `${path} too large`, { data: { url: path, max_bytes: opts.maxBytes } });
      return bytes;
    },
    async downloadFile(path, dest, opts) {
      asked.set(path, opts.maxBytes);
      // As the real fetchers answer a body that runs past maxBytes.
      if (tooLarge && path.includes(tooLarge)) throw new LarchError('INVALID_INPUT', `download '${path}': the server sent more than ${opts.maxBytes} bytes`, { data: { url: path, max_bytes: opts.maxBytes, reason: 'too-large' } });
      await mkdir(dirname(dest), { recursive: true });
      await copyFile(join(root, path), dest);
      const bytes = (await stat(dest)).size;
      return { bytes, resumedFromBytes: 0, requests: 1 } as Awaited<ReturnType<FileFetcher['downloadFile']>>;
    },
  };
  return f;
}

async function vendorRepo(dir: string, format: 1 | 2) {
  const tree = join(dir, `tree-${format}`);
  await mkdir(join(tree, 'bin'), { recursive: true });
  await writeFile(join(tree, 'bin', 'big'), Buffer.alloc(300_000, 7));
  await writeFile(join(tree, 'small'), 'hello\n');
  const repo = await Repo.init(join(dir, `srv-${format}`), 'archive', format);
  const c = await createCommit(repo, { source: { tree }, branch: 'os', version: '1', xattrs: false, owner: { uid: 0, gid: 0 } });
  return { repo, commit: c.commit };
}

for (const format of [1, 2] as const) {
  t.test(`format ${format}: the cap each file object is fetched with`, async (t) => {
    const dir = tempDir(t);
    const { repo, commit } = await vendorRepo(dir, format);
    const device = await Repo.init(join(dir, `dev-${format}`), 'bare-user');
    const asked = new Map<string, number>();
    await pullObjects(device, { commit, downloadDir: join(dir, 'dl'), trusted: null, allowUnsigned: true, fetcher: diskFetcher(repo.path, asked) });
    t.equal(asked.size, 2, 'two file objects fetched');
    const caps = [...asked.values()].sort((a, b) => a - b);
    if (format === 1) t.same(caps, [4 * 1024 ** 3, 4 * 1024 ** 3], 'format 1: the 4 GiB cap');
    else t.same(caps, [maxFilezBytes(6), maxFilezBytes(300_000)], 'format 2: the bound of each signed size');
    for (const [path, cap] of asked) t.ok((await stat(join(repo.path, path))).size <= cap, `${path} fits its cap`);
  });
}

t.test('format 2: a body past the bound is refused naming the object and both lengths', async (t) => {
  const dir = tempDir(t);
  const { repo, commit } = await vendorRepo(dir, 2);
  const device = await Repo.init(join(dir, 'dev'), 'bare-user');
  const asked = new Map<string, number>();
  // Find the big file's object: the one asked with the larger cap in an honest pull.
  await pullObjects(await Repo.init(join(dir, 'probe'), 'bare-user'), { commit, downloadDir: join(dir, 'dl0'), trusted: null, allowUnsigned: true, fetcher: diskFetcher(repo.path, asked) });
  const [bigPath] = [...asked].find(([, cap]) => cap === maxFilezBytes(300_000))!;
  const id = bigPath.replace(/^objects\/(..)\/(.{62})\.filez$/, '$1$2');
  const err = await pullObjects(device, { commit, downloadDir: join(dir, 'dl'), trusted: null, allowUnsigned: true, fetcher: diskFetcher(repo.path, new Map(), bigPath) }).then(
    () => null,
    (e) => e,
  );
  t.ok(err instanceof LarchError && err.code === 'INVALID_INPUT', `INVALID_INPUT (${err?.message})`);
  t.match(err?.message, `file ${id} from 'disk:/${bigPath}' is longer than its signed size allows: the tree says 300000 bytes of content, so at most ${maxFilezBytes(300_000)} bytes as .filez`);
  t.same(err?.data, { url: `disk:/${bigPath}`, id, size: 300_000, max_bytes: maxFilezBytes(300_000), reason: 'too-large' });
  t.equal(await device.readRef('os').catch(() => null), null, 'nothing is stored: no ref');
  t.notOk(await device.hasObject('commit', commit), 'and not the commit');
});
