/** larch commit: a directory or tar becomes a commit on a branch. */
import { readFile } from 'node:fs/promises';
import { LarchError, fromSystemError } from '../../errors.ts';
import { COMPATIBLE_KEY } from '../../store/binding.ts';
import type { CborValue } from '../../store/cbor.ts';
import { readSecretKey } from '../../store/sign.ts';
import { createCommit } from '../../store/write-commit.ts';
import { commitImage } from '../../oci/commit-image.ts';
import { MIN_AGENT_VERSION_KEY, checkAgentVersionText } from '../../agent/compat.ts';
import { type Command, list, need, opt, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { parseSize, parseTimestamp } from '../option-values.ts';

function toCbor(value: unknown, where: string, depth = 0): CborValue {
  if (depth > 32) throw new LarchError('INVALID_INPUT', `${where}: metadata nested deeper than 32 levels`, { data: { key: where, max_depth: 32 } });
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new LarchError('INVALID_INPUT', `${where}: ${value} is not an integer (metadata holds no floats; use a string)`, { data: { key: where, value } });
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => toCbor(v, `${where}[${i}]`, depth + 1));
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, toCbor(v, `${where}.${k}`, depth + 1)]));
  throw new LarchError('INVALID_INPUT', `${where}: unsupported value`, { data: { key: where } });
}

export const commit: Command = {
  name: 'commit',
  summary: 'record a directory, tar archive or OCI image as a new commit',
  options: {
    ...REPO_OPTION,
    branch: { type: 'string', short: 'b' },
    tree: { type: 'string' },
    tar: { type: 'string' },
    oci: { type: 'string' },
    platform: { type: 'string' },
    'larch-layout': { type: 'boolean' },
    'max-unpacked-size': { type: 'string' },
    'plain-http': { type: 'boolean' },
    version: { type: 'string' },
    subject: { type: 'string', short: 's' },
    body: { type: 'string' },
    metadata: { type: 'string', multiple: true },
    'metadata-json': { type: 'string' },
    timestamp: { type: 'string' },
    parent: { type: 'string' },
    orphan: { type: 'boolean' },
    'sign-key': { type: 'string', multiple: true },
    'no-xattrs': { type: 'boolean' },
    owner: { type: 'string' },
    compatible: { type: 'string' },
    release: { type: 'string' },
    force: { type: 'boolean' },
  },
  help: `NAME
  larch commit - record a directory, tar archive or OCI image as a new commit

SYNOPSIS
  larch commit --repo R --branch B (--tree DIR | --tar FILE) --version V
               [--subject TEXT] [--body TEXT] [--metadata KEY=VALUE]... [--metadata-json FILE]
               [--timestamp T] [--parent REV | --orphan] [--sign-key K.key]...
               [--owner UID:GID] [--no-xattrs] [--compatible ID] [--release N [--force]] [--json]
  larch commit --repo R --branch B --oci (PATH[:TAG] | docker://HOST[:PORT]/NAME[:TAG|@DIGEST])
               [--version V] [--timestamp T] [--platform OS/ARCH[/VARIANT]] [--larch-layout]
               [--max-unpacked-size SIZE] [--plain-http] [the other options above] [--json]

DESCRIPTION
  Stores every file, symlink, FIFO and directory of the tree as content-addressed objects
  (content, mode, owner and xattrs are part of each object's id), writes a commit naming the
  root, and moves branch B to it atomically. Modification times are not recorded, so the
  same tree and metadata give the same commit id on every machine. Device nodes and sockets
  are refused with the path named.

  The commit's metadata gets larch.ref (B) and larch.release: one above the highest release in
  the repo (R/release and every ref's head), whatever the branch, so a device that follows
  another branch later never sees an older release. Devices refuse a commit whose larch.ref
  is not the ref they follow, and one whose release is below the highest they booted good.

  With --oci, the tree is the flattened root filesystem of an OCI image: an OCI image layout
  directory, an oci-archive or a docker-archive tar (what 'podman save' and 'skopeo copy'
  write), or an image in a registry (docker://; pulled anonymously, HTTPS unless the host is
  loopback or --plain-http is given; manifest and blobs checked against their digests).
  Layers are applied in order with their whiteouts (.wh.NAME) and opaque directories
  (.wh..wh..opq); owners, modes, xattrs and hard links across layers are kept. Each layer is
  checked against its digest and the config's diff_id as it streams. The version is --version,
  else the image's org.opencontainers.image.version label, else the tag (not latest); the time
  is --timestamp, else the image's created time, so the same image gives the same commit id.
  The commit records the image's digests and labels (larch.oci.*), its architecture and, when
  the image has a dpkg database, its package list. When the branch's head already is this
  image's commit (all but the time equal), nothing is written (changed: false). Hostile
  layers ('..', entries under symlinks, whiteouts of parents, compression bombs, sizes past
  --max-unpacked-size) are refused before anything is committed. See docs/oci.md.

  The commit's parent is B's current commit unless --parent or --orphan says otherwise.
  A crash or kill at any moment leaves the repo as it was before, or with the new commit
  complete; 'larch prune' removes leftover temporary files.

OPTIONS
  --repo R             repository (required)
  --branch B, -b B     branch to move (required)
  --tree DIR           commit this directory
  --tar FILE           commit this tar archive (plain or gzip; pax xattrs are kept)
  --oci PATH[:TAG]     commit this OCI image: a layout directory, an oci-archive or a
                       docker-archive (plain, gzip or zstd). Without TAG: the only image, else
                       the one tagged latest
  --oci docker://HOST[:PORT]/NAME[:TAG|@sha256:HEX]
                       commit this image of a registry (default tag: latest)
  --plain-http         with --oci docker://: plain HTTP to a registry that is not on loopback
  --platform OS/ARCH   the image of a multi-platform index to take (e.g. linux/arm64/v8)
  --larch-layout       with --oci: lay the tree out as 'larch compose' does: /var moved to
                       /usr/share/factory/var (a device's /var is never updated), the dpkg
                       database to /usr/lib/sysimage/dpkg, build state (/var/cache, /var/log,
                       /etc/hostname, /etc/resolv.conf, /etc/machine-id, ssh host keys) dropped
  --max-unpacked-size SIZE
                       with --oci: the most plain bytes all layers may unpack to (default 8G)
  --version V          version string, e.g. 2026.11.1 (required, but for --oci)
  --subject TEXT       one-line description
  --body TEXT          longer description
  --metadata K=V       a string entry in the commit's free-form metadata (repeatable);
                       larch.min_agent_version=V: devices whose larch is older than V
                       refuse the commit (docs/fleet.md, "Barriers and agent versions")
  --metadata-json F    a JSON object merged into the metadata (integers, strings, booleans,
                       arrays and objects; no floats)
  --timestamp T        commit time: seconds since the epoch or ISO 8601 (default: now)
  --parent REV         parent commit; --orphan for none
  --sign-key K.key     sign with this secret key (repeatable)
  --owner UID:GID      record every entry with this owner (e.g. 0:0 for a tree unpacked
                       without root)
  --no-xattrs          do not read extended attributes (otherwise getfattr is needed)
  --compatible ID      the hardware this commit is for (larch.compatible, as RAUC's
                       compatible): a device provisioned with another --compatible refuses it.
                       Also --metadata larch.compatible=ID. A repo made with
                       'init --collection-id' adds its id (larch.collection_id) to every commit
  --release N          larch.release N (0..999999999) instead of the next one; refused when
                       not above the repo's highest release, unless --force
  --force              with --release: take N even when it is not above the highest
  --json               print {"commit", "branch", "parent", "version", "timestamp_s",
                       "signed_by", "objects_written", "objects_reused", "bytes_written",
                       "changed", "release"}; with --oci also "restored", "restore_skipped"
                       and "image": {"source", "reference",
                       "manifest_digest", "config_digest", "layers", "whiteouts", "opaque_dirs",
                       "hardlinks", "dropped"}

EXAMPLES
  larch commit --repo repo --branch os/stable --tree rootfs --version 1.0 --sign-key vendor.key
  larch commit --repo repo -b os/stable --tar rootfs.tar.gz --version 1.1 --timestamp 2026-11-01T00:00:00Z
  larch commit --repo repo -b os/stable --oci os.tar:1.2 --larch-layout --sign-key vendor.key

EXIT STATUS
  0 committed (or, for --oci, nothing changed); 2 usage; 3 not found; 4 bad input, unsupported
  file type or a --release not above the highest; 7 locked; 8 no space; 9 a registry unreachable
  or asking for credentials; 10 a tool missing (zstd, for a zstd layer under Node).
`,
  async run(args, io) {
    const repo = await openRepo(args, 'commit');
    const tree = opt(args, 'tree');
    const tarFile = opt(args, 'tar');
    const oci = opt(args, 'oci');
    if ([tree, tarFile, oci].filter((s) => s !== undefined).length !== 1) throw new LarchError('USAGE', 'commit: give exactly one of --tree DIR, --tar FILE or --oci PATH[:TAG]', { data: { command: 'commit', options: ['tree', 'tar', 'oci'] } });
    for (const o of ['platform', 'larch-layout', 'max-unpacked-size', 'plain-http']) {
      if (oci === undefined && args.values[o] !== undefined) throw new LarchError('USAGE', `commit: --${o} goes with --oci`, { data: { command: 'commit', options: [o, 'oci'] } });
    }
    const metadata: Record<string, CborValue> = Object.create(null); // a key "__proto__" is a key
    const jsonFile = opt(args, 'metadata-json');
    if (jsonFile) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(jsonFile, 'utf8'));
      } catch (err) {
        throw err instanceof SyntaxError ? new LarchError('INVALID_INPUT', `--metadata-json '${jsonFile}' is not JSON: ${err.message}`, { data: { option: 'metadata-json', path: jsonFile } }) : fromSystemError(err, 'read', jsonFile);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new LarchError('INVALID_INPUT', `--metadata-json '${jsonFile}' must hold a JSON object`, { data: { option: 'metadata-json', path: jsonFile } });
      Object.assign(metadata, toCbor(parsed, jsonFile));
    }
    for (const kv of list(args, 'metadata')) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new LarchError('USAGE', `commit: --metadata '${kv}' is not KEY=VALUE`, { data: { command: 'commit', option: 'metadata', value: kv } });
      metadata[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const compatible = opt(args, 'compatible');
    if (compatible !== undefined) metadata[COMPATIBLE_KEY] = compatible;
    // A requirement no agent can read would block every device: refused here, where it is made.
    if (metadata[MIN_AGENT_VERSION_KEY] !== undefined) {
      if (typeof metadata[MIN_AGENT_VERSION_KEY] !== 'string') throw new LarchError('INVALID_INPUT', `commit: ${MIN_AGENT_VERSION_KEY} must be a string`, { data: { key: MIN_AGENT_VERSION_KEY } });
      checkAgentVersionText(metadata[MIN_AGENT_VERSION_KEY] as string, 'commit');
    }
    let owner: { uid: number; gid: number } | undefined;
    const ownerText = opt(args, 'owner');
    if (ownerText !== undefined) {
      const m = /^(\d+):(\d+)$/.exec(ownerText);
      if (!m) throw new LarchError('USAGE', `commit: --owner must be UID:GID, got '${ownerText}'`, { data: { command: 'commit', option: 'owner', value: ownerText } });
      owner = { uid: Number(m[1]), gid: Number(m[2]) };
    }
    const parentRev = opt(args, 'parent');
    if (parentRev && args.values.orphan) throw new LarchError('USAGE', 'commit: --parent and --orphan exclude each other', { data: { command: 'commit', options: ['parent', 'orphan'] } });
    const signKeys = await Promise.all(list(args, 'sign-key').map(readSecretKey));
    const ts = opt(args, 'timestamp');
    const releaseText = opt(args, 'release');
    if (releaseText !== undefined && !/^(0|[1-9]\d{0,8})$/.test(releaseText)) throw new LarchError('USAGE', `commit: --release must be an integer 0..999999999, got '${releaseText}'`, { data: { command: 'commit', option: 'release', value: releaseText } });
    if (args.values.force && releaseText === undefined) throw new LarchError('USAGE', 'commit: --force goes with --release N', { data: { command: 'commit', options: ['force', 'release'] } });
    const common = {
      release: releaseText === undefined ? undefined : Number(releaseText),
      forceRelease: args.values.force === true,
      branch: need(args, 'branch', 'commit'),
      subject: opt(args, 'subject'),
      body: opt(args, 'body'),
      metadata,
      timestamp: ts === undefined ? undefined : parseTimestamp(ts),
      parent: args.values.orphan ? null : parentRev ? await repo.resolveRev(parentRev) : undefined,
      signKeys,
      xattrs: args.values['no-xattrs'] !== true,
      owner,
    };
    const maxSize = opt(args, 'max-unpacked-size');
    const result =
      oci !== undefined
        ? await commitImage(repo, {
            ...common,
            source: oci,
            version: opt(args, 'version'),
            platform: opt(args, 'platform'),
            larchLayout: args.values['larch-layout'] === true,
            maxUnpackedBytes: maxSize === undefined ? undefined : parseSize(maxSize, '--max-unpacked-size'),
            plainHttp: args.values['plain-http'] === true,
          })
        : await createCommit(repo, { ...common, source: tree !== undefined ? { tree } : { tar: tarFile! }, version: need(args, 'version', 'commit') });
    if (args.json) printJson(io, result);
    else {
      io.out(`${result.commit}\n`);
      if (io.isTTY) io.out(`branch ${result.branch} -> version ${result.version}; ${result.objects_written} objects written, ${result.objects_reused} reused${result.signed_by.length ? `; signed by ${result.signed_by.join(', ')}` : ''}\n`);
    }
  },
};
