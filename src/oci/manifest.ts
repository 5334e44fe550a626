/**
 * Pure: the JSON documents of an OCI image (image-spec: image-index.md, manifest.md, config.md,
 * descriptor.md) and of a docker-archive (`manifest.json`), decoded with every field checked, and
 * the choice of one image by tag and platform (docs/design/issue-21-oci.md §4.1). Digests are
 * sha256 only: a digest also names a file (blobs/sha256/HEX), so its grammar is the traversal check.
 */
import { sha256 } from '../_hash.ts';
import { LarchError, quash } from '../errors.ts';

/** The most bytes of an index, manifest, config or manifest.json read (containers/image's caps). */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
  platform: { architecture: string; os: string; variant?: string } | null;
}

export interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created: string | null;
  labels: Record<string, string>;
  diffIds: string[];
}

/** One image of a docker-archive's manifest.json: paths inside the archive. */
export interface DockerArchiveImage {
  config: string;
  repoTags: string[];
  layers: string[];
}

const REF_NAME = 'org.opencontainers.image.ref.name';
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function bad(reason: string, message: string, data: Record<string, unknown> = {}): LarchError {
  return new LarchError('INVALID_INPUT', message, { data: { reason, ...data } });
}

/** A sha256 digest, checked. @throws INVALID_INPUT digest, digest-algorithm */
export function checkDigest(v: unknown, where: string): string {
  if (typeof v === 'string' && DIGEST.test(v)) return v;
  if (typeof v === 'string' && /^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(v) && !v.startsWith('sha256:')) {
    throw bad('digest-algorithm', `${where}: digest '${quash(v, 100)}' is not sha256, the only algorithm larch reads`, { digest: quash(v, 100) });
  }
  throw bad('digest', `${where}: '${quash(String(v), 100)}' is not a digest (sha256: and 64 lowercase hex digits)`);
}

/** The OCI digest of bytes: `sha256:` and the hex of their SHA-256. */
export const digestOf = (bytes: Uint8Array) => `sha256:${sha256(bytes)}`;

/** Where a blob lives in an OCI layout (image-layout.md). */
export const blobPath = (digest: string) => `blobs/sha256/${digest.slice('sha256:'.length)}`;

/** The compression of a layer's media type. @throws INVALID_INPUT media-type (unknown, or encrypted) */
export function layerCompression(mediaType: string): Compression {
  if (mediaType === MEDIA.layer || mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar') return 'none';
  if (mediaType === MEDIA.layerGzip || mediaType === MEDIA.dockerLayer || mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip') return 'gzip';
  if (mediaType === MEDIA.layerZstd || mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd') return 'zstd';
  throw bad('media-type', `layer media type '${quash(mediaType, 120)}' is not one larch reads${mediaType.includes('encrypted') ? ' (an encrypted layer)' : ''}`, { media_type: quash(mediaType, 120) });
}

function parse(bytes: Uint8Array, what: string): Record<string, unknown> | unknown[] {
  if (bytes.length > MAX_JSON_BYTES) throw bad('too-large', `the ${what} is ${bytes.length} bytes, over larch's ${MAX_JSON_BYTES}`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw bad('not-an-image', `the ${what} is not JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object') throw bad('not-an-image', `the ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function strings(v: unknown, what: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isRecord(v) || !Object.values(v).every((x) => typeof x === 'string')) throw bad('not-an-image', `${what} is not a map of strings`);
  return v as Record<string, string>;
}

function descriptor(v: unknown, where: string): Descriptor {
  if (!isRecord(v)) throw bad('not-an-image', `${where} is not a descriptor`);
  if (typeof v.mediaType !== 'string') throw bad('not-an-image', `${where} has no mediaType`);
  const size = v.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('descriptor-size', `${where}: size ${quash(String(size), 40)} is not a byte count`);
  const p = v.platform;
  let platform: Descriptor['platform'] = null;
  if (isRecord(p) && typeof p.architecture === 'string' && typeof p.os === 'string') platform = { architecture: p.architecture, os: p.os, ...(typeof p.variant === 'string' ? { variant: p.variant } : {}) };
  return { mediaType: v.mediaType, digest: checkDigest(v.digest, where), size, annotations: strings(v.annotations, `${where}'s annotations`), platform };
}

/** index.json, or a registry's image index (OCI) or manifest list (Docker). */
export function decodeIndex(bytes: Uint8Array): Descriptor[] {
  const o = parse(bytes, 'image index');
  if (!isRecord(o) || o.schemaVersion !== 2 || !Array.isArray(o.manifests)) throw bad('not-an-image', 'the image index is not schemaVersion 2 with a manifests list');
  return o.manifests.map((m, i) => descriptor(m, `index manifests[${i}]`));
}

export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MEDIA.index || mediaType === MEDIA.dockerList;
}

/** An image manifest (OCI, or Docker schema 2). @throws INVALID_INPUT not-an-image (an artifact, or no layers list) */
export function decodeManifest(bytes: Uint8Array): Manifest {
  const o = parse(bytes, 'image manifest');
  if (!isRecord(o) || o.schemaVersion !== 2 || !isRecord(o.config) || !Array.isArray(o.layers)) throw bad('not-an-image', 'the manifest is not an image manifest (schemaVersion 2 with config and layers)');
  if (typeof o.mediaType === 'string' && o.mediaType !== MEDIA.manifest && o.mediaType !== MEDIA.dockerManifest) throw bad('not-an-image', `the manifest's media type '${quash(o.mediaType, 120)}' is not an image manifest`);
  const config = descriptor(o.config, 'manifest config');
  if (config.mediaType !== MEDIA.config && config.mediaType !== MEDIA.dockerConfig) throw bad('not-an-image', `the config's media type '${quash(config.mediaType, 120)}' is not an image config (an artifact?)`);
  if (o.layers.length > MAX_LAYERS) throw bad('too-many-layers', `the image has ${o.layers.length} layers, over larch's ${MAX_LAYERS}`);
  return { config, layers: o.layers.map((l, i) => descriptor(l, `manifest layers[${i}]`)) };
}

export const MAX_LAYERS = 256;

/** The image config. @throws INVALID_INPUT not-an-image (not Linux, no layered rootfs) */
export function decodeConfig(bytes: Uint8Array): ImageConfig {
  const o = parse(bytes, 'image config');
  if (!isRecord(o)) throw bad('not-an-image', 'the image config is not a JSON object');
  if (o.os !== 'linux') throw bad('not-an-image', `the image is for os '${quash(String(o.os), 40)}', not linux`);
  if (typeof o.architecture !== 'string') throw bad('not-an-image', 'the image config names no architecture');
  const rootfs = o.rootfs;
  if (!isRecord(rootfs) || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids)) throw bad('not-an-image', "the image config's rootfs is not of type layers with diff_ids");
  const inner = isRecord(o.config) ? o.config : {};
  return {
    architecture: o.architecture,
    os: 'linux',
    ...(typeof o.variant === 'string' ? { variant: o.variant } : {}),
    created: typeof o.created === 'string' ? o.created : null,
    labels: strings(inner.Labels, 'config Labels'),
    diffIds: rootfs.diff_ids.map((d, i) => checkDigest(d, `rootfs.diff_ids[${i}]`)),
  };
}

/** A docker-archive's manifest.json (what `podman save --format docker-archive` and `docker save` write). */
export function decodeDockerArchive(bytes: Uint8Array): DockerArchiveImage[] {
  const o = parse(bytes, 'manifest.json');
  if (!Array.isArray(o)) throw bad('not-an-image', 'manifest.json is not a list of images');
  return o.map((m, i) => {
    if (!isRecord(m) || typeof m.Config !== 'string' || !Array.isArray(m.Layers) || !m.Layers.every((l) => typeof l === 'string')) throw bad('not-an-image', `manifest.json[${i}] has no Config and Layers`);
    const tags = Array.isArray(m.RepoTags) ? m.RepoTags.filter((x): x is string => typeof x === 'string') : [];
    for (const p of [m.Config, ...(m.Layers as string[])]) {
      if (p.split('/').includes('..') || p.startsWith('/')) throw bad('dotdot', `manifest.json[${i}] names '${quash(p, 200)}', outside the archive`, { path: quash(p, 200) });
    }
    if ((m.Layers as string[]).length > MAX_LAYERS) throw bad('too-many-layers', `the image has ${(m.Layers as string[]).length} layers, over larch's ${MAX_LAYERS}`);
    return { config: m.Config, repoTags: tags, layers: m.Layers as string[] };
  });
}

/** Does a ref name (an annotation or a RepoTag) name this tag: equal, or ending in ':TAG' (a whole name such as localhost/os:1.1)? */
export function namesTag(refName: string, tag: string): boolean {
  return refName === tag || (refName.endsWith(`:${tag}`) && !refName.slice(0, -tag.length - 1).endsWith('@sha256'));
}

/**
 * The image to import among those of an index: by tag (its ref-name annotation), else the only
 * one, else the one tagged latest. An index within is resolved later (selectPlatform).
 * @throws USAGE naming the tags when the choice is not unique
 */
export function selectByTag<T>(entries: T[], tagsOf: (e: T) => string[], tag: string | null, where: string): T {
  const all = entries.flatMap(tagsOf);
  if (tag !== null) {
    const hits = entries.filter((e) => tagsOf(e).some((n) => namesTag(n, tag)));
    if (hits.length === 1) return hits[0];
    throw new LarchError('USAGE', hits.length === 0 ? `${where} has no image tagged '${quash(tag, 128)}' (tags: ${all.join(', ') || 'none'})` : `${where} has ${hits.length} images tagged '${quash(tag, 128)}'`, { data: { reason: 'tag', tag, tags: all } });
  }
  if (entries.length === 1) return entries[0];
  const latest = entries.filter((e) => tagsOf(e).some((n) => namesTag(n, 'latest')));
  if (latest.length === 1) return latest[0];
  throw new LarchError('USAGE', `${where} holds ${entries.length} images and none is the only one tagged latest: name one (PATH:TAG)`, { data: { reason: 'tag', tags: all } });
}

/** The tags of an index entry (its ref-name annotation). */
export const descriptorTags = (d: Descriptor) => (d.annotations[REF_NAME] ? [d.annotations[REF_NAME]] : []);

/**
 * The manifest of a multi-platform index: the only image manifest, else the one for `platform`
 * (OS/ARCH[/VARIANT]). Entries of other media types are ignored (image-layout.md).
 * @throws USAGE naming the platforms
 */
export function selectPlatform(entries: Descriptor[], platform: string | null): Descriptor {
  const images = entries.filter((d) => d.mediaType === MEDIA.manifest || d.mediaType === MEDIA.dockerManifest);
  const name = (d: Descriptor) => (d.platform ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ''}` : 'unknown');
  if (platform === null && images.length === 1) return images[0];
  const hits = platform === null ? [] : images.filter((d) => name(d) === platform);
  if (hits.length === 1) return hits[0];
  throw new LarchError('USAGE', `the image index holds ${images.length} platforms (${images.map(name).join(', ')}): ${platform === null ? 'name one with --platform OS/ARCH' : `none is '${quash(platform, 40)}'`}`, { data: { reason: 'platform', platforms: images.map(name) } });
}
