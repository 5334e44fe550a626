/** larch serve: serve an archive repo over HTTP (development and small fleets). */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../../errors.ts';
import { type ResponderLogEntry, startResponder } from '../../server/mqtt-responder.ts';
import { type AccessLogEntry, startServer } from '../../server/serve.ts';
import { startAutoPublish } from '../../server/auto-publish.ts';
import { type FleetAggregator, startAggregator } from '../../server/fleet/aggregator.ts';
import { startRolloutDriver } from '../../server/rollout-driver.ts';
import { DEFAULT_ALLOW, allowList, fleetRoutes } from '../../server/fleet/routes.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, intOption, list, opt } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { MQTT_AUTH_HELP, MQTT_AUTH_OPTIONS, mqttSettings } from '../mqtt-options.ts';
import { DEFAULT_EXPIRES_IN, parseDuration } from '../option-values.ts';
import { ROLLOUT_HELP, ROLLOUT_OPTIONS, rolloutChoices } from '../rollout-options.ts';

export const serve: Command = {
  name: 'serve',
  summary: 'serve an archive repo over HTTP (Range, ETag, access log) and MQTT chunk requests',
  options: { ...REPO_OPTION, port: { type: 'string' }, host: { type: 'string' }, log: { type: 'string' }, rate: { type: 'string' }, 'max-downloads': { type: 'string' }, mqtt: { type: 'string' }, 'sign-key': { type: 'string', multiple: true }, ...ROLLOUT_OPTIONS, 'expires-in': { type: 'string' }, 'watch-interval': { type: 'string' }, dashboard: { type: 'boolean' }, 'dashboard-allow': { type: 'string', multiple: true }, 'dashboard-max-devices': { type: 'string' }, 'fleet-state': { type: 'string' }, ...MQTT_AUTH_OPTIONS },
  help: `NAME
  larch serve - serve an archive repo over HTTP

SYNOPSIS
  larch serve --repo R [--port P] [--host H] [--log FILE] [--rate BYTES_PER_SEC] [--max-downloads N] [--json]
              [--mqtt URL [--mqtt-username U] [--mqtt-password-file F] [--mqtt-ca F ...]]
              [--sign-key K.key [--expires-in DURATION] [--watch-interval MS]
                [--rollout PCT] [--rollout-over DURATION] [--halt-on-failures N% [--halt-min-devices M]]]
              [--dashboard [--dashboard-allow CIDR]... [--dashboard-max-devices N] [--fleet-state DIR]]

DESCRIPTION
  A small static file server for R: GET and HEAD, one byte range per request (206 with
  Content-Range; 416 when it cannot be satisfied), ETag, Last-Modified, If-Range. Nothing
  outside R is served: paths with '..' are refused and symlinks leading out of R are not
  followed; directories are not listed. Run 'larch publish' first so R holds a summary.
  Prints its URL on stdout, then serves until SIGINT or SIGTERM.
  Each request gets one access-log line, a JSON object: {"time", "remote", "method",
  "path", "status", "range": [first, last] | null, "bytes" (body bytes written), "size",
  "ms"}. For many devices, put the same files on any web server or CDN instead.
  With --mqtt, it also answers chunk requests from devices whose only path is the broker
  (docs/formats.md §13.6): it subscribes to the shared subscription
  $share/larch/larch/v1/fetch, so several 'larch serve --mqtt' instances share the requests,
  and answers each with at most 256 KiB of one repo file (summary, summary.sig, deltas,
  objects; nothing else). It keeps no per-device state. Each answered request gets a log
  line too: {"time", "transport": "mqtt", "responder", "path", "offset", "length",
  "status", "bytes", "size", "ms"}.
  With --sign-key, serve also keeps R's summary current: every --watch-interval it compares
  the refs and complete deltas in R with the published summary and, when they differ (a new
  commit or delta) or the summary is past half its lifetime, publishes again as 'larch
  publish' would, leaving out (and saying once) the deltas publish leaves out: unsigned,
  untrusted or incomplete ones. With --mqtt too, it then announces (as 'larch announce')
  each ref whose commit or deltas changed, and every ref once at start, each at the ref's
  rollout recorded in R/rollout.json (100 when none), so a restart re-announces what was
  announced. A vendor pipeline then only runs 'larch commit' and 'larch delta generate'. It
  says what it published and announced on stderr; a failed round (the repo locked by a
  commit, the broker away) is retried.
  With --sign-key and --mqtt, serve also carries out the plans and halt rules recorded in
  R/rollout.json ('larch announce --rollout-over', '--halt-on-failures', or the same options
  here): each round it widens a plan by one step when the step is due, and halts a release in
  flight when more than N% of at least M devices that decided (booted it good, fell back or
  failed) fell back or failed, judged over the fleet view below (started for it even without
  --dashboard, once the retained statuses are in). A halt is recorded in R/rollout.json, the
  summary is published listing the ref's last good release, and that release is announced at
  100%: devices not yet moved stay on it. Halts, steps, resumes and supersedes are journaled in
  R/fleet/events.jsonl and logged on stderr; the fleet's progress per ref is sampled once a
  minute into R/fleet/progress.jsonl. Run plans and halts on one serve per repo (the
  publishing one). docs/fleet.md, "Halting a rollout".
  With --dashboard (and --mqtt), serve also keeps a view of the fleet, fed only from the
  broker: every device's retained status, its journal lines and command results, and the
  announcements. It answers GET /api/fleet/devices (one item per device: version, state,
  relations to releases, last error, last journal lines; filters ?ref= &state= &version=
  &online=true|false &q=ID-PREFIX) and GET /api/fleet/rollouts (per ref: the announced
  release, counts of devices that took it, booted it good, fell back or failed, devices per
  version, fallbacks by failed health check, and "synced" once the retained statuses are
  in). Only --dashboard-allow addresses are answered (default loopback). The records are
  kept in R/fleet/devices.json (or --fleet-state DIR), so devices that went offline are still
  shown after a restart. The top-level names 'fleet' and 'api' of R are never served as
  files. docs/fleet.md, "The fleet view".

OPTIONS
  --repo R        archive repository to serve (required)
  --port P        TCP port (default 0: pick a free one)
  --host H        address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --log FILE      append the access log to FILE (default: stderr)
  --rate N        send at most N bytes per second per response (to simulate a slow link)
  --max-downloads N  at most N deltas and objects being sent at once; more requests get 503
                  with Retry-After: 2, which devices wait out (spread over 2-4 s) and retry
  --json          print {"url", "port", "repo"} on one line when listening ("mqtt": the
                  responder's client id, with --mqtt; "fleet": the fleet view's, with --dashboard)
  --mqtt URL      also answer chunk requests through this broker (mqtt:// or mqtts://)
  --sign-key K.key  keep the summary signed and current, and announce (repeatable)
  --rollout, --rollout-over, --halt-on-failures, --halt-min-devices: recorded for every ref
                  at the first announcement, as 'larch announce' does (default: what R/rollout.json
                  records); what is recorded already is not applied again, so a restart with the
                  same options never restarts a plan, and a halted ref stays halted (a --rollout
                  without a plan is applied again at each start):
${ROLLOUT_HELP}
  --expires-in DURATION  lifetime of the summaries it publishes (default ${DEFAULT_EXPIRES_IN})
  --watch-interval MS  how often R is looked at for changes (default 2000)
  --dashboard     keep the fleet view and answer /api/fleet/* (needs --mqtt)
  --dashboard-allow CIDR  who may read the fleet view (repeatable; default 127.0.0.0/8 and ::1)
  --dashboard-max-devices N  devices the view records at most (default 50000; more are counted)
  --fleet-state DIR  keep the view's records in DIR/devices.json instead of R/fleet/
${MQTT_AUTH_HELP}

EXIT STATUS
  0 stopped by a signal; 3 no repo at R; 4 R is not an archive repo; 9 the port is taken.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'serve');
    if (repo.mode !== 'archive') {
      throw new LarchError('INVALID_INPUT', `repo '${repo.path}' is in mode '${repo.mode}'; devices fetch archive repos`, { hint: "serve an archive repo ('larch init --mode archive', then 'larch pull-local' into it)", data: { mode: repo.mode } });
    }
    const port = intOption(opt(args, 'port'), 'port', 'serve', 0);
    if (port !== undefined && port > 65535) throw new LarchError('USAGE', 'serve: --port must be 0..65535', { data: { command: 'serve', option: 'port', value: port, max: 65535 } });
    const rate = intOption(opt(args, 'rate'), 'rate', 'serve', 1);
    const logFile = opt(args, 'log');
    const writeLog = (e: AccessLogEntry | ResponderLogEntry) => {
      const line = JSON.stringify(e) + '\n';
      // Synchronous appends: one line per request, in order, on disk before the response ends.
      if (logFile) appendFileSync(logFile, line);
      else io.err(line);
    };
    const maxDownloads = intOption(opt(args, 'max-downloads'), 'max-downloads', 'serve', 1);
    const dashboard = args.values.dashboard === true;
    if (dashboard && !opt(args, 'mqtt')) throw new LarchError('USAGE', 'serve: --dashboard needs --mqtt URL: the fleet view is fed from the broker', { data: { command: 'serve', options: ['dashboard', 'mqtt'] } });
    for (const o of ['dashboard-allow', 'dashboard-max-devices', 'fleet-state']) {
      if (!dashboard && args.values[o] !== undefined) throw new LarchError('USAGE', `serve: --${o} goes with --dashboard`, { data: { command: 'serve', options: [o, 'dashboard'] } });
    }
    let allow;
    try {
      allow = allowList(list(args, 'dashboard-allow').length ? list(args, 'dashboard-allow') : DEFAULT_ALLOW);
    } catch (err) {
      throw new LarchError('USAGE', `serve: --dashboard-allow: ${(err as Error).message}`, { data: { command: 'serve', option: 'dashboard-allow' } });
    }
    const choices = rolloutChoices(args, 'serve');
    const log = (line: string) => io.err(`${new Date().toISOString()} ${line}\n`);
    const stateDir = opt(args, 'fleet-state') ?? join(repo.path, 'fleet');
    const startFleet = () => startAggregator({ mqtt: mqttSettings(args, 'serve'), repoPath: repo.path, maxDevices: intOption(opt(args, 'dashboard-max-devices'), 'dashboard-max-devices', 'serve', 1), snapshotPath: join(stateDir, 'devices.json'), log });
    let fleet: FleetAggregator | null = dashboard ? await startFleet() : null;
    const keyFiles = list(args, 'sign-key');
    const mqtt = opt(args, 'mqtt') !== undefined;
    // Plans and halts need the key (to publish and announce) and the broker (to announce, and the fleet view to judge).
    const driver = keyFiles.length && mqtt
      ? await startRolloutDriver(repo, {
          stateDir,
          log,
          fleet: async (start) => {
            if (!fleet && start) {
              fleet = await startFleet();
              log(`fleet view started for a halt rule (client ${fleet.clientId})`);
            }
            return fleet;
          },
        })
      : undefined;
    const server = await startServer({ root: repo.path, host: opt(args, 'host') ?? '127.0.0.1', port: port ?? 0, onLog: writeLog, rateBytesPerSecond: rate, maxDownloads, routes: dashboard ? fleetRoutes(fleet!, { allow, rollouts: driver ? { state: () => driver.state, progress: (ref) => driver.progress(ref) } : undefined }) : undefined }).catch((err) => {
      throw fromSystemError(err, 'listen on', `${opt(args, 'host') ?? '127.0.0.1'}:${port ?? 0}`);
    });
    const responder = opt(args, 'mqtt')
      ? await startResponder({ root: repo.path, mqtt: mqttSettings(args, 'serve'), onLog: writeLog, rateBytesPerSecond: rate, log })
      : null;
    io.out(args.json ? JSON.stringify({ url: server.url, port: server.port, repo: repo.path, ...(responder ? { mqtt: responder.clientId } : {}), ...(fleet ? { fleet: fleet.clientId } : {}) }) + '\n' : `${server.url}\n`);
    const auto = keyFiles.length
      ? startAutoPublish(repo, {
          signKeys: await Promise.all(keyFiles.map(readSecretKey)),
          expiresInSeconds: parseDuration(opt(args, 'expires-in') ?? DEFAULT_EXPIRES_IN, '--expires-in'),
          mqtt: mqtt ? mqttSettings(args, 'serve') : undefined,
          choices,
          driver,
          intervalMs: intOption(opt(args, 'watch-interval'), 'watch-interval', 'serve', 100),
          log,
        })
      : null;
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await auto?.close();
    await responder?.close();
    await fleet?.close();
    await server.close();
  },
};
