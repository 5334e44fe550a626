/** larch checkout: write a commit's tree to a new directory. */
import { checkout as checkoutTree } from '../../store/checkout.ts';
import { type Command, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

export const checkout: Command = {
  name: 'checkout',
  summary: "write a commit's tree to a new directory",
  options: { ...REPO_OPTION, copy: { type: 'boolean' }, 'no-owners': { type: 'boolean' } },
  positionals: true,
  help: `NAME
  larch checkout - write a commit's tree to a new directory

SYNOPSIS
  larch checkout --repo R REV DEST [--copy] [--no-owners] [--json]

DESCRIPTION
  Creates DEST (it must not exist, or be empty) holding the tree of REV. From a bare or
  bare-user repo files are hardlinked to the repo's objects (fast, no extra space; do not
  edit them in place); from an archive repo, or with --copy, they are copied and each is
  checked against its id on the way. Owners are set when running as root.

  The tree's metadata is read and checked first: a commit with unsafe names ('..', '/',
  a name that is both a symlink and a directory) is refused before anything is written.
  On any error a DEST that checkout created is removed again.

OPTIONS
  --repo R       repository (required)
  --copy         copy files instead of hardlinking
  --no-owners    do not set owners even as root
  --json         print {"commit", "dest", "files", "dirs", "hardlinked", "copied"}

EXIT STATUS
  0 done; 3 REV not found; 5 missing or corrupt object, or hostile tree; 8 no space;
  11 DEST exists and is not empty.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'checkout');
    const [rev, dest] = positionals(args, ['rev', 'dest'], 'checkout');
    const result = await checkoutTree(repo, await repo.resolveRev(rev), dest, { copy: args.values.copy === true, owners: args.values['no-owners'] ? false : undefined });
    if (args.json) printJson(io, result);
    else if (io.isTTY) io.out(`Checked out ${result.commit} to ${dest}: ${result.files} files (${result.hardlinked} hardlinked, ${result.copied} copied), ${result.dirs} directories\n`);
  },
};
