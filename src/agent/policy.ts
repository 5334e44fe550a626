/**
 * The daemon's update policy and its configuration file (docs/fleet.md): S/larch/daemon.conf,
 * then S/larch/daemon.conf.d/*.conf in name order, each key set later overriding an earlier one,
 * then the command line. The format is a subset of TOML (so a TOML reader could take over):
 *
 *   # comment
 *   policy = "apply"          a double-quoted string (\" and \\ escapes)
 *   jitter_s = 30             a non-negative integer, or a decimal (wariness = 0.5)
 *   mqtt_url = "mqtts://broker.example:8883"
 *   reboot_windows = ["Mon,Wed 02:00 60m", "Sat 22:00 3h"]   a one-line array of strings
 *
 * No tables, no multi-line arrays. Unknown keys and bad values are refused with the file and
 * line; settings that only make sense together (reboot_strategy and its windows or lock URL)
 * are checked once all files are read, naming the file and line that chose the strategy.
 */
import { readdir, readFile } from 'node:fs/promises';
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
  /** Poll the HTTP summary this often (0: only act on announcements and commands). */
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
  checkIntervalS: 0,
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

const STRING = /^"((?:[^"\\]|\\["\\])*)"/;
const unescape = (s: string) => s.replace(/\\(["\\])/g, '$1');

/** A one-line array of quoted strings: ["a", "b"] (a trailing comma allowed, as in TOML). Null when malformed. */
function parseStringArray(raw: string): string[] | null {
  let rest = raw.slice(1).trimStart();
  const out: string[] = [];
  for (;;) {
    if (rest.startsWith(']')) return rest.slice(1).trim() === '' ? out : null;
    const m = STRING.exec(rest);
    if (!m) return null;
    out.push(unescape(m[1]));
    rest = rest.slice(m[0].length).trimStart();
    if (rest.startsWith(',')) rest = rest.slice(1).trimStart();
    else if (!rest.startsWith(']')) return null;
  }
}

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

/** Parses one file's text into the keys it sets. @throws INVALID_INPUT naming file:line */
export function parseDaemonConfig(textIn: string, file: string, origins?: Map<string, { file: string; line: number }>): Partial<DaemonConfig> {
  const out: Partial<DaemonConfig> = {};
  const lines = textIn.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const bad = (why: string): never => {
      throw new LarchError('INVALID_INPUT', `${file}:${i + 1}: ${why}`, { hint: 'lines are key = "text" or key = number; docs/fleet.md lists the keys', data: { file, line: i + 1 } });
    };
    const m = /^([a-z_]+)\s*=\s*(.*?)\s*(#[^"\]]*)?$/.exec(line);
    if (!m) bad(`expected key = value, got '${quash(line, 60)}'`);
    const [, key, raw] = m!;
    const spec = KEYS[key];
    if (!spec) bad(`unknown key '${quash(key, 40)}'`);
    let value: string | number | string[];
    if (raw.startsWith('"')) {
      const s = /^"((?:[^"\\]|\\["\\])*)"$/.exec(raw);
      if (!s) bad(`unterminated or malformed string for '${key}'`);
      value = unescape(s![1]);
    } else if (raw.startsWith('[')) {
      if (spec.kind !== 'windows') bad(`'${key}' takes one value, not an array`);
      const a = parseStringArray(raw);
      if (!a) bad(`malformed array for '${key}': write ["text", "text"] on one line`);
      value = a!;
    } else if (/^\d+(\.\d+)?$/.test(raw)) {
      value = Number(raw);
    } else {
      value = bad(`value of '${key}' must be a quoted string or a number, got '${quash(raw, 40)}'`);
    }
    switch (spec.kind) {
      case 'string':
        if (typeof value !== 'string' || value === '') bad(`'${key}' must be a non-empty quoted string`);
        break;
      case 'policy':
        if (typeof value !== 'string' || !isPolicy(value)) bad(`'${key}' must be one of ${POLICIES.join(', ')}`);
        break;
      case 'uint':
        if (typeof value !== 'number' || !Number.isSafeInteger(value)) bad(`'${key}' must be a non-negative integer`);
        break;
      case 'fraction':
        if (typeof value !== 'number' || value < 0 || value > 1) bad(`'${key}' must be a number from 0 to 1`);
        break;
      case 'strategy':
        if (typeof value !== 'string' || !(REBOOT_STRATEGIES as readonly string[]).includes(value)) bad(`'${key}' must be one of ${REBOOT_STRATEGIES.join(', ')}`);
        break;
      case 'windows': {
        const specs = typeof value === 'string' ? [value] : value;
        if (!Array.isArray(specs)) bad(`'${key}' must be a quoted window or an array of them, e.g. ["Mon,Wed 02:00 60m"]`);
        for (const w of specs as string[]) {
          try {
            parseWindowSpec(w);
          } catch (err) {
            bad((err as Error).message);
          }
        }
        value = specs as string[];
        break;
      }
      case 'url':
        if (typeof value !== 'string' || !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(value)) bad(`'${key}' must be an http:// or https:// URL`);
        break;
      case 'group':
        if (typeof value !== 'string' || !FLEET_LOCK_GROUP.test(value)) bad(`'${key}' must be letters, digits, '.' and '-'`);
        break;
      case 'listen':
        try {
          if (typeof value !== 'string') throw new Error('it must be a quoted "HOST:PORT"');
          parseListen(value);
        } catch (err) {
          bad(`'${key}': ${(err as Error).message}`);
        }
        break;
    }
    (out as Record<string, unknown>)[spec.field] = value;
    origins?.set(key, { file, line: i + 1 });
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
