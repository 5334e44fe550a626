/** larch pull-local: copy a commit between repos. */
import { isValidBranch, Repo } from '../../store/repo.ts';
import { pullLocal as pull } from '../../store/pull-local.ts';
import { type Command, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

export const pullLocal: Command = {
  name: 'pull-local',
  summary: 'copy a commit and its objects from another local repo',
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch pull-local - copy a commit and its objects from another local repo

SYNOPSIS
  larch pull-local --repo DEST SRC_REPO REV [--json]

DESCRIPTION
  Copies REV (its tree, files and signatures; not its parents) from SRC_REPO into DEST,
  converting between modes (e.g. archive -> bare). Every object is re-hashed on the way:
  a corrupt source object stops the pull and nothing of it is kept. When REV is a branch
  name, the same branch is set in DEST.

OPTIONS
  --repo DEST   destination repository (required)
  --json        print {"commit", "objects_written", "objects_reused", "bytes_written"}

EXIT STATUS
  0 copied; 2 usage; 3 (NOT_FOUND) no repo or REV; 5 (OBJECT_CORRUPT) a source object is damaged;
  7 (LOCKED) DEST locked; 8 (NO_SPACE) no space.
`,
  async run(args, io) {
    const dest = await openRepo(args, 'pull-local');
    const [srcPath, rev] = positionals(args, ['src_repo', 'rev'], 'pull-local');
    const src = await Repo.open(srcPath);
    const commit = await src.resolveRev(rev);
    const ref = isValidBranch(rev) && (await src.readRef(rev)) === commit ? rev : undefined;
    const result = await pull(dest, src, commit, ref);
    if (args.json) printJson(io, result);
    else io.out(`${commit}\n`);
  },
};
