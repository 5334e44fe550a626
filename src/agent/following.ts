/**
 * What the device follows (config.json's remote, ref and `following`), changed by `larch rebase`
 * and set back by a rollback or a fallback to a deployment of another channel: the device then
 * follows what it runs, so the next upgrade does not stage the channel it just left.
 */
import { failpoint } from '../failpoint.ts';
import type { DeploymentRecord } from './deploy.ts';
import { appendJournal } from './journal.ts';
import { ORIGIN, follow, followedName, remotesOf } from './remotes.ts';
import type { Sysroot } from './sysroot.ts';

/**
 * Makes the device follow remote `name`'s `ref` (journal `rebase`). Re-reads config.json: the
 * summary's serial may have been recorded in it since the operation began.
 * @returns whether anything changed
 */
export async function followChannel(sysroot: Sysroot, channel: { name: string; ref: string }, why: string, restored = false): Promise<boolean> {
  const config = await sysroot.readConfig();
  if (followedName(config) === channel.name && config.ref === channel.ref) return false;
  const before = { remote: followedName(config), ref: config.ref };
  await sysroot.writeConfig(follow(config, channel));
  failpoint('rebase::after-config-write');
  await appendJournal(sysroot.journalPath, { event: 'rebase', message: `following ${channel.name}:${channel.ref} (was ${before.remote}:${before.ref}): ${why}`, data: { remote: channel.name, ref: channel.ref, from: before, restored } });
  return true;
}

/**
 * After a rollback or a fallback: follow the channel the deployment that boots now came from,
 * when the device still has its remote (a record from before named remotes names none: the
 * remote with its URL, origin first).
 */
export async function followDeployment(sysroot: Sysroot, record: DeploymentRecord, why: string): Promise<boolean> {
  const remotes = remotesOf(await sysroot.readConfig());
  const byUrl = Object.keys(remotes).sort((a, b) => Number(b === ORIGIN) - Number(a === ORIGIN)).find((n) => remotes[n]!.url === record.origin.remote);
  const name = record.origin.name ?? byUrl;
  if (!name || !remotes[name]) return false;
  return followChannel(sysroot, { name, ref: record.origin.ref }, why, true);
}
