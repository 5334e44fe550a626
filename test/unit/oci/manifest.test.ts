/** OCI and docker-archive documents (src/oci/manifest.ts) and image references (src/oci/reference.ts): what is read, what is refused and why, which image is chosen. */
import t from 'tap';
import { MAX_JSON_BYTES, MEDIA, blobPath, checkDigest, decodeConfig, decodeDockerArchive, decodeIndex, decodeManifest, descriptorTags, layerCompression, selectByTag, selectPlatform } from '../../../src/oci/manifest.ts';
import { parseSource } from '../../../src/oci/reference.ts';

const D = (c: string) => `sha256:${c.repeat(64)}`;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const desc = (mediaType: string, c: string, extra: Record<string, unknown> = {}) => ({ mediaType, digest: D(c), size: 10, ...extra });
const reason = (fn: () => unknown) => {
  try {
    fn();
    return null;
  } catch (err) {
    return `${(err as { code: string }).code}:${(err as { data: { reason?: string } }).data?.reason}`;
  }
};

t.test('digests and media types', async (t) => {
  t.equal(checkDigest(D('a'), 'x'), D('a'));
  t.equal(blobPath(D('a')), `blobs/sha256/${'a'.repeat(64)}`);
  t.equal(reason(() => checkDigest('sha512:' + 'a'.repeat(128), 'x')), 'INVALID_INPUT:digest-algorithm');
  for (const bad of ['sha256:../../etc/passwd', `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, 42]) t.equal(reason(() => checkDigest(bad, 'x')), 'INVALID_INPUT:digest', `refused: ${String(bad)}`);
  t.equal(layerCompression(MEDIA.layerGzip), 'gzip');
  t.equal(layerCompression(MEDIA.dockerLayer), 'gzip');
  t.equal(layerCompression(MEDIA.layerZstd), 'zstd');
  t.equal(layerCompression(MEDIA.layer), 'none');
  t.equal(reason(() => layerCompression('application/vnd.oci.image.layer.v1.tar+gzip+encrypted')), 'INVALID_INPUT:media-type');
});

t.test('index, manifest, config, manifest.json', async (t) => {
  const index = decodeIndex(json({ schemaVersion: 2, manifests: [desc(MEDIA.manifest, 'a', { annotations: { 'org.opencontainers.image.ref.name': '1.1' }, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } })] }));
  t.match(index, [{ digest: D('a'), annotations: { 'org.opencontainers.image.ref.name': '1.1' }, platform: { architecture: 'arm64', variant: 'v8' } }]);
  t.same(descriptorTags(index[0]), ['1.1']);
  const m = decodeManifest(json({ schemaVersion: 2, mediaType: MEDIA.manifest, config: desc(MEDIA.config, 'c'), layers: [desc(MEDIA.layerGzip, 'e')] }));
  t.match(m, { config: { digest: D('c') }, layers: [{ mediaType: MEDIA.layerGzip }] });
  const c = decodeConfig(json({ architecture: 'amd64', os: 'linux', created: '2026-01-01T00:00:00Z', config: { Labels: { 'org.opencontainers.image.version': '1.1' } }, rootfs: { type: 'layers', diff_ids: [D('d')] } }));
  t.same(c, { architecture: 'amd64', os: 'linux', created: '2026-01-01T00:00:00Z', labels: { 'org.opencontainers.image.version': '1.1' }, diffIds: [D('d')] });
  t.same(decodeDockerArchive(json([{ Config: 'c.json', RepoTags: ['localhost/os:1.1'], Layers: ['l1/layer.tar'] }])), [{ config: 'c.json', repoTags: ['localhost/os:1.1'], layers: ['l1/layer.tar'] }]);

  const refusals: [() => unknown, string, string][] = [
    [() => decodeIndex(json({ schemaVersion: 1, manifests: [] })), 'INVALID_INPUT:not-an-image', 'schemaVersion 1'],
    [() => decodeIndex(Buffer.alloc(MAX_JSON_BYTES + 1, 0x20)), 'INVALID_INPUT:too-large', 'an index over 4 MiB'],
    [() => decodeIndex(Buffer.from('{')), 'INVALID_INPUT:not-an-image', 'not JSON'],
    [() => decodeIndex(json({ schemaVersion: 2, manifests: [desc(MEDIA.manifest, 'a', { size: -1 })] })), 'INVALID_INPUT:descriptor-size', 'a negative size'],
    [() => decodeIndex(json({ schemaVersion: 2, manifests: [desc(MEDIA.manifest, 'a', { size: 2 ** 60 })] })), 'INVALID_INPUT:descriptor-size', 'a size over 2^53'],
    [() => decodeManifest(json({ schemaVersion: 2, config: desc('application/vnd.example.artifact', 'c'), layers: [] })), 'INVALID_INPUT:not-an-image', 'an artifact'],
    [() => decodeManifest(json({ schemaVersion: 2, config: desc(MEDIA.config, 'c'), layers: Array.from({ length: 257 }, () => desc(MEDIA.layer, 'e')) })), 'INVALID_INPUT:too-many-layers', '257 layers'],
    [() => decodeConfig(json({ architecture: 'amd64', os: 'windows', rootfs: { type: 'layers', diff_ids: [] } })), 'INVALID_INPUT:not-an-image', 'a Windows image'],
    [() => decodeConfig(json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: ['md5:x'] } })), 'INVALID_INPUT:digest-algorithm', 'a diff_id of another algorithm'],
    [() => decodeDockerArchive(json([{ Config: '../c.json', Layers: [] }])), 'INVALID_INPUT:dotdot', 'a config outside the archive'],
    [() => decodeDockerArchive(json([{ Config: 'c.json', Layers: ['/etc/passwd'] }])), 'INVALID_INPUT:dotdot', 'an absolute layer path'],
  ];
  for (const [fn, want, what] of refusals) t.equal(reason(fn), want, what);
});

t.test('which image: by tag, the only one, latest; by platform', async (t) => {
  const tagged = (...names: string[]) => names.map((n) => ({ n }));
  const tagsOf = (e: { n: string }) => [e.n];
  t.same(selectByTag(tagged('1.0', 'localhost/os:1.1'), tagsOf, '1.1', 'x'), { n: 'localhost/os:1.1' }, 'a whole name ending in :TAG');
  t.same(selectByTag(tagged('only'), tagsOf, null, 'x'), { n: 'only' }, 'the only one');
  t.same(selectByTag(tagged('1.0', 'latest'), tagsOf, null, 'x'), { n: 'latest' }, 'latest');
  t.equal(reason(() => selectByTag(tagged('1.0', '1.1'), tagsOf, null, 'x')), 'USAGE:tag', 'two and no latest');
  t.equal(reason(() => selectByTag(tagged('1.0'), tagsOf, '2.0', 'x')), 'USAGE:tag', 'no such tag');
  const entries = decodeIndex(json({ schemaVersion: 2, manifests: [desc(MEDIA.manifest, 'a', { platform: { os: 'linux', architecture: 'amd64' } }), desc(MEDIA.manifest, 'b', { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }), desc('application/vnd.example.sbom', 'c')] }));
  t.equal(selectPlatform(entries, 'linux/arm64/v8').digest, D('b'));
  t.equal(selectPlatform(entries, 'linux/amd64').digest, D('a'));
  t.equal(reason(() => selectPlatform(entries, null)), 'USAGE:platform', 'two platforms and none named');
  t.equal(selectPlatform([entries[0], entries[2]], null).digest, D('a'), 'an index with one image and other artifacts');
});

t.test('image references', async (t) => {
  const none = () => false;
  t.same(parseSource('img.tar', none), { kind: 'path', path: 'img.tar', tag: null });
  t.same(parseSource('out/layout:1.1', none), { kind: 'path', path: 'out/layout', tag: '1.1' });
  t.same(parseSource('dir:with:colon', (p) => p === 'dir:with:colon'), { kind: 'path', path: 'dir:with:colon', tag: null }, 'an existing path is never split');
  t.same(parseSource('docker://127.0.0.1:5000/larch/os:2026.2', none), { kind: 'registry', host: '127.0.0.1:5000', name: 'larch/os', tag: '2026.2', digest: null });
  t.same(parseSource(`docker://localhost/os@${D('e')}`, none), { kind: 'registry', host: 'localhost', name: 'os', tag: null, digest: D('e') });
  for (const bad of ['docker://os', 'docker://h/OS', 'docker://h/os:bad/tag', 'docker://h/os@md5:x', 'oci://x', '']) t.equal(reason(() => parseSource(bad, none)), 'USAGE:undefined', `refused: '${bad}'`);
});
