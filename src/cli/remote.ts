/** The device's remote as the CLI verbs and the daemon build it: the transport its config names, with the limits given. */
import { LarchError } from '../errors.ts';
import { DEFAULT_MIN_SPEED, httpFetcher } from '../agent/remote/http-fetch.ts';
import { isLocalRemote, localFetcher } from '../agent/remote/local-fetch.ts';
import { MqttFetcher } from '../agent/remote/mqtt-fetch.ts';
import { type Remote, remoteOver } from '../agent/remote/remote.ts';
import type { DeviceConfig, Sysroot } from '../agent/sysroot.ts';

/** The bound of each check or download when none is given (--timeout, daemon.conf timeout_s): 1 hour. */
export const DEFAULT_TIMEOUT_S = 3600;

/** How long and how slowly a remote may answer (--timeout, --min-speed, --min-speed-time; daemon.conf timeout_s, min_speed, min_speed_time_s). */
export interface RemoteLimits {
  /** The total bound of each check or download (default DEFAULT_TIMEOUT_S). */
  timeoutMs?: number;
  /** HTTP: below bytesPerSecond over windowMs a request is aborted as too slow (default http-fetch's DEFAULT_MIN_SPEED). */
  minSpeed?: { bytesPerSecond: number; windowMs: number };
  /** A signal, asked at the start of each exchange, that ends it early (the daemon's for a command, larch cancel's). */
  cancel?: () => AbortSignal | undefined;
}

/**
 * The device's remote, the one place a remote URL is read: kind 'http' is an archive repo of
 * files, over HTTP(S) for a URL, or read from this machine for a `file://` URL or a path.
 */
export function remoteFor(config: Pick<DeviceConfig, 'remote'>, limits: RemoteLimits = {}): Remote {
  const opts = { timeoutMs: limits.timeoutMs ?? DEFAULT_TIMEOUT_S * 1000, cancel: limits.cancel };
  const { url, kind } = config.remote;
  if (kind === 'http' && isLocalRemote(url)) return remoteOver(localFetcher(url), opts);
  if (kind === 'http') return remoteOver(httpFetcher(url, limits.minSpeed ? { lowSpeed: limits.minSpeed, stallTimeoutMs: limits.minSpeed.windowMs } : {}), opts);
  if (kind === 'mqtt') return remoteOver(new MqttFetcher({ url, ...config.remote.mqtt }), opts);
  throw new LarchError('INVALID_INPUT', `remote ${config.remote.url}: unknown transport '${String(config.remote.kind)}'`, { hint: 'provision with --repo-url http://... or --mqtt-url mqtt://...', data: { url: config.remote.url, kind: String(config.remote.kind) } });
}

/**
 * The followed remote, built again when config.json names another one (a `larch rebase` while
 * the daemon runs): every exchange reads the config first. The daemon's MQTT session (its
 * broker and the ref it listens to announcements for) is set when it starts.
 */
export function followedRemote(sysroot: Sysroot, config: DeviceConfig, limits: RemoteLimits = {}): Remote {
  let key = JSON.stringify(config.remote);
  let current = remoteFor(config, limits);
  const now = async (): Promise<Remote> => {
    const config = await sysroot.readConfig();
    const k = JSON.stringify(config.remote);
    if (k !== key) {
      key = k;
      current = remoteFor(config, limits);
    }
    return current;
  };
  return {
    describe: () => current.describe(),
    fetchSummary: async (o) => (await now()).fetchSummary(o),
    pull: async (repo, to, o) => (await now()).pull(repo, to, o),
    fetchCommit: async (id, o) => (await now()).fetchCommit(id, o),
    fetchTrust: async (version) => {
      const r = await now();
      return r.fetchTrust ? r.fetchTrust(version) : null;
    },
    history: async (repo, from, limit, until) => {
      const r = await now();
      return r.history ? r.history(repo, from, limit, until) : [];
    },
  };
}

/** The minimum-speed rule from its two settings (either may be left out: its default stands). */
export function minSpeedOf(bytesPerSecond: number | undefined, seconds: number | undefined): RemoteLimits['minSpeed'] {
  if (bytesPerSecond === undefined && seconds === undefined) return undefined;
  return { bytesPerSecond: bytesPerSecond ?? DEFAULT_MIN_SPEED.bytesPerSecond, windowMs: seconds === undefined ? DEFAULT_MIN_SPEED.windowMs : seconds * 1000 };
}
