/**
 * A device's sysroot: where larch keeps its repo, the two slots, the boot files and its own
 * state (docs/architecture.md, "The device: sysroot layout"). Tests and the demo use a plain
 * directory; on a device it is the physical root filesystem (default /sysroot, as OSTree's).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { fromSnakeKeys, toSnakeKeys } from '../_keys.ts';
import { type BlsEnvStore, blsEnvStore, blsPaths } from '../bootcount/bls-store.ts';
import { type EnvStore, grubEnvStore, openUbootEnvStore } from '../bootcount/env-store.ts';
import type { Slot } from '../bootcount/state.ts';
import { writeFileAtomic } from '../_durable.ts';
import { Repo } from '../store/repo.ts';
import type { RemoteEntry } from './remotes.ts';

export const DEFAULT_SYSROOT = '/sysroot';
/** The boot state's home: U-Boot's env, GRUB's grubenv, or systemd-boot's counted BLS entries on the ESP (S/boot). */
export type BootloaderKind = 'uboot' | 'grub' | 'systemd-boot';
export const BOOTLOADER_KINDS: readonly BootloaderKind[] = ['uboot', 'grub', 'systemd-boot'];

/** How a device with an MQTT remote logs in to the broker; read at each connect. */
export interface RemoteMqttAuth {
  username?: string;
  passwordFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** S/larch/config.json: what provision decided; read by every device command. */
export interface DeviceConfig {
  /** Version of this file's format. */
  larch: 1;
  /**
   * Where updates come from: an HTTP(S) base URL of an archive repo, or an MQTT URL and, for a
   * broker that wants them, the login and TLS files (paths on the device; relative ones are
   * relative to S/larch, as provision writes them: identity/mqtt-client.crt ...).
   */
  remote: { url: string; kind: 'http' | 'mqtt'; mqtt?: RemoteMqttAuth };
  ref: string;
  bootloader: BootloaderKind;
  /** Tries a new deployment gets before the bootloader falls back (1..9). */
  tries: number;
  /** Pinned: upgrade does nothing until unpin (rpm-ostree's pin, for the whole device). */
  pinned: boolean;
  /** Highest summary serial seen, so an older (replayed) summary is refused. */
  summarySerial?: number;
  /**
   * What the device is bound to (agent/product-binding.ts), recorded at provision: the vendor
   * repo's collection id, the hardware-compatibility id, the Debian architecture. Absent: taken
   * from the booted commit, else any is accepted.
   */
  collectionId?: string;
  compatible?: string;
  architecture?: string;
  /** The trust_version of the summary whose serial is summarySerial: the floor holds within one trust version (a new trust document resets it). */
  summaryTrustVersion?: number;
  /**
   * The board's default kernel arguments (provision --kargs; image build gives its profile's),
   * the start of every deployment's vendor list (agent/deployment-kargs.ts). Absent: larch
   * manages no kernel arguments on this device; its boot script's own are used.
   */
  kargs?: string[];
  /** The remote `remote` is, by name in `remotes` (absent: origin). agent/remotes.ts */
  following?: string;
  /** Every remote by name, the followed one among them (absent: origin alone, made of `remote`). agent/remotes.ts */
  remotes?: Record<string, RemoteEntry>;
}

/** Fields of config.json stored under snake_case keys (before 0.2 under these names; still read). */
const CONFIG_KEYS = ['summarySerial', 'collectionId', 'summaryTrustVersion'] as const;
const MQTT_AUTH_KEYS = ['passwordFile', 'caFile', 'certFile', 'keyFile'] as const;
/** A remote's fields of config.json stored under snake_case keys. */
const REMOTE_KEYS = ['summarySerial', 'summaryTrustVersion'] as const;

/**
 * Where parts of a sysroot are, when not in their usual place: provision builds S/larch, the
 * slot's boot files and /var in staging folders and moves them into place last.
 */
export interface SysrootLayout {
  larchDir?: string;
  bootDir?: string;
  varDir?: string;
}

/** Files under S/larch that provision writes (device identity, docs/formats.md "Sysroot layout"). */
export const IDENTITY_FILES = {
  mqttCaFile: 'identity/mqtt-ca.crt',
  mqttCertFile: 'identity/mqtt-client.crt',
  mqttKeyFile: 'identity/mqtt-client.key',
  mqttPasswordFile: 'identity/mqtt-password',
} as const;

/** The roots that are a machine's own (the running system's, or the device's default sysroot), never a test directory. */
const REAL_ROOTS = ['/', DEFAULT_SYSROOT];

export class Sysroot {
  readonly path: string;
  /**
   * The device's own root, not a test directory: a reboot reboots the machine (agent/reboot.ts)
   * and sim-boot refuses it. By default true for / and /sysroot; a test that drives the real
   * path passes it (with a fake reboot command).
   */
  readonly realDevice: boolean;
  private readonly layout: SysrootLayout;

  constructor(path: string, layout: SysrootLayout = {}, opts: { realDevice?: boolean } = {}) {
    this.path = resolve(path);
    this.layout = layout;
    this.realDevice = opts.realDevice ?? REAL_ROOTS.includes(this.path);
  }

  get larchDir(): string {
    return this.layout.larchDir ?? join(this.path, 'larch');
  }
  /** S/larch/provision.json: what provision was asked (compared on a re-run). */
  get provisionRecordPath(): string {
    return join(this.larchDir, 'provision.json');
  }
  get daemonConfDir(): string {
    return join(this.larchDir, 'daemon.conf.d');
  }
  /** A path written in config.json or daemon.conf: relative ones are relative to S/larch (where provision puts identity files). */
  resolveLarchPath(path: string): string {
    return isAbsolute(path) ? path : join(this.larchDir, path);
  }
  get repoPath(): string {
    return join(this.larchDir, 'repo');
  }
  get configPath(): string {
    return join(this.larchDir, 'config.json');
  }
  get keysDir(): string {
    return join(this.larchDir, 'keys');
  }
  get journalPath(): string {
    return join(this.larchDir, 'journal.jsonl');
  }
  get downloadDir(): string {
    return join(this.larchDir, 'download');
  }
  get lockPath(): string {
    return join(this.larchDir, 'env.lock');
  }
  /**
   * A test hook of the HIL harness (docs/boot.md, "The HIL hold file"): while it exists the
   * initramfs skips boot-check, so a boot changes the boot env by its bootloader step alone.
   */
  get hilHoldPath(): string {
    return join(this.larchDir, 'hil-hold');
  }
  /** Where `larch sim-boot` records the kernel command line it "booted" with. */
  get simCmdlinePath(): string {
    return join(this.larchDir, 'sim', 'cmdline');
  }
  get varDir(): string {
    return this.layout.varDir ?? join(this.path, 'var');
  }
  get bootDir(): string {
    return this.layout.bootDir ?? join(this.path, 'boot');
  }
  deployDir(slot: Slot): string {
    return join(this.larchDir, 'deploy', slot);
  }
  deployRecordPath(slot: Slot): string {
    return join(this.larchDir, 'deploy', `${slot}.json`);
  }
  slotBootDir(slot: Slot): string {
    return join(this.bootDir, slot);
  }
  /** The env file the bootloader reads: uboot.env on the boot partition, GRUB's grubenv, or (systemd-boot) the entries directory on the ESP. */
  envPath(kind: BootloaderKind): string {
    if (kind === 'systemd-boot') return blsPaths(this.bootDir).entries;
    return kind === 'uboot' ? join(this.bootDir, 'uboot.env') : join(this.bootDir, 'grub', 'grubenv');
  }
  fwEnvConfigPath(): string {
    return join(this.bootDir, 'fw_env.config');
  }

  async readConfig(): Promise<DeviceConfig> {
    let text: string;
    try {
      text = await readFile(this.configPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new LarchError('NOT_FOUND', `'${this.path}' is not a provisioned larch sysroot (no ${this.configPath})`, { hint: "provision it first with 'larch provision --sysroot S --repo-url URL --ref REF --keys K.pub'", data: { path: this.configPath, sysroot: this.path } });
      }
      throw fromSystemError(err, 'read', this.configPath);
    }
    try {
      const raw = JSON.parse(text);
      if (raw?.remote?.mqtt) raw.remote.mqtt = fromSnakeKeys(raw.remote.mqtt, MQTT_AUTH_KEYS);
      const config = fromSnakeKeys(raw, CONFIG_KEYS) as unknown as DeviceConfig;
      if (config.larch !== 1 || typeof config.ref !== 'string' || !config.remote || !BOOTLOADER_KINDS.includes(config.bootloader)) throw new Error('missing or unknown fields');
      if (config.remotes !== undefined && (typeof config.remotes !== 'object' || config.remotes === null || Array.isArray(config.remotes))) throw new Error("'remotes' is not an object");
      for (const [name, entry] of Object.entries(config.remotes ?? {})) {
        if (typeof entry?.url !== 'string' || (entry.kind !== 'http' && entry.kind !== 'mqtt') || (entry.trust !== 'own' && entry.trust !== 'origin')) throw new Error(`remote '${name}' needs url, kind (http|mqtt) and trust (own|origin)`);
        const e = fromSnakeKeys(entry as unknown as Record<string, unknown>, REMOTE_KEYS) as unknown as RemoteEntry;
        if (e.mqtt) e.mqtt = fromSnakeKeys(e.mqtt as Record<string, unknown>, MQTT_AUTH_KEYS) as RemoteMqttAuth;
        config.remotes![name] = e;
      }
      for (const mqtt of [config.remote.mqtt, ...Object.values(config.remotes ?? {}).map((r) => r.mqtt)]) {
        if (!mqtt) continue;
        for (const k of MQTT_AUTH_KEYS) if (typeof mqtt[k] === 'string') mqtt[k] = this.resolveLarchPath(mqtt[k]);
      }
      return config;
    } catch (err) {
      throw new LarchError('INVALID_INPUT', `${this.configPath}: not a larch device config: ${(err as Error).message}`, { hint: 'restore it from a backup, or provision the sysroot again', data: { path: this.configPath } });
    }
  }

  async writeConfig(config: DeviceConfig): Promise<void> {
    await mkdir(this.larchDir, { recursive: true });
    // Files under S/larch stay relative to it (readConfig made them absolute), so the sysroot
    // reads the same mounted elsewhere (a factory host, an image builder).
    const storedMqtt = (mqtt: RemoteMqttAuth) => toSnakeKeys(Object.fromEntries(Object.entries(mqtt).map(([k, v]) => [k, k !== 'username' && typeof v === 'string' && v.startsWith(`${this.larchDir}/`) ? relative(this.larchDir, v) : v])), MQTT_AUTH_KEYS);
    const storedRemote = <T extends { mqtt?: RemoteMqttAuth }>(r: T) => (r.mqtt ? { ...r, mqtt: storedMqtt(r.mqtt) } : r);
    const stored = {
      ...config,
      remote: storedRemote(config.remote),
      ...(config.remotes ? { remotes: Object.fromEntries(Object.entries(config.remotes).map(([name, r]) => [name, toSnakeKeys(storedRemote(r), REMOTE_KEYS)])) } : {}),
    };
    await writeFileAtomic(this.configPath, JSON.stringify(toSnakeKeys(stored, CONFIG_KEYS), null, 2) + '\n');
  }

  async openRepo(): Promise<Repo> {
    return Repo.open(this.repoPath);
  }

  /** systemd-boot's entries on the ESP: larch's boot partition S/boot is the ESP (docs/boot.md). */
  blsStore(): BlsEnvStore {
    return blsEnvStore(this.bootDir, { lockPath: this.lockPath });
  }

  /** The bootloader env, locked with a lock file inside the sysroot (many simulated devices per host). */
  async envStore(kind: BootloaderKind): Promise<EnvStore> {
    if (kind === 'grub') return grubEnvStore(this.envPath('grub'), { lockPath: this.lockPath });
    if (kind === 'systemd-boot') return this.blsStore();
    return openUbootEnvStore(this.fwEnvConfigPath(), { lockPath: this.lockPath });
  }
}
