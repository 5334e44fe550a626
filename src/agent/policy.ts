/**
 * The daemon's update policy and its configuration file (docs/fleet.md): S/larch/daemon.conf,
 * then S/larch/daemon.conf.d/*.conf in name order, each key set later overriding an earlier one,
 * then the command line. Each file is TOML (read by smol-toml) with top-level keys only:
 *
 *   # comment
 *   policy = "apply"          a string
 *   jitter_s = 30             a non-negative integer, or a number (wariness = 0.5)
 *   mqtt_url = "mqtts://broker.example:8883"
 *   reboot_windows = ["Mon,Wed 02:00 60m", "Sat 22:00 3h"]   an array of strings
 *
 * Invalid TOML, tables, unknown keys and bad values are refused with the file and line (and the
 * key); settings that only make sense together (reboot_strategy and its windows or lock URL) are
 * checked once all files are read, naming the file and line that chose the strategy.
 */
import { readdir, readFile } from 'node:fs/promises';
import { TomlError, parse as parseToml } from 'smol-toml';
import { isAbsolute, join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { FLEET_LOCK_GROUP } from './fleetlock.ts';
import { parseListen } from './metrics-server.ts';
import { parseWindowSpec } from './reboot-window.ts';

export const POLICIES = ['none', 'check', 'download', 'apply', 'apply-and-reboot'] as const;
export type Policy = (typeof POLICIES)[number];
/** When apply-and-reboot reboots (Zincati's strategies): at once, in a weekly window, or holding a FleetLock slot. */
export const REBOOT_STRATEGIES = ['immediate', 'periodic', 'fleet_lock'] as const;
export type RebootStrategy = (typeof REBOOT_STRATEGIES)[number];

export interface DaemonConfig {
  policy: Policy;
  deviceId?: string;
  mqttUrl?: string;
  mqttUsername?: string;
  /** A file holding the password (never the password itself in the config). */
  mqttPasswordFile?: string;
  mqttCaFile?: string;
  mqttCertFile?: string;
  mqttKeyFile?: string;
  /** Random delay before acting on an announcement, 0..jitterS seconds (spreads the load). */
  jitterS: number;
  /** Publish the status at least this often even when nothing changed. */
  statusIntervalS: number;
  /** Poll the summary this often, the first time within jitterS of the start (0: only act on announcements and commands). */
  checkIntervalS: number;
  /** After an announced update fails, try it again after about this long, doubling each time (0: never). */
  retryIntervalS: number;
  /** The longest wait between those attempts. */
  retryMaxS: number;
  /** How often the journal and sysroot state are looked at for changes. */
  pollIntervalMs: number;
  /** 0..1: replaces the hash-derived rollout position (src/mqtt/rollout.ts). */
  wariness?: number;
  /** Clock skew tolerated on command issue times. */
  clockSkewS: number;
  /** MQTT keepalive: the broker sends the last will after 1.5 times this without a packet. */
  keepaliveS: number;
  /** MQTT 5 session expiry: how long the broker keeps the session (subscriptions, queued QoS 1) while the device is away. */
  sessionExpiryS: number;
  rebootStrategy: RebootStrategy;
  /** Weekly windows, each `DAYS HH:MM LENGTH` in UTC (src/agent/reboot-window.ts); strategy periodic. */
  rebootWindows: string[];
  /** FleetLock server base URL (strategy fleet_lock): POST BASE/v1/pre-reboot and BASE/v1/steady-state. */
  fleetLockUrl?: string;
  fleetLockGroup: string;
  /** Longest wait between FleetLock attempts (waits start at 1 s and double). */
  fleetLockRetryS: number;
  /** HOST:PORT of the Prometheus /metrics endpoint; none: no endpoint. */
  metricsListen?: string;
  /** The total bound of each check and each download, in seconds (as `check --timeout`); none: no total bound. */
  timeoutS?: number;
  /** The minimum-speed rule of HTTP requests (as `check --min-speed` / `--min-speed-time`); none: the default (1024 B/s over 30 s). */
  minSpeed?: number;
  minSpeedTimeS?: number;
}

export const DEFAULT_DAEMON_CONFIG: DaemonConfig = {
  policy: 'check',
  jitterS: 60,
  statusIntervalS: 60,
  // As Zincati's and rpm-ostree's automatic updates, the remote is polled by default (hourly, with jitter).
  checkIntervalS: 3600,
  retryIntervalS: 60,
  retryMaxS: 3600,
  pollIntervalMs: 1000,
  clockSkewS: 300,
  keepaliveS: 30,
  sessionExpiryS: 7 * 86400,
  rebootStrategy: 'immediate',
  rebootWindows: [],
  fleetLockGroup: 'default',
  fleetLockRetryS: 300,
};

type Kind = 'string' | 'uint' | 'fraction' | 'policy' | 'strategy' | 'windows' | 'url' | 'group' | 'listen';
const KEYS: Record<string, { field: keyof DaemonConfig; kind: Kind }> = {
  policy: { field: 'policy', kind: 'policy' },
  device_id: { field: 'deviceId', kind: 'string' },
  mqtt_url: { field: 'mqttUrl', kind: 'string' },
  mqtt_username: { field: 'mqttUsername', kind: 'string' },
  mqtt_password_file: { field: 'mqttPasswordFile', kind: 'string' },
  mqtt_ca_file: { field: 'mqttCaFile', kind: 'string' },
  mqtt_cert_file: { field: 'mqttCertFile', kind: 'string' },
  mqtt_key_file: { field: 'mqttKeyFile', kind: 'string' },
  jitter_s: { field: 'jitterS', kind: 'uint' },
  status_interval_s: { field: 'statusIntervalS', kind: 'uint' },
  check_interval_s: { field: 'checkIntervalS', kind: 'uint' },
  retry_interval_s: { field: 'retryIntervalS', kind: 'uint' },
  retry_max_s: { field: 'retryMaxS', kind: 'uint' },
  poll_interval_ms: { field: 'pollIntervalMs', kind: 'uint' },
  wariness: { field: 'wariness', kind: 'fraction' },
  clock_skew_s: { field: 'clockSkewS', kind: 'uint' },
  keepalive_s: { field: 'keepaliveS', kind: 'uint' },
  session_expiry_s: { field: 'sessionExpiryS', kind: 'uint' },
  reboot_strategy: { field: 'rebootStrategy', kind: 'strategy' },
  reboot_windows: { field: 'rebootWindows', kind: 'windows' },
  fleet_lock_url: { field: 'fleetLockUrl', kind: 'url' },
  fleet_lock_group: { field: 'fleetLockGroup', kind: 'group' },
  fleet_lock_retry_s: { field: 'fleetLockRetryS', kind: 'uint' },
  metrics_listen: { field: 'metricsListen', kind: 'listen' },
  timeout_s: { field: 'timeoutS', kind: 'uint' },
  min_speed: { field: 'minSpeed', kind: 'uint' },
  min_speed_time_s: { field: 'minSpeedTimeS', kind: 'uint' },
};

/**
 * How long to wait before the next attempt at a failed announced update: retry_interval_s,
 * doubled per failure up to retry_max_s, times 0.5..1 (random: 0..1) so that a fleet that
 * failed together comes back spread out. Null when retries are off (retry_interval_s 0).
 */
export function retryDelayMs(failures: number, c: Pick<DaemonConfig, 'retryIntervalS' | 'retryMaxS'>, random: number): number | null {
  if (c.retryIntervalS <= 0) return null;
  const baseS = Math.min(Math.max(c.retryMaxS, c.retryIntervalS), c.retryIntervalS * 2 ** Math.max(0, failures - 1));
  return Math.round(baseS * 1000 * (0.5 + 0.5 * random));
}

export function isPolicy(s: string): s is Policy {
  return (POLICIES as readonly string[]).includes(s);
}

/** The way the files are written, for hints. */
const FORMAT_HINT = 'daemon.conf is TOML with top-level keys only: key = "text", key = 30, key = ["text", "text"]; docs/fleet.md lists the keys';

/** What a TOML value is, for messages. */
function describeValue(v: unknown): string {
  if (typeof v === 'string') return `the string '${quash(v, 40)}'`;
  if (typeof v === 'number') return Number.isInteger(v) ? `the integer ${v}` : `the number ${v}`;
  if (typeof v === 'boolean') return `${v}`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  return 'a table';
}

/**
 * The line that sets `key` (1-based), for messages and for checkRebootSettings: smol-toml gives
 * values, not their positions. A key is set at most once per file (TOML refuses a second), so the
 * first line that assigns it is the one.
 */
function lineOf(lines: string[], key: string): number | undefined {
  const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const assign = new RegExp(`^\\s*(?:${escaped}|"${escaped}"|'${escaped}')\\s*[=.]`);
  const header = new RegExp(`^\\s*\\[+\\s*(?:${escaped}|"${escaped}"|'${escaped}')\\s*[\\].]`);
  const i = lines.findIndex((l) => assign.test(l) || header.test(l));
  return i < 0 ? undefined : i + 1;
}

/** Parses one file's text into the keys it sets. @throws INVALID_INPUT naming the file, the line and the key */
export function parseDaemonConfig(textIn: string, file: string, origins?: Map<string, { file: string; line: number }>): Partial<DaemonConfig> {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(textIn, { maxDepth: 4 }) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const why = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    throw new LarchError('INVALID_INPUT', `${file}:${err.line}: not valid TOML (column ${err.column}): ${why}`, { hint: FORMAT_HINT, data: { file, line: err.line, column: err.column }, cause: err });
  }
  const lines = textIn.split('\n');
  const out: Partial<DaemonConfig> = {};
  // In file order, so the first bad line is the one reported.
  const lineByKey = new Map(Object.keys(doc).map((k) => [k, lineOf(lines, k)]));
  const keys = [...lineByKey.keys()].sort((x, y) => (lineByKey.get(x) ?? Infinity) - (lineByKey.get(y) ?? Infinity));
  for (const key of keys) {
    let value = doc[key];
    const line = lineByKey.get(key);
    const bad = (why: string, hint = FORMAT_HINT): never => {
      throw new LarchError('INVALID_INPUT', `${file}${line ? `:${line}` : ''}: ${why}`, { hint, data: { file, ...(line ? { line } : {}), key: quash(key, 40) } });
    };
    const spec = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    const isTable = typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
    if (!spec) {
      if (isTable) bad(`'${quash(key, 40)}' is a table: daemon.conf has no tables`, 'write the keys at the top level, before any [section] line; docs/fleet.md lists them');
      bad(`unknown key '${quash(key, 40)}'`, `the keys are ${Object.keys(KEYS).join(', ')} (docs/fleet.md)`);
    }
    const got = describeValue(value);
    if (Array.isArray(value) && spec!.kind !== 'windows') bad(`'${key}' takes one value, not an array`);
    switch (spec!.kind) {
      case 'string':
        if (typeof value !== 'string' || value === '') bad(`'${key}' must be a non-empty quoted string, got ${got}`);
        break;
      case 'policy':
        if (typeof value !== 'string' || !isPolicy(value)) bad(`'${key}' must be one of ${POLICIES.join(', ')}, got ${got}`, `e.g. ${key} = "apply"`);
        break;
      case 'uint':
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) bad(`'${key}' must be a non-negative integer, got ${got}`, `e.g. ${key} = 60 (no quotes)`);
        break;
      case 'fraction':
        if (typeof value !== 'number' || value < 0 || value > 1) bad(`'${key}' must be a number from 0 to 1, got ${got}`, `e.g. ${key} = 0.5`);
        break;
      case 'strategy':
        if (typeof value !== 'string' || !(REBOOT_STRATEGIES as readonly string[]).includes(value)) bad(`'${key}' must be one of ${REBOOT_STRATEGIES.join(', ')}, got ${got}`);
        break;
      case 'windows': {
        const specs = typeof value === 'string' ? [value] : value;
        if (!Array.isArray(specs) || !specs.every((w) => typeof w === 'string')) bad(`'${key}' must be a quoted window or an array of them, got ${got}`, `e.g. ${key} = ["Mon,Wed 02:00 60m"] (days, UTC start, length)`);
        for (const w of specs as string[]) {
          try {
            parseWindowSpec(w);
          } catch (err) {
            bad((err as Error).message, `e.g. ${key} = ["Mon,Wed 02:00 60m"] (days, UTC start, length)`);
          }
        }
        value = specs;
        break;
      }
      case 'url':
        if (typeof value !== 'string' || !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(value)) bad(`'${key}' must be an http:// or https:// URL, got ${got}`);
        break;
      case 'group':
        if (typeof value !== 'string' || !FLEET_LOCK_GROUP.test(value)) bad(`'${key}' must be letters, digits, '.' and '-', got ${got}`);
        break;
      case 'listen':
        try {
          if (typeof value !== 'string') throw new Error(`it must be a quoted "HOST:PORT", got ${got}`);
          parseListen(value);
        } catch (err) {
          bad(`'${key}': ${(err as Error).message}`, `e.g. ${key} = "127.0.0.1:9105"`);
        }
        break;
    }
    (out as Record<string, unknown>)[spec!.field] = value;
    if (line) origins?.set(key, { file, line });
  }
  return out;
}

/** daemon.conf, then daemon.conf.d/*.conf in name order, over the defaults. Missing files are fine. */
export async function readDaemonConfig(larchDir: string): Promise<{ config: DaemonConfig; files: string[] }> {
  const files = [join(larchDir, 'daemon.conf')];
  const dropins = join(larchDir, 'daemon.conf.d');
  const names = await readdir(dropins).catch(() => [] as string[]);
  for (const n of names.filter((n) => n.endsWith('.conf')).sort()) files.push(join(dropins, n));
  let config: DaemonConfig = { ...DEFAULT_DAEMON_CONFIG };
  const read: string[] = [];
  const origins = new Map<string, { file: string; line: number }>();
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw fromSystemError(err, 'read daemon config', f);
    }
    config = { ...config, ...parseDaemonConfig(text, f, origins) };
    read.push(f);
  }
  // A relative file is relative to S/larch (provision writes identity/… there), never to the cwd.
  for (const k of ['mqttPasswordFile', 'mqttCaFile', 'mqttCertFile', 'mqttKeyFile'] as const) if (config[k] !== undefined && !isAbsolute(config[k]!)) config[k] = join(larchDir, config[k]!);
  checkRebootSettings(config, origins);
  return { config, files: read };
}

/** A strategy without what it needs is refused at start, not at the first reboot days later. @throws INVALID_INPUT naming where the strategy was set */
export function checkRebootSettings(config: DaemonConfig, origins: Map<string, { file: string; line: number }>): void {
  const at = origins.get('reboot_strategy');
  const where = at ? `${at.file}:${at.line}: ` : '';
  const data = at ? { file: at.file, line: at.line } : {};
  if (config.rebootStrategy === 'periodic' && config.rebootWindows.length === 0) {
    throw new LarchError('INVALID_INPUT', `${where}reboot_strategy "periodic" needs reboot_windows`, { hint: 'add e.g. reboot_windows = ["Sat,Sun 02:00 60m"] (UTC); docs/fleet.md', data });
  }
  if (config.rebootStrategy === 'fleet_lock' && !config.fleetLockUrl) {
    throw new LarchError('INVALID_INPUT', `${where}reboot_strategy "fleet_lock" needs fleet_lock_url`, { hint: 'add fleet_lock_url = "http://fleetlock.example:8080" (the FleetLock server); docs/fleet.md', data });
  }
}

/** What the policy does with an update the device is in the rollout for. */
export function policyAction(policy: Policy): 'report' | 'check' | 'download' | 'stage' | 'stage-and-reboot' {
  return ({ none: 'report', check: 'check', download: 'download', apply: 'stage', 'apply-and-reboot': 'stage-and-reboot' } as const)[policy];
}
