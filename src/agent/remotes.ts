/**
 * The device's named remotes (`larch remote add|list|delete|show`, `larch rebase`): where updates
 * may come from, each with its own trust and its own summary serial floor, and which one the
 * device follows now. Pure: the config.json map and its rules (docs/formats.md §11, docs/cli.md);
 * the files live in sysroot.ts and trust-store.ts.
 *
 * config.json keeps `remote` and `ref` as what `upgrade` and the daemon follow, so an older agent
 * (the rollback slot's own) still reads them; `following` names that remote in `remotes`, which
 * also holds the others. A config without `remotes` (every device provisioned before them) has
 * one remote, `origin`, made of `remote` and the top-level serial floor.
 */
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import type { DeviceConfig, RemoteMqttAuth, Sysroot } from './sysroot.ts';
import { type TrustScope, originScope } from './trust-store.ts';

/** The remote provision names (its keys are S/larch/keys, its trust S/larch/trust.cbor). */
export const ORIGIN = 'origin';
const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

export interface RemoteEntry {
  url: string;
  kind: 'http' | 'mqtt';
  mqtt?: RemoteMqttAuth;
  /** own: the remote's own keys and trust document (S/larch/remotes/NAME/); origin: the origin's (a mirror of the vendor repo). */
  trust: 'own' | 'origin';
  /** The highest summary serial accepted from this remote, and the trust version it was signed under (the floor of trust-sync.ts). */
  summarySerial?: number;
  summaryTrustVersion?: number;
}

/** Where updates come from for one operation: a remote by name and the ref followed on it. */
export interface Channel {
  name: string;
  ref: string;
  remote: RemoteEntry;
}

/** Every remote of the device by name; a config without `remotes` has `origin` alone. Pure. */
export function remotesOf(config: DeviceConfig): Record<string, RemoteEntry> {
  if (config.remotes) return config.remotes;
  return { [ORIGIN]: { ...config.remote, trust: 'own', ...floorOf(config) } };
}

const floorOf = (c: { summarySerial?: number; summaryTrustVersion?: number }) => ({
  ...(c.summarySerial === undefined ? {} : { summarySerial: c.summarySerial }),
  ...(c.summaryTrustVersion === undefined ? {} : { summaryTrustVersion: c.summaryTrustVersion }),
});

/** The name of the remote the device follows. Pure. */
export function followedName(config: DeviceConfig): string {
  return config.following ?? ORIGIN;
}

/** What `upgrade` and the daemon follow: the followed remote and the device's ref. Pure. @throws INVALID_INPUT when config.json contradicts itself */
export function followedChannel(config: DeviceConfig): Channel {
  checkConsistent(config);
  const name = followedName(config);
  return { name, ref: config.ref, remote: remotesOf(config)[name]! };
}

/**
 * config.json must agree with itself: the followed remote exists and is `remote` (what older
 * agents read). Pure. @throws INVALID_INPUT naming the fields
 */
export function checkConsistent(config: DeviceConfig): void {
  const name = followedName(config);
  const entry = remotesOf(config)[name];
  const same = entry && entry.url === config.remote.url && entry.kind === config.remote.kind;
  if (same) return;
  throw new LarchError('INVALID_INPUT', `config.json follows remote '${name}', ${entry ? `whose url ${entry.url} is not 'remote' (${config.remote.url})` : 'which is not in its remotes'}`, {
    hint: "the file was edited by hand: set 'following' to a remote of 'remotes' whose url and kind are 'remote's, or provision again",
    data: { following: name, remote: config.remote.url },
  });
}

/** A remote by name. Pure. @throws NOT_FOUND naming the remotes there are */
export function remoteNamed(config: DeviceConfig, name: string): RemoteEntry {
  const all = remotesOf(config);
  const entry = all[name];
  if (!entry) throw new LarchError('NOT_FOUND', `no remote '${name}' on this device (remotes: ${Object.keys(all).join(', ')})`, { hint: "larch remote list shows them; larch remote add NAME URL adds one", data: { remote: name, remotes: Object.keys(all) } });
  return entry;
}

/** @throws USAGE for a name that is not [a-z0-9][a-z0-9_-]{0,31} */
export function checkRemoteName(name: string): void {
  if (!NAME.test(name)) throw new LarchError('USAGE', `'${name}' is not a remote name: lower-case letters, digits, '-' and '_', at most 32, starting with a letter or digit`, { data: { remote: name } });
}

/** The config with one more remote. Pure. @throws EXISTS for a name taken (origin included) */
export function addRemote(config: DeviceConfig, name: string, entry: RemoteEntry): DeviceConfig {
  checkRemoteName(name);
  const all = remotesOf(config);
  if (all[name]) throw new LarchError('EXISTS', `the device already has a remote '${name}' (${all[name]!.url})`, { hint: `larch remote delete ${name} first to replace it`, data: { remote: name, url: all[name]!.url } });
  return { ...config, remotes: { ...all, [name]: entry } };
}

/**
 * The config without a remote. Pure.
 * @throws REFUSED (data.reason "remote-in-use") for origin, the followed remote, or one a deployment came from (unless force); NOT_FOUND
 */
export function deleteRemote(config: DeviceConfig, name: string, deployedFrom: string[], force: boolean): DeviceConfig {
  remoteNamed(config, name);
  const why = name === ORIGIN ? 'it is the remote the device was provisioned with' : name === followedName(config) ? 'the device follows it (larch rebase to another remote first)' : !force && deployedFrom.includes(name) ? 'a deployment on this device came from it (--force deletes it anyway)' : null;
  if (why) throw new LarchError('REFUSED', `refusing to delete remote '${name}': ${why}`, { data: { reason: 'remote-in-use', remote: name } });
  const { [name]: _gone, ...rest } = remotesOf(config);
  return { ...config, remotes: rest };
}

/** The config following `channel` (rebase; a rollback or fallback to a deployment of another channel). Pure. */
export function follow(config: DeviceConfig, channel: { name: string; ref: string }): DeviceConfig {
  const entry = remoteNamed(config, channel.name);
  const { summarySerial: _s, summaryTrustVersion: _t, ...rest } = config;
  const { trust: _trust, summarySerial: _es, summaryTrustVersion: _et, ...remote } = entry;
  return { ...rest, remotes: remotesOf(config), remote, ref: channel.ref, following: channel.name, ...floorOf(entry) };
}

/** The config with a new serial floor for remote `name` (and at the top level when it is the followed one). Pure. */
export function recordFloor(config: DeviceConfig, name: string, floor: { summarySerial: number; summaryTrustVersion: number }): DeviceConfig {
  const followed = name === followedName(config);
  const top = followed ? floor : {};
  // A device with no remotes but origin keeps its config.json as before remotes existed.
  if (!config.remotes && followed) return { ...config, ...top };
  return { ...config, ...top, remotes: { ...remotesOf(config), [name]: { ...remoteNamed(config, name), ...floor } } };
}

/** The trust a remote's summaries, commits and deltas are checked under. */
export function scopeOf(sysroot: Sysroot, name: string, entry: RemoteEntry): TrustScope {
  if (name === ORIGIN || entry.trust === 'origin') return originScope(sysroot);
  const dir = remoteDir(sysroot, name);
  return { remote: name, keysDir: join(dir, 'keys'), trustPath: join(dir, 'trust.cbor') };
}

/** S/larch/remotes/NAME: a remote's own keys and trust document. */
export function remoteDir(sysroot: Sysroot, name: string): string {
  return join(sysroot.larchDir, 'remotes', name);
}

/**
 * `[REMOTE:]REF` as rebase takes it: a remote name before the first ':' (null: the followed
 * remote), then the ref. @throws USAGE when no ref is named
 */
export function splitRebaseTarget(arg: string): { remote: string | null; ref: string } {
  // Devices follow larch refs; an image is committed to one on the vendor side (docs/oci.md).
  if (/^(docker|oci|oci-archive|docker-archive|containers-storage):/.test(arg)) {
    throw new LarchError('USAGE', `rebase: '${arg}' is an image reference; rebase takes a larch ref, never an image`, { hint: "commit the image to a ref on the vendor side ('larch commit --oci IMAGE --branch REF'), publish it, and rebase to that ref (docs/oci.md)", data: { command: 'rebase', target: arg, reason: 'image-reference' } });
  }
  const colon = arg.indexOf(':');
  const ref = colon > 0 ? arg.slice(colon + 1) : arg;
  if (ref === '') throw new LarchError('USAGE', `rebase: '${arg}' names no ref (REMOTE:REF or REF)`, { hint: "run 'larch rebase --help'", data: { command: 'rebase', target: arg } });
  return { remote: colon > 0 ? arg.slice(0, colon) : null, ref };
}

/** rebase's answer from upgrade's: nothing newer is `no-change` when the channel was followed already, else `rebased` (the device follows it now). */
export function rebaseResult<R extends string>(upgradeResult: R, alreadyFollowed: boolean): R | 'no-change' | 'rebased' {
  return upgradeResult === 'no-update' ? (alreadyFollowed ? 'no-change' : 'rebased') : upgradeResult;
}
