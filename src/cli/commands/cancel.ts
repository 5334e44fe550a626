/** larch cancel: stop the download or staging in progress (src/agent/cancel.ts). */
import { DEFAULT_CANCEL_WAIT_MS, cancelRunning } from '../../agent/cancel.ts';
import { type Command, intOption, opt, printJson } from '../command.ts';
import { sysrootOf } from '../device-context.ts';

export const cancel: Command = {
  name: 'cancel',
  summary: 'stop the download or staging in progress (the daemon\'s too); the device stays as it was',
  options: { sysroot: { type: 'string' }, wait: { type: 'string' } },
  help: `NAME
  larch cancel - stop the update in progress and leave the device as it was

SYNOPSIS
  larch cancel [--wait SECONDS] [--sysroot S] [--json]

DESCRIPTION
  Stops the command that is changing the device: an upgrade, deploy, rebase or kargs run
  from a shell, or the job of the daemon. It stops
    - during the exchange with the server (a check, a download): at once; the parts
      downloaded so far are kept, and the next upgrade resumes from them;
    - between the steps of a download and of its verification;
    - while the new tree is checked out and its /etc merged beside the other slot's
      deployment, which stays whole and bootable.
  What it leaves: the booted slot, the other slot, the boot env and config.json as they
  were before the command. The stopped command exits 9 (IO) with data.reason "cancelled".

  Past that, while the other slot's files are replaced (seconds), the command is not
  interrupted: cancel waits for it, then unstages the update it staged, as 'larch rollback'
  does (the booted slot stays first; the other slot's old deployment is gone, so that
  slot is left unbootable).

  The daemon journals the cancel and does not try the same release again until a new
  announcement, a newer release or an upgrade command.

  With nothing in progress, cancel does nothing and succeeds (result "idle").

OPTIONS
  --wait SECONDS  how long to wait for the command to stop (default ${DEFAULT_CANCEL_WAIT_MS / 1000})
  --sysroot S     the device's root filesystem, or a directory standing in for one
                  (default /sysroot)
  --json          print {"result": "cancelled"|"unstaged"|"completed"|"idle", "pid",
                  "command", "phase": "check"|"download"|"verify"|"staging"|null, "slot",
                  "version"}; "completed": it ended before the request reached a cancel
                  point and had nothing to undo

EXIT STATUS
  0 the command stopped, was undone, had ended, or none ran; 2 usage; 3 (NOT_FOUND) not
  provisioned; 7 (LOCKED) the command still runs after --wait; 9 (IO)
`,
  async run(args, io) {
    const waitS = intOption(opt(args, 'wait'), 'wait', 'cancel', 0);
    const r = await cancelRunning(sysrootOf(args), { waitMs: waitS === undefined ? undefined : waitS * 1000 });
    if (args.json) {
      printJson(io, r);
      return;
    }
    io.out(
      {
        idle: 'nothing to cancel: no larch command is changing this device\n',
        cancelled: `cancelled ${r.command} (pid ${r.pid}) during the ${r.phase}; the device is as it was\n`,
        unstaged: `${r.command} (pid ${r.pid}) had passed its point of no return; unstaged version ${r.version} in slot ${r.slot} (the booted slot stays first)\n`,
        completed: `${r.command} (pid ${r.pid}) ended before it could be stopped; nothing to undo\n`,
      }[r.result],
    );
  },
};
