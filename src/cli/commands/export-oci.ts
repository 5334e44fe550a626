/** larch export-oci: a commit as an OCI image (a layout directory or an oci-archive). */
import { LarchError } from '../../errors.ts';
import { type ExportCompression, exportImage } from '../../oci/export.ts';
import { type Command, intOption, need, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

const COMPRESSIONS: ExportCompression[] = ['gzip', 'zstd', 'none'];

export const exportOci: Command = {
  name: 'export-oci',
  summary: 'write a commit as an OCI image',
  options: {
    ...REPO_OPTION,
    out: { type: 'string' },
    tag: { type: 'string' },
    compression: { type: 'string' },
    level: { type: 'string' },
    platform: { type: 'string' },
    'no-commit-label': { type: 'boolean' },
  },
  positionals: true,
  help: `NAME
  larch export-oci - write a commit as an OCI image

SYNOPSIS
  larch export-oci --repo R REV --out PATH [--tag TAG] [--compression gzip|zstd|none]
                   [--level N] [--platform linux/ARCH[/VARIANT]] [--no-commit-label] [--json]

DESCRIPTION
  Writes the tree of REV as an OCI image of one layer, so the OS can be pushed to any
  registry (skopeo copy oci:PATH:TAG docker://...), scanned, and used as the base of a
  Containerfile ('FROM'), whose result 'larch commit --oci' takes back.

  PATH ending in .tar is an oci-archive (one file; an existing one is refused). Any other
  PATH is an OCI image layout directory: made when missing; when it is a layout already,
  the image is added under TAG, replacing only an image of the same tag. Blobs are written
  first and index.json last, atomically: an interrupted export leaves the layout as it was.

  The layer is reproducible: entries in a fixed order, every time the commit's time, no user
  or group names, and files that share an object written as hard links; the same commit,
  compression and level give the same bytes (the tools are Debian's gzip -n and zstd).
  Every object is checked against its id on the way: a corrupt object fails the export.

  The config carries the commit's version (org.opencontainers.image.version), its time, the
  labels of the image it was imported from, and the commit itself (labels larch.commit,
  larch.commit.object, larch.commit.signatures): 'larch commit --oci' of the exported image,
  with no option that changes a commit field, gives back the same commit, signatures and id.
  --no-commit-label leaves the commit out.

OPTIONS
  --repo R             repository (required)
  --out PATH           the layout directory, or FILE.tar for an oci-archive (required)
  --tag TAG            the image's tag in index.json (default: latest)
  --compression C      gzip (default), zstd or none
  --level N            the compressor's level (default: gzip 6, zstd 3)
  --platform P         linux/ARCH[/VARIANT], when the commit records no larch.architecture
  --no-commit-label    do not carry the commit object in the image's labels
  --json               print {"commit", "path", "format", "tag", "manifest_digest",
                       "config_digest", "layer": {"media_type", "digest", "size", "diff_id",
                       "unpacked_bytes", "entries"}, "bytes"}

EXAMPLES
  larch export-oci --repo repo os/stable --out os.tar --tag 1.0
  larch export-oci --repo repo os/stable --out layout --tag 1.0 --compression zstd
  skopeo copy oci:layout:1.0 docker://registry.example.com/os:1.0

EXIT STATUS
  0 written; 2 usage; 3 REV not found; 5 a corrupt object; 8 no space; 10 gzip or zstd
  missing; 11 PATH exists and is not a layout (or an archive exists).
`,
  async run(args, io) {
    const repo = await openRepo(args, 'export-oci');
    const [rev] = positionals(args, ['rev'], 'export-oci');
    const compression = (opt(args, 'compression') ?? 'gzip') as ExportCompression;
    if (!COMPRESSIONS.includes(compression)) throw new LarchError('USAGE', `export-oci: --compression must be gzip, zstd or none, got '${compression}'`, { data: { command: 'export-oci', option: 'compression', value: compression } });
    const result = await exportImage(repo, {
      rev,
      out: need(args, 'out', 'export-oci'),
      tag: opt(args, 'tag'),
      compression,
      level: intOption(opt(args, 'level'), 'level', 'export-oci', 1),
      platform: opt(args, 'platform'),
      commitLabel: args.values['no-commit-label'] !== true,
    });
    if (args.json) printJson(io, result);
    else io.out(`${result.manifest_digest}\n`);
  },
};
