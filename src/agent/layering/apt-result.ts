/**
 * Reading what apt said: its simulated transaction (`apt-get -s`: Inst and Remv lines) and the
 * cause of a failed run, as the reasons of LAYER_FAILED. Pure.
 */

export interface PlannedChange {
  name: string;
  /** The installed version (Remv, or an Inst that replaces one), null for a new package. */
  from: string | null;
  /** The version apt installs, null for a removal. */
  to: string | null;
}

/** The Inst and Remv lines of `apt-get -s install ...` (apt's "simulation" output). */
export function parseSimulation(stdout: string): PlannedChange[] {
  const out: PlannedChange[] = [];
  for (const line of stdout.split('\n')) {
    const inst = /^Inst (\S+) (?:\[(\S+)\] )?\((\S+)/.exec(line);
    if (inst) out.push({ name: inst[1].replace(/:[a-z0-9]+$/, ''), from: inst[2] ?? null, to: inst[3] });
    const remv = /^Remv (\S+)(?: \[(\S+)\])?/.exec(line);
    if (remv) out.push({ name: remv[1].replace(/:[a-z0-9]+$/, ''), from: remv[2] ?? null, to: null });
  }
  return out;
}

export type FailureReason = 'not-found' | 'unresolvable' | 'script-failed' | 'no-space' | 'network' | 'apt-failed';

/** Why apt or dpkg failed, from its output, and the lines that say so. */
export function classifyFailure(output: string): { reason: FailureReason; detail: string } {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  const pick = (re: RegExp) => lines.filter((l) => re.test(l)).slice(0, 3).join('; ');
  const rules: [FailureReason, RegExp][] = [
    ['no-space', /No space left on device|You don't have enough free space/],
    ['script-failed', /(script|subprocess) (subprocess )?returned error exit status|installed .* subprocess returned error/],
    ['not-found', /Unable to locate package|has no installation candidate|Couldn't find any package/],
    ['unresolvable', /unmet dependencies|Depends:|Unable to correct problems|held broken packages|Conflicts:|Breaks:/],
    ['network', /Failed to fetch|Could not connect|Temporary failure resolving|Connection failed|Unable to fetch some archives/],
  ];
  for (const [reason, re] of rules) {
    const detail = pick(re);
    if (detail) return { reason, detail };
  }
  return { reason: 'apt-failed', detail: lines.filter((l) => /^E:/.test(l)).slice(-3).join('; ') || lines.slice(-3).join('; ') };
}
