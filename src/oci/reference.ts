/**
 * Pure: what `larch commit --oci SOURCE` names (docs/design/issue-21-oci.md §4.1): a local image
 * (an OCI layout directory, an oci-archive or a docker-archive) with an optional tag, or an image
 * in a registry (`docker://HOST[:PORT]/NAME[:TAG|@sha256:HEX]`; no default registry, no short names).
 */
import { LarchError, quash } from '../errors.ts';
import { checkDigest } from './manifest.ts';

export type ImageSourceRef = { kind: 'path'; path: string; tag: string | null } | { kind: 'registry'; host: string; name: string; tag: string | null; digest: string | null };

/** distribution-spec's tag grammar. */
export const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** distribution-spec's repository name grammar (path components of lowercase alphanumerics and separators). */
const NAME = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const HOST = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$/;

function usage(source: string, why: string): LarchError {
  return new LarchError('USAGE', `--oci '${quash(source, 200)}': ${why}`, { hint: 'give PATH[:TAG] (an OCI layout, an oci-archive or a docker-archive) or docker://HOST[:PORT]/NAME[:TAG]', data: { option: 'oci', value: quash(source, 200) } });
}

/**
 * Parses SOURCE. A PATH that exists as given has no tag; else it is split at its last ':' when the
 * rest is a tag. `exists` says whether a path exists (the caller's fs check; pure here).
 * @throws USAGE
 */
export function parseSource(source: string, exists: (path: string) => boolean): ImageSourceRef {
  if (source.startsWith('docker://')) {
    const rest = source.slice('docker://'.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) throw usage(source, 'a registry reference needs HOST/NAME');
    const host = rest.slice(0, slash);
    if (!HOST.test(host)) throw usage(source, `'${quash(host, 100)}' is not a registry host`);
    let name = rest.slice(slash + 1);
    let tag: string | null = null;
    let digest: string | null = null;
    const at = name.indexOf('@');
    if (at >= 0) {
      digest = checkDigestUsage(source, name.slice(at + 1));
      name = name.slice(0, at);
    } else {
      const colon = name.lastIndexOf(':');
      if (colon > name.lastIndexOf('/')) {
        tag = name.slice(colon + 1);
        name = name.slice(0, colon);
        if (!TAG.test(tag)) throw usage(source, `'${quash(tag, 140)}' is not a tag`);
      }
    }
    if (!NAME.test(name)) throw usage(source, `'${quash(name, 200)}' is not a repository name (lowercase, '/'-separated)`);
    return { kind: 'registry', host, name, tag, digest };
  }
  if (source.includes('://')) throw usage(source, 'the only registry scheme is docker://');
  if (source === '') throw usage(source, 'empty');
  if (exists(source)) return { kind: 'path', path: source, tag: null };
  const colon = source.lastIndexOf(':');
  if (colon > 0 && TAG.test(source.slice(colon + 1)) && !source.slice(colon + 1).includes('/')) return { kind: 'path', path: source.slice(0, colon), tag: source.slice(colon + 1) };
  return { kind: 'path', path: source, tag: null };
}

function checkDigestUsage(source: string, digest: string): string {
  try {
    return checkDigest(digest, 'the reference');
  } catch (err) {
    throw usage(source, (err as Error).message);
  }
}
