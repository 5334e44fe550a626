/** What a commit made from an OCI image says (src/oci/commit-metadata.ts): version, time, architecture, labels, the larch.oci.* keys. */
import t from 'tap';
import { chooseTimestamp, chooseVersion, debianArchitecture, keptLabels, ociArchitecture, ociMetadata, rfc3339Seconds } from '../../../src/oci/commit-metadata.ts';

t.test('the version: flag, own label, tag; an inherited label does not count', async (t) => {
  const labels = { 'org.opencontainers.image.version': '2026.1' };
  t.equal(chooseVersion({ flag: '9', labels, tag: 'x' }), '9');
  t.equal(chooseVersion({ labels, tag: 'x' }), '2026.1');
  t.equal(chooseVersion({ labels, inheritedVersion: '2026.1', tag: '2026.2' }), '2026.2', 'a label a larch base left: the tag instead');
  t.throws(() => chooseVersion({ labels: {}, tag: 'latest' }), { code: 'USAGE', data: { reason: 'no-version' } });
  t.throws(() => chooseVersion({ labels, inheritedVersion: '2026.1', tag: null }), { code: 'USAGE' });
});

t.test('the time: flag, else created as RFC 3339', async (t) => {
  t.equal(chooseTimestamp(5, null), 5);
  t.equal(chooseTimestamp(undefined, '2026-01-01T00:00:00Z'), 1767225600);
  t.equal(rfc3339Seconds('2026-01-01T01:00:00.999999999+01:00'), 1767225600, 'an offset honoured, the fraction floored');
  t.equal(rfc3339Seconds('2025-12-31T19:00:00-05:00'), 1767225600);
  for (const bad of ['2026-02-31T00:00:00Z', '2026-01-01', '2026-01-01T25:00:00Z', 'yesterday']) t.ok(Number.isNaN(rfc3339Seconds(bad)), `not a time: ${bad}`);
  for (const created of [null, '0001-01-01T00:00:00Z', 'soon']) t.throws(() => chooseTimestamp(undefined, created), { code: 'USAGE', data: { reason: 'no-created' } }, `refused: ${created}`);
});

t.test('architectures, both ways', async (t) => {
  t.equal(debianArchitecture('amd64'), 'amd64');
  t.equal(debianArchitecture('arm64', 'v8'), 'arm64');
  t.equal(debianArchitecture('arm', 'v7'), 'armhf');
  t.equal(debianArchitecture('ppc64le'), 'ppc64el');
  t.equal(debianArchitecture('arm', 'v6'), null, 'arm/v6: no Debian architecture');
  t.same(ociArchitecture('armhf'), { architecture: 'arm', variant: 'v7' });
  t.same(ociArchitecture('amd64'), { architecture: 'amd64' });
  t.equal(ociArchitecture('hurd-i386'), null);
});

t.test('labels and the larch.oci keys', async (t) => {
  t.same(keptLabels({ b: '2', 'larch.commit': 'x', a: '1', 'larch.commit.object': 'y' }), { a: '1', b: '2' }, "export-oci's own labels dropped, sorted");
  t.throws(() => keptLabels({ big: 'x'.repeat(300 * 1024) }), { code: 'INVALID_INPUT', data: { reason: 'labels-too-large' } });
  const config = { architecture: 'amd64', os: 'linux', created: '2026-01-01T00:00:00Z', labels: { v: '1' }, diffIds: ['sha256:' + 'd'.repeat(64)] };
  t.same(ociMetadata({ manifestDigest: 'sha256:' + 'm'.repeat(64), configDigest: 'sha256:' + 'c'.repeat(64), config }).map(([k]) => k), ['larch.oci.manifest_digest', 'larch.oci.config_digest', 'larch.oci.diff_ids', 'larch.oci.created', 'larch.oci.labels']);
  t.same(ociMetadata({ manifestDigest: null, configDigest: 'sha256:' + 'c'.repeat(64), config: { ...config, created: null } }).map(([k]) => k), ['larch.oci.config_digest', 'larch.oci.diff_ids', 'larch.oci.labels'], 'a docker-archive: no manifest digest; no created');
});
