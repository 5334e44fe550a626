/**
 * What this agent may install, and through which release (pure: no I/O). docs/fleet.md, "Barriers
 * and agent versions"; docs/formats.md §10, §12.
 *
 * - `larch.min_agent_version` (a commit's metadata, tstr): the oldest larch agent that can apply
 *   the commit (it needs a newer format, a new boot script, ...). An older agent refuses it before
 *   anything is written, naming the barrier to go through first when the summary declares one.
 * - Barrier releases (the summary's refs[REF].barriers, FCOS style): a device whose booted commit
 *   is older than a barrier is offered the oldest such barrier, not the head. Older: by
 *   `larch.release` when both commits carry one, else by the commit timestamp.
 */
import { LarchError, quash } from '../errors.ts';
import { compareDebianVersions, parseDebianVersion } from '../packages/debian-version.ts';
import type { SummaryBarrier, SummaryRef } from '../protocol/summary.ts';
import type { CborValue } from '../store/cbor.ts';

export const MIN_AGENT_VERSION_KEY = 'larch.min_agent_version';
export const RELEASE_KEY = 'larch.release';

/** The commit's `larch.release` counter, or undefined. */
export function releaseOf(metadata: Map<string, CborValue>): number | undefined {
  const r = metadata.get(RELEASE_KEY);
  return typeof r === 'number' && Number.isSafeInteger(r) && r >= 0 ? r : undefined;
}

/** Where a device stands: its booted commit's time and release counter. */
export interface BootedRelease {
  commit: string;
  timestamp: number;
  release?: number;
}

/** Whether barrier b is a release after the booted one (the device has not been through it). */
export function isAfter(b: SummaryBarrier, booted: BootedRelease): boolean {
  if (b.commit === booted.commit) return false;
  if (b.release !== undefined && booted.release !== undefined) return b.release > booted.release;
  return b.timestamp > booted.timestamp;
}

/** The oldest barrier of the ref the device has not been through, or null (then the head is offered). */
export function pendingBarrier(ref: SummaryRef, booted: BootedRelease): SummaryBarrier | null {
  const after = (ref.barriers ?? []).filter((b) => b.commit !== ref.commit && isAfter(b, booted));
  if (after.length === 0) return null;
  return after.reduce((oldest, b) => (isAfter(oldest, { commit: b.commit, timestamp: b.timestamp, release: b.release }) ? b : oldest));
}

/** Checks a `larch.min_agent_version` value as given to commit or compose. @throws INVALID_INPUT */
export function checkAgentVersionText(value: string, where: string): void {
  // Debian policy: the upstream version starts with a digit (a word like 'soon' would sort anywhere).
  if (!parseDebianVersion(value) || !/^(\d+:)?\d/.test(value)) {
    throw new LarchError('INVALID_INPUT', `${where}: ${MIN_AGENT_VERSION_KEY} '${quash(value, 40)}' is not a version (Debian version syntax, as larch's own: 0.2.0)`, {
      hint: 'give the larch version the commit needs, e.g. 0.2.0 (a pre-release sorts before with ~: 0.2.0~rc1)',
      data: { key: MIN_AGENT_VERSION_KEY, value },
    });
  }
}

/**
 * Refuses a target commit that needs a newer agent than `agent` (REFUSED, data.reason
 * 'agent-too-old', data.required, data.agent, data.barrier when one is named). Called before
 * anything of the update is written. A requirement that is not a version is refused too: this
 * agent cannot tell it meets it.
 */
export function requireAgent(target: { commit: string; version: string; metadata: Map<string, CborValue> }, agent: string, barrier: SummaryBarrier | null): void {
  const required = target.metadata.get(MIN_AGENT_VERSION_KEY);
  if (required === undefined) return;
  const text = typeof required === 'string' ? required : String(required);
  const readable = typeof required === 'string' && parseDebianVersion(required) !== undefined && parseDebianVersion(agent) !== undefined;
  if (readable && compareDebianVersions(agent, text) >= 0) return;
  const through = barrier ? `; update to version ${barrier.version} (a barrier release) first, then to ${target.version}` : '';
  const hint = barrier
    ? `run 'larch upgrade' (it offers the barrier ${barrier.version}, commit ${barrier.commit.slice(0, 12)}), boot it, then upgrade again`
    : `install a release whose agent is larch ${quash(text, 40)} or newer first (ask the vendor which), then update to ${target.version}`;
  throw new LarchError('REFUSED', `version ${target.version} (commit ${target.commit.slice(0, 12)}) needs larch ${quash(text, 40)} or newer; this agent is larch ${agent}${through}`, {
    hint,
    data: { reason: 'agent-too-old', required: text, agent, commit: target.commit, version: target.version, barrier: barrier ? { version: barrier.version, commit: barrier.commit } : null },
  });
}
