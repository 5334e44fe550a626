/**
 * The summary under the device's trust, and the pickup of new trust documents from the remote
 * (over whatever carries it: HTTP, MQTT chunks, a directory). A summary names the trust version it
 * is signed under (trust_version); when it names a higher one than the device holds, or fails as
 * signed by keys the device does not trust (a rotated summary key), the device walks the repo's
 * chain R/trust/N+1.cbor, N+2, ... each checked against the one before (TUF), then checks the
 * summary again under the new trust. The serial floor holds within one trust version: a summary
 * of a newer trust version resets it (the way out of a fast-forward by a stolen key).
 */
import { LarchError } from '../errors.ts';
import type { Summary } from '../protocol/summary.ts';
import { appendJournal } from './journal.ts';
import type { Remote } from './remote/remote.ts';
import { type Channel, followedChannel, recordFloor, scopeOf } from './remotes.ts';
import type { DeviceConfig, Sysroot } from './sysroot.ts';
import { type DeviceTrust, type TrustScope, installTrust, noKeys, originScope, readDeviceTrust } from './trust-store.ts';

/** The most trust documents one check walks (a summary cannot make a device fetch forever). */
export const MAX_TRUST_WALK = 1000;

/**
 * Fetches R/trust/V.cbor for V from the device's version + 1 on, installing each, until `upTo`
 * (when given) or the first version the remote does not have. Returns the device's trust after.
 * @throws SIGNATURE_INVALID (a document the chain refuses), NOT_FOUND (upTo named but missing), IO
 */
export async function walkTrustChain(remote: Remote, sysroot: Sysroot, upTo?: number, scope: TrustScope = originScope(sysroot)): Promise<DeviceTrust> {
  let trust = await readDeviceTrust(sysroot, scope);
  if (!remote.fetchTrust) return trust;
  const start = (trust.version ?? 0) + 1;
  for (let v = start; v < start + MAX_TRUST_WALK && (upTo === undefined || v <= upTo); v++) {
    const bytes = await remote.fetchTrust(v);
    if (bytes === null) {
      if (upTo === undefined) break;
      throw new LarchError('NOT_FOUND', `the summary of ${remote.describe()} is signed under trust version ${upTo}, but the remote has no trust/${v}.cbor`, { hint: "the vendor publishes every trust document of the chain with 'larch trust publish --repo R'", data: { version: v, trust_version: upTo, remote: remote.describe() } });
    }
    await installTrust(sysroot, bytes, `${remote.describe()} trust/${v}.cbor`, scope);
    trust = await readDeviceTrust(sysroot, scope);
  }
  return trust;
}

const refusedAsUntrusted = (err: unknown) => err instanceof LarchError && err.code === 'SIGNATURE_INVALID' && (err.data.reason === 'untrusted' || err.data.reason === 'threshold');

/**
 * The remote's summary, verified under the trust of the channel's remote (summary role and
 * threshold, expiry, trust version, that remote's serial floor), new trust documents picked up on
 * the way; records the serial, after `beforeRecord` (a check that may refuse the summary: its
 * serial is then not recorded). The channel is the followed one unless given (rebase).
 * @throws SIGNATURE_MISSING, SIGNATURE_INVALID (data.reason as verifySummary's, 'trust-rollback', 'rollback'), NOT_FOUND, IO
 */
export async function fetchTrustedSummary(remote: Remote, sysroot: Sysroot, config: DeviceConfig, beforeRecord?: (summary: Summary) => void, channel: Channel = followedChannel(config), opts: { bundle?: boolean } = {}): Promise<Summary> {
  const now = Math.floor(Date.now() / 1000);
  const scope = scopeOf(sysroot, channel.name, channel.remote);
  const fetchUnder = (t: DeviceTrust) => {
    if (t.roles.summary.keys.length === 0) throw noKeys(scope, 'summary');
    return remote.fetchSummary({ trusted: t.roles.summary.keys, threshold: t.roles.summary.threshold, now });
  };
  let trust = await readDeviceTrust(sysroot, scope);
  let summary: Summary;
  try {
    summary = await fetchUnder(trust);
  } catch (err) {
    // Signed by keys this device does not trust (yet): a newer trust document may name them.
    if (!refusedAsUntrusted(err)) throw err;
    const before = trust.version;
    trust = await walkTrustChain(remote, sysroot, undefined, scope);
    if (trust.version === before) throw err;
    summary = await fetchUnder(trust);
  }
  const named = summary.trustVersion ?? 0;
  if (named > (trust.version ?? 0)) {
    trust = await walkTrustChain(remote, sysroot, named, scope);
    summary = await fetchUnder(trust);
  }
  const source = remote.describe();
  const held = trust.version ?? 0;
  const summaryTrust = summary.trustVersion ?? 0;
  if (summaryTrust < held) {
    throw new LarchError('SIGNATURE_INVALID', `${source}: the summary is signed under trust version ${summaryTrust}, older than version ${held}, the one this device trusts`, { hint: "the vendor publishes again after 'larch trust publish' (publish names the current trust version); nothing was changed", data: { reason: 'trust-rollback', source, trust_version: summaryTrust, device_trust_version: held } });
  }
  // The floor holds within one trust version: a new trust document resets it. Each remote has its own.
  // A bundle (upgrade --from-file) has no serial floor: the serial floor stops a server that
  // offers an old summary to hide a newer release (a freeze), which a stick the operator chose
  // cannot do; the release floor and the downgrade check still stop an older release. A floor
  // raised by every stick read would refuse the older of two sticks tried in turn.
  if (opts.bundle) {
    beforeRecord?.(summary);
    return summary;
  }
  const floor = channel.remote;
  const floorName = `remote ${channel.name}`;
  const floorApplies = floor.summarySerial !== undefined && (floor.summaryTrustVersion ?? 0) === summaryTrust;
  if (floorApplies && summary.serial < floor.summarySerial!) {
    throw new LarchError('SIGNATURE_INVALID', `${source}: the summary's serial ${summary.serial} is lower than ${floor.summarySerial}, the last one this device accepted`, {
      hint: 'the server offers an older summary than this device has seen (a rollback or a stale mirror); nothing was changed. A summary with an absurd serial signed by a stolen key is undone by rotating the trust document (docs/fleet.md)',
      data: { reason: 'rollback', source, serial: summary.serial, last_serial: floor.summarySerial, trust_version: summaryTrust, remote: channel.name },
    });
  }
  beforeRecord?.(summary);
  if (!floorApplies || summary.serial > floor.summarySerial!) {
    if (floor.summarySerial !== undefined && !floorApplies) await appendJournal(sysroot.journalPath, { event: 'trust', message: `summary serial floor of ${floorName} reset under trust version ${summaryTrust} (was ${floor.summarySerial} under version ${floor.summaryTrustVersion ?? 0})`, data: { serial: summary.serial, trust_version: summaryTrust, remote: channel.name } });
    await sysroot.writeConfig(recordFloor(config, channel.name, { summarySerial: summary.serial, summaryTrustVersion: summaryTrust }));
  }
  return summary;
}
