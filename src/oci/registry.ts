/**
 * Pulls an image from a registry (opencontainers/distribution-spec: GET /v2/, manifests, blobs)
 * into a directory as an OCI image layout, so the import reads every source the same way
 * (source.ts). Every byte is checked against the digest it was asked by: a manifest asked by
 * digest must hash to it, one asked by tag must hash to the Docker-Content-Digest the registry
 * names (when it names one), and each blob to its descriptor's digest and size; a blob is renamed
 * into the layout only when it matches. Plain HTTP for loopback hosts or --plain-http; anonymous
 * only (a registry that asks for credentials is refused with what to do instead).
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { LarchError, quash } from '../errors.ts';
import { MAX_JSON_BYTES, MEDIA, blobPath, decodeIndex, digestOf, decodeManifest, isIndexMediaType, selectPlatform } from './manifest.ts';

const ACCEPT = [MEDIA.index, MEDIA.manifest, MEDIA.dockerList, MEDIA.dockerManifest].join(', ');
const MAX_REDIRECTS = 5;
/** A response that sends nothing for this long is given up. */
const STALL_MS = 30_000;

export interface RegistryRef {
  host: string;
  name: string;
  tag: string | null;
  digest: string | null;
}

function io(reason: string, message: string, data: Record<string, unknown> = {}, hint?: string): LarchError {
  return new LarchError('IO', message, { hint, data: { reason, ...data } });
}

function bad(reason: string, message: string, data: Record<string, unknown> = {}): LarchError {
  return new LarchError('INVALID_INPUT', message, { data: { reason, ...data } });
}

/** Loopback hosts are spoken to in plain HTTP (a test or a local registry); others in HTTPS unless --plain-http. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

/** GET url, following redirects (never from https to http). */
function get(url: URL, headers: Record<string, string>, redirects = 0): Promise<Response> {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.get(url, { headers: { 'User-Agent': 'larch', ...headers } }, (res) => {
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        const next = new URL(res.headers.location, url);
        if (redirects >= MAX_REDIRECTS) return reject(io('redirects', `${url}: more than ${MAX_REDIRECTS} redirects`, { url: String(url) }));
        if (url.protocol === 'https:' && next.protocol !== 'https:') return reject(io('redirects', `${url}: redirected from https to ${next.protocol}`, { url: String(url) }));
        return resolve(get(next, headers, redirects + 1));
      }
      res.setTimeout(STALL_MS, () => res.destroy(io('stalled', `${url}: nothing received for ${STALL_MS / 1000} s`, { url: String(url) })));
      resolve({ status, headers: res.headers, body: res });
    });
    req.setTimeout(STALL_MS, () => req.destroy(io('stalled', `${url}: no answer for ${STALL_MS / 1000} s`, { url: String(url) })));
    req.on('error', (err) => reject(err instanceof LarchError ? err : io('unreachable', `${url}: ${(err as Error).message}`, { url: String(url) }, 'is the registry running, and is HOST[:PORT] right?')));
  });
}

async function readCapped(res: Response, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > MAX_JSON_BYTES) {
    res.body.destroy();
    throw bad('too-large', `the ${what} is ${declared} bytes, over larch's ${MAX_JSON_BYTES}`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_JSON_BYTES) {
      res.body.destroy();
      throw bad('too-large', `the ${what} is over larch's ${MAX_JSON_BYTES} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

function statusError(res: Response, url: URL, what: string): LarchError {
  res.body.resume();
  if (res.status === 401 || res.status === 403) {
    return io('unauthorized', `${url}: the registry wants credentials for the ${what} (${res.status})`, { url: String(url), status: res.status }, `larch pulls anonymously: copy the image to an archive with skopeo (skopeo copy docker://... oci-archive:image.tar) and commit that`);
  }
  if (res.status === 404) return new LarchError('NOT_FOUND', `${url}: no such ${what} (404)`, { data: { url: String(url), reference: what } });
  return io('http-status', `${url}: HTTP ${res.status} for the ${what}`, { url: String(url), status: res.status });
}


/**
 * Pulls the image into `dir` (made) as an OCI layout whose index.json names it by its tag (or
 * `latest` when asked by digest). Returns that tag.
 * @throws IO (unreachable, unauthorized, not-a-registry, http-status), NOT_FOUND, INVALID_INPUT (digest-mismatch, too-large, not-an-image), USAGE (platform)
 */
export async function pullImage(ref: RegistryRef, dir: string, opts: { platform: string | null; plainHttp?: boolean }): Promise<string> {
  const scheme = opts.plainHttp || isLoopback(ref.host) ? 'http' : 'https';
  const base = new URL(`${scheme}://${ref.host}/v2/`);
  const ping = await get(base, {});
  ping.body.resume();
  if (ping.status !== 200 && ping.status !== 401) throw io('not-a-registry', `${base}: HTTP ${ping.status}: not a registry (distribution-spec /v2/)`, { url: String(base), status: ping.status });
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });

  const fetchManifest = async (reference: string, expected: string | null): Promise<{ bytes: Buffer; mediaType: string; digest: string }> => {
    const url = new URL(`${ref.name}/manifests/${reference}`, base);
    const res = await get(url, { Accept: ACCEPT });
    if (res.status !== 200) throw statusError(res, url, `manifest ${ref.name}:${reference}`);
    const bytes = await readCapped(res, 'manifest');
    const actual = digestOf(bytes);
    const named = typeof res.headers['docker-content-digest'] === 'string' ? res.headers['docker-content-digest'] : null;
    // Asked by digest: that digest. Asked by tag: the registry's own word, when it gives one.
    const want = expected ?? named;
    if (want !== null && want !== actual) throw bad('digest-mismatch', `manifest ${ref.name}:${reference}: expected ${want}, got ${actual}`, { expected: want, actual });
    const declared = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    const mediaType = typeof declared === 'string' ? declared : String(res.headers['content-type'] ?? '').split(';')[0];
    await writeFile(join(dir, blobPath(actual)), bytes);
    return { bytes, mediaType, digest: actual };
  };

  let top = await fetchManifest(ref.digest ?? ref.tag ?? 'latest', ref.digest);
  if (isIndexMediaType(top.mediaType)) {
    const chosen = selectPlatform(decodeIndex(top.bytes), opts.platform);
    top = await fetchManifest(chosen.digest, chosen.digest);
  }
  const manifest = decodeManifest(top.bytes);
  for (const desc of [manifest.config, ...manifest.layers]) await fetchBlob(base, ref.name, desc, dir);
  const tag = ref.tag ?? 'latest';
  const index = { schemaVersion: 2, manifests: [{ mediaType: top.mediaType || MEDIA.manifest, digest: top.digest, size: top.bytes.length, annotations: { 'org.opencontainers.image.ref.name': tag } }] };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  return tag;
}

/** One blob into the layout: hashed as it arrives, renamed only when its size and digest match. */
async function fetchBlob(base: URL, name: string, desc: { digest: string; size: number }, dir: string): Promise<void> {
  const url = new URL(`${name}/blobs/${desc.digest}`, base);
  const res = await get(url, {});
  if (res.status !== 200) throw statusError(res, url, `blob ${desc.digest}`);
  const declared = res.headers['content-length'];
  if (declared !== undefined && Number(declared) !== desc.size) {
    res.body.destroy();
    throw bad('digest-mismatch', `blob ${desc.digest}: the registry sends ${declared} bytes, its descriptor says ${desc.size}`, { expected: desc.digest, expected_size: desc.size, actual_size: Number(declared) });
  }
  const final = join(dir, blobPath(desc.digest));
  const partial = `${final}.partial`;
  const hash = createHash('sha256');
  let n = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      n += chunk.length;
      if (n > desc.size) return done(bad('digest-mismatch', `blob ${desc.digest}: more than its ${desc.size} bytes`, { expected: desc.digest }));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(res.body, check, createWriteStream(partial));
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== desc.digest || n !== desc.size) throw bad('digest-mismatch', `blob ${desc.digest}: expected ${desc.digest} of ${desc.size} bytes, got ${actual} of ${n}`, { expected: desc.digest, actual });
    await rename(partial, final);
  } catch (err) {
    await rm(partial, { force: true });
    if (err instanceof LarchError) throw err;
    throw io('transfer', `${url}: ${quash((err as Error).message, 200)}`, { url: String(url) });
  }
}
