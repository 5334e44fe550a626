/** larch init: create a repo. */
import { LarchError, quash } from '../../errors.ts';
import { bindingValueProblem } from '../../store/binding.ts';
import { DIRTREE_FORMATS, type DirTreeFormat } from '../../store/object.ts';
import { REPO_MODES, Repo, type RepoMode } from '../../store/repo.ts';
import { type Command, need, opt, printJson } from '../command.ts';
import { REPO_OPTION } from './_repo.ts';

export const init: Command = {
  name: 'init',
  summary: 'create a repository',
  options: { ...REPO_OPTION, mode: { type: 'string' }, 'dirtree-format': { type: 'string' }, 'collection-id': { type: 'string' } },
  help: `NAME
  larch init - create a repository

SYNOPSIS
  larch init --repo R [--mode bare|bare-user|archive] [--dirtree-format 1|2] [--collection-id ID] [--json]

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

  Dirtree formats (docs/formats.md §2.3): 2 records each file's size in its directory's
  dirtree, so devices stop a download at the signed length; 1 does not. A new repo writes 2.
  A repo made before format 2 (no dirtree_format in R/config.json) keeps writing 1, so the
  ids of unchanged trees stay the same. Devices whose larch is older than format 2 refuse a
  format-2 tree: upgrade the fleet's agents first, then switch the repo with
      larch init --repo R --mode MODE --dirtree-format 2

  Collection id (docs/fleet.md, "One vendor, several products"): the product's repo id, in
  reverse-DNS form (com.example.gateway), kept in R/config.json. Every commit made in R
  carries it (larch.collection_id) and so does R's signed summary (collection_id); a device
  records it when provisioned and refuses a summary or commit of another collection, so one
  product's repo served to another product's devices is refused before anything is written.
  Given once: an existing repo's id is never changed (exit 11). A repo without one binds
  nothing (as before). Devices whose larch predates collection ids refuse a summary that
  carries one: upgrade the fleet's agents first.

OPTIONS
  --repo R        the repository directory (required)
  --mode MODE     bare, bare-user or archive
  --dirtree-format N
                  1 or 2: the dirtree format the repo's next commits write (default for a
                  new repo: 2; an existing repo keeps its own unless this is given)
  --collection-id ID
                  the repo's collection id (set once; default: none)
  --json          print {"repo", "mode", "dirtree_format", "collection_id"}

EXIT STATUS
  0 created or already there; 11 (EXISTS) when R exists with another mode or collection id.
`,
  async run(args, io) {
    const path = need(args, 'repo', 'init');
    const isRoot = process.getuid?.() === 0;
    const mode = (opt(args, 'mode') ?? (isRoot ? 'bare' : 'bare-user')) as RepoMode;
    if (!REPO_MODES.includes(mode)) throw new LarchError('USAGE', `init: --mode must be one of ${REPO_MODES.join(', ')}, got '${mode}'`, { data: { command: 'init', option: 'mode', value: mode, allowed: REPO_MODES } });
    if (mode === 'bare' && !isRoot) throw new LarchError('USAGE', "init: mode 'bare' keeps real owners and needs root", { hint: "run as root, or use --mode bare-user", data: { command: 'init', option: 'mode', value: mode } });
    const formatArg = opt(args, 'dirtree-format');
    const format = formatArg === undefined ? undefined : (Number(formatArg) as DirTreeFormat);
    if (format !== undefined && (!/^[12]$/.test(formatArg ?? '') || !DIRTREE_FORMATS.includes(format))) throw new LarchError('USAGE', `init: --dirtree-format must be 1 or 2, got '${formatArg}'`, { data: { command: 'init', option: 'dirtree-format', value: formatArg } });
    const collectionId = opt(args, 'collection-id');
    const problem = collectionId === undefined ? null : bindingValueProblem('collection_id', collectionId);
    if (problem !== null) throw new LarchError('USAGE', `init: --collection-id '${quash(collectionId!)}' ${problem}`, { data: { command: 'init', option: 'collection-id', value: collectionId } });
    const repo = await Repo.init(path, mode, format, collectionId);
    if (args.json) printJson(io, { repo: repo.path, mode: repo.mode, dirtree_format: repo.dirtreeFormat, collection_id: repo.collectionId });
    else io.out(`Initialized ${repo.mode} repo at ${repo.path} (dirtree format ${repo.dirtreeFormat}${repo.collectionId === null ? '' : `, collection id ${repo.collectionId}`})\n`);
  },
};
