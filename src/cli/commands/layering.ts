/**
 * The package layering commands (rpm-ostree's install, uninstall and override): `larch install`,
 * `larch uninstall`, `larch override replace|remove|reset`. Each edits the device's layering
 * request and stages base + layer as a new deployment (agent/layering/layer.ts).
 */
import { LarchError } from '../../errors.ts';
import { type LayerOutcome, type LayerVerb, changeLayering } from '../../agent/layering/layer.ts';
import { isPackageName } from '../../agent/layering/request.ts';
import { DEFAULT_SYSROOT } from '../../agent/sysroot.ts';
import { type Command, type Io, type ParsedArgs, printJson } from '../command.ts';
import { context, locked } from '../device-context.ts';

const OPTIONS = { sysroot: { type: 'string' as const }, 'dry-run': { type: 'boolean' as const } };

const COMMON_HELP = `OPTIONS
  --sysroot S  the device's root filesystem, or a directory standing in for one
               (default ${DEFAULT_SYSROOT})
  --dry-run    build nothing: print what would change (packages added, removed, replaced,
               dependencies included, as apt plans it on the base); nothing is staged and
               nothing enters the repo (a given .deb file is kept in the cache)
  --json       print {"result": staged|dry-run|no-change, "from", "to", "base": {commit,
               version}, "request": {packages, local_packages, override_replace,
               override_remove}, "changes": {added, removed, replaced}, "layered",
               "overrides": {replaced, removed}}

HOW IT WORKS
  The new tree is the booted deployment's vendor base commit plus the whole layering request
  (what install and override asked for, kept in S/larch/deploy/SLOT.origin.json), built in an
  isolated root (a checkout under S/larch/layering/build, the tree's own apt-get and dpkg
  chrooted in a mount and PID namespace: no service starts, /var is scratch). It is committed
  as a local derived commit and staged in the other slot with the configured tries, as
  upgrade stages; the booted slot is never touched. Confirm it with boot-check (or sim-boot)
  after the reboot; a failed boot falls back. With a deployment already staged and not yet
  booted, its request is the one changed and the tree is rebuilt from the booted base.
  'larch upgrade' re-applies the layer on each new vendor base. docs/layering.md has the model.

EXIT STATUS
  0 staged (or dry run, or nothing to change); 2 usage; 3 (NOT_FOUND) no such file, package
  not layered or not overridden; 4 (INVALID_INPUT) not a .deb, a base that is not
  layering-capable; 6 the base's signature; 7 locked; 8 (NO_SPACE) no space to build or
  stage; 14 (REFUSED) booted-unconfirmed, wrong-ref, below-release-floor; 15 (LAYER_FAILED)
  apt or dpkg failed: data.reason not-found, unresolvable, removes-base, script-failed,
  network, apt-failed. On any failure nothing is staged. docs/cli.md lists them all.`;

function names(args: ParsedArgs, verb: string, opts: { files?: 'only' | 'allowed'; atLeastOne?: boolean } = {}): { names: string[]; files: string[] } {
  const files = args.positionals.filter((a) => a.endsWith('.deb'));
  const pkgs = args.positionals.filter((a) => !a.endsWith('.deb'));
  if ((opts.atLeastOne ?? true) && args.positionals.length === 0) throw new LarchError('USAGE', `${verb}: name at least one ${opts.files === 'only' ? 'FILE.deb' : 'package'}`, { hint: `larch ${verb} --help`, data: { command: verb } });
  if (opts.files === 'only' && pkgs.length > 0) throw new LarchError('USAGE', `${verb} takes .deb files, not '${pkgs[0]}'`, { hint: `larch ${verb} FILE.deb...`, data: { command: verb, value: pkgs[0] } });
  if (!opts.files && files.length > 0) throw new LarchError('USAGE', `${verb} takes package names, not '${files[0]}'`, { hint: `larch ${verb} PKG...`, data: { command: verb, value: files[0] } });
  const bad = pkgs.find((p) => !isPackageName(p));
  if (bad !== undefined) throw new LarchError('USAGE', `${verb}: '${bad}' is not a Debian package name`, { hint: 'a package name is lower-case letters, digits and + - . (a .deb file ends in .deb)', data: { command: verb, value: bad } });
  return { names: pkgs, files };
}

function print(io: Io, r: LayerOutcome, args: ParsedArgs): void {
  if (args.json) return printJson(io, r);
  if (r.result === 'no-change') return io.out(`nothing to change: the device already has that layering (base ${r.base.version})\n`);
  const c = r.changes;
  const lines = [
    ...c.added.map((p) => `  added    ${p.name} ${p.version}`),
    ...c.replaced.map((p) => `  replaced ${p.name} ${p.from} -> ${p.to}`),
    ...c.removed.map((p) => `  removed  ${p.name} ${p.version}`),
  ];
  if (r.result === 'dry-run') {
    io.out(`would stage base ${r.base.version} (${r.base.commit.slice(0, 12)}) with:\n${lines.join('\n') || '  (the base as it is)'}\n`);
    return;
  }
  io.out(`staged ${r.to!.commit === r.base.commit ? `the vendor base ${r.base.version}` : `layered commit ${r.to!.commit.slice(0, 12)} (base ${r.base.version})`} in slot ${r.to!.slot}; it boots next\n${lines.join('\n')}${lines.length ? '\n' : ''}`);
  io.out(ctxReboot(args));
}

const ctxReboot = (args: ParsedArgs) => (typeof args.values.sysroot === 'string' ? 'reboot to use it (in a test sysroot: larch sim-boot)\n' : 'reboot to use it\n');

function layerCommand(verb: LayerVerb, summary: string, synopsis: string, description: string, parseArgs: (args: ParsedArgs) => { names: string[]; files: string[] }): Command {
  return locked({
    name: verb,
    summary,
    options: OPTIONS,
    positionals: true,
    help: `NAME\n  larch ${verb} - ${summary}\n\nSYNOPSIS\n  larch ${synopsis} [--sysroot S] [--dry-run] [--json]\n\nDESCRIPTION\n${description}\n\n${COMMON_HELP}\n`,
    async run(args, io) {
      const { names: n, files } = parseArgs(args);
      const r = await changeLayering(await context(args, io), { verb, names: n, files }, { dryRun: args.values['dry-run'] === true });
      print(io, r, args);
    },
  });
}

export const layeringCommands: Command[] = [
  layerCommand('install', 'layer packages on the vendor tree (from the apt sources, or .deb files)', 'install PKG|FILE.deb...', `  Adds packages to the device's layer: names are resolved from the apt sources of the booted
  deployment (/etc/apt/sources.list and sources.list.d, keys in /etc/apt/trusted.gpg.d); a
  .deb file is installed as given (and kept, so the layer rebuilds offline). Dependencies the
  base lacks come along; apt resolves them, dpkg runs the maintainer scripts. A package that
  would remove a base package is refused (LAYER_FAILED, removes-base).`, (a) => names(a, 'install', { files: 'allowed' })),
  layerCommand('uninstall', 'drop layered packages', 'uninstall PKG...', `  Drops packages from the device's layer (what install added; their dependencies go with
  them). With nothing left layered and no override, the vendor base is staged again.`, (a) => names(a, 'uninstall')),
  layerCommand('override replace', "replace base packages by the given .deb files", 'override replace FILE.deb...', `  Replaces the base's package of the same name by the given .deb (another version, older or
  newer), kept across upgrades until 'larch override reset'.`, (a) => names(a, 'override replace', { files: 'only' })),
  layerCommand('override remove', 'remove base packages from the tree', 'override remove PKG...', `  Leaves base packages out of the device's tree, kept across upgrades until 'larch override
  reset'. Refused when another base package needs them (LAYER_FAILED, removes-base).`, (a) => names(a, 'override remove')),
  layerCommand('override reset', 'bring base packages back (drop overrides)', 'override reset [PKG...]', `  Drops the overrides of the named packages (all of them with no name): the base's version
  comes back.`, (a) => names(a, 'override reset', { atLeastOne: false })),
];
