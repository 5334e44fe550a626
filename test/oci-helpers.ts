/**
 * Test images made by hand (tar-stream's packer, node:zlib, the zstd tool): OCI layouts,
 * oci-archives and docker-archives whose layers say exactly what a test needs, hostile ones too.
 * Real buildah/podman images are the slow tier's (oci-tools.test.ts).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { compressWith } from './helpers.ts';

export interface EntrySpec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device' | 'block-device';
  mode?: number;
  uid?: number;
  gid?: number;
  content?: string | Buffer;
  linkname?: string;
  pax?: Record<string, string>;
  size?: number;
  devmajor?: number;
  devminor?: number;
}

export type Compression = 'none' | 'gzip' | 'zstd';

/** A plain tar of the entries, in order. */
export async function tarOf(entries: EntrySpec[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const e of entries) {
    const type = e.type ?? (e.content !== undefined ? 'file' : 'directory');
    const content = e.content === undefined ? undefined : Buffer.from(e.content);
    pack.entry({ name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, mtime: new Date(0), linkname: e.linkname, pax: e.pax, size: e.size, devmajor: e.devmajor, devminor: e.devminor }, content as Buffer);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function compress(tar: Buffer, c: Compression): Buffer {
  return c === 'gzip' ? gzipSync(tar) : c === 'zstd' ? compressWith('zstd', ['-q', '-c', '-3'], tar) : tar;
}

export const digestOf = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const MEDIA: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

export interface ImageSpec {
  /** Plain tars, lowest first. */
  layers: Buffer[];
  compression?: Compression | Compression[];
  config?: Record<string, unknown>;
  labels?: Record<string, string>;
  created?: string | null;
  architecture?: string;
  /** index.json ref names; default ['latest']. */
  tags?: string[];
  /** Edit the manifest before it is written (its digest is then the edited one's). */
  manifestEdit?: (manifest: any) => void;
  /** Edit index.json before it is written. */
  indexEdit?: (index: any) => void;
  /** Override a layer's blob bytes (tampering) after digests are computed. */
  tamper?: (blobs: Map<string, Buffer>) => void;
}

export interface BuiltImage {
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
}

function parts(spec: ImageSpec) {
  const comp = (i: number): Compression => (Array.isArray(spec.compression) ? spec.compression[i] : (spec.compression ?? 'gzip'));
  const blobs = new Map<string, Buffer>();
  const put = (b: Buffer) => {
    const d = digestOf(b);
    blobs.set(d, b);
    return d;
  };
  const layerDescs = spec.layers.map((plain, i) => {
    const blob = compress(plain, comp(i));
    return { mediaType: MEDIA[comp(i)], digest: put(blob), size: blob.length };
  });
  const config = {
    architecture: spec.architecture ?? 'amd64',
    os: 'linux',
    ...(spec.created === null ? {} : { created: spec.created ?? '2026-11-01T00:00:00Z' }),
    config: { Labels: spec.labels ?? {} },
    rootfs: { type: 'layers', diff_ids: spec.layers.map(digestOf) },
    ...spec.config,
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = put(configBytes);
  const manifestDoc = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBytes.length }, layers: layerDescs };
  spec.manifestEdit?.(manifestDoc);
  const manifest = Buffer.from(JSON.stringify(manifestDoc));
  const manifestDigest = put(manifest);
  const index = { schemaVersion: 2, manifests: (spec.tags ?? ['latest']).map((t) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': t } })) };
  spec.indexEdit?.(index);
  spec.tamper?.(blobs);
  return { blobs, index, manifestDigest, configDigest, configBytes, layerDigests: layerDescs.map((d) => d.digest) };
}

/** An OCI image layout directory. */
export function writeLayout(dir: string, spec: ImageSpec): BuiltImage {
  const p = parts(spec);
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, 'index.json'), JSON.stringify(p.index));
  for (const [d, b] of p.blobs) writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), b);
  return { manifestDigest: p.manifestDigest, configDigest: p.configDigest, layerDigests: p.layerDigests };
}

/** An oci-archive: the layout's files in one tar. */
export async function writeOciArchive(file: string, spec: ImageSpec): Promise<BuiltImage> {
  const p = parts(spec);
  const entries: EntrySpec[] = [{ name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' }, { name: 'index.json', content: JSON.stringify(p.index) }, { name: 'blobs/' }, { name: 'blobs/sha256/' }];
  for (const [d, b] of p.blobs) entries.push({ name: `blobs/sha256/${d.slice(7)}`, content: b });
  writeFileSync(file, await tarOf(entries));
  return { manifestDigest: p.manifestDigest, configDigest: p.configDigest, layerDigests: p.layerDigests };
}

/** A docker-archive as containers/image writes one: manifest.json, <hex>.json, <hex>.tar. */
export async function writeDockerArchive(file: string, spec: ImageSpec, repoTags = ['localhost/os:latest']): Promise<BuiltImage> {
  const p = parts({ ...spec, compression: 'none' });
  const layerNames = spec.layers.map((l) => `${digestOf(l).slice(7)}.tar`);
  const configName = `${p.configDigest.slice(7)}.json`;
  const entries: EntrySpec[] = spec.layers.map((l, i) => ({ name: layerNames[i], content: l }));
  entries.push({ name: configName, content: p.configBytes });
  entries.push({ name: 'manifest.json', content: JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: layerNames }]) });
  writeFileSync(file, await tarOf(entries));
  return { manifestDigest: p.manifestDigest, configDigest: p.configDigest, layerDigests: p.layerDigests };
}
