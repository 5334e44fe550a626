/** larch init: create a repo. */
import { LarchError } from '../../errors.ts';
import { REPO_MODES, Repo, type RepoMode } from '../../store/repo.ts';
import { type Command, need, opt, printJson } from '../command.ts';
import { REPO_OPTION } from './_repo.ts';

export const init: Command = {
  name: 'init',
  summary: 'create a repository',
  options: { ...REPO_OPTION, mode: { type: 'string' } },
  help: `NAME
  larch init - create a repository

SYNOPSIS
  larch init --repo R [--mode bare|bare-user|archive] [--json]

DESCRIPTION
  Creates the repository R (and its parent directories). Running it again on an existing
  repo of the same mode does nothing and succeeds, so provisioning scripts can repeat it.

  Modes:
    bare       objects are plain files with their real owner, mode and xattrs; checkouts
               hardlink them. Devices use this; needs root.
    bare-user  as bare, but owners and xattrs are kept in a sidecar per object, so any
               user can commit and check out (tests, builds without root).
    archive    objects are compressed; for servers that publish over HTTP.
  The default is bare when run as root, bare-user otherwise.

OPTIONS
  --repo R        the repository directory (required)
  --mode MODE     bare, bare-user or archive
  --json          print {"repo", "mode"}

EXIT STATUS
  0 created or already there; 11 (EXISTS) when R exists with another mode.
`,
  async run(args, io) {
    const path = need(args, 'repo', 'init');
    const isRoot = process.getuid?.() === 0;
    const mode = (opt(args, 'mode') ?? (isRoot ? 'bare' : 'bare-user')) as RepoMode;
    if (!REPO_MODES.includes(mode)) throw new LarchError('USAGE', `init: --mode must be one of ${REPO_MODES.join(', ')}, got '${mode}'`);
    if (mode === 'bare' && !isRoot) throw new LarchError('USAGE', "init: mode 'bare' keeps real owners and needs root", { hint: "run as root, or use --mode bare-user" });
    const repo = await Repo.init(path, mode);
    if (args.json) printJson(io, { repo: repo.path, mode: repo.mode });
    else io.out(`Initialized ${repo.mode} repo at ${repo.path}\n`);
  },
};
