/**
 * `larch kargs`: show or change the kernel arguments (rpm-ostree kargs). The rules are in
 * agent/kargs.ts, the staging in agent/kargs-update.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LarchError } from '../../errors.ts';
import { type KargsEdit, editKargs, splitCommandLine } from '../../agent/kargs.ts';
import { changeKargs, kargsTarget } from '../../agent/kargs-update.ts';
import { DEFAULT_SYSROOT } from '../../agent/sysroot.ts';
import { finalize } from '../../agent/update.ts';
import { rebootFor } from '../../agent/reboot.ts';
import { type Command, type ParsedArgs, printJson } from '../command.ts';
import { context, locked } from '../device-context.ts';

const EDIT_OPS = ['append', 'delete', 'replace'] as const;

const kargsCommand: Command = {
  name: 'kargs',
  summary: 'show or change the kernel arguments (a new deployment, as rpm-ostree kargs)',
  options: { sysroot: { type: 'string' }, append: { type: 'string', multiple: true }, delete: { type: 'string', multiple: true }, replace: { type: 'string', multiple: true }, editor: { type: 'boolean' }, reboot: { type: 'boolean' }, 'dry-run': { type: 'boolean' } },
  help: `NAME
  larch kargs - show or change the kernel arguments

SYNOPSIS
  larch kargs [--sysroot S] [--json]
  larch kargs [--append K[=V]] [--delete K[=V]] [--replace K=V] ... [--reboot] [--dry-run] [--sysroot S] [--json]
  larch kargs --editor [--reboot] [--dry-run] [--sysroot S] [--json]

DESCRIPTION
  Without a change, prints the kernel arguments of the deployment that boots next: the staged
  one when there is one, else the booted one (larch.slot=, which the bootloader adds, aside).
  A change never touches the booted deployment, so arguments that do not boot fall back by
  the tries as a bad update does: when an update is staged (not booted yet), its arguments
  change and it gets fresh tries; otherwise the booted commit is staged again into the other
  slot with the new arguments (its /etc merged as for an upgrade) and the booted deployment
  becomes the rollback, which keeps its own arguments. Reboot to use them.
  A deployment's arguments are the board's defaults (provision --kargs; larch image build
  gives its board profile's), then the commit's /usr/lib/larch/kargs.d/*.conf in name order,
  then local changes. An upgrade keeps local changes and applies the vendor's: arguments the
  new commit's kargs.d dropped go, new ones are added (as bootc does). A device provisioned
  without --kargs is refused (exit 14, data.reason "kargs-unmanaged"): its boot script
  passes its own larch_bootargs. Arguments that already failed with this commit on this
  device are refused (exit 14, data.reason "failed-here").

OPTIONS
  --sysroot S       the device's root filesystem, or a directory standing in for one
                    (default ${DEFAULT_SYSROOT})
  --append K[=V]    add the argument at the end (a key may repeat, as console= does)
  --delete K=V      delete that argument; --delete K: the one argument with key K (several:
                    exit 2 naming them; none: exit 4)
  --replace K=V     the one argument with key K gets the value V (several: exit 2; none: exit 4)
                    The three repeat and apply left to right in command-line order.
  --editor          edit the list in $VISUAL, else $EDITOR, else vi: one argument per line,
                    '#' starts a comment; an unchanged or empty list changes nothing
  --reboot          finalize (merge /etc again) and reboot when something was staged
  --dry-run         show the new arguments; stage nothing
  --json            print {"result": staged|changed-staged|unchanged|dry-run, "slot", "commit",
                    "version", "kargs", "kargs_before"}; without a change {"slot", "kargs"}

EXIT STATUS
  0 success; 2 usage (an ambiguous or malformed argument); 3 (NOT_FOUND) not provisioned;
  4 (INVALID_INPUT) nothing to delete or replace, a bad /usr/lib/larch/kargs.d file;
  7 locked; 8 no space; 9 I/O; 13 bootloader env unreadable; 14 (REFUSED) kargs-unmanaged,
  failed-here, booted-unconfirmed. docs/cli.md lists them all.

EXAMPLES
  larch kargs
  larch kargs --append quiet --delete console
  larch kargs --replace loglevel=7 --reboot
`,
  async run(args, io) {
    const edits = kargsEdits(args);
    const editor = args.values.editor === true;
    if (editor && edits.length > 0) throw new LarchError('USAGE', 'kargs: give --editor or --append/--delete/--replace, not both', { data: { command: 'kargs', options: ['editor', ...new Set(edits.map((e) => e.op))] } });
    const ctx = await context(args, io);
    if (!editor && edits.length === 0) {
      const t = await kargsTarget(ctx);
      if (args.json) return printJson(io, { slot: t.slot, kargs: t.kargs });
      io.out(`${t.kargs.join(' ')}\n`);
      return;
    }
    const r = await changeKargs(ctx, (before) => (editor ? editInEditor(before) : editKargs(before, edits)), { dryRun: args.values['dry-run'] === true });
    const staged = r.result === 'staged' || r.result === 'changed-staged';
    if (staged && args.values.reboot === true) await finalize(ctx);
    if (args.json) printJson(io, r);
    else {
      const msg = {
        staged: `staged version ${r.version} again in slot ${r.slot} with the new kernel arguments; it boots next`,
        'changed-staged': `changed the kernel arguments of the staged version ${r.version} in slot ${r.slot}; it boots next`,
        unchanged: 'kernel arguments unchanged; nothing staged',
        'dry-run': `would stage version ${r.version} in slot ${r.slot} with these kernel arguments`,
      }[r.result];
      io.out(`${msg}\n  before: ${r.kargs_before.join(' ')}\n  after:  ${r.kargs.join(' ')}\n`);
    }
    if (staged && args.values.reboot === true) {
      if (!args.json) io.out(ctx.sysroot.realDevice ? 'rebooting\n' : 'reboot now (in a test sysroot: larch sim-boot; the request is recorded in S/larch/daemon/reboot-requested.json)\n');
      await rebootFor(ctx.sysroot)(`kargs --reboot: version ${r.version} staged in slot ${r.slot} with new kernel arguments`);
    }
  },
};

/** --append/--delete/--replace in command-line order. */
function kargsEdits(args: ParsedArgs): KargsEdit[] {
  return (args.ordered ?? []).flatMap(({ name, value }) => ((EDIT_OPS as readonly string[]).includes(name) && value !== undefined ? [{ op: name as KargsEdit['op'], arg: value }] : []));
}

/** The list edited by the user: one argument per line, '#' comments; an empty result changes nothing. */
function editInEditor(before: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'larch-kargs-'));
  const file = join(dir, 'kargs');
  try {
    writeFileSync(file, `# The kernel arguments of the next deployment, one per line. Lines starting with '#' are ignored.\n# An empty list changes nothing. larch.slot= is the bootloader's own.\n${before.join('\n')}\n`);
    const editor = process.env.VISUAL || process.env.EDITOR || 'vi';
    const r = spawnSync('/bin/sh', ['-c', `${editor} "$1"`, 'editor', file], { stdio: 'inherit' });
    if (r.error || r.status !== 0) throw new LarchError('USAGE', `kargs --editor: the editor '${editor}' ${r.error ? `could not run: ${r.error.message}` : `exited ${r.status}`}; nothing changed`, { hint: 'set VISUAL or EDITOR to an editor on this device', data: { command: 'kargs', editor } });
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => !l.trimStart().startsWith('#'));
    const after = lines.flatMap((l, i) => splitCommandLine(l, `kargs --editor line ${i + 1}`));
    return after.length === 0 ? before : after;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const kargsCommands: Command[] = [locked(kargsCommand)];
