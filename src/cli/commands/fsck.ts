/** larch fsck: check every reachable object. */
import { LarchError } from '../../errors.ts';
import { fsck as fsckRepo } from '../../store/fsck.ts';
import { AlreadyReported, type Command, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

export const fsck: Command = {
  name: 'fsck',
  summary: 'check the repo: every object present, intact and safe',
  options: { ...REPO_OPTION },
  help: `NAME
  larch fsck - check the repo: every object present, intact and safe

SYNOPSIS
  larch fsck --repo R [--json]

DESCRIPTION
  Checks every ref and every stored commit, their history, trees and files: each object
  must be present, decode, and hash to its id; each file's content must have exactly its
  declared size; directory entries must be safe names (no '..', '.', '', '/', duplicates,
  or a name that is both a file and a directory); each signature must be valid for the
  key it names. Every problem is listed with the object and a path that uses it.

OUTPUT
  One line per problem: CODE KIND ID: PROBLEM (at PATH in commit C), then a summary.

OPTIONS
  --repo R   repository (required)
  --json     print {"commits", "objects", "problems": [{"kind", "id", "problem", "path",
             "commit", "code"}]}

EXIT STATUS
  0 the repo is consistent; 5 (REPO_CORRUPT) when any problem was found.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'fsck');
    const result = await fsckRepo(repo);
    if (args.json) printJson(io, result);
    else {
      for (const p of result.problems) io.out(`${p.code} ${p.kind} ${p.id}: ${p.problem}${p.path ? ` (at '${p.path}'${p.commit ? ` in commit ${p.commit}` : ''})` : ''}\n`);
      io.out(`checked ${result.commits} commits, ${result.objects} objects: ${result.problems.length} problem(s)\n`);
    }
    if (result.problems.length > 0) {
      const first = result.problems[0];
      const error = new LarchError('REPO_CORRUPT', `repo '${repo.path}' has ${result.problems.length} problem(s); first: ${first.kind} ${first.id}: ${first.problem}${first.path ? ` at '${first.path}'` : ''}`, {
        data: { problems: result.problems.length },
        hint: "restore the named objects with 'larch pull-local' from a good repo, or delete the affected branch and run 'larch prune'",
      });
      throw args.json ? new AlreadyReported(error) : error;
    }
  },
};
