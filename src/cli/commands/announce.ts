/** larch announce: signed, retained MQTT announcements of the repo's published refs. */
import { LarchError } from '../../errors.ts';
import { announce } from '../../server/mqtt-publisher.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, list, opt, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { MQTT_AUTH_HELP, MQTT_AUTH_OPTIONS, mqttSettings } from '../mqtt-options.ts';
import { parseRollout } from '../option-values.ts';

export const announceCmd: Command = {
  name: 'announce',
  summary: "publish signed, retained MQTT announcements of the repo's refs (with a rollout percentage)",
  options: { ...REPO_OPTION, 'sign-key': { type: 'string', multiple: true }, mqtt: { type: 'string' }, ref: { type: 'string', multiple: true }, rollout: { type: 'string' }, ...MQTT_AUTH_OPTIONS },
  help: `NAME
  larch announce - tell the fleet over MQTT that a ref has a new commit

SYNOPSIS
  larch announce --repo R --sign-key K.key --mqtt URL [--ref REF]... [--rollout PCT] [--json]

DESCRIPTION
  For each ref of R's published summary (run 'larch publish' first), publishes a signed
  announcement, retained and QoS 1, on larch/v1/announce/REF: the ref's commit, version
  and timestamp, the summary's serial, the rollout percentage and the time
  (docs/formats.md §13). Devices running 'larch daemon' act on it through their policy when
  their rollout position is below PCT. Raise the rollout by announcing again with a larger
  PCT: the new retained message replaces the old one.
  The rollout of each ref is state of the repo: --rollout PCT is recorded in R/rollout.json
  (durably, before anything is published), and every announcement without --rollout (this
  command, or 'larch serve --sign-key --mqtt' at a restart or a new commit) uses the ref's
  recorded percentage, 100 when it never had one. So only an explicit --rollout widens a
  canary. Devices still fetch and verify the
  signed summary over HTTP: the announcement is a signed trigger, not the authority.

OPTIONS
  --repo R               the archive repo, published (required)
  --sign-key K.key       sign the announcements (required; repeatable)
  --mqtt URL             the broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (required)
  --ref REF              announce only this ref (repeatable; default every ref)
  --rollout PCT          0-100, the share of the fleet that acts now, recorded for the
                         refs (default: each ref's recorded rollout, else 100)
${MQTT_AUTH_HELP}
  --json                 print {"announcements": [{ref, commit, version, timestamp,
                         summarySerial, rollout, created, topic}]}

EXIT STATUS
  0 published and acknowledged by the broker; 3 no summary or unknown ref; 4 R/rollout.json
  is damaged; 7 (LOCKED) another writer holds R; 9 broker unreachable.

EXAMPLES
  larch publish --repo /srv/larch --sign-key vendor.key
  larch announce --repo /srv/larch --sign-key vendor.key --mqtt mqtt://broker:1883 --rollout 10
`,
  async run(args, io) {
    const keyFiles = list(args, 'sign-key');
    if (keyFiles.length === 0) throw new LarchError('USAGE', 'announce: --sign-key is required (devices refuse unsigned announcements)', { data: { command: 'announce', option: 'sign-key' } });
    const rollout = parseRollout(opt(args, 'rollout'));
    const repo = await openRepo(args, 'announce');
    const r = await announce(repo, { signKeys: await Promise.all(keyFiles.map(readSecretKey)), mqtt: mqttSettings(args, 'announce'), refs: list(args, 'ref'), rollout });
    // The messages carry seconds (formats.md §13); --json names them so.
    if (args.json) return printJson(io, { ...r, announcements: r.announcements.map(({ timestamp, created, summarySerial, ...a }) => ({ ...a, timestamp_s: timestamp, created_s: created, summary_serial: summarySerial })) });
    for (const a of r.announcements) io.out(`${a.topic}: version ${a.version} (${a.commit.slice(0, 12)}), rollout ${a.rollout}%\n`);
  },
};
