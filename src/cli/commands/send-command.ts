/** larch command: send a signed command to one device over MQTT and print its answer. */
import { splitRebaseTarget } from '../../agent/remotes.ts';
import { LarchError } from '../../errors.ts';
import { COMMANDS, type CommandArgs, type CommandName, MessageFormatError, isValidDeviceId, parseCommandArgs } from '../../mqtt/format.ts';
import { sendCommand } from '../../server/mqtt-publisher.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, intOption, list, need, opt, positionals, printJson } from '../command.ts';
import { parseDuration } from '../option-values.ts';
import { MQTT_AUTH_HELP, MQTT_AUTH_OPTIONS, mqttSettings } from '../mqtt-options.ts';

export const sendCommandCmd: Command = {
  name: 'command',
  summary: 'send a signed command (check, upgrade, deploy, rebase, rollback, cancel, ...) to one device over MQTT',
  positionals: true,
  options: { mqtt: { type: 'string' }, device: { type: 'string' }, 'sign-key': { type: 'string', multiple: true }, 'expires-in': { type: 'string' }, nonce: { type: 'string' }, issued: { type: 'string' }, wait: { type: 'string' }, 'allow-downgrade': { type: 'boolean' }, 'retry-failed': { type: 'boolean' }, ...MQTT_AUTH_OPTIONS },
  help: `NAME
  larch command - send a signed command to a device

SYNOPSIS
  larch command --mqtt URL --device ID --sign-key K.key COMMAND [ARGS]
                [--expires-in DURATION] [--wait SECONDS] [--nonce N] [--issued T] [--json]

  COMMAND [ARGS] is one of
    check | upgrade | rollback | reboot | cleanup | pin | unpin | cancel
    deploy VERSION|COMMIT|PREFIX [--allow-downgrade] [--retry-failed]
    rebase [REMOTE:]REF
    install PKG... | uninstall PKG...

DESCRIPTION
  Publishes a signed command (QoS 1) on larch/v1/device/ID/cmd and waits for the device's
  answer on .../cmd/result. The device runs it only when it is signed by a key it trusts,
  addressed to it, within its validity window and its nonce was never used before; every
  refusal is answered and journaled (docs/formats.md §13). A device that is offline gets the
  command from its persistent session when it reconnects, if it has not expired by then.

  Each runs as the device command of the same name does (larch deploy, rebase, pin, ...);
  the arguments are signed with the command ("args", formats.md §13.3), and an agent older
  than them refuses the command as malformed. rebase names a remote the device has already
  (remotes are added on the device, larch remote add). cancel, like rollback, does not wait
  behind the device's download: it stops the job in progress as 'larch cancel' does, and its
  answer says what it found (output.result: cancelled, unstaged, completed or idle).

OPTIONS
  --mqtt URL             the broker (required)
  --device ID            the device id (required)
  --sign-key K.key       sign with this key (required; repeatable)
  --expires-in DURATION  validity from now: seconds, or with s, m, h, d (default 5m, at most 1d)
  --wait SECONDS         wait this long for the answer (default 30; 0: do not wait)
  --nonce N              use this nonce (16-64 of A-Z a-z 0-9 _ -; default random): to test replays
  --issued T             issue time in seconds since the epoch (default now): to test stale commands
  --allow-downgrade      deploy: allow an older release (args.allow_downgrade)
  --retry-failed         deploy: stage a release that failed on the device (args.retry_failed)
${MQTT_AUTH_HELP}
  --json                 print {"command": {cmd, device, nonce, issued_s, expires_s}, "result":
                         null | {nonce, cmd, result: ok|refused|error, reason, code, message, output}}

EXIT STATUS
  0 the device ran it; 4 the device refused it (result.reason); the command's error code when
  it failed on the device; 9 broker unreachable or no answer in time.

EXAMPLES
  larch command --mqtt mqtt://broker:1883 --device gw-0042 --sign-key ops.key upgrade
  larch command --mqtt mqtt://broker:1883 --device gw-0042 --sign-key ops.key deploy 1.4
  larch command --mqtt mqtt://broker:1883 --device gw-0042 --sign-key ops.key rebase beta:os/beta
`,
  async run(args, io) {
    const [cmd, ...words] = args.positionals;
    if (cmd === undefined) positionals(args, ['command'], 'command');
    if (!(COMMANDS as readonly string[]).includes(cmd)) throw new LarchError('USAGE', `command: unknown command '${cmd}'; one of ${COMMANDS.join(', ')}`, { data: { command: 'command', value: cmd, allowed: COMMANDS } });
    const commandArgs = argsOf(cmd as CommandName, words, { allowDowngrade: args.values['allow-downgrade'] === true, retryFailed: args.values['retry-failed'] === true });
    const device = need(args, 'device', 'command');
    if (!isValidDeviceId(device)) throw new LarchError('USAGE', `command: '${device}' is not a valid device id`, { data: { command: 'command', option: 'device', value: device } });
    const keyFiles = list(args, 'sign-key');
    if (keyFiles.length === 0) throw new LarchError('USAGE', 'command: --sign-key is required (devices refuse unsigned commands)', { data: { command: 'command', option: 'sign-key' } });
    const nonce = opt(args, 'nonce');
    if (nonce !== undefined && !/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) throw new LarchError('USAGE', 'command: --nonce must be 16-64 of A-Z a-z 0-9 _ -', { data: { command: 'command', option: 'nonce', value: nonce } });
    const expiresInS = parseDuration(opt(args, 'expires-in') ?? '5m', '--expires-in');
    const waitS = intOption(opt(args, 'wait'), 'wait', 'command') ?? 30;
    const r = await sendCommand({ signKeys: await Promise.all(keyFiles.map(readSecretKey)), mqtt: mqttSettings(args, 'command'), device, cmd: cmd as CommandName, args: commandArgs, nonce, issued: intOption(opt(args, 'issued'), 'issued', 'command'), expiresInS, waitMs: waitS * 1000 });
    // The signed command carries seconds (formats.md §13); --json names them so.
    if (args.json) printJson(io, { ...r, command: (({ issued, expires, ...c }) => ({ ...c, issued_s: issued, expires_s: expires }))(r.command) });
    else io.out(r.result ? `${device}: ${r.result.result}${r.result.reason ? ` (${r.result.reason})` : ''}: ${r.result.message}\n` : `sent ${cmd} to ${device} (nonce ${r.command.nonce})\n`);
    if (r.result && r.result.result === 'refused') return 4;
    if (r.result && r.result.result === 'error') {
      const code = r.result.code as keyof typeof import('../../errors.ts').ERROR_CODES;
      const { ERROR_CODES } = await import('../../errors.ts');
      return ERROR_CODES[code]?.exit ?? 1;
    }
  },
};

/**
 * The signed arguments of a command from its words on the command line, checked as the device
 * checks them (parseCommandArgs), so a mistake is a usage error here, not a refusal there.
 * @throws USAGE
 */
export function argsOf(cmd: CommandName, words: string[], flags: { allowDowngrade: boolean; retryFailed: boolean }): CommandArgs | undefined {
  const usage = (message: string) => new LarchError('USAGE', `command ${cmd}: ${message}`, { hint: "run 'larch command --help'", data: { command: 'command', cmd, args: words } });
  if ((flags.allowDowngrade || flags.retryFailed) && cmd !== 'deploy') throw usage('--allow-downgrade and --retry-failed are for deploy');
  let raw: unknown;
  if (cmd === 'deploy') {
    if (words.length !== 1) throw usage('give one VERSION, COMMIT or PREFIX');
    raw = { version: words[0], ...(flags.allowDowngrade ? { allow_downgrade: true } : {}), ...(flags.retryFailed ? { retry_failed: true } : {}) };
  } else if (cmd === 'rebase') {
    if (words.length !== 1) throw usage('give one [REMOTE:]REF');
    const { remote, ref } = splitRebaseTarget(words[0]);
    raw = remote === null ? { ref } : { remote, ref };
  } else if (cmd === 'install' || cmd === 'uninstall') {
    if (words.length === 0) throw usage('give the package names');
    raw = { packages: words };
  } else if (words.length > 0) {
    throw usage('takes no arguments');
  }
  try {
    return parseCommandArgs(cmd, raw);
  } catch (err) {
    if (err instanceof MessageFormatError) throw usage(err.message);
    throw err;
  }
}
