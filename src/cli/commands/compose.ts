/** larch compose: an image definition (images/NAME.toml) becomes a signed commit. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { compose as composeImage } from '../../compose/compose.ts';
import { LarchError } from '../../errors.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, list, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { parseTimestamp } from '../option-values.ts';

/** $XDG_CACHE_HOME/larch/debs, else ~/.cache/larch/debs. */
function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'larch', 'debs');
}

/** SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else undefined. @throws USAGE */
function sourceDateEpoch(): number | undefined {
  const text = process.env.SOURCE_DATE_EPOCH;
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new LarchError('USAGE', `compose: SOURCE_DATE_EPOCH '${text}' is not seconds since the epoch`, { data: { env: 'SOURCE_DATE_EPOCH', value: text } });
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
    agent: { type: 'string' },
    exact: { type: 'boolean' },
    'no-tree-cache': { type: 'boolean' },
  },
  positionals: true,
  help: `NAME
  larch compose - build a commit from an image definition and Debian packages

SYNOPSIS
  larch compose DEFINITION.toml --repo R [--sign-key K.key]... [--cache DIR]
                [--timestamp T] [--parent REV | --orphan] [--work-dir DIR] [--agent FILE]
                [--exact] [--no-tree-cache] [--force] [--json]

DESCRIPTION
  Reads the image definition (docs/images.md) and checks every listed package and pin against
  the host's apt. Then, by default, installs the essential set, the listed packages and their
  dependencies (Depends and Pre-Depends; Recommends only with 'recommends = true') with
  mmdebstrap in a user namespace of its own, maintainer scripts run by dpkg there (foreign
  architectures through qemu-user-static and binfmt_misc), from the host's apt indexes and
  the .deb cache. The tree's dpkg database goes to /usr/lib/sysimage/dpkg, with
  /etc/dpkg/dpkg.cfg.d/larch and /etc/apt/apt.conf.d/50larch pointing dpkg and apt at it; the
  build's own state (/var/cache, /var/log, apt lists), /etc/machine-id, /etc/hostname,
  /etc/resolv.conf and ssh host keys are left out (docs/images.md, "Reproducibility").
  With 'exact = true' in the definition, or --exact, it resolves every listed package to one
  exact version (the pinned one, or apt's candidate), fetches the .deb files with
  'apt-get download' into the cache (checked against apt's SHA-256), and unpacks exactly
  those, running no maintainer script. Either way it lays the contents out the larch way: merged /usr (/bin, /sbin, /lib* are symlinks into /usr), the vendor
  /etc kept for the three-way merge, /var empty (package content under /var goes to
  /usr/share/factory/var). Then the overlays, the definition's commands (run without root,
  with the tree as the working directory) and the boot files, and one commit on the
  definition's ref, with the package list, the architecture and the kernel in its metadata,
  and larch.ref and larch.release as 'larch commit' sets them (docs/formats.md §12).
  Maintainer scripts are not run, and dependencies are not added: the definition lists
  every package.

  Reproducible: the same definition with the same package versions and the same parent gives
  the same commit id (times are not recorded, owners come from the packages, the timestamp
  from the definition; a resolved compose needs one of 'timestamp', --timestamp or
  SOURCE_DATE_EPOCH, which its maintainer scripts see as SOURCE_DATE_EPOCH). Compose into a fresh repo, or with --orphan, to compare two builds.

  As 'rpm-ostree compose tree': when the tree, version, subject and metadata equal the
  ref's head (only the timestamp may differ), no commit is made, so devices download
  nothing: it prints the head (stdout) and 'no changes' (stderr). --force commits anyway.

  A missing package, an unavailable version, a dependency no source offers, a failing
  maintainer script, an overlay that leaves the definition's
  directory or the tree, two packages shipping one path, or a failing command stop the
  compose before anything is committed; the refs stay as they were.

  The tree cache: mmdebstrap's tree is kept in DIR/trees/KEY.tar (the --cache DIR), KEY the
  SHA-256 of everything that decides it: the packages and pins (in any order), the
  architecture, 'recommends', SOURCE_DATE_EPOCH (the commit time above), the local .deb files'
  content, mmdebstrap's arguments, the content of the host's apt sources, keyrings and index
  files (/var/lib/apt/lists: an 'apt-get update' that changed an index misses), the mmdebstrap
  and apt versions and mmdebstrap's merged-usr hooks. A compose with the same KEY takes the
  cached tree instead of running mmdebstrap (overlays, commands, the agent and the boot files
  are applied after it, so definitions that differ only in those share one tree). One build
  per KEY at a time (a second compose waits for it); the 4 most recently used trees are kept.
  --no-tree-cache builds again and replaces the entry (docs/images.md, "The tree cache").

OPTIONS
  --repo R          repository (required)
  --sign-key K.key  sign the commit with this secret key (repeatable)
  --cache DIR       where .deb files and resolved trees are kept (default:
                    $XDG_CACHE_HOME/larch/debs, else ~/.cache/larch/debs)
  --timestamp T     commit time (seconds or ISO 8601); default: the definition's
                    'timestamp', else $SOURCE_DATE_EPOCH, else the newest package's date
                    (the newest file time in the packages' data: their build dates)
  --parent REV      parent commit (default: the ref's current commit); --orphan for none
  --work-dir DIR    where the temporary image tar goes (default: the OS temp dir)
  --agent FILE      the larch binary the image carries at /usr/bin/larch (its agent: OS
                    updates update it), instead of the definition's 'agent'; checked to be an
                    ELF executable for the definition's architecture
  --exact           exactly the listed packages, unpacked, no dependency added and no
                    maintainer script run (as the definition's 'exact = true')
  --no-tree-cache   run mmdebstrap even when the tree cache has the tree, and replace the
                    cached tree with the new one
  --force           commit even when nothing changed
  --json            print {"commit": HEAD, "changed": false} when nothing changed, else
                    {"commit", "changed": true, "ref", "version", "timestamp_s", "architecture",
                    "packages": [{"name", "version", "architecture"}], "kernel",
                    "boot_files", "deb_files" (the .deb files used), "downloaded", "cached", "parent", "signed_by",
                    "objects_written", "objects_reused", "bytes_written", "release", "agent" (the
                    binary carried at /usr/bin/larch, or null), "exact" (true: the listed
                    packages only; deb_files is then the .deb files used, else []),
                    "tree_cache" ("hit": the tree came from the tree cache; "miss": built
                    and stored; "off": built with --no-tree-cache; null: an exact compose)}

EXAMPLES
  larch compose images/qemu-x86_64-grub.toml --repo repo --sign-key vendor.key
  SOURCE_DATE_EPOCH=1767225600 larch compose images/qemu-arm64-uboot.toml --repo repo --orphan --json

EXIT STATUS
  0 committed; 2 usage; 3 package, version, dependency or overlay not found; 4 bad
  definition, layout, command or a failing maintainer script; 7 locked; 8 no space; 9 apt failed; 10 a tool is missing.
`,
  async run(args, io) {
    const [definitionPath] = positionals(args, ['definition'], 'compose');
    const repo = await openRepo(args, 'compose');
    const parentRev = opt(args, 'parent');
    if (parentRev && args.values.orphan) throw new LarchError('USAGE', 'compose: --parent and --orphan exclude each other', { data: { command: 'compose', options: ['parent', 'orphan'] } });
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
      agent: opt(args, 'agent'),
      exact: args.values.exact === true,
      treeCache: args.values['no-tree-cache'] !== true,
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
        io.out(`${result.ref} -> version ${result.version}; ${result.packages.length} packages (${result.downloaded} downloaded)${result.kernel ? `; kernel ${result.kernel.release}` : ''}; ${result.objects_written} objects written${result.signed_by.length ? `; signed by ${result.signed_by.join(', ')}` : ''}\n`);
      }
    }
  },
};
