/**
 * The device-side commands: provision, status, check, upgrade, deploy, rollback, finalize,
 * cleanup, pin/unpin, history, boot-check, mark-good/mark-bad, sim-boot. Every one takes
 * --sysroot S, so tests and the demo run devices as plain directories.
 */
import { resolve } from 'node:path';
import { LarchError } from '../../errors.ts';
import { MAX_TRIES, DEFAULT_TRIES, type Slot } from '../../bootcount/state.ts';
import { bootCheck, markSlot, simBoot } from '../../agent/boot-check.ts';
import { readJournal } from '../../agent/journal.ts';
import { provision as provisionSysroot } from '../../agent/provision.ts';
import { describeFailure } from '../../agent/failed-releases.ts';
import { splitCommandLine } from '../../agent/kargs.ts';
import { formatStatus, readStatus } from '../../agent/status.ts';
import { BOOTLOADER_KINDS, type BootloaderKind, DEFAULT_SYSROOT } from '../../agent/sysroot.ts';
import { isLocalRemote } from '../../agent/remote/local-fetch.ts';
import { rebootFor } from '../../agent/reboot.ts';
import { previewCheck, previewUpgrade } from '../../agent/upgrade-preview.ts';
import { MQTT_AUTH_HELP, MQTT_AUTH_OPTIONS, remoteMqttAuth } from '../mqtt-options.ts';
import { cleanup as cleanupSysroot, finalize as finalizeSysroot, rollback as rollbackSysroot, setPinned, upgrade as upgradeSysroot } from '../../agent/update.ts';
import { formatBytes } from '../progress.ts';
import { formatLayerPreview, formatPackageDiff } from '../package-diff.ts';
import { remoteFor } from '../remote.ts';
import { type Command, type Io, type OptionSpec, type ParsedArgs, intOption, list, need, opt, positionals, printJson } from '../command.ts';
import { type ProgressFn, context, locked, progressFor, sysrootOf } from '../device-context.ts';

const SYSROOT_OPTION: OptionSpec = { sysroot: { type: 'string' } };
const SYSROOT_HELP = `  --sysroot S     the device's root filesystem, or a directory standing in for one
                  (default ${DEFAULT_SYSROOT})`;
const EXIT_HELP = `EXIT STATUS
  0 success; 2 usage; 3 (NOT_FOUND) not provisioned, unknown version; 4 (INVALID_INPUT) bad
  input; 14 (REFUSED) the device's state forbids it: downgrade, failed-here, booted-unconfirmed,
  target-not-good, only-good-slot (data.reason says which); 5 corrupt data, or
  a tree that would write outside its deployment; 6 signature problems (unsigned, untrusted,
  expired or replayed summary); 7 locked: another command holds the device lock S/larch/lock
  (waits LARCH_LOCK_TIMEOUT seconds, default 60); 8 no space; 9 I/O; 12 delta for another
  base; 13 bootloader env unreadable. docs/cli.md lists them all.`;

function finishProgress(progress: ProgressFn | undefined): void {
  progress?.finish?.();
}

const REMOTE_LIMIT_OPTIONS: OptionSpec = { timeout: { type: 'string' }, 'min-speed': { type: 'string' }, 'min-speed-time': { type: 'string' } };
const MIN_SPEED_HELP = `  --min-speed BYTES  HTTP: a request bringing fewer than BYTES per second over
                     --min-speed-time is aborted as too slow (default 1024; 0: off), and
                     given up after 5 such in a row: exit 9 (IO) "too slow"
  --min-speed-time SECONDS  the window of --min-speed, and how long a request may bring no
                     byte at all (default 30)`;
function slotOption(args: ParsedArgs, cmd: string): Slot | undefined {
  const s = opt(args, 'slot');
  if (s === undefined) return undefined;
  if (s !== 'A' && s !== 'B') throw new LarchError('USAGE', `${cmd}: --slot must be A or B, got '${s}'`, { data: { command: cmd, option: 'slot', value: s } });
  return s;
}

export const provision: Command = {
  name: 'provision',
  summary: 'set up an empty sysroot: repo, keys, first deployment in slot A, boot state',
  options: { ...SYSROOT_OPTION, 'repo-url': { type: 'string' }, 'mqtt-url': { type: 'string' }, ref: { type: 'string' }, keys: { type: 'string', multiple: true }, bootloader: { type: 'string' }, 'fw-env-config': { type: 'string' }, 'env-defaults': { type: 'string' }, commit: { type: 'string' }, version: { type: 'string' }, tries: { type: 'string' }, ...MQTT_AUTH_OPTIONS, 'device-id': { type: 'string' }, 'daemon-conf': { type: 'string', multiple: true }, force: { type: 'boolean' }, 'collection-id': { type: 'string' }, compatible: { type: 'string' }, architecture: { type: 'string' }, kargs: { type: 'string' } },
  help: `NAME
  larch provision - factory set-up of a device's sysroot

SYNOPSIS
  larch provision --sysroot S (--repo-url URL | --mqtt-url URL) --ref REF --keys K.pub [--keys K2.pub ...]
                  [--bootloader uboot|grub|systemd-boot] [--fw-env-config F [--env-defaults F]]
                  [--commit ID | --version V] [--tries N] [--json]
                  [--mqtt-username U] [--mqtt-password-file F] [--mqtt-ca F] [--mqtt-cert F] [--mqtt-key F]
                  [--device-id ID] [--daemon-conf F.conf ...] [--force]
                  [--collection-id ID] [--compatible ID] [--architecture ARCH] [--kargs 'ARGS']

DESCRIPTION
  Sets up an empty sysroot (a directory, or a mounted image): the local repo, the trusted
  keys (S/larch/keys/KEYID.pub), the device config (remote and ref), the device's identity,
  the first deployment in slot A, a shared /var seeded from the commit's /var, and the
  bootloader state (slot A good and first). The remote's summary and the commit must be
  signed by one of the keys.
  Atomic: everything is built in staging folders (S/.larch-provision, S/boot/.larch-provision)
  and moved into place last, S/larch last of all. A run that fails or is killed leaves the
  sysroot not provisioned, none of its keys trusted; run it again.
  Idempotent: running it again with the same options changes nothing ("already-provisioned").
  Other options are refused (exit 11, data.differs names them: url, ref, bootloader, tries,
  keys, version, fw_env_config, device_id, mqtt_username, mqtt_password_file, mqtt_ca,
  mqtt_cert, mqtt_key, daemon_conf, collection_id, compatible, architecture, kargs) unless --force. Without --commit/--version, any
  installed version matches.

OPTIONS
${SYSROOT_HELP}
  --repo-url URL  base URL of the vendor's archive repo (larch serve, or any web server), or
                  a directory of this machine holding one (file:///PATH, or a path)
  --mqtt-url URL  instead of --repo-url: the MQTT broker (mqtt://HOST[:PORT], mqtts://...),
                  the device's only path; updates come in chunks from 'larch serve --mqtt'
                  responders (docs/fleet.md). User and password may be in the URL.
${MQTT_AUTH_HELP}
                         the device's broker login: the files are copied to S/larch/identity/
                         (key and password 0600) and named in S/larch/daemon.conf.d/00-provision.conf
                         (for 'larch daemon') and, with --mqtt-url, in S/larch/config.json; read at
                         each connect, so they can be renewed in place
  --device-id ID  the device's id (MQTT client id and topics), device_id in 00-provision.conf
  --daemon-conf F.conf  a daemon.conf drop-in, checked and copied to S/larch/daemon.conf.d/
                  under its name (repeat for several; read after 00-provision.conf in name order)
  --force         provision again from scratch a sysroot provisioned with other options: its
                  keys, config, identity and deployments are replaced (S/var is kept); a
                  failure while downloading or checking leaves the old state as it was
  --ref REF       the branch the device follows, e.g. os/stable
  --keys K.pub    a public key the device trusts (repeat for several)
  --bootloader B  uboot (env file S/boot/uboot.env, fw_env.config), grub (S/boot/grub/grubenv)
                  or systemd-boot (S/boot is the ESP: counted boot entries
                  S/boot/loader/entries/larch-{a,b,rescue}*.conf, loader/loader.conf when
                  absent; the EFI binary is the image's); default uboot
  --fw-env-config F  uboot: the board's own fw_env.config (the env in raw eMMC or MTD at the
                  offsets U-Boot uses, one line per copy), copied to S/boot/fw_env.config; the
                  initial env is written where it says. Run where those devices are the
                  device's (on the device, or a factory image booted on it). Default: a
                  16 KiB env file S/boot/uboot.env on the boot partition, named by its path.
                  U-Boot boots a stored env instead of its built-in one, so the env written
                  keeps the board's variables: those of --env-defaults, else those of the
                  valid env already there; with neither, provision refuses (ENV_CORRUPT, 13)
                  before anything is written
  --env-defaults F  with --fw-env-config: the board's default env (NAME=VALUE lines, U-Boot's
                  u-boot-initial-env), written with larch's state in place of what is there
  --commit ID, --version V   install this commit or version instead of the ref's newest
  --tries N       boots a new deployment gets before falling back (1-${MAX_TRIES}, default ${DEFAULT_TRIES})
  --collection-id ID  the vendor repo this device takes updates from (its 'init --collection-id');
                  default: the summary's collection_id, else the commit's larch.collection_id
  --compatible ID the device's hardware-compatibility id (as RAUC's compatible); default: the
                  commit's larch.compatible
  --architecture ARCH  the device's Debian architecture; default: the commit's larch.architecture
                  The three are recorded in S/larch/config.json; from then on check, upgrade,
                  deploy and the daemon refuse (exit 14, REFUSED, data.reason wrong-collection,
                  incompatible, wrong-architecture, data.device, data.offered) a summary or
                  commit bound to another value, before anything is written. Commits and
                  summaries that carry none are accepted. Provision refuses them the same way
  --kargs 'ARGS'  the board's default kernel arguments, one command line
                  ('panic=10 larch.root=LABEL=root larch.boot=LABEL=boot'; image build gives its
                  board profile's). With it, larch manages each deployment's arguments: the
                  defaults, then the commit's /usr/lib/larch/kargs.d/*.conf, then local changes
                  ('larch kargs'), written beside the slot's kernel (docs/boot.md). Without it,
                  the boot script's own larch_bootargs are used and 'larch kargs' refuses
  --json          print {"result", "sysroot", "slot", "commit", "version", "bootloader", "download",
                  "agent": {"version"} of the commit's /usr/bin/larch, or null when it carries none}

${EXIT_HELP}
  provision: 11 already provisioned with other options (data.differs); add --force.

EXAMPLES
  larch provision --sysroot /mnt/sysroot --repo-url http://updates.example/os --ref os/stable \\
      --keys vendor.pub --bootloader grub
  larch provision --sysroot /mnt/sysroot --repo-url http://updates.example/os --ref os/stable \\
      --keys vendor.pub --device-id gw-0042 --mqtt-ca ca.pem --mqtt-cert gw-0042.crt \\
      --mqtt-key gw-0042.key --daemon-conf fleet/50-policy.conf
`,
  async run(args, io) {
    const mqttUrl = opt(args, 'mqtt-url');
    if (mqttUrl !== undefined && opt(args, 'repo-url') !== undefined) throw new LarchError('USAGE', 'provision: give --repo-url or --mqtt-url, not both', { data: { command: 'provision', options: ['repo-url', 'mqtt-url'] } });
    const kind = mqttUrl !== undefined ? 'mqtt' : 'http';
    const given = mqttUrl ?? need(args, 'repo-url', 'provision');
    // A directory path is recorded absolute: the device's commands run from any directory.
    const url = kind === 'http' && isLocalRemote(given) && !given.startsWith('file:') ? resolve(given) : given;
    const ref = need(args, 'ref', 'provision');
    const bootloader = opt(args, 'bootloader') ?? 'uboot';
    if (!(BOOTLOADER_KINDS as readonly string[]).includes(bootloader)) throw new LarchError('USAGE', `provision: --bootloader must be uboot, grub or systemd-boot, got '${bootloader}'`, { data: { command: 'provision', option: 'bootloader', value: bootloader } });
    const tries = intOption(opt(args, 'tries'), 'tries', 'provision', 1) ?? DEFAULT_TRIES;
    if (tries > MAX_TRIES) throw new LarchError('USAGE', `provision: --tries must be 1..${MAX_TRIES}`, { data: { command: 'provision', option: 'tries', value: tries, max: MAX_TRIES } });
    // The files given are this host's; provision copies them into the sysroot (the device's identity).
    const mqttAuth = remoteMqttAuth(args);
    const remote = remoteFor({ remote: { url, kind, mqtt: mqttAuth } });
    const progress = args.json ? undefined : progressFor(io, 'download');
    const result = await provisionSysroot(sysrootOf(args), {
      remote,
      remoteUrl: url,
      remoteKind: kind,
      identity: { deviceId: opt(args, 'device-id'), mqttUsername: mqttAuth?.username, mqttPasswordFile: mqttAuth?.passwordFile, mqttCaFile: mqttAuth?.caFile, mqttCertFile: mqttAuth?.certFile, mqttKeyFile: mqttAuth?.keyFile, daemonConf: list(args, 'daemon-conf') },
      force: args.values.force === true,
      ref,
      keys: list(args, 'keys'),
      bootloader: bootloader as BootloaderKind,
      tries,
      target: opt(args, 'commit') ?? opt(args, 'version'),
      fwEnvConfig: opt(args, 'fw-env-config'),
      envDefaults: opt(args, 'env-defaults'),
      bind: { collection_id: opt(args, 'collection-id'), compatible: opt(args, 'compatible'), architecture: opt(args, 'architecture') },
      kargs: opt(args, 'kargs') === undefined ? undefined : splitCommandLine(opt(args, 'kargs')!, 'provision --kargs'),
      progress,
    }).finally(() => finishProgress(progress));
    if (args.json) printJson(io, result);
    else io.out(result.result === 'already-provisioned' ? `${result.sysroot} is already provisioned with version ${result.version} in slot A\n` : `provisioned ${result.sysroot}: version ${result.version} (${result.commit.slice(0, 12)}) in slot A, ${result.bootloader}; downloaded ${formatBytes(result.download.bytes)}\n`);
  },
};

export const status: Command = {
  name: 'status',
  summary: 'show the booted, pending and rollback deployments and the boot state',
  options: { ...SYSROOT_OPTION },
  help: `NAME
  larch status - the device's deployments, boot state and last results

SYNOPSIS
  larch status [--sysroot S] [--json]

DESCRIPTION
  Shows every deployment labelled by what it is, as rpm-ostree status does: booted, pending
  (staged: the bootloader tries it next boot), next boot (good and first, but not booted now:
  before the first boot, or after rollback), rollback (good, not first), failed (failed on
  this device) or unbootable (a cancelled update), each with version, commit, timestamp,
  origin, signing key and tries left; releases that failed on this device ("2 failed on this
  device at TIME; waiting for a newer release"); the boot order; what the last boot-check found
  (health, whether the bootloader fell back); and the last update's result or error. A
  layered deployment also shows, as rpm-ostree status does, its base (BaseCommit:), its
  LayeredPackages:, ReplacedBasePackages: and RemovedBasePackages:, and that it was made on
  this device from its verified base.

OPTIONS
${SYSROOT_HELP}
  --json          print the status object. Scripts may rely on: booted.{slot,commit,version},
                  each deployment's agent.{version,path,in_tree} (the agent that runs it),
                  pending (null or a deployment; pending.version), rollback, boot.order,
                  last_boot.fell_back, last_boot.healthy, last_update.{result,error},
                  deployments[].label (booted, staged, next-boot, rollback, failed,
                  unbootable), next_boot, failed_releases[].{commit,version,time,failed_checks}
                  boot_env ("ok"; "repaired": the env had no valid copy and was rewritten with
                  the state larch can prove; "corrupt": a board env with no valid copy, which
                  larch never rewrites; boot_env_detail.{message,hint} says what and how to fix);
                  per deployment its layer: base.{commit,version}, layered (names),
                  overrides.{replaced,removed} (names), local, layer_packages, layer_error
                  (docs/cli.md; a layered deployment's version is its base's)

${EXIT_HELP}
`,
  async run(args, io) {
    const s = await readStatus(sysrootOf(args));
    if (args.json) printJson(io, s);
    else io.out(formatStatus(s));
  },
};

export const checkCmd: Command = {
  name: 'check',
  summary: 'ask the remote whether an update exists, and its size',
  options: { ...SYSROOT_OPTION, ...REMOTE_LIMIT_OPTIONS },
  help: `NAME
  larch check - is there an update?

SYNOPSIS
  larch check [--sysroot S] [--timeout SECONDS] [--min-speed BYTES] [--min-speed-time SECONDS] [--json]

DESCRIPTION
  Fetches and verifies the remote's signed summary (trusted key, not expired, serial not older
  than the last one seen) and says whether the followed ref has a newer commit than the booted
  one, its version, and how many bytes the upgrade will download (the static delta's size; for
  an object-by-object pull the size is not known in advance). When both commits were made by
  'larch compose', it also lists the packages upgraded, downgraded, added and removed, as
  'larch db diff' does (only the new commit object is fetched for that, verified, not stored).

OPTIONS
${SYSROOT_HELP}
  --timeout SECONDS  give up when the server has not answered the whole check within
                  this long: exit 9 (IO, data.reason "timeout") naming the server and the
                  limit (default 3600)
${MIN_SPEED_HELP}
  --json          print {"available", "booted": {slot, commit, version}, "update": null |
                  {commit, version, timestamp, bytes, via, failed_here, barrier, older}, "packages": null | {upgraded,
                  downgraded, added, removed}} (packages: db diff --json's lists; null when
                  there is no update or a commit has no package list; barrier: true when the
                  offer is a barrier release the device goes through before the head; older:
                  true when the head is older than the booted release, a held rollout or a
                  rollback of the ref by the vendor, which upgrade refuses without
                  --allow-downgrade);
                  "layer": null | {base, reapplied: {layered, replaced, removed}, notes}:
                  on a layered device packages is the diff of base and layer together,
                  the new base with the booted layer re-applied (docs/cli.md)

${EXIT_HELP}
`,
  async run(args, io) {
    const ctx = await context(args, io);
    const r = await previewCheck(ctx);
    if (args.json) printJson(io, r);
    else if (!r.available) io.out(`no update: version ${r.booted.version} is the newest\n`);
    else if (r.update!.older) {
      // Not an update: the vendor moved the head back (a held rollout); the device stays where it is.
      const { ref } = await ctx.sysroot.readConfig();
      io.out(`no update: the head of ${ref} is version ${r.update!.version} (${r.update!.commit.slice(0, 12)}), older than the booted version ${r.booted.version} (a held rollout or a rollback of the ref by the vendor); larch upgrade refuses it without --allow-downgrade\n${r.packages ? formatPackageDiff(r.packages) : ''}${formatLayerPreview(r.layer)}`);
    } else io.out(`update available: version ${r.update!.version} (${r.update!.commit.slice(0, 12)}); download ${r.update!.bytes === null ? 'object by object (size unknown)' : formatBytes(r.update!.bytes)}\n${r.update!.barrier ? 'a barrier release: the device goes through it before the newest version\n' : ''}${r.update!.failed_here ? `but ${describeFailure(r.update!.failed_here)}: upgrade refuses it\n` : ''}${r.packages ? formatPackageDiff(r.packages) : ''}${formatLayerPreview(r.layer)}`);
  },
};

const UPGRADE_OPTIONS: OptionSpec = { ...SYSROOT_OPTION, 'from-file': { type: 'string' }, reboot: { type: 'boolean' }, 'download-only': { type: 'boolean' }, 'dry-run': { type: 'boolean' }, 'allow-downgrade': { type: 'boolean' }, 'drop-failing-layers': { type: 'boolean' }, ...REMOTE_LIMIT_OPTIONS };

async function runUpgrade(args: ParsedArgs, io: Io, target?: string): Promise<void> {
  const ctx = await context(args, io);
  const opts = { target, allowDowngrade: args.values['allow-downgrade'] === true, retryFailed: args.values['retry-failed'] === true, dropFailingLayers: args.values['drop-failing-layers'] === true };
  const preview = args.values['dry-run'] === true ? await previewUpgrade(ctx, opts).finally(() => finishProgress(ctx.progress)) : null;
  const r = preview?.upgrade ?? (await upgradeSysroot(ctx, { ...opts, downloadOnly: args.values['download-only'] === true }).finally(() => finishProgress(ctx.progress)));
  let finalized = null;
  if (r.result === 'staged' && args.values.reboot === true) finalized = await finalizeSysroot(ctx);
  if (preview?.etc && r.to) {
    if (args.json) return printJson(io, r);
    io.out(`would upgrade slot ${r.from.slot} version ${r.from.version} -> slot ${r.to.slot} version ${r.to.version} (${r.download.via}${r.download.bytes ? `, ${formatBytes(r.download.bytes)}` : ''})\n/etc merge plan:\n${preview.etc.text}`);
    if (r.packages) io.out(formatPackageDiff(r.packages));
    io.out(formatLayerPreview(preview.upgrade.layer));
    return;
  }
  if (args.json) return printJson(io, { ...r, finalized });
  const msg: Record<string, string> = {
    staged: `staged version ${r.to?.version} in slot ${r.to?.slot}; it boots next (downloaded ${formatBytes(r.download.bytes)} by ${r.download.via})`,
    downloaded: `downloaded version ${r.to?.version} (${formatBytes(r.download.bytes)}); run larch upgrade to deploy it`,
    'no-update': `no update: version ${r.from.version} is the newest`,
    pinned: 'pinned: no upgrade (larch unpin to resume)',
    'dry-run': '',
  };
  io.out(msg[r.result] + '\n');
  if (target !== undefined && r.newest !== undefined) io.out(r.newest ? `newest available: version ${r.newest.version} (${r.newest.commit.slice(0, 12)})\n` : "deployed from the device's repo; the remote was not asked for the newest\n");
  if (r.layered) io.out(`layered packages re-applied on version ${r.to?.version}: commit ${r.layered.commit.slice(0, 12)}${r.layered.dropped.length > 0 ? `; DROPPED (no longer apply): ${r.layered.dropped.join(', ')}` : ''}\n`);
  if (r.etc_conflicts.length > 0) io.out(`/etc conflicts (your version kept, the vendor's saved as FILE.larchnew): ${r.etc_conflicts.join(', ')}\n`);
  if (r.result === 'staged' && args.values.reboot === true) {
    io.out(ctx.sysroot.realDevice ? 'rebooting\n' : 'reboot now (in a test sysroot: larch sim-boot; the request is recorded in S/larch/daemon/reboot-requested.json)\n');
    await rebootFor(ctx.sysroot)(`upgrade --reboot: version ${r.to?.version} staged in slot ${r.to?.slot}`);
  }
}

export const upgrade: Command = {
  name: 'upgrade',
  summary: "download, verify and stage the ref's newest commit in the other slot",
  options: UPGRADE_OPTIONS,
  help: `NAME
  larch upgrade - update to the newest version of the followed ref

SYNOPSIS
  larch upgrade [--sysroot S] [--from-file BUNDLE] [--reboot] [--download-only] [--dry-run] [--allow-downgrade]
                [--drop-failing-layers] [--timeout SECONDS] [--min-speed BYTES] [--min-speed-time SECONDS] [--json]

DESCRIPTION
  Verifies the signed summary, refuses a downgrade unless allowed (older by Debian version
  ordering or by commit timestamp: data.reason "downgrade") and a release that failed on this
  device (data.reason "failed-here": it fell back or was marked bad; a newer release is taken
  as usual; 'larch deploy VERSION --retry-failed' tries it again), checks free space, downloads
  the update (a static delta from the booted commit when the server has one, else object by
  object; interrupted downloads resume), verifies every object and the commit's signature, and
  only then writes the other slot: a hardlink checkout, /etc merged three ways (local and
  vendor changes both kept; an overlapping change keeps yours and saves the vendor's as
  FILE.larchnew), the kernel and initramfs copied to the slot's boot directory (once each, as
  vmlinuz and initrd.img). Last, the slot is made first in the boot order with N tries. /var
  is never touched. A refusal or a crash at any point leaves the booted deployment and the boot
  state as they were.

  Before anything is written: free space on the repo's filesystem (the delta, its objects, the
  new /etc) and on S/boot (one slot's boot files; the other slot's old ones count as free, as
  they are removed first); a tree whose /usr, /etc, /boot or /var is not a real directory, or
  whose boot file links out of its /boot, is refused (exit 5). Objects found missing or
  corrupt when the slot is written are fetched again.

OPTIONS
${SYSROOT_HELP}
  --from-file BUNDLE  take the update from this bundle file (larch bundle create: a USB stick,
                     factory media) instead of the remote: the same checks (the summary signed
                     under the followed remote's trust, expiry, its own serial floor, the
                     delta and commit signatures), no network. The bundle must hold a delta
                     from the booted release (else exit 12, DELTA_BASE_MISSING); a damaged or
                     forged one is refused with nothing staged (exit 4, data.reason
                     bundle-member; or 6)
  --reboot           finalize (merge /etc again with edits made since) and reboot
  --download-only    stop after the download and verification
  --dry-run          show what would be downloaded, the /etc merge plan and the package
                     changes (as check); stage nothing
  --allow-downgrade  accept a target older than the booted commit (by version or timestamp)
  --drop-failing-layers  with package layering (larch install, override): the layer is
                     re-applied on the new base; parts of it that no longer apply (a conflict
                     with the new base, a package gone) are dropped and named ("layered":
                     {commit, dropped}) instead of refusing the upgrade (exit 15, LAYER_FAILED)
  --timeout SECONDS  bound the summary fetch and, separately, the whole download: past it,
                     exit 9 (IO, data.reason "timeout") naming the server and the limit;
                     what was downloaded is kept and the next run resumes (default 3600)
${MIN_SPEED_HELP}
  --json             print {"result": staged|downloaded|no-update|pinned|dry-run, "from",
                     "to", "download": {via, bytes, fallback?}, "etc_conflicts"}; fallback
                     {delta, reason, code, message} when the delta failed (reason unsigned,
                     untrusted, missing, truncated, corrupt, base_missing) and the commit
                     was fetched object by object instead (also journaled); with --dry-run also
                     "etc_plan", "packages" and "layer" (as for check)

${EXIT_HELP}

EXAMPLES
  larch upgrade --dry-run
  larch upgrade --reboot
`,
  async run(args, io) {
    await runUpgrade(args, io);
  },
};

export const deploy: Command = {
  name: 'deploy',
  summary: 'stage a given version or commit (rpm-ostree deploy)',
  options: { ...UPGRADE_OPTIONS, 'retry-failed': { type: 'boolean' } },
  positionals: true,
  help: `NAME
  larch deploy - stage a given version or commit of the followed ref

SYNOPSIS
  larch deploy VERSION|COMMIT|PREFIX [--sysroot S] [--from-file BUNDLE] [--allow-downgrade] [--retry-failed] [--reboot]
               [--dry-run] [--timeout SECONDS] [--json]

DESCRIPTION
  As upgrade, but for a named version or commit from the ref's history: a version, a full
  commit id, or a unique prefix of one (at least 4 hex digits, as git and ostree take them;
  a version that looks like hex is a version first). The commits the device has (its
  deployments, a finished download) are looked at first, with no network: deploying one of
  them works offline. Else the remote's whole history of the ref is searched (at most 10,000
  commits back; a version or full id stops the walk where it is found). A prefix of several
  commits is refused (exit 2, data.candidates: [{commit, version}]). An older one (by
  Debian version ordering or by commit timestamp) is refused unless --allow-downgrade is
  given. A release that failed on this device (it fell back, or was marked bad) is refused
  unless --retry-failed is given. The answer names the version staged ("to") and the newest
  the remote offers ("newest": {commit, version}; null when the remote was not asked).

OPTIONS
${SYSROOT_HELP}
  --retry-failed  stage a release that failed on this device again (it is forgotten as
                  failed; if it fails again it is remembered again)
  --allow-downgrade, --from-file, --reboot, --download-only, --dry-run, --timeout, --min-speed,
  --min-speed-time, --json   as for upgrade

${EXIT_HELP}
`,
  async run(args, io) {
    const [target] = positionals(args, ['version'], 'deploy');
    await runUpgrade(args, io, target);
  },
};

export const rollback: Command = {
  name: 'rollback',
  summary: 'boot the previous deployment next (or cancel a staged update)',
  options: { ...SYSROOT_OPTION },
  help: `NAME
  larch rollback - go back to the other deployment

SYNOPSIS
  larch rollback [--sysroot S] [--json]

DESCRIPTION
  When the other slot holds a good deployment, makes it first in the boot order: it boots
  next. When the other slot holds a staged update not yet booted, cancels it instead. A slot
  that failed or was never confirmed is refused (it might not boot).

OPTIONS
${SYSROOT_HELP}
  --json          print {"result": rolled-back|cancelled, "slot", "version"}

${EXIT_HELP}
`,
  async run(args, io) {
    const r = await rollbackSysroot(sysrootOf(args));
    if (args.json) printJson(io, r);
    else io.out(r.result === 'rolled-back' ? `rollback: slot ${r.slot} (version ${r.version}) boots next; reboot to use it\n` : `cancelled the staged version ${r.version} in slot ${r.slot}\n`);
  },
};

export const finalize: Command = {
  name: 'finalize',
  summary: "merge /etc of the staged deployment again (run at shutdown)",
  options: { ...SYSROOT_OPTION },
  help: `NAME
  larch finalize - carry /etc edits made since upgrade into the staged deployment

SYNOPSIS
  larch finalize [--sysroot S] [--json]

DESCRIPTION
  Redoes the three-way /etc merge of the staged deployment against the booted /etc as it is
  now, so edits made between upgrade and reboot are kept (as OSTree's staged deployments).
  Run by upgrade --reboot and by the larch-finalize shutdown unit. A power cut during it
  leaves one complete merge in place; a finalize that did not complete is completed or
  reported when the slot boots (status: finalize_interrupted; history). Does nothing when no
  update is staged.

OPTIONS
${SYSROOT_HELP}
  --json          print {"slot": null | A|B, "conflicts": [...]}

${EXIT_HELP}
`,
  async run(args, io) {
    const r = await finalizeSysroot(await context(args, io));
    if (args.json) printJson(io, r);
    else io.out(r.slot ? `finalized slot ${r.slot}${r.conflicts.length ? `; /etc conflicts: ${r.conflicts.join(', ')}` : ''}\n` : 'nothing staged\n');
  },
};

export const cleanup: Command = {
  name: 'cleanup',
  summary: 'free space: objects no deployment uses, and (--rollback) the rollback deployment',
  options: { ...SYSROOT_OPTION, rollback: { type: 'boolean' } },
  help: `NAME
  larch cleanup - free space on the device

SYNOPSIS
  larch cleanup [--sysroot S] [--rollback] [--json]

DESCRIPTION
  Deletes repo objects that no deployment uses, and interrupted downloads. With --rollback
  also removes the rollback deployment (after which rollback is impossible until the next
  upgrade). Never touches the booted or the staged deployment. Runs by itself after
  boot-check marks a slot good, and as the signed MQTT command 'cleanup'. Commits are removed
  before their trees, so a cleanup killed at any point leaves every remaining commit whole.

OPTIONS
${SYSROOT_HELP}
  --rollback      also remove the rollback deployment
  --json          print {"removed_slot", "objects_deleted", "bytes_freed"}

${EXIT_HELP}
`,
  async run(args, io) {
    const r = await cleanupSysroot(sysrootOf(args), { rollback: args.values.rollback === true });
    if (args.json) printJson(io, r);
    else io.out(`${r.removed_slot ? `removed slot ${r.removed_slot}; ` : ''}freed ${r.objects_deleted} objects, ${formatBytes(r.bytes_freed)}\n`);
  },
};

function pinCommand(pinned: boolean): Command {
  const name = pinned ? 'pin' : 'unpin';
  return {
    name,
    summary: pinned ? 'hold upgrades (deploy still works)' : 'resume upgrades',
    options: { ...SYSROOT_OPTION },
    help: `NAME
  larch ${name} - ${pinned ? 'hold upgrades on this device' : 'let upgrades run again'}

SYNOPSIS
  larch ${name} [--sysroot S] [--json]

DESCRIPTION
  ${pinned ? 'While pinned, larch upgrade does nothing (it reports "pinned"); larch deploy VERSION still works.' : 'Undoes larch pin.'}

OPTIONS
${SYSROOT_HELP}
  --json          print {"pinned"}

${EXIT_HELP}
`,
    async run(args, io) {
      await setPinned(sysrootOf(args), pinned);
      if (args.json) printJson(io, { pinned });
      else io.out(pinned ? 'pinned\n' : 'unpinned\n');
    },
  };
}
export const pin = pinCommand(true);
export const unpin = pinCommand(false);

export const history: Command = {
  name: 'history',
  summary: 'the device journal: every check, download, deploy, boot, health check, fallback',
  options: { ...SYSROOT_OPTION, limit: { type: 'string' } },
  help: `NAME
  larch history - what happened on this device, and why

SYNOPSIS
  larch history [--sysroot S] [--limit N] [--json]

DESCRIPTION
  Prints the journal (S/larch/journal.1.jsonl, the part rotated at 256 KiB, then
  S/larch/journal.jsonl), oldest first: provisioning, checks, downloads,
  verification, deployments, each boot and which slot it took, each health check, mark-good,
  fallbacks, rollbacks and errors, each with its reason.

OPTIONS
${SYSROOT_HELP}
  --limit N       only the last N entries
  --json          print an array of {time, event, message, slot, commit, version, data}

${EXIT_HELP}
`,
  async run(args, io) {
    const sysroot = sysrootOf(args);
    await sysroot.readConfig();
    let entries = await readJournal(sysroot.journalPath);
    const limit = intOption(opt(args, 'limit'), 'limit', 'history', 1);
    if (limit !== undefined) entries = entries.slice(-limit);
    if (args.json) printJson(io, entries);
    else for (const e of entries) io.out(`${e.time}  ${e.event.padEnd(9)} ${e.slot ? `[${e.slot}] ` : ''}${e.message}\n`);
  },
};

const BOOT_OPTIONS: OptionSpec = { ...SYSROOT_OPTION, 'no-reboot': { type: 'boolean' }, timeout: { type: 'string' } };

export const bootCheckCmd: Command = {
  name: 'boot-check',
  summary: 'at boot: run health checks, then mark the slot good or spend a try',
  options: BOOT_OPTIONS,
  help: `NAME
  larch boot-check - decide at boot whether this deployment is healthy

SYNOPSIS
  larch boot-check [--sysroot S] [--no-reboot] [--timeout SECONDS] [--json]

DESCRIPTION
  Learns the booted slot from larch.slot= on the kernel command line, runs the health checks
  of the deployment (executables in /etc/larch/health.d/required.d/ and wanted.d/, each with a
  timeout), then:
    healthy                          marks the slot good (it stops spending tries)
    unhealthy, slot unconfirmed      reboots: the bootloader spends another try, or falls back
    unhealthy, slot already good     stays and reports (a good slot never falls back by itself)
    no slot bootable (rescue)        stays and reports; never reboots in a loop
  A fallback by the bootloader (the booted slot is not the one it was asked to boot) is
  recorded and reported in status and history. Run by larch-boot-check.service at each boot.
  After marking a slot good it runs cleanup. A full filesystem does not stop it (journal
  entries that do not fit are skipped with a warning). A finalize of the booted slot that did
  not complete is completed, or reported in status (finalize_interrupted) and history.

OPTIONS
${SYSROOT_HELP}
  --no-reboot     report that a reboot is needed instead of rebooting
  --timeout S     per-check timeout in seconds (default 60)
  --json          print {"slot", "healthy", "outcome", "reboot", "fell_back", "from", "rescue",
                  "failed_checks", "health", "boot_env", "agent_version"} (boot_env: ok, repaired (the env had no
                  valid copy and was rewritten), or corrupt (a board env larch may not rewrite:
                  the result was not recorded; the journal names the restore command))

${EXIT_HELP}
`,
  async run(args, io) {
    const sysroot = sysrootOf(args);
    const timeout = intOption(opt(args, 'timeout'), 'timeout', 'boot-check', 1);
    const r = await bootCheck(sysroot, { timeoutMs: timeout === undefined ? undefined : timeout * 1000 });
    if (args.json) printJson(io, r);
    else io.out(`slot ${r.slot}: ${r.healthy ? 'healthy' : `unhealthy (${r.failed_checks.join(', ')})`}; ${r.outcome}${r.fell_back ? `; the bootloader fell back from slot ${r.from}` : ''}${r.boot_env === 'ok' ? '' : `; boot env ${r.boot_env}`}\n`);
    if (r.reboot && args.values['no-reboot'] !== true) await rebootFor(sysroot)(`boot-check: slot ${r.slot} ${r.outcome}`);
  },
};

function markCommand(good: boolean): Command {
  const name = good ? 'mark-good' : 'mark-bad';
  return {
    name,
    summary: good ? 'mark a slot good by hand' : 'mark a slot bad: it never boots again until redeployed',
    options: { ...SYSROOT_OPTION, slot: { type: 'string' }, ...(good ? {} : { force: { type: 'boolean' } }) },
    help: `NAME
  larch ${name} - ${good ? 'confirm a slot without running health checks' : 'stop a slot from booting'}

SYNOPSIS
  larch ${name} [--sysroot S] [--slot A|B]${good ? '' : ' [--force]'} [--json]

DESCRIPTION
  ${good ? 'Marks the slot (default: the booted one) good: it boots without spending tries and becomes the last known good slot.' : `Marks the slot (default: the booted one) bad: the bootloader skips it until a new deployment is written to it.
  Its release is remembered as failed on this device (S/larch/failed.json): upgrade and the
  daemon do not stage it again; 'larch deploy VERSION --retry-failed' does. Marking the only
  slot known to boot bad (the other is not good) is refused unless --force is given.`}

OPTIONS
${SYSROOT_HELP}
  --slot A|B      the slot (default: the booted one)${good ? '' : `
  --force         also mark the only slot known to boot bad`}
  --json          print {"slot"}

${EXIT_HELP}
`,
    async run(args, io) {
      const r = await markSlot(sysrootOf(args), good, slotOption(args, name), { force: args.values.force === true });
      if (args.json) printJson(io, r);
      else io.out(`slot ${r.slot} marked ${good ? 'good' : 'bad'}\n`);
    },
  };
}
export const markGood = markCommand(true);
export const markBad = markCommand(false);

export const simBootCmd: Command = {
  name: 'sim-boot',
  summary: 'a simulated reboot: the bootloader step on the env file, then boot-check',
  options: { ...SYSROOT_OPTION, unhealthy: { type: 'boolean' }, timeout: { type: 'string' } },
  help: `NAME
  larch sim-boot - reboot a simulated device

SYNOPSIS
  larch sim-boot --sysroot S [--unhealthy] [--json]

DESCRIPTION
  Runs the bootloader's decision (exactly what board/uboot/boot.cmd and board/grub/grub.cfg
  do: pick the first good slot, or spend a try of an unconfirmed one, or fall back) on the
  sysroot's real env file, records the chosen slot as the kernel command line would
  (larch.slot=X in S/larch/sim/cmdline), then runs boot-check as the device would: by the
  booted deployment's own agent (its /usr/bin/larch) when it carries one, else in this
  process. For tests and the demo.
  On a systemd-boot sysroot it does what systemd-boot does with the entries in
  S/boot/loader/entries: the first in its order boots, a counted entry is renamed one try
  down, and the entry's options line is the command line (with larch.rescue=1 on the
  rescue entry).
  An env with no valid copy is read as the scripts read it (the safe default: the LKG
  marker's slot, no write); boot-check then repairs it.
  Refused (exit 2) without an explicit --sysroot, for the real roots / and /sysroot, and on
  a system booted through larch (larch.slot= on /proc/cmdline): there the env is the
  device's own, and /proc/cmdline always wins over a simulated command line.

OPTIONS
  --sysroot S     a test sysroot (a directory provisioned with larch provision); required
  --unhealthy     make the health checks fail (a stand-in for a broken tree)
  --json          print {"slot", "rescue", "wrote", "agent_path", "check": <boot-check result>}
                  (agent_path: the booted deployment's own agent that ran boot-check; null:
                  this process ran it)

${EXIT_HELP}
`,
  async run(args, io) {
    const timeout = intOption(opt(args, 'timeout'), 'timeout', 'sim-boot', 1);
    if (opt(args, 'sysroot') === undefined) throw new LarchError('USAGE', 'sim-boot needs --sysroot S: it rewrites the boot env of S as a reboot would, and the default /sysroot is a real device', { hint: "run 'larch sim-boot --sysroot DIR' on a test sysroot; on a device, reboot", data: { command: 'sim-boot', option: 'sysroot' } });
    const r = await simBoot(sysrootOf(args), { forceUnhealthy: args.values.unhealthy === true, timeoutMs: timeout === undefined ? undefined : timeout * 1000 });
    if (args.json) printJson(io, r);
    else io.out(`booted slot ${r.slot}${r.rescue ? ' (rescue)' : ''}: ${r.check.healthy ? 'healthy' : `unhealthy (${r.check.failed_checks.join(', ')})`}; ${r.check.outcome}${r.check.fell_back ? `; FELL BACK from slot ${r.check.from}` : ''}${r.check.reboot ? '; needs a reboot' : ''}\n`);
  },
};

/**
 * A command that changes the sysroot runs holding the device lock (src/agent/device-lock.ts), so
 * two of them (or one and the daemon) never interleave.
 */
export const deviceCommands: Command[] = [
  locked(provision),
  status,
  locked(checkCmd),
  ...[upgrade, deploy, rollback, finalize, cleanup, pin, unpin].map((c) => locked(c)),
  history,
  ...[bootCheckCmd, markGood, markBad].map((c) => locked(c)),
  simBootCmd, // takes the device lock itself: not while the booted deployment's own agent runs boot-check
];
