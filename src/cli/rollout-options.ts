/** The rollout options of `larch announce` and `larch serve --sign-key --mqtt`: a percentage, a plan over time, a halt rule. */
import { LarchError } from '../errors.ts';
import type { RolloutChoices } from '../server/rollout-rules.ts';
import { type ParsedArgs, intOption, opt } from './command.ts';
import { parseDuration, parseRollout } from './option-values.ts';

/** Devices that must have decided before the halt rule judges (AWS IoT's minNumberOfExecutedThings). */
export const DEFAULT_HALT_MIN_DEVICES = 10;

export const ROLLOUT_OPTIONS = { rollout: { type: 'string' as const }, 'rollout-over': { type: 'string' as const }, 'halt-on-failures': { type: 'string' as const }, 'halt-min-devices': { type: 'string' as const } };

export const ROLLOUT_HELP = `  --rollout PCT          0-100, the share of the fleet that acts now (with --rollout-over:
                         where the plan starts, default 0)
  --rollout-over DURATION  widen from PCT to 100% over DURATION (e.g. 90m, 24h, 7d), in at most
                         100 steps no closer than 10 s, each announced by a running
                         'larch serve --sign-key K --mqtt URL' on R; off removes the plan
  --halt-on-failures N%  halt the release when more than N% (0 < N < 100, two decimals) of the devices
                         that decided (booted it good, fell back or failed) fell back or failed:
                         the summary then lists the last good release and it is announced to the
                         devices not yet moved (carried out by 'larch serve --sign-key --mqtt');
                         off removes the rule
  --halt-min-devices M   judge only once M devices decided (default ${DEFAULT_HALT_MIN_DEVICES})`;

/** The choices the options name (undefined where an option is not given; null for 'off'). @throws USAGE */
export function rolloutChoices(args: ParsedArgs, cmd: string): RolloutChoices {
  const c: RolloutChoices = {};
  const rollout = parseRollout(opt(args, 'rollout'));
  if (rollout !== undefined) c.rollout = rollout;
  const over = opt(args, 'rollout-over');
  if (over !== undefined) c.over_s = over === 'off' ? null : parseDuration(over, '--rollout-over');
  const halt = opt(args, 'halt-on-failures');
  const min = intOption(opt(args, 'halt-min-devices'), 'halt-min-devices', cmd, 1);
  if (halt === undefined) {
    if (min !== undefined) throw new LarchError('USAGE', `${cmd}: --halt-min-devices goes with --halt-on-failures N%`, { data: { command: cmd, options: ['halt-min-devices', 'halt-on-failures'] } });
  } else if (halt === 'off') {
    c.halt_rule = null;
  } else {
    c.halt_rule = { failures_pct: parseFailurePct(halt, cmd), min_devices: min ?? DEFAULT_HALT_MIN_DEVICES };
  }
  return c;
}

function parseFailurePct(text: string, cmd: string): number {
  const m = /^(\d{1,2}(?:\.\d{1,2})?)%?$/.exec(text.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n > 0 && n < 100)) throw new LarchError('USAGE', `${cmd}: --halt-on-failures must be a percentage above 0 and below 100 (two decimals at most, e.g. 20%), or off; got '${text}'`, { data: { command: cmd, option: 'halt-on-failures', value: text } });
  return n;
}
