/**
 * larch db list / db diff: the package view of commits, from their compose metadata, in a repo
 * (--repo) or on a device (--sysroot: its deployments by name, booted, pending, rollback).
 */
import { type InstalledPackage, decodePackageList, diffPackageLists } from '../../packages/package-diff.ts';
import { LarchError } from '../../errors.ts';
import type { ObjectId } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import { readStatus } from '../../agent/status.ts';
import { Sysroot } from '../../agent/sysroot.ts';
import { type Command, type ParsedArgs, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { formatPackageDiff } from '../package-diff.ts';
import { DPKG_STATUS_PATH, parseDpkgStatus } from '../../packages/dpkg-status.ts';
import { readTreeFile } from '../../store/tree-file.ts';

/** The names of a device's deployments, as `larch status --json` has them. */
const DEPLOYMENTS = ['booted', 'pending', 'rollback'] as const;
type DeploymentName = (typeof DEPLOYMENTS)[number];

interface Source {
  repo: Repo;
  /** With --sysroot: the commit of a deployment named booted, pending or rollback (undefined: REV is not such a name). */
  deployment(rev: string): Promise<ObjectId | undefined>;
}

/** --repo R, or --sysroot S (the device's repo, and its deployments by name). @throws USAGE when neither or both */
async function openSource(args: ParsedArgs, cmd: string): Promise<Source> {
  const sysrootPath = opt(args, 'sysroot');
  if (sysrootPath === undefined) return { repo: await openRepo(args, cmd), deployment: async () => undefined };
  if (opt(args, 'repo') !== undefined) throw new LarchError('USAGE', `${cmd}: give --repo or --sysroot, not both`, { hint: `run 'larch ${cmd} --help'`, data: { command: cmd, option: 'sysroot' } });
  const sysroot = new Sysroot(sysrootPath);
  const repo = await sysroot.openRepo();
  let status: Awaited<ReturnType<typeof readStatus>> | null = null;
  return {
    repo,
    async deployment(rev) {
      if (!(DEPLOYMENTS as readonly string[]).includes(rev)) return undefined;
      status ??= await readStatus(sysroot);
      const d = status[rev as DeploymentName];
      if (!d) throw new LarchError('NOT_FOUND', `${cmd}: the device ${sysroot.path} has no ${rev} deployment`, { hint: `'larch status --sysroot ${sysroot.path}' lists its deployments`, data: { deployment: rev, sysroot: sysroot.path } });
      return d.commit;
    },
  };
}

/**
 * The commit's package list: its metadata's (larch.packages), else the dpkg database in its tree
 * (/usr/lib/sysimage/dpkg/status), so a commit made by other tools with that layout lists too.
 * @throws NOT_FOUND for an unknown REV or deployment, INVALID_INPUT for a commit with neither
 */
async function readPackages(source: Source, rev: string, cmd: string): Promise<{ commit: ObjectId; version: string; deployment?: string; packages: InstalledPackage[] }> {
  const { repo } = source;
  const deployed = await source.deployment(rev);
  const commit = deployed ?? (await repo.resolveRev(rev));
  const c = await repo.readCommit(commit);
  let packages = decodePackageList(c.metadata);
  if (!packages) {
    const status = await readTreeFile(repo, c.root, DPKG_STATUS_PATH);
    if (status) packages = parseDpkgStatus(status.toString('utf8'));
  }
  if (!packages) {
    throw new LarchError('INVALID_INPUT', `${cmd}: commit ${commit} ('${rev}') has no package list (it was not made by 'larch compose', and its tree has no /${DPKG_STATUS_PATH})`, {
      hint: "use a commit made by 'larch compose'; 'larch show' prints a commit's metadata",
      data: { rev, commit },
    });
  }
  return { commit, version: c.version, ...(deployed ? { deployment: rev } : {}), packages };
}

/** The REVs given, or the defaults of a --sysroot run. @throws USAGE */
function revs(args: ParsedArgs, names: string[], defaults: string[], cmd: string): string[] {
  return args.positionals.length === 0 && opt(args, 'sysroot') !== undefined ? defaults : positionals(args, names, cmd);
}

const SOURCE_OPTIONS = { ...REPO_OPTION, sysroot: { type: 'string' as const } };
const SOURCE_HELP = `  --repo R      repository
  --sysroot S   a device instead: its repo, where REV may also name a deployment
                (booted, pending, rollback, as 'larch status' shows them)`;

export const dbList: Command = {
  name: 'db list',
  summary: 'list the Debian packages in a commit',
  options: SOURCE_OPTIONS,
  positionals: true,
  help: `NAME
  larch db list - list the Debian packages in a commit

SYNOPSIS
  larch db list --repo R REV [--json]
  larch db list --sysroot S [booted|pending|rollback|REV] [--json]

DESCRIPTION
  Prints the packages 'larch compose' recorded in the commit's metadata (larch.packages,
  formats.md §12), one per line: NAME VERSION ARCHITECTURE, sorted by name. A commit
  without that metadata whose tree holds a dpkg database at /usr/lib/sysimage/dpkg (the
  larch tree layout) lists the packages installed there. On a device, a layered deployment's
  list is its whole tree's: the base's packages with the layered ones and the overrides
  applied. With --sysroot and no REV: the booted deployment.

OPTIONS
${SOURCE_HELP}
  --json        print {"commit", "version", "deployment" (with a deployment's name),
                "packages": [{"name", "version", "architecture"}]}

EXIT STATUS
  0 listed; 2 usage; 3 REV not found, or the device has no such deployment; 4 the commit has
  no package list.
`,
  async run(args, io) {
    const source = await openSource(args, 'db list');
    const [rev] = revs(args, ['rev'], ['booted'], 'db list');
    const result = await readPackages(source, rev, 'db list');
    if (args.json) printJson(io, result);
    else io.out(result.packages.map((p) => `${p.name} ${p.version} ${p.architecture}\n`).join(''));
  },
};

export const dbDiff: Command = {
  name: 'db diff',
  summary: 'show the packages upgraded, downgraded, added and removed between two commits',
  options: SOURCE_OPTIONS,
  positionals: true,
  help: `NAME
  larch db diff - packages upgraded, downgraded, added and removed between two commits

SYNOPSIS
  larch db diff --repo R FROM TO [--json]
  larch db diff --sysroot S [FROM TO] [--json]

DESCRIPTION
  Compares the package lists 'larch compose' recorded in two commits, as 'rpm-ostree db
  diff' does. A package is the same when its name and architecture are; versions compare
  with Debian's rules ('dpkg --compare-versions'), so 2.36-9+deb12u7 -> 2.36-9+deb12u14 is an
  upgrade and 1:1.0 -> 2.0 a downgrade.

  On a device (--sysroot), FROM and TO may name its deployments: booted, pending, rollback
  (default: booted pending, what the staged update will change). A layered deployment's list
  is its whole tree's, so the diff includes the layered packages and the overrides.

OPTIONS
${SOURCE_HELP}
  --json        print {"from": {"commit", "version", "deployment"?}, "to": {...},
                "upgraded": [{"name", "architecture", "from", "to"}], "downgraded": [...],
                "added": [{"name", "version", "architecture"}], "removed": [...]}
                (deployment: the name FROM or TO gave, when it named a deployment)

EXAMPLES
  larch db diff --repo repo os/stable^ os/stable
  larch db diff --sysroot / booted rollback

EXIT STATUS
  0 compared (also when nothing changed); 2 usage; 3 REV not found, or the device has no
  such deployment; 4 a commit has no package list.
`,
  async run(args, io) {
    const source = await openSource(args, 'db diff');
    const [fromRev, toRev] = revs(args, ['from', 'to'], ['booted', 'pending'], 'db diff');
    const from = await readPackages(source, fromRev, 'db diff');
    const to = await readPackages(source, toRev, 'db diff');
    const diff = diffPackageLists(from.packages, to.packages);
    const side = (s: typeof from) => ({ commit: s.commit, version: s.version, ...(s.deployment ? { deployment: s.deployment } : {}) });
    const label = (s: typeof from) => `${s.deployment ? `${s.deployment} ` : ''}${s.commit} (${s.version})`;
    if (args.json) printJson(io, { from: side(from), to: side(to), ...diff });
    else io.out(`from: ${label(from)}\nto:   ${label(to)}\n${formatPackageDiff(diff)}`);
  },
};

export const dbCommands = [dbList, dbDiff];
