/**
 * fetchCommitObject (what `larch check` reads the offered commit's package list from): through a
 * FileFetcher holding an archive repo's files in memory, it returns the decoded commit only when
 * the bytes match the id and a trusted key signed it, and refuses the rest as a pull would.
 */
import t from 'tap';
import { rejectsCode } from '../../helpers.ts';
import { LarchError } from '../../../src/errors.ts';
import type { FileFetcher } from '../../../src/agent/remote/fetcher.ts';
import { fetchCommitObject } from '../../../src/agent/remote/pull.ts';
import { encodePackageList } from '../../../src/packages/package-diff.ts';
import { encodeCommit, metadataId } from '../../../src/store/object.ts';
import { encodeSignatures, generateKey, signCommit } from '../../../src/store/sign.ts';

const zero = '0'.repeat(64);

function memoryFetcher(files: Map<string, Uint8Array>): FileFetcher {
  const f: FileFetcher = {
    url: 'mem:/',
    where: (path) => `mem:/${path}`,
    exchange: (_signal, fn) => fn(f),
    async fetchBytes(path, opts) {
      const bytes = files.get(path);
      if (!bytes) throw new LarchError('NOT_FOUND', `no ${path}`, { data: { url: path } });
      if (bytes.length > opts.maxBytes) throw new LarchError('INVALID_INPUT', `${path} too large`, { data: { url: path, max_bytes: opts.maxBytes } });
      return bytes;
    },
    async downloadFile() {
      throw new Error('a commit fetch downloads no file');
    },
  };
  return f;
}

t.test('a signed commit object: decoded with its metadata; tampered, unsigned or untrusted: refused', async (t) => {
  const vendor = await generateKey();
  const stranger = await generateKey();
  const packages = [{ name: 'libc6', version: '2.36-9+deb12u14', architecture: 'amd64' }];
  const bytes = encodeCommit({ root: { tree: zero, meta: zero }, parent: null, timestamp: 1, version: '2.0', subject: 's', body: '', metadata: new Map([['larch.packages', encodePackageList(packages)]]) });
  const id = metadataId(bytes);
  const path = (ext: string) => `objects/${id.slice(0, 2)}/${id.slice(2)}.${ext}`;
  const files = new Map([[path('commit'), bytes], [path('sig'), encodeSignatures([await signCommit(id, vendor)])]]);
  const trust = { trusted: [vendor.publicKey] };

  const c = await fetchCommitObject(memoryFetcher(files), id, trust);
  t.equal(c.version, '2.0', 'decoded');
  t.same(c.metadata.get('larch.packages'), [['libc6', '2.36-9+deb12u14', 'amd64']], 'with its package list');

  await rejectsCode(t, fetchCommitObject(memoryFetcher(files), id, { trusted: [stranger.publicKey] }), 'SIGNATURE_INVALID', 'signed by a key the device does not trust');
  const tampered = new Map(files).set(path('commit'), Uint8Array.from([...bytes.slice(0, -1), bytes.at(-1)! ^ 1]));
  await rejectsCode(t, fetchCommitObject(memoryFetcher(tampered), id, trust), 'OBJECT_CORRUPT', 'bytes that do not match the id');
  const unsigned = new Map(files);
  unsigned.delete(path('sig'));
  await rejectsCode(t, fetchCommitObject(memoryFetcher(unsigned), id, trust), 'SIGNATURE_MISSING', 'no .sig');
  await rejectsCode(t, fetchCommitObject(memoryFetcher(new Map()), id, trust), 'OBJECT_MISSING', 'no commit on the remote');
  await rejectsCode(t, fetchCommitObject(memoryFetcher(files), id, { trusted: [] }), 'SIGNATURE_MISSING', 'no trusted key at all');
});
