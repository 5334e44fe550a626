/**
 * A local image, found and resolved (docs/design/issue-21-oci.md §4.1): an OCI layout directory,
 * an oci-archive or a docker-archive (the archives unpacked by archive.ts first), told apart by
 * what they hold. Resolving picks the image by tag and platform and reads its index, manifest and
 * config, each checked against the digest that names it; the layers are then read by openLayer,
 * hashed and counted as they stream, so a layer that is not the blob its descriptor names fails
 * the import before anything is committed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { sniffCompression, unpackArchive } from './archive.ts';
import {
  type Compression,
  type ImageConfig,
  MAX_JSON_BYTES,
  blobPath,
  decodeConfig,
  decodeDockerArchive,
  decodeIndex,
  decodeManifest,
  descriptorTags,
  digestOf,
  isIndexMediaType,
  layerCompression,
  selectByTag,
  selectPlatform,
} from './manifest.ts';

export type SourceKind = 'oci-layout' | 'oci-archive' | 'docker-archive';

export interface LayerRef {
  /** A file holding the layer's blob. */
  path: string;
  /** The blob's digest (null in a docker-archive, which names layers by path). */
  digest: string | null;
  /** The blob's size: the descriptor's, else the file's. */
  size: number;
  mediaType: string | null;
  compression: Compression;
  /** The digest of the plain tar (the config's rootfs.diff_ids). */
  diffId: string;
}

export interface ResolvedImage {
  kind: SourceKind;
  /** Null for a docker-archive: it holds no manifest blob. */
  manifestDigest: string | null;
  configDigest: string;
  config: ImageConfig;
  /** The tag the image was chosen by (SOURCE's, else the chosen entry's), without a repository name. */
  tag: string | null;
  layers: LayerRef[];
}

function bad(reason: string, message: string, data: Record<string, unknown> = {}): LarchError {
  return new LarchError('INVALID_INPUT', message, { data: { reason, ...data } });
}

/** The tag part of a ref name: 'localhost/os:1.1' -> '1.1'; a bare tag as it is. */
export function tagOfRefName(refName: string): string {
  const colon = refName.lastIndexOf(':');
  return colon > refName.lastIndexOf('/') && colon >= 0 ? refName.slice(colon + 1) : refName;
}

type Member = (name: string) => Promise<string | null>;

/** Members of a layout directory: regular files only, never followed through a symlink. */
function layoutMembers(dir: string): Member {
  return async (name) => {
    const path = join(dir, name);
    const st = await lstat(path).catch((err) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      throw fromSystemError(err, 'read', path);
    });
    if (st === null) return null;
    if (!st.isFile()) throw bad('blob-not-regular', `'${path}' is not a regular file (an OCI layout holds only files)`, { path });
    return path;
  };
}

/** A small document (index, manifest, config), its size capped. */
async function readSmall(path: string, what: string): Promise<Buffer> {
  const st = await stat(path).catch((err) => {
    throw fromSystemError(err, 'read', path);
  });
  if (st.size > MAX_JSON_BYTES) throw bad('too-large', `the ${what} '${path}' is ${st.size} bytes, over larch's ${MAX_JSON_BYTES}`, { path });
  return readFile(path).catch((err) => {
    throw fromSystemError(err, 'read', path);
  });
}

/** A blob named by a descriptor, read whole and checked. @throws INVALID_INPUT missing-blob, digest-mismatch, too-large */
async function readBlob(member: Member, desc: { digest: string; size: number }, what: string): Promise<Buffer> {
  const path = await member(blobPath(desc.digest));
  if (path === null) throw bad('missing-blob', `the image has no blob ${desc.digest} (its ${what})`, { digest: desc.digest });
  const bytes = await readSmall(path, what);
  const actual = digestOf(bytes);
  if (actual !== desc.digest || bytes.length !== desc.size) throw bad('digest-mismatch', `blob ${desc.digest} (the ${what}): expected ${desc.digest} of ${desc.size} bytes, got ${actual} of ${bytes.length}`, { expected: desc.digest, actual });
  return bytes;
}

/**
 * Finds, picks and reads the image at `path`. An archive is unpacked into `tmpDir` (empty, the
 * caller's, removed by it).
 * @throws NOT_FOUND, INVALID_INPUT (not-an-image, digest-mismatch, missing-blob, descriptor-size, ...), USAGE (tag, platform)
 */
export async function resolveImage(path: string, opts: { tag: string | null; platform: string | null; tmpDir: string; maxUnpackedBytes: number }): Promise<ResolvedImage> {
  const st = await stat(path).catch((err) => {
    if (err.code === 'ENOENT') throw new LarchError('NOT_FOUND', `--oci '${path}': no such file or directory`, { hint: 'give an OCI layout directory, an oci-archive or a docker-archive', data: { path } });
    throw fromSystemError(err, 'read', path);
  });
  let member: Member;
  let archive = false;
  if (st.isDirectory()) member = layoutMembers(path);
  else {
    const unpacked = await unpackArchive(path, opts.tmpDir, { maxBytes: opts.maxUnpackedBytes });
    member = async (name) => unpacked.member(name);
    archive = true;
  }
  const where = `'${path}'`;
  const layoutFile = await member('oci-layout');
  const indexFile = await member('index.json');
  if (layoutFile !== null && indexFile !== null) {
    const index = decodeIndex(await readSmall(indexFile, 'index.json'));
    let desc = selectByTag(index, descriptorTags, opts.tag, where);
    const tag = opts.tag ?? (descriptorTags(desc)[0] !== undefined ? tagOfRefName(descriptorTags(desc)[0]) : null);
    if (isIndexMediaType(desc.mediaType)) desc = selectPlatform(decodeIndex(await readBlob(member, desc, 'image index')), opts.platform);
    const manifestBytes = await readBlob(member, desc, 'manifest');
    const manifest = decodeManifest(manifestBytes);
    const config = decodeConfig(await readBlob(member, manifest.config, 'config'));
    if (config.diffIds.length !== manifest.layers.length) throw bad('not-an-image', `the config lists ${config.diffIds.length} layers (rootfs.diff_ids) and the manifest ${manifest.layers.length}`);
    const layers: LayerRef[] = [];
    for (const [i, l] of manifest.layers.entries()) {
      const compression = layerCompression(l.mediaType);
      checkDescriptorSize(l.size, opts.maxUnpackedBytes, i, manifest.layers.length);
      const file = await member(blobPath(l.digest));
      if (file === null) throw bad('missing-blob', `the image has no blob ${l.digest} (layer ${i + 1}/${manifest.layers.length})`, { digest: l.digest, layer: i + 1 });
      layers.push({ path: file, digest: l.digest, size: l.size, mediaType: l.mediaType, compression, diffId: config.diffIds[i] });
    }
    return { kind: archive ? 'oci-archive' : 'oci-layout', manifestDigest: digestOf(manifestBytes), configDigest: manifest.config.digest, config, tag, layers };
  }
  const manifestJson = await member('manifest.json');
  if (manifestJson !== null && archive) {
    const images = decodeDockerArchive(await readSmall(manifestJson, 'manifest.json'));
    const image = selectByTag(images, (i) => i.repoTags, opts.tag, where);
    const tag = opts.tag ?? (image.repoTags.length === 1 ? tagOfRefName(image.repoTags[0]) : null);
    const configFile = await member(image.config);
    if (configFile === null) throw bad('missing-blob', `${where} has no '${quash(image.config, 200)}' (manifest.json's Config)`, { path: quash(image.config, 200) });
    const configBytes = await readSmall(configFile, 'config');
    const config = decodeConfig(configBytes);
    if (config.diffIds.length !== image.layers.length) throw bad('not-an-image', `the config lists ${config.diffIds.length} layers (rootfs.diff_ids) and manifest.json ${image.layers.length}`);
    const layers: LayerRef[] = [];
    for (const [i, name] of image.layers.entries()) {
      const file = await member(name);
      if (file === null) throw bad('missing-blob', `${where} has no '${quash(name, 200)}' (layer ${i + 1}/${image.layers.length})`, { path: quash(name, 200), layer: i + 1 });
      // No media types here: the bytes say how a layer is compressed.
      layers.push({ path: file, digest: null, size: (await stat(file)).size, mediaType: null, compression: await sniffCompression(file), diffId: config.diffIds[i] });
    }
    return { kind: 'docker-archive', manifestDigest: null, configDigest: digestOf(configBytes), config, tag, layers };
  }
  throw bad('not-an-image', `${where} is not an OCI layout (oci-layout and index.json), an oci-archive or a docker-archive (manifest.json)`, { path });
}

/** A layer whose compressed size alone is past what it may unpack to is refused before a byte is read. */
function checkDescriptorSize(size: number, maxUnpackedBytes: number, i: number, n: number): void {
  if (size > maxUnpackedBytes * 1.01 + (1 << 20)) throw bad('descriptor-size', `layer ${i + 1}/${n} declares ${size} bytes, more than the image may unpack to (${maxUnpackedBytes}, --max-unpacked-size)`, { layer: i + 1, size });
}

/**
 * A layer's blob as it streams from its file, no more than size + 1 bytes read; when it ends, its
 * size and digest (when it has one) must be the descriptor's. @throws INVALID_INPUT digest-mismatch
 */
export async function* openLayer(layer: LayerRef, where: string): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  let bytes = 0;
  const file = createReadStream(layer.path, { highWaterMark: 1 << 20, start: 0, end: layer.size });
  try {
    for await (const chunk of file as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
  } catch (err) {
    throw fromSystemError(err, 'read', layer.path);
  } finally {
    file.destroy();
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (bytes !== layer.size || (layer.digest !== null && actual !== layer.digest)) {
    throw bad('digest-mismatch', `${where}: expected ${layer.digest ?? 'its file'} of ${layer.size} bytes, got ${actual} of ${bytes}${bytes > layer.size ? ' or more' : ''}`, { expected: layer.digest, actual, expected_size: layer.size, actual_size: bytes });
  }
}
