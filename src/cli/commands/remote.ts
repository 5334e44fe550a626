/**
 * The device's named remotes and the channel switch: larch remote add / list / delete / show,
 * larch rebase [REMOTE:]REF (ostree remote, rpm-ostree rebase). The rules are in
 * src/agent/remotes.ts; rebase is an upgrade from another channel (src/agent/update.ts).
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LarchError } from '../../errors.ts';
import { readDeployment } from '../../agent/deploy.ts';
import { mergerFor } from '../../agent/etc/merger.ts';
import { appendJournal } from '../../agent/journal.ts';
import { isLocalRemote } from '../../agent/remote/local-fetch.ts';
import { ORIGIN, type RemoteEntry, addRemote, checkRemoteName, deleteRemote, followedChannel, followedName, rebaseResult, remoteDir, remoteNamed, remotesOf, scopeOf, splitRebaseTarget } from '../../agent/remotes.ts';
import type { Sysroot } from '../../agent/sysroot.ts';
import { trustStatus } from '../../agent/trust-store.ts';
import { fetchTrustedSummary } from '../../agent/trust-sync.ts';
import { finalize as finalizeSysroot, upgrade as upgradeSysroot } from '../../agent/update.ts';
import { rebootFor } from '../../agent/reboot.ts';
import { keyId, readPublicKey } from '../../store/sign.ts';
import { type Command, type Io, type ParsedArgs, list, opt, positionals, printJson } from '../command.ts';
import { locked, progressFor, remoteLimits, sysrootOf } from '../device-context.ts';
import { MQTT_AUTH_HELP, MQTT_AUTH_OPTIONS, remoteMqttAuth } from '../mqtt-options.ts';
import { formatBytes } from '../progress.ts';
import { remoteFor } from '../remote.ts';

const SYSROOT_HELP = `  --sysroot S     the device's root filesystem, or a directory standing in for one
                  (default /sysroot)`;
const EXIT_HELP = `EXIT STATUS
  0 success; 2 usage (a bad name or URL); 3 (NOT_FOUND) not provisioned, no such remote or
  ref; 6 (KEY_INVALID) a key file that is not a larch public key; signature problems
  (SIGNATURE_INVALID: untrusted, expired, replayed); 7 (LOCKED) another larch holds the
  device; 9 (IO); 11 (EXISTS) the remote name is taken; 14 (REFUSED) data.reason says why
  (remote-in-use, downgrade, below-release-floor, wrong-ref, failed-here, booted-unconfirmed).
  docs/cli.md lists them all.`;

/** A remote as list, show and add print it. */
async function describeRemote(sysroot: Sysroot, following: string, name: string, entry: RemoteEntry) {
  const trust = await trustStatus(sysroot, scopeOf(sysroot, name, entry));
  return {
    name,
    url: entry.url,
    kind: entry.kind,
    following: name === following,
    trust: { from: name === ORIGIN || entry.trust === 'own' ? 'own' : 'origin', version: trust.version, keys: trust.keys },
    summary_serial: entry.summarySerial ?? null,
  };
}

function formatRemote(r: Awaited<ReturnType<typeof describeRemote>>): string {
  const keys = r.trust.keys.map((k) => k.id).join(', ') || 'none';
  return `${r.following ? '* ' : '  '}${r.name}  ${r.url}${r.kind === 'mqtt' ? ' (mqtt)' : ''}\n    trust: ${r.trust.from === 'own' ? 'its own' : "the origin's"}, ${r.trust.version === null ? 'keys' : `document version ${r.trust.version}, keys`} ${keys}\n`;
}

/** A URL `remote add` takes: http(s), file:// or a path (an archive repo), mqtt(s) with --mqtt. @throws USAGE */
function checkUrl(url: string, mqtt: boolean): void {
  const ok = mqtt ? /^mqtts?:\/\/./.test(url) : /^https?:\/\/./.test(url) || isLocalRemote(url);
  if (ok) return;
  throw new LarchError('USAGE', `remote add: '${url}' is not ${mqtt ? 'an mqtt:// or mqtts:// broker URL' : 'an http://, https:// or file:// URL or a directory path'}`, { hint: "run 'larch remote add --help'", data: { command: 'remote add', url } });
}

export const remoteAdd: Command = {
  name: 'remote add',
  summary: 'add a remote updates may come from (ostree remote add)',
  options: { sysroot: { type: 'string' }, keys: { type: 'string', multiple: true }, mqtt: { type: 'boolean' }, ...MQTT_AUTH_OPTIONS },
  positionals: true,
  help: `NAME
  larch remote add - add a remote updates may come from

SYNOPSIS
  larch remote add NAME URL [--keys K.pub]... [--mqtt [--mqtt-username U] ...] [--sysroot S] [--json]

DESCRIPTION
  Names another place the device may take updates from: a second vendor server, a beta
  channel's server, a local mirror or a mounted USB stick (file:///media/usb/repo or a
  path). Nothing is fetched. 'larch rebase NAME:REF' switches to it; the device keeps
  following its current remote until then.

  With --keys, the remote has trust of its own: its summaries, commits and deltas are
  checked against these keys only (each key counts for every role, threshold 1), until the
  remote publishes a signed trust document, which they vouch for and which then replaces
  them (the rules of 'larch trust'); the keys are kept in S/larch/remotes/NAME/keys. Without
  --keys the remote shares the origin's trust (a mirror of the same vendor). Each remote
  has its own summary serial floor. NAME is lower-case letters, digits, '-' and '_'
  (at most 32); 'origin' is the remote the device was provisioned with.

OPTIONS
  --keys K.pub    a public key (larch keygen) this remote's releases are signed with; repeat
  --mqtt          URL is a broker (mqtt:// or mqtts://), as provision --mqtt-url
${MQTT_AUTH_HELP}
${SYSROOT_HELP}
  --json          print the remote as 'larch remote list --json' prints each

${EXIT_HELP}

EXAMPLES
  larch remote add beta https://beta.example.com/repo --keys /etc/larch/beta.pub
  larch remote add usb file:///media/usb/larch-repo
`,
  async run(args, io) {
    const [name, url] = positionals(args, ['name', 'url'], 'remote add');
    checkRemoteName(name);
    const mqtt = args.values.mqtt === true;
    checkUrl(url, mqtt);
    const sysroot = sysrootOf(args);
    const config = await sysroot.readConfig();
    const keyFiles = list(args, 'keys').map((f) => resolve(f));
    const keys: [string, string][] = [];
    for (const f of keyFiles) keys.push([keyId(await readPublicKey(f)), f]);
    const auth = remoteMqttAuth(args);
    if (!mqtt && auth) throw new LarchError('USAGE', 'remote add: --mqtt-* options need --mqtt', { data: { command: 'remote add' } });
    const entry: RemoteEntry = { url, kind: mqtt ? 'mqtt' : 'http', ...(auth ? { mqtt: auth } : {}), trust: keys.length ? 'own' : 'origin' };
    const next = addRemote(config, name, entry); // refuses a taken name before anything is written
    // The keys first: a kill before config.json names the remote leaves an unused directory, which the next add replaces.
    const dir = remoteDir(sysroot, name);
    await rm(dir, { recursive: true, force: true });
    if (keys.length) {
      await mkdir(join(dir, 'keys'), { recursive: true });
      for (const [id, f] of keys) await copyFile(f, join(dir, 'keys', `${id}.pub`));
    }
    await sysroot.writeConfig(next);
    await appendJournal(sysroot.journalPath, { event: 'remote', message: `remote ${name} added: ${url}${keys.length ? ` (its own keys: ${keys.map(([id]) => id).join(', ')})` : " (the origin's trust)"}`, data: { remote: name, url, kind: entry.kind, keys: keys.map(([id]) => id) } });
    const r = await describeRemote(sysroot, followedName(next), name, entry);
    if (args.json) printJson(io, r);
    else io.out(`remote ${name} added; 'larch rebase ${name}:REF' follows it\n`);
  },
};

export const remoteList: Command = {
  name: 'remote list',
  summary: "the device's remotes and the one it follows",
  options: { sysroot: { type: 'string' } },
  help: `NAME
  larch remote list - the device's remotes

SYNOPSIS
  larch remote list [--sysroot S] [--json]

DESCRIPTION
  Every remote, the followed one marked '*', with its trust: its own (its keys, or the
  trust document they vouched for) or the origin's. No network.

OPTIONS
${SYSROOT_HELP}
  --json          print {"remotes": [{"name", "url", "kind", "following", "trust": {"from":
                  own|origin, "version", "keys": [{"id", "roles"}]}, "summary_serial"}]}

${EXIT_HELP}
`,
  async run(args, io) {
    positionals(args, [], 'remote list');
    const sysroot = sysrootOf(args);
    const config = await sysroot.readConfig();
    const following = followedName(config);
    const remotes = [];
    for (const [name, entry] of Object.entries(remotesOf(config))) remotes.push(await describeRemote(sysroot, following, name, entry));
    if (args.json) printJson(io, { remotes });
    else io.out(remotes.map(formatRemote).join(''));
  },
};

export const remoteShow: Command = {
  name: 'remote show',
  summary: 'one remote: its URL, trust and (--refs) the refs it serves',
  options: { sysroot: { type: 'string' }, refs: { type: 'boolean' }, timeout: { type: 'string' }, 'min-speed': { type: 'string' }, 'min-speed-time': { type: 'string' } },
  positionals: true,
  help: `NAME
  larch remote show - one remote

SYNOPSIS
  larch remote show NAME [--refs] [--timeout SECONDS] [--sysroot S] [--json]

DESCRIPTION
  The remote as 'larch remote list' shows it. With --refs, also fetches its summary,
  verified under the remote's trust (and its serial floor, which it raises), and lists
  the refs it serves with each head's version.

OPTIONS
  --refs          fetch the verified summary and list its refs (network)
  --timeout SECONDS  bound the fetch (default 3600)
${SYSROOT_HELP}
  --json          print the remote as list does, with --refs also "refs": {REF: {"commit",
                  "version", "timestamp_s"}}

${EXIT_HELP}
`,
  async run(args, io) {
    const [name] = positionals(args, ['name'], 'remote show');
    const sysroot = sysrootOf(args);
    const config = await sysroot.readConfig();
    const entry = remoteNamed(config, name);
    const r = await describeRemote(sysroot, followedName(config), name, entry);
    if (args.values.refs !== true) {
      if (args.json) printJson(io, r);
      else io.out(formatRemote(r));
      return;
    }
    const summary = await fetchTrustedSummary(remoteFor({ remote: entry }, remoteLimits(args)), sysroot, config, undefined, { name, ref: config.ref, remote: entry });
    const refs = Object.fromEntries(Object.entries(summary.refs).map(([ref, h]) => [ref, { commit: h.commit, version: h.version, timestamp_s: h.timestamp }]));
    if (args.json) printJson(io, { ...r, refs });
    else io.out(formatRemote(r) + Object.entries(refs).map(([ref, h]) => `    ${ref}  version ${h.version}  ${h.commit.slice(0, 12)}\n`).join(''));
  },
};

export const remoteDelete: Command = {
  name: 'remote delete',
  summary: 'forget a remote',
  options: { sysroot: { type: 'string' }, force: { type: 'boolean' } },
  positionals: true,
  help: `NAME
  larch remote delete - forget a remote

SYNOPSIS
  larch remote delete NAME [--force] [--sysroot S] [--json]

DESCRIPTION
  Removes the remote and its keys and trust. Refused (REFUSED, data.reason "remote-in-use")
  for origin, for the followed remote, and, without --force, for a remote a deployment on
  the device came from (a rollback to it would follow it again).

OPTIONS
  --force         delete a remote a deployment came from
${SYSROOT_HELP}
  --json          print {"deleted": NAME}

${EXIT_HELP}
`,
  async run(args, io) {
    const [name] = positionals(args, ['name'], 'remote delete');
    const sysroot = sysrootOf(args);
    const config = await sysroot.readConfig();
    const deployedFrom: string[] = [];
    for (const slot of ['A', 'B'] as const) {
      const origin = (await readDeployment(sysroot, slot))?.origin;
      if (origin?.name) deployedFrom.push(origin.name);
    }
    await sysroot.writeConfig(deleteRemote(config, name, deployedFrom, args.values.force === true));
    await rm(remoteDir(sysroot, name), { recursive: true, force: true });
    await appendJournal(sysroot.journalPath, { event: 'remote', message: `remote ${name} deleted`, data: { remote: name, deleted: true } });
    if (args.json) printJson(io, { deleted: name });
    else io.out(`remote ${name} deleted\n`);
  },
};

/** `[REMOTE:]REF`: a remote name before the first ':' (when it is one), else the followed remote. Pure. */
export function parseRebaseTarget(arg: string, followed: string): { name: string; ref: string } {
  const { remote, ref } = splitRebaseTarget(arg);
  return { name: remote ?? followed, ref };
}

export const rebase: Command = {
  name: 'rebase',
  summary: 'follow another ref or remote and stage its newest commit (rpm-ostree rebase)',
  options: { sysroot: { type: 'string' }, reboot: { type: 'boolean' }, 'allow-downgrade': { type: 'boolean' }, 'dry-run': { type: 'boolean' }, timeout: { type: 'string' }, 'min-speed': { type: 'string' }, 'min-speed-time': { type: 'string' } },
  positionals: true,
  help: `NAME
  larch rebase - switch the device to another ref or remote

SYNOPSIS
  larch rebase [REMOTE:]REF [--reboot] [--allow-downgrade] [--dry-run] [--timeout SECONDS]
               [--sysroot S] [--json]

DESCRIPTION
  A channel switch: stages the newest commit of REF on REMOTE (default: the followed remote)
  in the other slot, exactly as an upgrade does (the summary and commit verified under that
  remote's trust, /etc merged from the booted slot, /var kept, the release floor and the
  downgrade check as for upgrade), and makes the device follow REMOTE:REF from then on
  (config.json's remote, ref and following, written before the slot can boot). When the
  booted commit is REF's newest already, nothing is staged and the device follows it.
  REMOTE:REF followed already works as upgrade (so a rebase interrupted after it switched
  what the device follows completes when run again).
  A rollback, or a fallback of the staged slot, makes the device follow the channel of the
  deployment it boots again. Each deployment's origin is in 'larch status'. A daemon that
  runs picks up the new remote at its next check; restart it to listen to the new ref's
  announcements (or a new broker).

OPTIONS
  --reboot           finalize and reboot into the staged slot
  --allow-downgrade  accept a commit older than the booted one (and, within what the
                     vendor allows, below the release floor)
  --dry-run          download and verify, stage nothing, follow nothing
  --timeout SECONDS  bound the summary fetch and the download (default 3600)
${SYSROOT_HELP}
  --json          print upgrade's answer with "result": staged|rebased|no-change|dry-run
                  (rebased: the booted commit is REF's newest, the device follows it now;
                  no-change: followed already and the booted commit is its newest) and
                  "following": {"remote", "ref"}

${EXIT_HELP}

EXAMPLES
  larch rebase os/beta
  larch rebase beta:os/beta --reboot
`,
  run: (args, io) => runRebase(args, io),
};

async function runRebase(args: ParsedArgs, io: Io): Promise<void> {
  const [arg] = positionals(args, ['target'], 'rebase');
  const sysroot = sysrootOf(args);
  const config = await sysroot.readConfig();
  const followed = followedChannel(config);
  const target = parseRebaseTarget(arg, followed.name);
  const entry = remoteNamed(config, target.name);
  const following = { remote: target.name, ref: target.ref };
  // Already followed (a rebase run again after it was interrupted past its config write): as
  // upgrade, stage its newest commit when the booted one is not.
  const already = target.name === followed.name && target.ref === followed.ref;
  const progress = args.json ? undefined : progressFor(io, 'download');
  const ctx = { sysroot, remote: remoteFor({ remote: entry }, remoteLimits(args)), merger: mergerFor(), progress, channel: { ...target, remote: entry } };
  const dryRun = args.values['dry-run'] === true;
  const r = await upgradeSysroot(ctx, { allowDowngrade: args.values['allow-downgrade'] === true, dryRun }).finally(() => progress?.finish?.());
  const result = rebaseResult(r.result, already);
  if (args.json) printJson(io, { ...r, result, following: dryRun ? { remote: followed.name, ref: followed.ref } : following });
  else if (result === 'staged') io.out(`rebased to ${target.name}:${target.ref}: staged version ${r.to?.version} in slot ${r.to?.slot}; it boots next (downloaded ${formatBytes(r.download.bytes)} by ${r.download.via})\n`);
  else if (result === 'rebased') io.out(`following ${target.name}:${target.ref}; version ${r.from.version}, booted now, is its newest\n`);
  else if (result === 'no-change') io.out(`already following ${target.name}:${target.ref}, and version ${r.from.version} is its newest\n`);
  else io.out(`would rebase to ${target.name}:${target.ref}: version ${r.to?.version} (downloaded and verified, nothing staged)\n`);
  if (r.etc_conflicts.length > 0 && !args.json) io.out(`/etc conflicts (your version kept, the vendor's saved as FILE.larchnew): ${r.etc_conflicts.join(', ')}\n`);
  if (result === 'staged' && args.values.reboot === true) {
    await finalizeSysroot(ctx);
    if (!args.json) io.out(sysroot.realDevice ? 'rebooting\n' : 'reboot now (in a test sysroot: larch sim-boot)\n');
    await rebootFor(sysroot)(`rebase --reboot: version ${r.to?.version} of ${target.name}:${target.ref} staged in slot ${r.to?.slot}`);
  }
}

/** Each changes the device: run holding the device lock (list only reads). */
export const remoteCommands: Command[] = [locked(remoteAdd), remoteList, locked(remoteShow), locked(remoteDelete), locked(rebase)];
