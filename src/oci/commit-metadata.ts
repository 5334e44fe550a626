/**
 * Pure: what a commit made from an OCI image says about it (docs/design/issue-21-oci.md §4.5,
 * §4.7): its version and time, the image's digests, labels and creation time as `larch.oci.*`
 * metadata, and its architecture as Debian names it. Not recorded on purpose: where the image came
 * from (path, registry, port, tag), which would make the same image a different commit.
 */
import { LarchError, quash } from '../errors.ts';
import type { ImageConfig } from './manifest.ts';

export const VERSION_LABEL = 'org.opencontainers.image.version';
/** Labels larch export-oci writes that describe the exported commit, never a derived image (§5.3). */
export const COMMIT_LABELS = ['larch.commit', 'larch.commit.object', 'larch.commit.signatures'] as const;
/** The most bytes of labels kept in a commit (a commit a device pulls is capped at 4 MiB, formats.md §2.7). */
export const MAX_LABEL_BYTES = 256 * 1024;

/** Docker/OCI architecture (and variant) -> Debian's name; the rest are not Debian architectures larch ships. */
const ARCHITECTURES: [oci: string, variant: string | null, debian: string][] = [
  ['amd64', null, 'amd64'],
  ['arm64', null, 'arm64'],
  ['arm64', 'v8', 'arm64'],
  ['arm', 'v7', 'armhf'],
  ['arm', 'v5', 'armel'],
  ['386', null, 'i386'],
  ['ppc64le', null, 'ppc64el'],
  ['s390x', null, 's390x'],
  ['riscv64', null, 'riscv64'],
  ['mips64le', null, 'mips64el'],
];

/** The Debian architecture of an image, or null (arm/v6, unknown). */
export function debianArchitecture(architecture: string, variant?: string): string | null {
  return ARCHITECTURES.find(([a, v]) => a === architecture && (v ?? undefined) === (variant ?? undefined))?.[2] ?? null;
}

/** The image architecture (and variant) of a Debian architecture, for export; null when it has none. */
export function ociArchitecture(debian: string): { architecture: string; variant?: string } | null {
  const hit = ARCHITECTURES.find(([, , d]) => d === debian);
  return hit ? { architecture: hit[0], ...(hit[1] ? { variant: hit[1] } : {}) } : null;
}

/**
 * The commit's version: --version, else the image's version label unless inherited from a larch
 * base (a derived image keeps its base's labels), else the tag it was chosen by unless `latest`.
 * @throws USAGE when none gives one
 */
export function chooseVersion(opts: { flag?: string; labels: Record<string, string>; inheritedVersion?: string | null; tag: string | null }): string {
  if (opts.flag !== undefined) return opts.flag;
  const label = opts.labels[VERSION_LABEL];
  if (label && label !== opts.inheritedVersion) return label;
  if (opts.tag !== null && opts.tag !== 'latest') return opts.tag;
  throw new LarchError('USAGE', `commit --oci: the image has no ${VERSION_LABEL} label of its own and no tag but latest: give --version`, { data: { reason: 'no-version', option: 'version' } });
}

/**
 * The commit time: --timestamp, else the config's `created` (RFC 3339, its offset honoured, a
 * fraction floored) as seconds since the epoch.
 * @throws USAGE no-created when the image has none a commit can use (absent, unreadable, before 1970)
 */
export function chooseTimestamp(flag: number | undefined, created: string | null): number {
  if (flag !== undefined) return flag;
  const s = created === null ? NaN : rfc3339Seconds(created);
  if (!Number.isSafeInteger(s) || s < 0) {
    throw new LarchError('USAGE', `commit --oci: the image's created time ${created === null ? 'is missing' : `'${quash(created, 60)}' is not one a commit can use`}: give --timestamp`, { data: { reason: 'no-created', created } });
  }
  return s;
}

/** Seconds since the epoch of an RFC 3339 date-time (the fraction floored), NaN when it is not one. */
export function rfc3339Seconds(text: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return NaN;
  const [, y, mo, d, h, mi, s, , zone] = m;
  const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  // Date.UTC rolls a 31 February over: a date that does not exist is no date.
  const back = new Date(utc);
  if (back.getUTCFullYear() !== Number(y) || back.getUTCMonth() !== Number(mo) - 1 || back.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return NaN;
  const offset = zone.toUpperCase() === 'Z' ? 0 : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60;
  return Math.floor(utc / 1000) - offset;
}

/** The image's labels as kept in the commit: without larch export-oci's own (they describe a base). @throws INVALID_INPUT labels-too-large */
export function keptLabels(labels: Record<string, string>): Record<string, string> {
  const kept = Object.fromEntries(Object.entries(labels).filter(([k]) => !(COMMIT_LABELS as readonly string[]).includes(k)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const bytes = Buffer.byteLength(JSON.stringify(kept));
  if (bytes > MAX_LABEL_BYTES) throw new LarchError('INVALID_INPUT', `the image's labels take ${bytes} bytes, over the ${MAX_LABEL_BYTES} a commit keeps`, { data: { reason: 'labels-too-large', bytes } });
  return kept;
}

/** The `larch.oci.*` metadata of a commit made from an image (formats.md §12.3), keys in a fixed order. */
export function ociMetadata(image: { manifestDigest: string | null; configDigest: string; config: ImageConfig }): [string, unknown][] {
  const out: [string, unknown][] = [];
  if (image.manifestDigest !== null) out.push(['larch.oci.manifest_digest', image.manifestDigest]);
  out.push(['larch.oci.config_digest', image.configDigest]);
  out.push(['larch.oci.diff_ids', [...image.config.diffIds]]);
  if (image.config.created !== null) out.push(['larch.oci.created', image.config.created]);
  out.push(['larch.oci.labels', keptLabels(image.config.labels)]);
  return out;
}
