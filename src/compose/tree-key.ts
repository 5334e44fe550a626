/**
 * The key of a cached resolved tree (pure: values in, a SHA-256 hex string out). Two composes
 * with the same key would run mmdebstrap on the same inputs, so the second takes the first's
 * tar (tree-cache.ts). The key covers everything that decides mmdebstrap's output:
 *
 * - the format constant TREE_CACHE_FORMAT (raised when what a cached tar holds, or how the key
 *   is made, changes: old entries then miss);
 * - the package specs as `name` or `name=version`, sorted (the order in the definition does not
 *   matter: mmdebstrap is given them sorted too);
 * - the architecture, `recommends`, and SOURCE_DATE_EPOCH (the dates maintainer scripts write);
 * - the SHA-256 of each local .deb file's content, in the definition's order;
 * - mmdebstrap's argument list with the output path, the temporary staging directory of the
 *   local .deb files and the .deb cache directory replaced by fixed placeholders (where these
 *   are does not change the tree; the host's sources files' paths stay in);
 * - the content (SHA-256 per file, by path) of the host's apt sources files, of the keyrings
 *   mmdebstrap's apt checks the indexes with (and infers `signed-by` from), and of every index
 *   file under /var/lib/apt/lists (an `apt-get update` that changed an index misses);
 * - the output of `mmdebstrap --version` and `apt-get --version` (the host's apt resolves);
 * - the content of the merged-usr hook directory mmdebstrap runs.
 *
 * Not covered, on purpose: the .deb cache's content (apt checks every .deb against the index's
 * SHA-256, so a cached .deb is the one the index names) and the qemu-user-static that runs a
 * foreign architecture's scripts (it runs them; it does not decide what they write).
 */
import { sha256 } from '../_hash.ts';
import { type CborValue, encodeCanonical } from '../store/cbor.ts';
import type { PackageSpec } from './definition.ts';

/** Raise when a cached tar's meaning or the key's encoding changes. */
export const TREE_CACHE_FORMAT = 1;

/** A file the key covers: its path (absolute, or relative to the directory named) and the SHA-256 of its content. */
export interface HashedFile {
  path: string;
  sha256: string;
}

export interface TreeKeyInputs {
  packages: PackageSpec[];
  architecture: string;
  recommends: boolean;
  sourceDateEpoch: number;
  /** The local .deb files in the definition's order; `path` is the basename (its directory does not matter). */
  localPackages: HashedFile[];
  /** mmdebstrap's arguments, the output and staging paths replaced by placeholders (mmdebstrapArgs). */
  mmdebstrapArgs: string[];
  /** The host's apt sources files and the keyrings apt checks with, by absolute path. */
  aptConfigFiles: HashedFile[];
  /** Every index file under /var/lib/apt/lists, by path relative to it. */
  aptLists: HashedFile[];
  /** `mmdebstrap --version` as printed. */
  mmdebstrapVersion: string;
  /** The first line of `apt-get --version`. */
  aptVersion: string;
  /** The files of the merged-usr hook directory, by name. */
  hookFiles: HashedFile[];
}

/** `name` or `name=version`, as mmdebstrap's --include takes it. */
export function formatPackageSpec(p: PackageSpec): string {
  return p.version === undefined ? p.name : `${p.name}=${p.version}`;
}

/** The package specs sorted by their text: the same set in any order gives the same list. */
export function sortedPackageSpecs(packages: PackageSpec[]): string[] {
  return packages.map(formatPackageSpec).sort();
}

/** Files sorted by path, so the order a directory was listed in does not matter. */
function files(list: HashedFile[]): CborValue {
  return [...list].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((f) => [f.path, f.sha256]);
}

/** The canonical encoding hashed for the key: a canonical CBOR map (keys sorted by their bytes). */
export function encodeTreeKeyInputs(i: TreeKeyInputs): Uint8Array {
  if (!Number.isSafeInteger(i.sourceDateEpoch) || i.sourceDateEpoch < 0) throw new RangeError(`sourceDateEpoch ${i.sourceDateEpoch} is not whole seconds since the epoch`);
  return encodeCanonical({
    format: TREE_CACHE_FORMAT,
    packages: sortedPackageSpecs(i.packages),
    architecture: i.architecture,
    recommends: i.recommends,
    source_date_epoch: i.sourceDateEpoch,
    // In order: mmdebstrap stages them under numbered names.
    local_packages: i.localPackages.map((f) => [f.path, f.sha256]),
    mmdebstrap_args: i.mmdebstrapArgs,
    apt_config_files: files(i.aptConfigFiles),
    apt_lists: files(i.aptLists),
    mmdebstrap_version: i.mmdebstrapVersion,
    apt_version: i.aptVersion,
    hook_files: files(i.hookFiles),
  });
}

/** The cache key: SHA-256 (hex) of the canonical encoding of the inputs. */
export function treeCacheKey(i: TreeKeyInputs): string {
  return sha256(encodeTreeKeyInputs(i));
}
