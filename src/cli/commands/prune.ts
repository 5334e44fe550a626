/** larch prune: delete what no ref needs. */
import { prune as pruneRepo } from '../../store/prune.ts';
import { type Command, intOption, opt, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

export const prune: Command = {
  name: 'prune',
  summary: 'delete unreachable objects, old history and leftover temporary files',
  options: { ...REPO_OPTION, keep: { type: 'string' }, 'dry-run': { type: 'boolean' } },
  help: `NAME
  larch prune - delete unreachable objects, old history and leftover temporary files

SYNOPSIS
  larch prune --repo R [--keep N] [--dry-run] [--json]

DESCRIPTION
  Removes staging directories left by killed processes, then every object that no branch
  reaches. With --keep N, only the newest N commits of each branch are kept (older history
  is deleted; 'larch log' then stops at the oldest kept commit). Holds the repo lock.

OPTIONS
  --repo R     repository (required)
  --keep N     keep at most N commits per branch (N >= 1)
  --dry-run    count, delete nothing
  --json       print {"commits_kept", "objects_deleted", "bytes_freed", "temp_entries_removed"}

EXIT STATUS
  0 pruned; 2 usage; 3 (NOT_FOUND) no repo; 7 (LOCKED) repo locked; 9 (IO) a file could not be removed.
`,
  async run(args, io) {
    const keep = intOption(opt(args, 'keep'), 'keep', 'prune', 1);
    const repo = await openRepo(args, 'prune');
    const result = await pruneRepo(repo, { keep, dryRun: args.values['dry-run'] === true });
    if (args.json) printJson(io, result);
    else io.out(`${args.values['dry-run'] ? 'Would delete' : 'Deleted'} ${result.objects_deleted} objects (${result.bytes_freed} bytes) and ${result.temp_entries_removed} temporary entries; kept ${result.commits_kept} commits\n`);
  },
};
