/** larch failpoints: list the named failpoints compiled into this build. */
import { FAILPOINTS, FAILPOINT_NAMES } from '../../failpoint.ts';
import { type Command, printJson } from '../command.ts';

export const failpoints: Command = {
  name: 'failpoints',
  summary: 'list the named failpoints (crash-test points) of this build',
  options: {},
  help: `NAME
  larch failpoints - list the named failpoints of this build

SYNOPSIS
  larch failpoints [--json]

DESCRIPTION
  Prints every failpoint, one a line: its name (module::step) and what is on disk when a
  command passes it. Failpoints sit between the durable writes of every command that changes
  state (provision, upgrade, deploy, rollback, finalize, cleanup, boot-check, sim-boot,
  delta apply, commit, prune), and are compiled into every build.

ENVIRONMENT
  LARCH_FAILPOINT=NAME[:N]
      end the process with SIGKILL (as a power cut or kill -9 would: no cleanup, nothing
      flushed) at the Nth time it passes NAME (default: the first). An unknown NAME is a
      usage error (exit 2) of any command.
  LARCH_FAILPOINT_LOG=FILE
      append the name of each failpoint passed to FILE, one a line.

OPTIONS
  --json    print a JSON list of the names

EXAMPLES
  LARCH_FAILPOINT=update::after-bootenv-write larch upgrade --sysroot S
  LARCH_FAILPOINT=prune::after-object-unlink:3 larch prune --repo R

EXIT STATUS
  0 listed; 2 usage (LARCH_FAILPOINT names no failpoint).
`,
  async run(args, io) {
    if (args.json) return void printJson(io, FAILPOINT_NAMES);
    const width = Math.max(...FAILPOINT_NAMES.map((n) => n.length));
    io.out(FAILPOINT_NAMES.map((n) => `${n.padEnd(width)}  ${FAILPOINTS[n]}\n`).join(''));
  },
};
