/** larch barrier add / remove / list: the barrier releases of a vendor repo (R/barriers.json). */
import { type BarrierEntry, changeBarriers, readBarriers } from '../../server/barriers.ts';
import { type Command, need, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

const REF_OPTION = { ref: { type: 'string' as const } };
const show = (ref: string, list: BarrierEntry[]) => list.map((b) => `${ref} ${b.version} ${b.commit} (added ${b.added})\n`).join('');

function changeCommand(op: 'add' | 'remove'): Command {
  const name = `barrier ${op}`;
  const what = op === 'add' ? 'declare a barrier release of a ref' : 'drop a barrier release of a ref';
  return {
    name,
    summary: what,
    options: { ...REPO_OPTION, ...REF_OPTION },
    positionals: true,
    help: `NAME
  larch ${name} - ${what}

SYNOPSIS
  larch ${name} --repo R --ref REF VERSION|COMMIT [--json]

DESCRIPTION
  A barrier is a release every device of REF must boot before it goes further: one that
  ships the agent a later release needs (larch.min_agent_version), new keys, or a data
  migration (Fedora CoreOS's barrier updates). Barriers are state of the repo, in
  R/barriers.json (written atomically under the writer lock); 'larch publish' lists them in
  the signed summary, so run it afterwards. A device whose booted commit is older than a
  barrier is offered the oldest such barrier instead of the head (check, upgrade, daemon);
  once it has booted it good, the next check offers the head. docs/fleet.md, "Barriers".
  ${op === 'add' ? 'VERSION or COMMIT must be a commit of REF (its history is searched for the version).\n  Adding a barrier twice changes nothing.' : 'VERSION or COMMIT names a barrier of REF.'}

OPTIONS
  --repo R     the vendor's archive repo (required)
  --ref REF    the branch (required)
  --json       print {"ref", "barriers": [{"commit", "version", "added"}]} (after the change)

EXIT STATUS
  0 done; 2 usage; 3 (NOT_FOUND) ${op === 'add' ? 'REF has no such release' : 'not a barrier of REF'}; 4 R/barriers.json is not readable
  as one; 7 (LOCKED) another writer holds R.

EXAMPLES
  larch ${name} --repo /srv/larch --ref os/stable 2026.12.1
  larch publish --repo /srv/larch --sign-key vendor.key
`,
    async run(args, io) {
      const repo = await openRepo(args, name);
      const ref = need(args, 'ref', name);
      const [release] = positionals(args, ['release'], name);
      const barriers = await changeBarriers(repo, ref, release, op);
      if (args.json) return printJson(io, { ref, barriers });
      io.out(show(ref, barriers) || `${ref} has no barrier\n`);
    },
  };
}

export const barrierList: Command = {
  name: 'barrier list',
  summary: 'list the barrier releases of each ref',
  options: { ...REPO_OPTION, ...REF_OPTION },
  help: `NAME
  larch barrier list - list the barrier releases declared in a repo

SYNOPSIS
  larch barrier list --repo R [--ref REF] [--json]

DESCRIPTION
  Prints R/barriers.json: one line per barrier, REF VERSION COMMIT (added TIME), oldest
  declared first ('larch barrier add').

OPTIONS
  --repo R     the vendor's archive repo (required)
  --ref REF    only this branch
  --json       print {"refs": {REF: [{"commit", "version", "added"}]}}

EXIT STATUS
  0 listed; 2 usage; 4 R/barriers.json is not readable as one.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'barrier list');
    const only = opt(args, 'ref');
    const state = await readBarriers(repo);
    const refs = Object.fromEntries(Object.entries(state).filter(([ref]) => only === undefined || ref === only));
    if (args.json) return printJson(io, { refs });
    io.out(Object.entries(refs).map(([ref, list]) => show(ref, list)).join(''));
  },
};

export const barrierCommands: Command[] = [changeCommand('add'), changeCommand('remove'), barrierList];
