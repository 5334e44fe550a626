/** larch apply-live: the staged update, live without a reboot (src/agent/live/apply.ts). */
import { applyLive } from '../../agent/live/apply.ts';
import { type Command, opt, printJson } from '../command.ts';
import { locked, sysrootOf } from '../device-context.ts';

export const applyLiveCommand: Command = {
  name: 'apply-live',
  summary: 'make the staged update live without a reboot (userspace changes only)',
  options: { sysroot: { type: 'string' }, 'dry-run': { type: 'boolean' }, 'live-root': { type: 'string' }, 'proc-root': { type: 'string' } },
  help: `NAME
  larch apply-live - switch the running system to the staged update, without a reboot

SYNOPSIS
  larch apply-live [--dry-run] [--sysroot S] [--json]

DESCRIPTION
  For an update whose changes are userspace only, makes the staged deployment the running
  one: its /usr is bound read-only over the running /usr and its /etc over the running
  /etc (no copy: the staged slot is a complete, verified tree), then the services whose
  files changed are restarted. The update stays staged: the next boot boots it with its
  tries and boot-check confirms it as usual; the booted slot is kept as it was for a
  fallback. Running programs keep the files they have open until they restart.

  First, and alone with --dry-run, it reports:
    - the files of /usr added, modified and removed, and the /etc files the vendor changed;
    - the packages upgraded, downgraded, added and removed (when the commits list them);
    - the running processes that hold a modified or removed file: as their executable
      (exe), a mapped library (map) or an open file (fd, e.g. a shell script);
    - the services it restarts: with systemd, the units whose unit file changed and the
      units of those processes (systemctl daemon-reload first when a unit file changed);
      without it, /etc/init.d/NAME whose script changed or whose /run/NAME.pid holds one of
      those processes. Processes in no service are listed and left running.

  Refused (exit 14, data.reason), with nothing changed, when the update changes the kernel
  or other boot files (kernel-changed), the initramfs (initramfs-changed), kernel modules
  (modules-changed) or the kernel arguments (kargs-changed); when the /etc merge has
  conflicts (etc-conflicts); when nothing is staged (nothing-staged); when it is live
  already (live-applied); when run in a mount namespace other than PID 1's
  (mount-namespace). While it is live, commands that would rewrite the staged slot
  (upgrade, deploy, rebase, kargs, install) are refused (live-applied) until a reboot;
  rollback still cancels the staged update for the next boot (the running /usr stays the
  live one until then). Needs root (the mounts).

OPTIONS
  --dry-run       report only
  --sysroot S     the device's root filesystem (default /sysroot)
  --live-root DIR, --proc-root DIR
                  (tests) the running system's root and its /proc elsewhere (default / and
                  /proc): a directory bound in a mount namespace of the test's own
  --json          print {"result": "dry-run"|"applied", "slot", "from", "to", "files":
                  {added, modified, removed, total}, "etc": {changed}, "packages", "init":
                  "systemd"|"sysvinit", "units": [{name, init, why, files}], "processes":
                  [{pid, comm, unit, files: [{path, via}]}], "refused": [{reason, message,
                  paths}], "restarted": [{name, exit_code, stderr}]}

EXIT STATUS
  0 applied (a service that failed to restart is reported in restarted[].exit_code and the
  journal), or reported; 3 (NOT_FOUND) not provisioned; 7 (LOCKED) another larch command
  holds the device; 9 (IO) a mount failed (nothing changed); 14 (REFUSED) data.reason says why
`,
  async run(args, io) {
    const r = await applyLive(sysrootOf(args), { dryRun: args.values['dry-run'] === true, liveRoot: opt(args, 'live-root'), procRoot: opt(args, 'proc-root') });
    if (args.json) {
      printJson(io, r);
      return;
    }
    const lines = [`${r.result === 'applied' ? 'applied live' : 'would apply live'}: version ${r.to.version} (slot ${r.slot}) over ${r.from.version}`];
    lines.push(`  /usr: ${r.files.added.length} added, ${r.files.modified.length} modified, ${r.files.removed.length} removed; /etc: ${r.etc.changed.length} changed by the vendor`);
    for (const p of r.processes) lines.push(`  process ${p.pid} (${p.comm})${p.unit ? ` of ${p.unit}` : ''} uses ${p.files.map((f) => `${f.path} (${f.via})`).join(', ')}`);
    for (const u of r.units) lines.push(`  ${r.result === 'applied' ? 'restarted' : 'would restart'} ${u.name} (${u.init}: ${u.why.join(', ')})`);
    for (const f of r.restarted.filter((x) => x.exit_code !== 0)) lines.push(`  FAILED to restart ${f.name}: exit ${f.exit_code} ${f.stderr}`);
    for (const b of r.refused) lines.push(`  cannot go live: ${b.reason}: ${b.message}`);
    io.out(lines.join('\n') + '\n');
  },
};

/** It mounts over the running system and restarts services: one at a time with the other device commands. */
export const applyLiveCommands: Command[] = [locked(applyLiveCommand)];
