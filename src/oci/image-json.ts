/**
 * Pure: the config, manifest and index.json export-oci writes (image-spec config.md, manifest.md,
 * image-layout.md), as canonical JSON (keys sorted, no whitespace) so a commit always gives the
 * same bytes and digests. The tag lives in index.json only, so the manifest's digest does not
 * depend on it. The exported commit rides along in the config's labels (larch.commit,
 * larch.commit.object, larch.commit.signatures): importing the image gives that commit back.
 */
import { MEDIA } from './manifest.ts';
import { VERSION_LABEL } from './commit-metadata.ts';

export const CREATED_LABEL = 'org.opencontainers.image.created';
const REF_NAME = 'org.opencontainers.image.ref.name';
/** What `FROM` images usually set, so `podman run IMAGE /bin/true` finds its programs. */
const DEFAULT_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];

/** JSON with every object's keys sorted and no whitespace. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v));
}

/** Seconds since the epoch as RFC 3339 in UTC, whole seconds. */
export const rfc3339 = (seconds: number) => new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

export interface BlobRef {
  mediaType: string;
  digest: string;
  size: number;
}

export interface ExportedCommit {
  id: string;
  version: string;
  timestamp: number;
  /** The commit's larch.oci.labels (an imported image's own labels), carried over. */
  labels: Record<string, string>;
  /** The commit object's bytes and its signatures, for the labels that carry the commit; null: left out. */
  object: Uint8Array | null;
  signatures: Uint8Array | null;
}

export interface Platform {
  architecture: string;
  variant?: string;
}

export function imageConfig(commit: ExportedCommit, platform: Platform, diffId: string): string {
  const created = rfc3339(commit.timestamp);
  const labels: Record<string, string> = { ...commit.labels, [VERSION_LABEL]: commit.version, [CREATED_LABEL]: created };
  if (commit.object !== null) {
    labels['larch.commit'] = commit.id;
    labels['larch.commit.object'] = Buffer.from(commit.object).toString('base64');
    if (commit.signatures !== null) labels['larch.commit.signatures'] = Buffer.from(commit.signatures).toString('base64');
  }
  return canonicalJson({
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: 'linux',
    created,
    config: { Env: DEFAULT_ENV, Cmd: ['/bin/sh'], Labels: labels },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created, created_by: 'larch export-oci', comment: `larch commit ${commit.id}` }],
  });
}

export function imageManifest(commit: ExportedCommit, config: BlobRef, layer: BlobRef): string {
  return canonicalJson({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config,
    layers: [layer],
    annotations: { [VERSION_LABEL]: commit.version, [CREATED_LABEL]: rfc3339(commit.timestamp), 'larch.commit': commit.id },
  });
}

/**
 * index.json with this image under `tag`: an entry of the same ref name replaced, the others
 * kept (as skopeo's oci:DIR:TAG does). `existing` is the current index.json, or null.
 */
export function imageIndex(existing: { manifests?: unknown[] } | null, manifest: BlobRef, tag: string, platform: Platform): string {
  const others = (existing?.manifests ?? []).filter((m) => (m as { annotations?: Record<string, string> })?.annotations?.[REF_NAME] !== tag);
  return canonicalJson({
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [...others, { ...manifest, annotations: { [REF_NAME]: tag }, platform: { ...platform, os: 'linux' } }],
  });
}

export const OCI_LAYOUT = canonicalJson({ imageLayoutVersion: '1.0.0' });
