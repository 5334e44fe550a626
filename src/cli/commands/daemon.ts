/** larch daemon: the device agent (MQTT status, journal, announcements, signed commands, policy). */
import { hostname } from 'node:os';
import { LarchError } from '../../errors.ts';
import { Daemon } from '../../agent/daemon/daemon.ts';
import { mergerFor } from '../../agent/etc/merger.ts';
import { POLICIES, isPolicy, readDaemonConfig } from '../../agent/policy.ts';
import { type RemoteLimits, followedRemote, minSpeedOf, remoteFor } from '../remote.ts';
import { DEFAULT_SYSROOT, Sysroot } from '../../agent/sysroot.ts';
import { rebootFor } from '../../agent/reboot.ts';
import { isValidDeviceId } from '../../mqtt/format.ts';
import { type Command, intOption, opt } from '../command.ts';

export const daemon: Command = {
  name: 'daemon',
  summary: 'run the device agent: MQTT status and journal, announcements, signed commands, update policy',
  options: { sysroot: { type: 'string' }, policy: { type: 'string' }, mqtt: { type: 'string' }, 'device-id': { type: 'string' }, jitter: { type: 'string' }, 'status-interval': { type: 'string' }, 'check-interval': { type: 'string' }, 'poll-interval-ms': { type: 'string' } },
  help: `NAME
  larch daemon - the device agent

SYNOPSIS
  larch daemon [--sysroot S] [--policy ${POLICIES.join('|')}] [--mqtt URL] [--device-id ID]
               [--jitter SECONDS] [--status-interval SECONDS] [--check-interval SECONDS]

DESCRIPTION
  Connects to the MQTT broker (plain mqtt:// or TLS mqtts://) with a persistent session
  (client id larch-ID), reconnecting with backoff; publishes the device's status retained on
  larch/v1/device/ID/status on connect, after every change and at least every
  --status-interval seconds, with a last will {"online": false}; publishes every journal
  entry on .../journal (QoS 1, in order, resent after a restart); acts on the signed,
  retained announcements of its ref (larch/v1/announce/REF) through the policy and the
  phased rollout; runs the signed commands on .../cmd (check, upgrade, deploy, rebase, rollback,
  cancel, pin, unpin, install, uninstall, reboot, cleanup)
  when signed by a trusted key, fresh and never seen before, answering on .../cmd/result.
  Updates are fetched from the device's remote: its HTTP server, or for a device provisioned
  with --mqtt-url, in chunks through the broker from 'larch serve --mqtt' responders.
  Settings come from S/larch/daemon.conf and S/larch/daemon.conf.d/*.conf (docs/fleet.md);
  the options here override them. In a test sysroot (not ${DEFAULT_SYSROOT}) a reboot is
  recorded in S/larch/daemon/reboot-requested.json and the journal instead of done.
  With apply-and-reboot, reboot_strategy in daemon.conf says when: immediate, periodic
  (reboot_windows, weekly, UTC) or fleet_lock (a slot from the FleetLock server at
  fleet_lock_url). metrics_listen = "127.0.0.1:9105" serves Prometheus metrics on /metrics.
  An announced update that fails (a cut download, a busy or unreachable server, a full disk)
  is tried again by itself after retry_interval_s (60), the wait doubling up to retry_max_s
  (3600); the status shows update.retry until it is staged or a newer one is announced.
  Every announcement, periodic check result or command it does not act on is journaled once
  with its reason (not-booted, pinned, outside-rollout, failed-here, older, already-handled,
  already-staged, up-to-date, not-head, other-ref, policy-none, and the command refusals);
  the status carries the last one as last_skip {reason, message, time}. A release that failed
  on this device (failed_releases in the status) is never staged again by the daemon.
  Runs until SIGTERM or SIGINT, then publishes a last status with online false.

OPTIONS
  --sysroot S            the device's root filesystem (default ${DEFAULT_SYSROOT})
  --policy P             none: report announcements only; check: check the remote and report;
                         download: download and verify; apply: download and stage (boots at
                         the next reboot); apply-and-reboot: stage, then reboot (default check)
  --mqtt URL             the broker (default: mqtt_url in daemon.conf, else the broker the
                         device was provisioned with (--mqtt-url, with its login and TLS
                         files); a device provisioned with --repo-url and neither: no MQTT)
  --device-id ID         the device's id, one topic level (default: device_id, else the host name)
  --jitter SECONDS       wait a random 0..SECONDS before acting on an announcement (default 60)
  --status-interval S    publish the status at least this often (default 60)
  --check-interval S     check the remote's summary this often, the first time within
                         --jitter of the start (default 3600; 0: announcements only)
  --poll-interval-ms MS  how often the journal is looked at for new entries (default 1000)

EXIT STATUS
  0 stopped by a signal; 2 usage; 3 not provisioned; 4 bad daemon.conf; 6 no trusted keys;
  9 metrics_listen cannot be bound.

EXAMPLES
  larch daemon --policy apply --mqtt mqtts://broker.example:8883
`,
  async run(args, io) {
    const sysroot = new Sysroot(opt(args, 'sysroot') ?? DEFAULT_SYSROOT);
    const { config } = await readDaemonConfig(sysroot.larchDir);
    const policy = opt(args, 'policy');
    if (policy !== undefined) {
      if (!isPolicy(policy)) throw new LarchError('USAGE', `daemon: --policy must be one of ${POLICIES.join(', ')}, got '${policy}'`, { data: { command: 'daemon', option: 'policy', value: policy, allowed: POLICIES } });
      config.policy = policy;
    }
    const device = await sysroot.readConfig();
    config.mqttUrl = opt(args, 'mqtt') ?? config.mqttUrl;
    if (config.mqttUrl === undefined && device.remote.kind === 'mqtt') {
      // Provisioned with --mqtt-url: that broker, with the login and TLS files given to provision.
      const auth = device.remote.mqtt ?? {};
      Object.assign(config, { mqttUrl: device.remote.url, mqttUsername: config.mqttUsername ?? auth.username, mqttPasswordFile: config.mqttPasswordFile ?? auth.passwordFile, mqttCaFile: config.mqttCaFile ?? auth.caFile, mqttCertFile: config.mqttCertFile ?? auth.certFile, mqttKeyFile: config.mqttKeyFile ?? auth.keyFile });
    }
    config.jitterS = intOption(opt(args, 'jitter'), 'jitter', 'daemon') ?? config.jitterS;
    config.statusIntervalS = intOption(opt(args, 'status-interval'), 'status-interval', 'daemon') ?? config.statusIntervalS;
    config.checkIntervalS = intOption(opt(args, 'check-interval'), 'check-interval', 'daemon') ?? config.checkIntervalS;
    config.pollIntervalMs = intOption(opt(args, 'poll-interval-ms'), 'poll-interval-ms', 'daemon', 10) ?? config.pollIntervalMs;
    const deviceId = opt(args, 'device-id') ?? config.deviceId ?? hostname();
    if (!isValidDeviceId(deviceId)) throw new LarchError('USAGE', `daemon: '${deviceId}' is not a valid device id (letters, digits, . _ -; at most 128)`, { data: { command: 'daemon', option: 'device-id', value: deviceId } });
    const log = (line: string) => io.err(`${new Date().toISOString()} ${line}\n`);
    const limits: RemoteLimits = { timeoutMs: config.timeoutS ? config.timeoutS * 1000 : undefined, minSpeed: minSpeedOf(config.minSpeed, config.minSpeedTimeS || undefined), cancel: (): AbortSignal | undefined => d.transferSignal() };
    const d: Daemon = new Daemon({
      sysroot,
      config,
      deviceId,
      remote: followedRemote(sysroot, device, limits),
      remoteFor: (entry) => remoteFor({ remote: entry }, limits),
      merger: mergerFor(),
      log,
      reboot: rebootFor(sysroot, { log }),
    });
    await d.start();
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await d.stop();
  },
};
