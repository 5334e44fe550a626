/**
 * Factory set-up of a sysroot: repo, trusted keys (by key id), config, the device's identity,
 * the first deployment in slot A, shared /var, and the bootloader state (A good, first).
 *
 * Atomic: the whole state is built in staging folders (S/.larch-provision/ for S/larch and /var,
 * S/boot/.larch-provision/ for the slot's boot files, on the boot partition) and moved into place
 * last, S/larch (whose config.json makes the sysroot "provisioned") by the very last rename. A run
 * that fails or is killed leaves the sysroot unprovisioned, none of its keys trusted; the next run
 * starts from scratch. Idempotent: a re-run with the same options changes nothing; other options
 * are refused (EXISTS, data.differs naming them) unless force, which provisions again from scratch.
 */
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { ubootEnvStore } from '../bootcount/env-store.ts';
import { parseFwEnvConfig } from '../bootcount/fw-env-config.ts';
import { parseEnvText } from '../bootcount/uboot-env.ts';
import type { Slot } from '../bootcount/state.ts';
import { isValidDeviceId } from '../mqtt/format.ts';
import { fsyncPath, syncFilesystem, writeFileAtomic } from '../_durable.ts';
import { readPublicKey, keyId, formatPublicKey } from '../store/sign.ts';
import { verifyCommit } from '../store/signatures.ts';
import { refuseRemoteLocal } from './layering/trust.ts';
import { type Binding, bindingValueProblem } from '../store/binding.ts';
import { Repo } from '../store/repo.ts';
import { findDelta } from '../protocol/summary.ts';
import { createBootEnv, isLarchEnvConfig } from './boot.ts';
import { readDeployment, writeDeployment } from './deploy.ts';
import { deploymentKargs } from './deployment-kargs.ts';
import { formatFailedReleases } from './failed-releases.ts';
import { failedReleasesPath, readFailedReleases } from './failed-store.ts';
import { appendJournal } from './journal.ts';
import { bindingConfig, provisionBinding } from './product-binding.ts';
import { parseDaemonConfig } from './policy.ts';
import { type BootloaderKind, type DeviceConfig, IDENTITY_FILES, type RemoteMqttAuth, Sysroot } from './sysroot.ts';
import type { Remote } from './remote/remote.ts';
import { carryLegacyAgent } from './agent-binary.ts';

/** The device's own settings, written under S/larch where the daemon and the remote read them. */
export interface DeviceIdentity {
  /** device_id in the provision drop-in (the daemon's MQTT client id and topics). */
  deviceId?: string;
  mqttUsername?: string;
  /** Files on this host, copied to S/larch/identity/ (IDENTITY_FILES) and named in the drop-in. */
  mqttPasswordFile?: string;
  mqttCaFile?: string;
  mqttCertFile?: string;
  mqttKeyFile?: string;
  /** daemon.conf files copied to S/larch/daemon.conf.d/ under their own names. */
  daemonConf?: string[];
}

export interface ProvisionOptions {
  remote: Remote;
  remoteUrl: string;
  remoteKind: 'http' | 'mqtt';
  ref: string;
  keys: string[];
  bootloader: BootloaderKind;
  tries: number;
  /** A commit id or version instead of the ref's head. */
  target?: string;
  /**
   * U-Boot: the board's own fw_env.config (the env in raw eMMC or MTD at its offsets), copied to
   * S/boot/fw_env.config as is; the initial env is written where it says. Default: a 16 KiB env
   * file S/boot/uboot.env on the boot partition.
   */
  fwEnvConfig?: string;
  /**
   * With a board's own env (fwEnvConfig naming raw storage): the board's default env (NAME=VALUE
   * lines, U-Boot's u-boot-initial-env), written with larch's state. Without it, the valid env
   * already on the storage is kept and larch's state added; with none valid, provision refuses.
   */
  envDefaults?: string;
  identity?: DeviceIdentity;
  /** Provision again from scratch, whatever the sysroot holds. */
  force?: boolean;
  /**
   * What the device is bound to (product-binding.ts): --collection-id, --compatible,
   * --architecture. Each one not given is taken from the summary (collection id) or the commit.
   */
  bind?: Partial<Binding>;
  /** The board's default kernel arguments (--kargs): larch manages each deployment's from them (deployment-kargs.ts). */
  kargs?: string[];
  progress?: (done: number, total: number | null) => void;
}

export interface ProvisionResult {
  result: 'provisioned' | 'already-provisioned';
  sysroot: string;
  slot: 'A';
  commit: string;
  version: string;
  bootloader: BootloaderKind;
  download: { via: 'delta' | 'objects' | 'none'; bytes: number };
  /** The agent of the installed commit (its /usr/bin/larch; version null: unknown); null: the commit carries none. */
  agent: { version: string | null } | null;
}

/**
 * What provision was asked, comparable between runs: the "options" of S/larch/provision.json
 * (docs/formats.md). Files are compared by their SHA-256; keys by their ids. The names are those
 * `data.differs` lists.
 */
export interface ProvisionRequest {
  url: string;
  ref: string;
  bootloader: BootloaderKind;
  tries: number;
  keys: string[];
  /** --commit or --version as given; null: the ref's head at the time. */
  version: string | null;
  fw_env_config: string | null;
  device_id: string | null;
  mqtt_username: string | null;
  mqtt_password_file: string | null;
  mqtt_ca: string | null;
  mqtt_cert: string | null;
  mqtt_key: string | null;
  /** Drop-in name -> SHA-256. */
  daemon_conf: Record<string, string>;
  /** --collection-id, --compatible, --architecture as given (null: taken from the summary or commit). */
  collection_id?: string | null;
  compatible?: string | null;
  architecture?: string | null;
  /** --kargs as given (null: none, larch manages no kernel arguments). */
  kargs?: string[] | null;
}

interface ProvisionRecord {
  larch: 1;
  time: string;
  options: ProvisionRequest;
  commit: string;
  version: string;
}

/** The staging folder's name, in S and in S/boot (a stale one, from a killed run, is removed). */
const STAGING = '.larch-provision';
/** The drop-in provision writes for --device-id and the --mqtt-* options. */
export const PROVISION_DROPIN = '00-provision.conf';
const IDENTITY_CONF_KEYS = { mqttPasswordFile: 'mqtt_password_file', mqttCaFile: 'mqtt_ca_file', mqttCertFile: 'mqtt_cert_file', mqttKeyFile: 'mqtt_key_file' } as const;
const IDENTITY_REQUEST_KEYS = { mqttPasswordFile: 'mqtt_password_file', mqttCaFile: 'mqtt_ca', mqttCertFile: 'mqtt_cert', mqttKeyFile: 'mqtt_key' } as const;
type IdentityFile = keyof typeof IDENTITY_FILES;
const SECRET_FILES: IdentityFile[] = ['mqttPasswordFile', 'mqttKeyFile'];

/** Every input, read and checked before anything is written. */
interface Inputs {
  request: ProvisionRequest;
  keys: Map<string, Uint8Array>;
  boardEnvConfig: string | null;
  files: Partial<Record<IdentityFile, Buffer>>;
  dropins: { name: string; text: string }[];
}

export async function provision(sysroot: Sysroot, opts: ProvisionOptions): Promise<ProvisionResult> {
  const input = await readInputs(opts);
  if (!opts.force) {
    const existing = await readProvisioned(sysroot);
    if (existing) {
      const differs = differingOptions(existing.options, existing.installed, input.request);
      if (differs.length === 0) {
        return { result: 'already-provisioned', sysroot: sysroot.path, slot: 'A', commit: existing.installed.commit, version: existing.installed.version, bootloader: existing.options.bootloader, download: { via: 'none', bytes: 0 }, agent: existing.agent };
      }
      throw new LarchError('EXISTS', `${sysroot.path} is already provisioned, with other ${differs.join(', ')}`, {
        hint: 'run provision with the options the sysroot was provisioned with (S/larch/provision.json), or add --force to provision it again from scratch (its keys, config and deployments are replaced)',
        data: { sysroot: sysroot.path, differs },
      });
    }
  }
  const boardVars = input.boardEnvConfig === null ? null : await boardEnvBase(sysroot, input.boardEnvConfig, opts.fwEnvConfig!, opts.envDefaults);
  if (boardVars === null && opts.envDefaults !== undefined) throw new LarchError('USAGE', "provision: --env-defaults goes with --fw-env-config naming the board's own env storage (larch's env files on the boot partition hold only larch's variables)", { data: { command: 'provision', option: 'env-defaults' } });
  const staging = await startStaging(sysroot);
  try {
    const result = await build(staging, opts, input);
    await keepFailedReleases(sysroot, staging);
    // A commit without an agent: the device keeps the one it has (S/larch/bin/larch).
    if (!result.agent) await carryLegacyAgent(sysroot, staging);
    failpoint('provision::after-staged');
    await moveIntoPlace(sysroot, staging, opts.bootloader, input.boardEnvConfig, boardVars);
    return { ...result, sysroot: sysroot.path };
  } finally {
    await rm(dirname(staging.larchDir), { recursive: true, force: true }).catch(() => {});
    await rm(staging.bootDir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * The option names whose values differ between what the sysroot was provisioned with and what is
 * asked now. A --commit/--version matches the installed commit or version; none asked matches any.
 */
export function differingOptions(was: ProvisionRequest, installed: { commit: string; version: string }, now: ProvisionRequest): string[] {
  const differs: string[] = [];
  for (const k of Object.keys(now) as (keyof ProvisionRequest)[]) {
    if (k === 'version') {
      if (now.version !== null && now.version !== installed.commit && now.version !== installed.version) differs.push(k);
    } else if (JSON.stringify(canonical(was[k])) !== JSON.stringify(canonical(now[k]))) {
      differs.push(k);
    }
  }
  return differs;
}

const canonical = (v: unknown): unknown => (Array.isArray(v) ? [...v].sort() : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v);
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/** @throws USAGE, NOT_FOUND, KEY_INVALID, INVALID_INPUT naming the file */
async function readInputs(opts: ProvisionOptions): Promise<Inputs> {
  if (opts.keys.length === 0) throw new LarchError('USAGE', 'provision: --keys K.pub is required (the keys the device trusts)', { data: { command: 'provision', option: 'keys' } });
  const keys = new Map<string, Uint8Array>();
  for (const k of opts.keys) {
    const pub = await readPublicKey(k);
    keys.set(keyId(pub), pub);
  }
  const boardEnvConfig = opts.fwEnvConfig === undefined ? null : await readBoardEnvConfig(opts.fwEnvConfig, opts.bootloader);
  const id = opts.identity ?? {};
  if (id.deviceId !== undefined && !isValidDeviceId(id.deviceId)) throw new LarchError('USAGE', `provision: '${id.deviceId}' is not a valid device id (letters, digits, . _ -; at most 128)`, { data: { command: 'provision', option: 'device-id', value: id.deviceId } });
  const files: Inputs['files'] = {};
  for (const k of Object.keys(IDENTITY_FILES) as IdentityFile[]) {
    const path = id[k];
    if (path !== undefined) files[k] = await readFile(path).catch((err) => Promise.reject(fromSystemError(err, `read --${IDENTITY_REQUEST_KEYS[k].replace(/_/g, '-')}`, path)));
  }
  const dropins: Inputs['dropins'] = [];
  for (const path of id.daemonConf ?? []) {
    const name = basename(path);
    if (!name.endsWith('.conf')) throw new LarchError('USAGE', `provision: --daemon-conf '${path}': the name must end in .conf (the daemon reads daemon.conf.d/*.conf)`, { data: { command: 'provision', option: 'daemon-conf', path } });
    if (name === PROVISION_DROPIN || dropins.some((d) => d.name === name)) throw new LarchError('USAGE', `provision: --daemon-conf '${path}': another drop-in is already named ${name}`, { hint: `give each --daemon-conf file its own name (${PROVISION_DROPIN} is provision's own)`, data: { command: 'provision', option: 'daemon-conf', path, name } });
    const text = await readFile(path, 'utf8').catch((err) => Promise.reject(fromSystemError(err, 'read --daemon-conf', path)));
    parseDaemonConfig(text, path); // a bad file is refused now, not when the daemon starts on the device
    dropins.push({ name, text });
  }
  const request: ProvisionRequest = {
    url: opts.remoteUrl,
    ref: opts.ref,
    bootloader: opts.bootloader,
    tries: opts.tries,
    keys: [...keys.keys()].sort(),
    version: opts.target ?? null,
    fw_env_config: boardEnvConfig === null ? null : sha256(boardEnvConfig),
    device_id: id.deviceId ?? null,
    mqtt_username: id.mqttUsername ?? null,
    mqtt_password_file: files.mqttPasswordFile ? sha256(files.mqttPasswordFile) : null,
    mqtt_ca: files.mqttCaFile ? sha256(files.mqttCaFile) : null,
    mqtt_cert: files.mqttCertFile ? sha256(files.mqttCertFile) : null,
    mqtt_key: files.mqttKeyFile ? sha256(files.mqttKeyFile) : null,
    daemon_conf: Object.fromEntries(dropins.map((d) => [d.name, sha256(d.text)])),
    collection_id: opts.bind?.collection_id ?? null,
    compatible: opts.bind?.compatible ?? null,
    architecture: opts.bind?.architecture ?? null,
    kargs: opts.kargs ?? null,
  };
  for (const [field, value] of Object.entries(opts.bind ?? {}) as [keyof Binding, string | null | undefined][]) {
    const problem = value === undefined || value === null ? null : bindingValueProblem(field, value);
    if (problem !== null) throw new LarchError('USAGE', `provision: --${field.replace('_', '-')} '${quash(value!)}' ${problem}`, { data: { command: 'provision', option: field.replace('_', '-'), value } });
  }
  return { request, keys, boardEnvConfig, files, dropins };
}

/**
 * What the sysroot was provisioned with, or null when it is not provisioned (no config.json, or
 * the config of a run that stopped before slot A was deployed, by a larch before staging).
 * The remote, ref, bootloader and tries come from config.json and the keys from S/larch/keys (what
 * the device uses); the rest from provision.json (none before it existed).
 */
async function readProvisioned(sysroot: Sysroot): Promise<{ options: ProvisionRequest; installed: { commit: string; version: string }; agent: ProvisionResult['agent'] } | null> {
  const config = await sysroot.readConfig().catch((err) => {
    if (err instanceof LarchError && err.code === 'NOT_FOUND') return null;
    if (err instanceof LarchError && err.code === 'INVALID_INPUT') throw new LarchError(err.code, err.message, { hint: 'provision it again from scratch with --force', data: err.data });
    throw err;
  });
  const a = config && (await readDeployment(sysroot, 'A'));
  if (!config || !a) return null;
  const record = await readFile(sysroot.provisionRecordPath, 'utf8').then((t) => JSON.parse(t) as ProvisionRecord, () => null);
  const keys: string[] = [];
  const names = await readdir(sysroot.keysDir).catch(() => [] as string[]);
  for (const n of names.filter((n) => n.endsWith('.pub'))) keys.push(keyId(await readPublicKey(join(sysroot.keysDir, n))));
  const none: ProvisionRequest = { url: '', ref: '', bootloader: config.bootloader, tries: 0, keys: [], version: null, fw_env_config: null, device_id: null, mqtt_username: null, mqtt_password_file: null, mqtt_ca: null, mqtt_cert: null, mqtt_key: null, daemon_conf: {}, collection_id: null, compatible: null, architecture: null, kargs: null };
  const options: ProvisionRequest = { ...none, ...record?.options, url: config.remote.url, ref: config.ref, bootloader: config.bootloader, tries: config.tries, keys: [...new Set(keys)].sort() };
  return { options, installed: record ? { commit: record.commit, version: record.version } : { commit: a.commit, version: a.version }, agent: a.agent ? { version: a.agent.version } : null };
}

/**
 * The releases that failed on this device outlive a --force provision (the memory survives a
 * reprovision): the device's experience of a commit does not change with its keys.
 */
async function keepFailedReleases(sysroot: Sysroot, staging: Sysroot): Promise<void> {
  const failed = await readFailedReleases(sysroot).catch(() => null); // unreadable: nothing worth keeping
  if (failed && failed.releases.length > 0) await writeFileAtomic(failedReleasesPath(staging), formatFailedReleases(failed));
}

/** Empty staging folders (a killed run's are removed), and the sysroot as seen while staging. */
async function startStaging(sysroot: Sysroot): Promise<Sysroot> {
  const root = join(sysroot.path, STAGING);
  const boot = join(sysroot.bootDir, STAGING);
  for (const dir of [root, boot]) {
    await rm(dir, { recursive: true, force: true }).catch((err) => Promise.reject(fromSystemError(err, 'remove a stale staging folder', dir)));
    await mkdir(dir, { recursive: true }).catch((err) => Promise.reject(fromSystemError(err, 'create the staging folder', dir)));
  }
  return new Sysroot(sysroot.path, { larchDir: join(root, 'larch'), varDir: join(root, 'var'), bootDir: boot });
}

/** Builds S/larch, slot A (its boot files in the boot staging folder) and /var in the staging folders. */
async function build(staging: Sysroot, opts: ProvisionOptions, input: Inputs): Promise<Omit<ProvisionResult, 'sysroot'>> {
  await mkdir(staging.keysDir, { recursive: true });
  const repo = await Repo.init(staging.repoPath, process.getuid?.() === 0 ? 'bare' : 'bare-user');
  // By key id: two vendor.pub from different folders are two keys.
  for (const [id, pub] of input.keys) await writeFileAtomic(join(staging.keysDir, `${id}.pub`), formatPublicKey(pub));
  const remoteAuth = await writeIdentity(staging, opts.identity ?? {}, input);
  const trusted = [...input.keys.values()];

  const summary = await opts.remote.fetchSummary({ trusted, now: Math.floor(Date.now() / 1000) });
  const head = summary.refs[opts.ref];
  if (!head) throw new LarchError('NOT_FOUND', `${opts.remote.describe()} has no ref '${opts.ref}' (it has: ${Object.keys(summary.refs).join(', ') || 'none'})`, { hint: 'check --ref', data: { ref: opts.ref, refs: Object.keys(summary.refs), remote: opts.remote.describe() } });
  let commit = head.commit;
  if (opts.target && opts.target !== head.version && opts.target !== head.commit) {
    const history = opts.remote.history ? await opts.remote.history(repo, head.commit, 100) : [];
    const found = history.find((h) => h.version === opts.target || h.commit === opts.target);
    if (!found) throw new LarchError('NOT_FOUND', `version or commit '${opts.target}' is not in the history of ${opts.ref}`, { hint: 'use a version the vendor published', data: { target: opts.target, ref: opts.ref } });
    commit = found.commit;
  }
  // Before the download: a summary or commit of another product is refused (product-binding.ts).
  const offered = (await repo.hasObject('commit', commit)) ? await repo.readCommit(commit) : await opts.remote.fetchCommit(commit, { trusted });
  refuseRemoteLocal(commit, offered, opts.remote.describe());
  const bound = provisionBinding(opts.bind ?? {}, summary, opts.remote.describe(), commit, offered);
  let download: ProvisionResult['download'] = { via: 'none', bytes: 0 };
  if (!(await repo.hasObject('commit', commit))) {
    download = await opts.remote.pull(repo, commit, { delta: findDelta(summary, null, commit), trusted, downloadDir: staging.downloadDir, progress: opts.progress });
    failpoint('provision::after-download');
  }
  const verified = await verifyCommit(repo, commit, trusted);
  if (!verified.valid) throw new LarchError('SIGNATURE_INVALID', `commit ${commit} is not signed by a trusted key (${trusted.map(keyId).join(', ')})`, { data: { commit } });

  const kargs = opts.kargs ? await deploymentKargs(repo, commit, { bootloader: opts.bootloader, defaults: opts.kargs, derive: (vendor) => vendor }) : undefined;
  const record = await writeDeployment(staging, repo, 'A', commit, { origin: { remote: opts.remoteUrl, ref: opts.ref, name: 'origin' }, signedBy: verified.signatures.filter((s) => s.trusted && s.valid).map((s) => s.key_id), kargs });
  await repo.writeRef('larch/slot-A', commit);
  const config: DeviceConfig = { larch: 1, remote: { url: opts.remoteUrl, kind: opts.remoteKind, ...(opts.remoteKind === 'mqtt' && remoteAuth ? { mqtt: remoteAuth } : {}) }, ref: opts.ref, bootloader: opts.bootloader, tries: opts.tries, pinned: false, summarySerial: summary.serial, ...bindingConfig(bound), ...(opts.kargs ? { kargs: opts.kargs } : {}) };
  await staging.writeConfig(config);
  const provisioned: ProvisionRecord = { larch: 1, time: new Date().toISOString(), options: input.request, commit, version: record.version };
  await writeFileAtomic(staging.provisionRecordPath, JSON.stringify(provisioned, null, 2) + '\n');
  await appendJournal(staging.journalPath, { event: 'provision', slot: 'A', commit, version: record.version, message: `provisioned with version ${record.version} in slot A from ${opts.remoteUrl} ${opts.ref} (${opts.bootloader})` });
  return { result: 'provisioned', slot: 'A', commit, version: record.version, bootloader: opts.bootloader, download, agent: record.agent ? { version: record.agent.version } : null };
}

/**
 * S/larch/identity/ (the files, secrets 0600), the provision drop-in naming them, and the
 * --daemon-conf drop-ins. Paths are relative to S/larch, so they hold wherever the sysroot is
 * mounted. Returns the broker login for config.json (undefined: none).
 */
async function writeIdentity(staging: Sysroot, id: DeviceIdentity, input: Inputs): Promise<RemoteMqttAuth | undefined> {
  const auth: RemoteMqttAuth = {};
  const lines: string[] = [];
  const quote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  if (id.deviceId !== undefined) lines.push(`device_id = ${quote(id.deviceId)}`);
  if (id.mqttUsername !== undefined) {
    lines.push(`mqtt_username = ${quote(id.mqttUsername)}`);
    auth.username = id.mqttUsername;
  }
  for (const k of Object.keys(IDENTITY_FILES) as IdentityFile[]) {
    const bytes = input.files[k];
    if (bytes === undefined) continue;
    const rel = IDENTITY_FILES[k];
    await mkdir(join(staging.larchDir, dirname(rel)), { recursive: true, mode: 0o700 });
    await writeFileAtomic(staging.resolveLarchPath(rel), bytes, SECRET_FILES.includes(k) ? 0o600 : 0o644);
    lines.push(`${IDENTITY_CONF_KEYS[k]} = ${quote(rel)}`);
    auth[k === 'mqttPasswordFile' ? 'passwordFile' : k === 'mqttCaFile' ? 'caFile' : k === 'mqttCertFile' ? 'certFile' : 'keyFile'] = rel;
  }
  if (lines.length > 0 || input.dropins.length > 0) await mkdir(staging.daemonConfDir, { recursive: true });
  if (lines.length > 0) {
    const text = `# Written by larch provision: this device's identity (docs/fleet.md). Relative paths are relative to S/larch.\n${lines.join('\n')}\n`;
    const path = join(staging.daemonConfDir, PROVISION_DROPIN);
    parseDaemonConfig(text, PROVISION_DROPIN); // e.g. a user name the format cannot hold
    await writeFileAtomic(path, text);
  }
  for (const d of input.dropins) await writeFileAtomic(join(staging.daemonConfDir, d.name), d.text);
  return Object.keys(auth).length > 0 ? auth : undefined;
}

/**
 * The staged state into place. First the old S/larch out of the way (from then on, until the last
 * rename, the sysroot is not provisioned: a kill leaves nothing trusted), then the boot files of
 * slot A (the old slots' removed) and /var, then the bootloader state, and S/larch last.
 */
async function moveIntoPlace(sysroot: Sysroot, staging: Sysroot, bootloader: BootloaderKind, boardEnvConfig: string | null, boardVars: Map<string, string> | null): Promise<void> {
  const stagingRoot = dirname(staging.larchDir);
  const io = (action: string, path: string) => (err: unknown) => Promise.reject(fromSystemError(err, action, path));
  if (await exists(sysroot.larchDir)) await rename(sysroot.larchDir, join(stagingRoot, 'old')).catch(io('move the old state aside', sysroot.larchDir));
  for (const slot of ['A', 'B'] as Slot[]) await rm(sysroot.slotBootDir(slot), { recursive: true, force: true }).catch(io('remove old boot files', sysroot.slotBootDir(slot)));
  await rename(staging.slotBootDir('A'), sysroot.slotBootDir('A')).catch(io('move boot files into place', sysroot.slotBootDir('A')));
  await fsyncPath(sysroot.bootDir);
  await syncFilesystem(sysroot.bootDir); // vfat: the renamed entry is durable once the partition is
  failpoint('provision::after-boot-files');
  // /var is the device's data: seeded once, kept by --force.
  if (!(await exists(sysroot.varDir))) await rename(staging.varDir, sysroot.varDir).then(() => failpoint('provision::after-var'), io('move /var into place', sysroot.varDir));
  // The bootloader state: written in place (the env may be raw storage), taking its lock in the staged S/larch.
  await createBootEnv(new Sysroot(sysroot.path, { larchDir: staging.larchDir }), bootloader, boardEnvConfig, boardVars);
  failpoint('provision::after-bootenv-write');
  await syncFilesystem(sysroot.path, [staging.larchDir]);
  failpoint('provision::before-rename');
  await rename(staging.larchDir, sysroot.larchDir).catch(io('move the provisioned state into place', sysroot.larchDir));
  await fsyncPath(sysroot.path);
  failpoint('provision::after-rename');
}

const exists = (path: string) => access(path).then(() => true, () => false);

/**
 * The variables a board's own U-Boot env keeps when provision writes larch's state into it (U-Boot
 * boots a valid stored env instead of its built-in one, so a partial env loses bootcmd): those of
 * --env-defaults, else those of the valid env on the storage. null: the config names larch's own
 * env files. Read before anything is written.
 * @throws ENV_CORRUPT (no valid env and no --env-defaults), NOT_FOUND / INVALID_INPUT (the defaults file)
 */
async function boardEnvBase(sysroot: Sysroot, configText: string, configPath: string, defaultsPath: string | undefined): Promise<Map<string, string> | null> {
  const config = parseFwEnvConfig(configText, `'${configPath}'`);
  if (isLarchEnvConfig(config, sysroot.bootDir)) return null;
  if (defaultsPath !== undefined) {
    const text = await readFile(defaultsPath, 'utf8').catch((err) => Promise.reject(fromSystemError(err, 'read --env-defaults', defaultsPath)));
    return parseEnvText(text, `--env-defaults '${defaultsPath}'`);
  }
  try {
    return await ubootEnvStore(config, { lockPath: null }).read();
  } catch (err) {
    if (!(err instanceof LarchError) || err.code !== 'ENV_CORRUPT') throw err;
    throw new LarchError('ENV_CORRUPT', `provision: the board's U-Boot env named by ${configPath} has no valid copy (${err.message}), and larch never writes a partial one: U-Boot boots a stored env instead of its built-in one, which would leave it without bootcmd`, {
      hint: "pass --env-defaults FILE with the board's default env (U-Boot's u-boot-initial-env, NAME=VALUE lines), or let U-Boot save its env once (saveenv at its prompt)",
      data: { path: configPath },
      cause: err,
    });
  }
}

/** The board's fw_env.config, checked before anything is written. @throws USAGE, NOT_FOUND, INVALID_INPUT naming the file */
async function readBoardEnvConfig(path: string, bootloader: BootloaderKind): Promise<string> {
  if (bootloader !== 'uboot') throw new LarchError('USAGE', 'provision: --fw-env-config goes with --bootloader uboot (GRUB keeps its state in S/boot/grub/grubenv, systemd-boot in the entries under S/boot/loader/entries)', { data: { command: 'provision', option: 'fw-env-config', bootloader } });
  const text = await readFile(path, 'utf8').catch((err) => Promise.reject(fromSystemError(err, 'read fw_env.config', path)));
  parseFwEnvConfig(text, `'${path}'`);
  return text;
}
