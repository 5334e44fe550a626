/**
 * `larch commit --oci`: an OCI image's flattened root filesystem as a commit
 * (docs/design/issue-21-oci.md §4, docs/oci.md). Everything happens inside the commit's
 * transaction, under the repo's writer lock: an archive is unpacked into R/tmp/oci-src-*, the
 * layers are imported, and any refusal aborts with refs, objects and R/tmp as they were.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import { treeMemberPath } from '../compose/layout.ts';
import { DPKG_STATUS_PATH, parseDpkgStatus } from '../packages/dpkg-status.ts';
import { PACKAGES_KEY, encodePackageList } from '../packages/package-diff.ts';
import { ARCHITECTURE_KEY } from '../store/binding.ts';
import type { CborValue } from '../store/cbor.ts';
import type { Repo } from '../store/repo.ts';
import { type CommitOptions, type CommitResult, createCommit } from '../store/write-commit.ts';
import { chooseTimestamp, chooseVersion, debianArchitecture, ociMetadata } from './commit-metadata.ts';
import { type ImportCounts, type LayerReport, importLayers } from './import.ts';
import { parseSource } from './reference.ts';
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
}

export interface ImageReport {
  source: SourceKind;
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
  image: ImageReport;
}

/** @throws USAGE, NOT_FOUND, INVALID_INPUT, UNSUPPORTED_FILE_TYPE, LOCKED, NO_SPACE, TOOL_MISSING */
export async function commitImage(repo: Repo, opts: CommitImageOptions): Promise<CommitImageResult> {
  const ref = parseSource(opts.source, existsSync);
  if (ref.kind === 'registry') {
    throw new LarchError('USAGE', `commit --oci: pulling from a registry (docker://) is not built yet`, {
      hint: `copy the image to an archive first ('skopeo copy ${opts.source} oci-archive:image.tar') and commit that`,
      data: { reason: 'registry', option: 'oci' },
    });
  }
  const maxUnpackedBytes = opts.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED_BYTES;
  let report: ImageReport | undefined;
  const result = await createCommit(repo, {
    ...opts,
    unlessUnchanged: true,
    source: {
      importer: async (txn) => {
        const tmpDir = await mkdtemp(join(repo.path, 'tmp', 'oci-src-'));
        try {
          const image = await resolveImage(ref.path, { tag: ref.tag, platform: opts.platform ?? null, tmpDir, maxUnpackedBytes });
          // Chosen before a layer is read: a missing version is a usage error, found at once.
          const version = chooseVersion({ flag: opts.version, labels: image.config.labels, tag: image.tag });
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
            source: image.kind,
            reference: opts.source,
            manifest_digest: image.manifestDigest,
            config_digest: image.configDigest,
            layers: imported.layers,
            ...imported.counts,
            dropped: { ...imported.counts.dropped, layout: droppedByLayout },
          };
          return { tree, version, timestamp, metadata: imageMetadata(image, imported.captured) };
        } finally {
          await rm(tmpDir, { recursive: true, force: true });
        }
      },
    },
  });
  return { ...result, image: report! };
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
