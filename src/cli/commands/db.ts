/** larch db list / db diff: the package view of commits, from their compose metadata. */
import { type InstalledPackage, type PackageDiff, decodePackageList, diffPackageLists } from '../../compose/package-diff.ts';
import { LarchError } from '../../errors.ts';
import type { ObjectId } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import { type Command, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

/** @throws NOT_FOUND for an unknown REV, INVALID_INPUT for a commit without a package list */
async function readPackages(repo: Repo, rev: string, cmd: string): Promise<{ commit: ObjectId; version: string; packages: InstalledPackage[] }> {
  const commit = await repo.resolveRev(rev);
  const c = await repo.readCommit(commit);
  const packages = decodePackageList(c.metadata);
  if (!packages) {
    throw new LarchError('INVALID_INPUT', `${cmd}: commit ${commit} ('${rev}') has no package list (it was not made by 'larch compose')`, {
      hint: "use a commit made by 'larch compose'; 'larch show' prints a commit's metadata",
      data: { rev, commit },
    });
  }
  return { commit, version: c.version, packages };
}

export const dbList: Command = {
  name: 'db list',
  summary: 'list the Debian packages in a commit',
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch db list - list the Debian packages in a commit

SYNOPSIS
  larch db list --repo R REV [--json]

DESCRIPTION
  Prints the packages 'larch compose' recorded in the commit's metadata (larch.packages,
  formats.md §12), one per line: NAME VERSION ARCHITECTURE, sorted by name.

OPTIONS
  --repo R   repository (required)
  --json     print {"commit", "version", "packages": [{"name", "version", "architecture"}]}

EXIT STATUS
  0 listed; 2 usage; 3 REV not found; 4 the commit has no package list.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'db list');
    const [rev] = positionals(args, ['rev'], 'db list');
    const result = await readPackages(repo, rev, 'db list');
    if (args.json) printJson(io, result);
    else io.out(result.packages.map((p) => `${p.name} ${p.version} ${p.architecture}\n`).join(''));
  },
};

/** rpm-ostree db diff's layout: one section per kind of change. */
export function formatPackageDiff(diff: PackageDiff): string {
  const lines: string[] = [];
  const section = (title: string, rows: string[]) => {
    if (rows.length === 0) return;
    lines.push(`${title}:`, ...rows.map((r) => `  ${r}`));
  };
  section('Upgraded', diff.upgraded.map((c) => `${c.name} ${c.from} -> ${c.to}`));
  section('Downgraded', diff.downgraded.map((c) => `${c.name} ${c.from} -> ${c.to}`));
  section('Removed', diff.removed.map((p) => `${p.name} ${p.version} ${p.architecture}`));
  section('Added', diff.added.map((p) => `${p.name} ${p.version} ${p.architecture}`));
  return lines.length ? `${lines.join('\n')}\n` : 'No package changes\n';
}

export const dbDiff: Command = {
  name: 'db diff',
  summary: 'show the packages upgraded, downgraded, added and removed between two commits',
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch db diff - packages upgraded, downgraded, added and removed between two commits

SYNOPSIS
  larch db diff --repo R FROM TO [--json]

DESCRIPTION
  Compares the package lists 'larch compose' recorded in two commits, as 'rpm-ostree db
  diff' does. A package is the same when its name and architecture are; versions compare
  with Debian's rules ('dpkg --compare-versions'), so 2.36-9+deb12u7 -> 2.36-9+deb12u14 is an
  upgrade and 1:1.0 -> 2.0 a downgrade.

OPTIONS
  --repo R   repository (required)
  --json     print {"from": {"commit", "version"}, "to": {"commit", "version"},
             "upgraded": [{"name", "architecture", "from", "to"}], "downgraded": [...],
             "added": [{"name", "version", "architecture"}], "removed": [...]}

EXAMPLES
  larch db diff --repo repo os/stable^ os/stable

EXIT STATUS
  0 compared (also when nothing changed); 2 usage; 3 REV not found; 4 a commit has no
  package list.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'db diff');
    const [fromRev, toRev] = positionals(args, ['from', 'to'], 'db diff');
    const from = await readPackages(repo, fromRev, 'db diff');
    const to = await readPackages(repo, toRev, 'db diff');
    const diff = diffPackageLists(from.packages, to.packages);
    if (args.json) printJson(io, { from: { commit: from.commit, version: from.version }, to: { commit: to.commit, version: to.version }, ...diff });
    else io.out(`from: ${from.commit} (${from.version})\nto:   ${to.commit} (${to.version})\n${formatPackageDiff(diff)}`);
  },
};

export const dbCommands = [dbList, dbDiff];
