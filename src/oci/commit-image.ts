/**
 * `larch commit --oci`: an OCI image's flattened root filesystem as a commit
 * (docs/design/issue-21-oci.md §4, docs/oci.md). Everything happens inside the commit's
 * transaction, under the repo's writer lock: an archive is unpacked into R/tmp/oci-src-*, the
 * layers are imported, and any refusal aborts with refs, objects and R/tmp as they were.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { treeMemberPath } from '../compose/layout.ts';
import { DPKG_STATUS_PATH, parseDpkgStatus } from '../packages/dpkg-status.ts';
import { PACKAGES_KEY, encodePackageList } from '../packages/package-diff.ts';
import { ARCHITECTURE_KEY, COLLECTION_ID_KEY } from '../store/binding.ts';
import type { CborValue } from '../store/cbor.ts';
import type { Repo } from '../store/repo.ts';
import { type CommitOptions, type CommitResult, type RestoreOffer, createCommit } from '../store/write-commit.ts';
import { writeMTree } from '../store/mtree.ts';
import { type Commit, decodeCommit, metadataId } from '../store/object.ts';
import { commitRef, commitRelease } from '../store/release.ts';
import { chooseTimestamp, chooseVersion, debianArchitecture, ociMetadata } from './commit-metadata.ts';
import { type ImportCounts, type LayerReport, importLayers } from './import.ts';
import { parseSource } from './reference.ts';
import { pullImage } from './registry.ts';
import { type ResolvedImage, type SourceKind, resolveImage } from './source.ts';

/** --max-unpacked-size's default: 8 GiB of plain tar over all layers. */
export const DEFAULT_MAX_UNPACKED_BYTES = 8 * 1024 ** 3;
/** Where a dpkg database's status file may be in an image: larch's layout, else Debian's. */
const STATUS_PATHS = [DPKG_STATUS_PATH, 'var/lib/dpkg/status'];

export interface CommitImageOptions extends Omit<CommitOptions, 'source' | 'unlessUnchanged'> {
  /** SOURCE as given to --oci: PATH[:TAG] or docker://HOST/NAME[:TAG]. */
  source: string;
  /** OS/ARCH[/VARIANT] for a multi-platform index. */
  platform?: string;
  /** Apply compose's tree layout (/var to the factory, build state dropped). */
  larchLayout?: boolean;
  maxUnpackedBytes?: number;
  /** Speak plain HTTP to a registry that is not on loopback. */
  plainHttp?: boolean;
}

export interface ImageReport {
  source: SourceKind | 'registry';
  reference: string;
  manifest_digest: string | null;
  config_digest: string;
  layers: LayerReport[];
  whiteouts: number;
  opaque_dirs: number;
  hardlinks: number;
  dropped: ImportCounts['dropped'] & { layout: number };
}

export interface CommitImageResult extends CommitResult {
  /** True when the image carried this commit (an export-oci image) and it was stored as it was. */
  restored: boolean;
  /** Why a carried commit was not restored, or null (none carried, or restored). */
  restore_skipped: RestoreSkip | null;
  image: ImageReport;
}

export type RestoreSkip = 'root-differs' | 'branch-differs' | 'collection-differs' | 'flags' | 'bad-label';

/** The commit an export-oci image carries in its labels, checked; or why it cannot be restored. */
function carriedCommit(repo: Repo, labels: Record<string, string>, opts: CommitImageOptions): { offer: RestoreOffer; version: string } | { skip: RestoreSkip; version: string | null } | null {
  const id = labels['larch.commit'];
  const object = labels['larch.commit.object'];
  if (id === undefined || object === undefined) return null;
  let commit: Commit;
  let bytes: Buffer;
  try {
    bytes = Buffer.from(object, 'base64');
    if (metadataId(bytes) !== id) return { skip: 'bad-label', version: null };
    commit = decodeCommit(bytes);
  } catch {
    return { skip: 'bad-label', version: null };
  }
  const version = commit.version;
  const flagged = opts.version !== undefined || opts.timestamp !== undefined || opts.subject !== undefined || opts.body !== undefined || Object.keys(opts.metadata ?? {}).length > 0 || opts.parent !== undefined || opts.release !== undefined || opts.larchLayout || opts.owner !== undefined || opts.xattrs === false;
  if (flagged) return { skip: 'flags', version };
  if (commitRef(commit.metadata) !== opts.branch) return { skip: 'branch-differs', version };
  if ((commit.metadata.get(COLLECTION_ID_KEY) ?? null) !== repo.collectionId) return { skip: 'collection-differs', version };
  const sigs = labels['larch.commit.signatures'];
  return { offer: { id, bytes, root: commit.root, release: commitRelease(commit.metadata), signatures: sigs === undefined ? null : Buffer.from(sigs, 'base64') }, version };
}

/** @throws USAGE, NOT_FOUND, INVALID_INPUT, UNSUPPORTED_FILE_TYPE, LOCKED, NO_SPACE, TOOL_MISSING */
export async function commitImage(repo: Repo, opts: CommitImageOptions): Promise<CommitImageResult> {
  const ref = parseSource(opts.source, existsSync);
  const maxUnpackedBytes = opts.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED_BYTES;
  let report: ImageReport | undefined;
  let skipped: RestoreSkip | null = null;
  let carriedOffered = false;
  const result = await createCommit(repo, {
    ...opts,
    unlessUnchanged: true,
    source: {
      importer: async (txn) => {
        const tmpDir = await mkdtemp(join(repo.path, 'tmp', 'oci-src-'));
        try {
          // A registry's image is pulled into a layout first, then read as any layout is.
          const local = ref.kind === 'registry' ? { path: tmpDir, tag: await pullImage(ref, tmpDir, { platform: opts.platform ?? null, plainHttp: opts.plainHttp }) } : ref;
          const image = await resolveImage(local.path, { tag: local.tag, platform: opts.platform ?? null, tmpDir, maxUnpackedBytes });
          const carried = carriedCommit(repo, image.config.labels, opts);
          const offer = carried && 'offer' in carried ? carried.offer : undefined;
          if (carried && 'skip' in carried) skipped = carried.skip;
          carriedOffered = offer !== undefined;
          // Chosen before a layer is read: a missing version is a usage error, found at once
          // (unless the image may be a larch export restored whole, which needs none). A version
          // label equal to the carried commit's was inherited from a larch base (FROM).
          let version: string | undefined;
          let noVersion: unknown = null;
          try {
            version = chooseVersion({ flag: opts.version, labels: image.config.labels, inheritedVersion: carried?.version ?? null, tag: image.tag });
          } catch (err) {
            if (offer === undefined) throw err;
            noVersion = err;
          }
          const timestamp = chooseTimestamp(opts.timestamp, image.config.created);
          const imported = await importLayers(txn, image.layers, { owner: opts.owner, xattrs: opts.xattrs ?? true, maxUnpackedBytes, capture: STATUS_PATHS });
          let droppedByLayout = 0;
          const rewrite = opts.larchLayout
            ? (path: string) => {
                const to = treeMemberPath(path);
                if (to === null) droppedByLayout++;
                return to;
              }
            : undefined;
          const tree = imported.tree.toMTree(rewrite);
          await txn.discardFiles(imported.tree.fileIds());
          report = {
            source: ref.kind === 'registry' ? 'registry' : image.kind,
            reference: opts.source,
            manifest_digest: image.manifestDigest,
            config_digest: image.configDigest,
            layers: imported.layers,
            ...imported.counts,
            dropped: { ...imported.counts.dropped, layout: droppedByLayout },
          };
          if (noVersion !== null) {
            const root = await writeMTree(txn, tree);
            if (root.tree !== offer!.root.tree || root.meta !== offer!.root.meta) throw noVersion;
          }
          return { tree, version, timestamp, metadata: imageMetadata(image, imported.captured), restore: offer };
        } finally {
          await rm(tmpDir, { recursive: true, force: true });
        }
      },
    },
  });
  // An offer not taken: the tree was not the carried commit's (a derived image, FROM an export).
  const offered = skipped === null && carriedOffered;
  return { ...result, restored: result.restored === true, restore_skipped: result.restored ? null : offered ? 'root-differs' : skipped, image: report! };
}

/** The commit's metadata from the image: larch.oci.*, its architecture, its package list. */
function imageMetadata(image: ResolvedImage, captured: Map<string, Buffer>): Record<string, CborValue> {
  const out: Record<string, CborValue> = Object.fromEntries(ociMetadata(image) as [string, CborValue][]);
  const architecture = debianArchitecture(image.config.architecture, image.config.variant);
  if (architecture !== null) out[ARCHITECTURE_KEY] = architecture;
  const status = STATUS_PATHS.map((p) => captured.get(p)).find((b) => b !== undefined);
  if (status !== undefined) out[PACKAGES_KEY] = encodePackageList(parseDpkgStatus(status.toString('utf8')));
  return out;
}
