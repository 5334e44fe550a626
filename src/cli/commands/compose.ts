/** larch compose: an image definition (images/NAME.toml) becomes a signed commit. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { compose as composeImage } from '../../compose/compose.ts';
import { LarchError } from '../../errors.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, list, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { parseTimestamp } from './commit.ts';

/** $XDG_CACHE_HOME/larch/debs, else ~/.cache/larch/debs. */
function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'larch', 'debs');
}

/** SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else undefined. @throws USAGE */
function sourceDateEpoch(): number | undefined {
  const text = process.env.SOURCE_DATE_EPOCH;
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new LarchError('USAGE', `compose: SOURCE_DATE_EPOCH '${text}' is not seconds since the epoch`);
  return Number(text);
}

export const compose: Command = {
  name: 'compose',
  summary: 'build a commit from an image definition and Debian packages',
  options: {
    ...REPO_OPTION,
    'sign-key': { type: 'string', multiple: true },
    cache: { type: 'string' },
    timestamp: { type: 'string' },
    parent: { type: 'string' },
    orphan: { type: 'boolean' },
    'work-dir': { type: 'string' },
    force: { type: 'boolean' },
  },
  positionals: true,
  help: `NAME
  larch compose - build a commit from an image definition and Debian packages

SYNOPSIS
  larch compose DEFINITION.toml --repo R [--sign-key K.key]... [--cache DIR]
                [--timestamp T] [--parent REV | --orphan] [--work-dir DIR] [--force] [--json]

DESCRIPTION
  Reads the image definition (docs/images.md), resolves every package to one exact version
  with the host's apt (the pinned one, or apt's candidate), fetches the .deb files with
  'apt-get download' into the cache (checked against apt's SHA-256), and lays their contents
  out the larch way: merged /usr (/bin, /sbin, /lib* are symlinks into /usr), the vendor
  /etc kept for the three-way merge, /var empty (package content under /var goes to
  /usr/share/factory/var). Then the overlays, the definition's commands (run without root,
  with the tree as the working directory) and the boot files, and one commit on the
  definition's ref, with the package list, the architecture and the kernel in its metadata.
  Maintainer scripts are not run, and dependencies are not added: the definition lists
  every package.

  Reproducible: the same definition with the same package versions and the same parent gives
  the same commit id (times are not recorded, owners come from the packages, the timestamp
  from the definition). Compose into a fresh repo, or with --orphan, to compare two builds.

  As 'rpm-ostree compose tree': when the tree, version, subject and metadata equal the
  ref's head (only the timestamp may differ), no commit is made, so devices download
  nothing: it prints the head (stdout) and 'no changes' (stderr). --force commits anyway.

  A missing package, an unavailable version, an overlay that leaves the definition's
  directory or the tree, two packages shipping one path, or a failing command stop the
  compose before anything is committed; the refs stay as they were.

OPTIONS
  --repo R          repository (required)
  --sign-key K.key  sign the commit with this secret key (repeatable)
  --cache DIR       where .deb files are kept (default: $XDG_CACHE_HOME/larch/debs,
                    else ~/.cache/larch/debs)
  --timestamp T     commit time (seconds or ISO 8601); default: the definition's
                    'timestamp', else $SOURCE_DATE_EPOCH, else the newest package's date
                    (the newest file time in the packages' data: their build dates)
  --parent REV      parent commit (default: the ref's current commit); --orphan for none
  --work-dir DIR    where the temporary image tar goes (default: the OS temp dir)
  --force           commit even when nothing changed
  --json            print {"commit": HEAD, "changed": false} when nothing changed, else
                    {"commit", "changed": true, "ref", "version", "timestamp", "architecture",
                    "packages": [{"name", "version", "architecture"}], "kernel",
                    "bootFiles", "debFiles" (the .deb files used), "downloaded", "cached", "parent", "signedBy",
                    "objectsWritten", "objectsReused", "bytesWritten"}

EXAMPLES
  larch compose images/qemu-x86_64-grub.toml --repo repo --sign-key vendor.key
  SOURCE_DATE_EPOCH=1767225600 larch compose images/demo.toml --repo repo --orphan --json

EXIT STATUS
  0 committed; 2 usage; 3 package, version or overlay not found; 4 bad definition, layout or
  command; 7 locked; 8 no space; 9 apt failed; 10 a tool is missing.
`,
  async run(args, io) {
    const [definitionPath] = positionals(args, ['definition'], 'compose');
    const repo = await openRepo(args, 'compose');
    const parentRev = opt(args, 'parent');
    if (parentRev && args.values.orphan) throw new LarchError('USAGE', 'compose: --parent and --orphan exclude each other');
    const ts = opt(args, 'timestamp');
    const signKeys = await Promise.all(list(args, 'sign-key').map(readSecretKey));
    const result = await composeImage(repo, {
      definitionPath,
      cacheDir: opt(args, 'cache') ?? defaultCacheDir(),
      timestamp: ts === undefined ? undefined : parseTimestamp(ts),
      defaultTimestamp: sourceDateEpoch(),
      parent: args.values.orphan ? null : parentRev ? await repo.resolveRev(parentRev) : undefined,
      signKeys,
      workDir: opt(args, 'work-dir'),
      force: args.values.force === true,
      progress: io.isTTY && !args.json ? (m) => io.err(`${m}\n`) : undefined,
    });
    if (!result.changed) {
      if (args.json) return printJson(io, { commit: result.commit, changed: false });
      // stdout stays the commit id, as for a new commit, so C=$(larch compose ...) works either way.
      io.err(`larch: compose: no changes: ${result.ref} stays at ${result.commit} (--force commits anyway)\n`);
      return io.out(`${result.commit}\n`);
    }
    if (args.json) printJson(io, result);
    else {
      io.out(`${result.commit}\n`);
      if (io.isTTY) {
        io.out(`${result.ref} -> version ${result.version}; ${result.packages.length} packages (${result.downloaded} downloaded)${result.kernel ? `; kernel ${result.kernel.release}` : ''}; ${result.objectsWritten} objects written${result.signedBy.length ? `; signed by ${result.signedBy.join(', ')}` : ''}\n`);
      }
    }
  },
};
