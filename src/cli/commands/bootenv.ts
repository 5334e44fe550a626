/**
 * larch bootenv list / get / set / unset / init: the bootloader environment (U-Boot env or
 * grubenv), as fw_printenv/fw_setenv and grub-editenv see it, or the boot state larch keeps in
 * systemd-boot's entries on an ESP, as the same variables.
 */
import { readFile } from 'node:fs/promises';
import { LarchError, fromSystemError, quash } from '../../errors.ts';
import { blsEnvStore } from '../../bootcount/bls-store.ts';
import { type EnvStore, grubEnvStore, openUbootEnvStore } from '../../bootcount/env-store.ts';
import { parseEnvText } from '../../bootcount/uboot-env.ts';
import { type Command, type OptionSpec, type ParsedArgs, opt, positionals, printJson } from '../command.ts';

const STORE_OPTIONS: OptionSpec = {
  uboot: { type: 'string' },
  grub: { type: 'string' },
  'systemd-boot': { type: 'string' },
  'big-endian': { type: 'boolean' },
  lock: { type: 'string' },
};

/** The synopsis line of a subcommand, wrapped under its name. */
function synopsis(sub: string, args: string, tail = ''): string {
  const head = `larch bootenv ${sub}`;
  return `${head} ${args}(--uboot FW_ENV_CONFIG | --grub GRUBENV | --systemd-boot ESP)\n  ${' '.repeat(head.length)} [--big-endian] [--lock FILE]${tail} [--json]`;
}

const STORE_HELP = `  --uboot FW_ENV_CONFIG  the U-Boot env described by this fw_env.config (the file
                         fw_printenv -c reads: DEVICE OFFSET ENVSIZE [SECTORSIZE [SECTORS]],
                         one line = single copy, two lines = redundant; sizes are hex)
  --grub GRUBENV         GRUB's environment block file (e.g. /boot/grub/grubenv)
  --systemd-boot ESP     the boot state larch keeps on this EFI system partition (a mounted
                         directory): the names of its entries loader/entries/larch-*.conf
                         (tries as systemd-boot counts them), the rescue entry and
                         loader/larch.env, read and written as the variables the other
                         stores hold (BOOT_ORDER, BOOT_A_GOOD, ...; docs/boot.md)
  --big-endian           the U-Boot env's CRC is big-endian (mkenvimage -b boards)
  --lock FILE            flock this file instead of the default: /var/lock/fw_printenv.lock
                         for U-Boot (the lock fw_printenv/fw_setenv take),
                         /var/lock/larch-grubenv.lock for GRUB, /var/lock/larch-bls.lock
                         for systemd-boot`;

const COMMON_EXIT = `  2 usage; 4 (INVALID_INPUT) bad fw_env.config line or variable name; 7 (LOCKED) another
  writer held the lock for 30 s; 13 (ENV_CORRUPT) no valid copy of the env (blank or
  damaged storage), or (ENV_FULL) the variables do not fit; 9 (IO) a write did not read back.`;

async function openStore(args: ParsedArgs, cmd: string): Promise<EnvStore> {
  const uboot = opt(args, 'uboot');
  const grub = opt(args, 'grub');
  const esp = opt(args, 'systemd-boot');
  if ([uboot, grub, esp].filter((o) => o !== undefined).length !== 1) {
    throw new LarchError('USAGE', `${cmd}: give exactly one of --uboot FW_ENV_CONFIG, --grub GRUBENV and --systemd-boot ESP`, { hint: `run 'larch ${cmd} --help'`, data: { command: cmd, options: ['uboot', 'grub', 'systemd-boot'] } });
  }
  const bigEndian = args.values['big-endian'] === true;
  if (uboot === undefined && bigEndian) throw new LarchError('USAGE', `${cmd}: --big-endian applies to --uboot only`, { data: { command: cmd, option: 'big-endian' } });
  const lockPath = opt(args, 'lock');
  if (uboot !== undefined) return openUbootEnvStore(uboot, { lockPath, byteOrder: bigEndian ? 'big' : 'little' });
  if (esp !== undefined) return blsEnvStore(esp, { lockPath });
  return grubEnvStore(grub as string, { lockPath });
}

/** NAME=VALUE arguments, split at the first '='. @throws USAGE */
function assignments(args: ParsedArgs, cmd: string): [string, string][] {
  return args.positionals.map((a) => {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new LarchError('USAGE', `${cmd}: expected NAME=VALUE, got '${quash(a)}'`, { hint: `run 'larch ${cmd} --help'`, data: { command: cmd, value: a } });
    return [a.slice(0, eq), a.slice(eq + 1)];
  });
}

const asObject = (vars: Map<string, string>) => Object.fromEntries(vars);

export const bootenvList: Command = {
  name: 'bootenv list',
  summary: 'print every variable of the bootloader environment',
  options: STORE_OPTIONS,
  help: `NAME
  larch bootenv list - print every variable of the bootloader environment

SYNOPSIS
  ${synopsis('list', '')}

DESCRIPTION
  Prints one NAME=VALUE line per variable, in stored order, as 'fw_printenv' and
  'grub-editenv GRUBENV list' do. For a redundant U-Boot env the valid copy with the newer
  flags is read (a copy with a bad CRC is skipped). Values are printed as they are, so a
  value holding a newline spans two lines: use --json for exact values.

OPTIONS
${STORE_HELP}
  --json                 print {"source", "vars": {NAME: VALUE}}

EXIT STATUS
  0 printed; 3 (NOT_FOUND) fw_env.config or the grubenv file does not exist;
${COMMON_EXIT}

EXAMPLES
  larch bootenv list --uboot /etc/fw_env.config
  larch bootenv list --grub /boot/grub/grubenv --json
  larch bootenv list --systemd-boot /boot --json
`,
  async run(args, io) {
    positionals(args, [], 'bootenv list');
    const store = await openStore(args, 'bootenv list');
    const vars = await store.read();
    if (args.json) return printJson(io, { source: store.describe(), vars: asObject(vars) });
    for (const [k, v] of vars) io.out(`${k}=${v}\n`);
  },
};

export const bootenvGet: Command = {
  name: 'bootenv get',
  summary: 'print the value of one bootloader variable',
  options: STORE_OPTIONS,
  positionals: true,
  help: `NAME
  larch bootenv get - print the value of one bootloader variable

SYNOPSIS
  ${synopsis('get', 'NAME ')}

DESCRIPTION
  Prints the value of NAME alone followed by a newline, as 'fw_printenv -n NAME' does.
  Unlike fw_printenv, a variable that is not set is an error (exit 3), so scripts can tell
  it from an empty value.

OPTIONS
${STORE_HELP}
  --json                 print {"name", "value"}

EXIT STATUS
  0 printed; 3 (NOT_FOUND) NAME is not set (data.name), or a file does not exist;
${COMMON_EXIT}

EXAMPLES
  larch bootenv get BOOT_ORDER --uboot /etc/fw_env.config
  slot=$(larch bootenv get ORDER --grub /boot/grub/grubenv | cut -d' ' -f1)
`,
  async run(args, io) {
    const [name] = positionals(args, ['name'], 'bootenv get');
    const store = await openStore(args, 'bootenv get');
    const value = (await store.read()).get(name);
    if (value === undefined) {
      throw new LarchError('NOT_FOUND', `variable '${quash(name)}' is not set in ${store.describe()}`, { data: { name }, hint: "'larch bootenv list' shows the variables that are set" });
    }
    if (args.json) return printJson(io, { name, value });
    io.out(`${value}\n`);
  },
};

export const bootenvSet: Command = {
  name: 'bootenv set',
  summary: 'set bootloader variables in one atomic update',
  options: STORE_OPTIONS,
  positionals: true,
  help: `NAME
  larch bootenv set - set bootloader variables in one atomic update

SYNOPSIS
  ${synopsis('set', 'NAME=VALUE... ')}

DESCRIPTION
  Reads the whole environment, applies every NAME=VALUE (split at the first '='; an empty
  VALUE unsets NAME, as U-Boot treats 'NAME=' as a delete), and writes it back in one
  update, under the lock fw_setenv takes. Nothing is written when nothing changes.
  Redundant U-Boot env: the other copy is written with flags + 1, then read back; a power
  cut leaves the previous copy in charge. Single-copy env files and grubenv are replaced
  atomically (temp file, fsync, rename); block devices are written in place.
  A missing grubenv is created (1024 bytes), as grub-editenv does. U-Boot storage with no
  valid env is refused: U-Boot would boot with only the variables written and drop its
  defaults; initialise it with 'larch bootenv init --defaults FILE'.

OPTIONS
${STORE_HELP}
  --json                 print {"source", "changed", "vars": {NAME: VALUE}} (all variables
                         after the update)

EXIT STATUS
  0 written (or nothing to change); 3 (NOT_FOUND) fw_env.config does not exist;
${COMMON_EXIT}

EXAMPLES
  larch bootenv set BOOT_ORDER='B A' BOOT_B_LEFT=3 --uboot /etc/fw_env.config
  larch bootenv set B_OK=1 B_TRY=0 ORDER='B A' --grub /boot/grub/grubenv
`,
  async run(args, io) {
    const pairs = assignments(args, 'bootenv set');
    if (pairs.length === 0) throw new LarchError('USAGE', 'bootenv set: expected at least one NAME=VALUE', { hint: "run 'larch bootenv set --help'", data: { command: 'bootenv set' } });
    const store = await openStore(args, 'bootenv set');
    const r = await store.update((vars) => {
      for (const [k, v] of pairs) {
        if (v === '') vars.delete(k);
        else vars.set(k, v);
      }
    });
    if (args.json) printJson(io, { source: store.describe(), changed: r.changed, vars: asObject(r.vars) });
  },
};

export const bootenvUnset: Command = {
  name: 'bootenv unset',
  summary: 'remove bootloader variables in one atomic update',
  options: STORE_OPTIONS,
  positionals: true,
  help: `NAME
  larch bootenv unset - remove bootloader variables in one atomic update

SYNOPSIS
  ${synopsis('unset', 'NAME... ')}

DESCRIPTION
  Removes every NAME in one update, written as 'bootenv set' writes. Names that are not set
  are ignored (as fw_setenv and grub-editenv do); nothing is written when none was set.

OPTIONS
${STORE_HELP}
  --json                 print {"source", "changed", "vars": {NAME: VALUE}}

EXIT STATUS
  0 removed (or nothing to remove); 3 (NOT_FOUND) fw_env.config or grubenv does not exist;
${COMMON_EXIT}

EXAMPLES
  larch bootenv unset boot_counter --grub /boot/grub/grubenv
`,
  async run(args, io) {
    if (args.positionals.length === 0) throw new LarchError('USAGE', 'bootenv unset: expected at least one NAME', { hint: "run 'larch bootenv unset --help'", data: { command: 'bootenv unset' } });
    const store = await openStore(args, 'bootenv unset');
    const r = await store.update(async (vars) => {
      for (const name of args.positionals) vars.delete(name);
    });
    if (args.json) printJson(io, { source: store.describe(), changed: r.changed, vars: asObject(r.vars) });
  },
};

export const bootenvInit: Command = {
  name: 'bootenv init',
  summary: 'write a whole bootloader environment onto blank or damaged storage',
  options: { ...STORE_OPTIONS, defaults: { type: 'string' }, force: { type: 'boolean' } },
  positionals: true,
  help: `NAME
  larch bootenv init - write a whole bootloader environment onto blank or damaged storage

SYNOPSIS
  ${synopsis('init', '', ' [--defaults FILE] [--force]\n                     [NAME=VALUE...]')}

DESCRIPTION
  Writes the variables of FILE (NAME=VALUE lines, '#' comments, as mkenvimage and
  'fw_setenv -f' read; e.g. /etc/u-boot-initial-env, or 'fw_printenv' output of a good
  board) plus the NAME=VALUE arguments as the whole environment. On U-Boot this must be the
  complete env: U-Boot drops every variable the stored env lacks (bootcmd included).
  A redundant U-Boot env gets both copies (copy 0 flags 1, copy 1 flags 0); missing env
  files are created. Storage that already holds a valid env is refused unless --force,
  which replaces it (through the normal redundant-safe write). For GRUB, init creates an
  empty (or given) block, like 'grub-editenv FILE create'.

OPTIONS
${STORE_HELP}
  --defaults FILE        the variables to write (NAME=VALUE lines)
  --force                replace an env that is valid (or a damaged grubenv)
  --json                 print {"source", "vars": {NAME: VALUE}}

EXIT STATUS
  0 written; 3 (NOT_FOUND) FILE or fw_env.config does not exist; 11 (EXISTS) the storage
  already holds a valid env (or a grubenv file exists) and --force was not given;
${COMMON_EXIT}

EXAMPLES
  larch bootenv init --uboot /etc/fw_env.config --defaults /etc/u-boot-initial-env \\
                     BOOT_ORDER='A B' BOOT_A_LEFT=3 BOOT_B_LEFT=3
  larch bootenv init --grub /boot/grub/grubenv ORDER='A B' A_OK=1 A_TRY=0 B_OK=1 B_TRY=0
`,
  async run(args, io) {
    const pairs = assignments(args, 'bootenv init');
    const defaultsPath = opt(args, 'defaults');
    let vars = new Map<string, string>();
    if (defaultsPath !== undefined) {
      let text: string;
      try {
        text = await readFile(defaultsPath, 'utf8');
      } catch (err) {
        throw fromSystemError(err, 'read defaults', defaultsPath);
      }
      vars = parseEnvText(text, `defaults '${defaultsPath}'`);
    }
    for (const [k, v] of pairs) {
      if (v === '') vars.delete(k);
      else vars.set(k, v);
    }
    const store = await openStore(args, 'bootenv init');
    if (opt(args, 'uboot') !== undefined && vars.size === 0) {
      throw new LarchError('USAGE', 'bootenv init: no variables to write; an empty U-Boot env would leave U-Boot without bootcmd', { hint: 'pass --defaults FILE with the board\'s default env (e.g. /etc/u-boot-initial-env)', data: { command: 'bootenv init', option: 'defaults' } });
    }
    await store.init(vars, { force: args.values.force === true });
    if (args.json) printJson(io, { source: store.describe(), vars: asObject(vars) });
  },
};

export const bootenvCommands: Command[] = [bootenvList, bootenvGet, bootenvSet, bootenvUnset, bootenvInit];
