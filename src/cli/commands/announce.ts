/** larch announce: signed, retained MQTT announcements of the repo's published refs. */
import { LarchError } from '../../errors.ts';
import { announce } from '../../server/mqtt-publisher.ts';
import { publish } from '../../server/publish.ts';
import { updateRolloutState } from '../../server/rollout-state.ts';
import { applyChoices } from '../../server/rollout-rules.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, list, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { MQTT_AUTH_HELP, MQTT_AUTH_OPTIONS, mqttSettings } from '../mqtt-options.ts';
import { DEFAULT_EXPIRES_IN, parseDuration } from '../option-values.ts';
import { ROLLOUT_HELP, ROLLOUT_OPTIONS, rolloutChoices } from '../rollout-options.ts';

export const announceCmd: Command = {
  name: 'announce',
  summary: "publish signed, retained MQTT announcements of the repo's refs (with a rollout percentage)",
  options: { ...REPO_OPTION, 'sign-key': { type: 'string', multiple: true }, mqtt: { type: 'string' }, ref: { type: 'string', multiple: true }, ...ROLLOUT_OPTIONS, resume: { type: 'boolean' }, ...MQTT_AUTH_OPTIONS },
  help: `NAME
  larch announce - tell the fleet over MQTT that a ref has a new commit

SYNOPSIS
  larch announce --repo R --sign-key K.key --mqtt URL [--ref REF]... [--rollout PCT]
                 [--rollout-over DURATION] [--halt-on-failures N% [--halt-min-devices M]] [--json]
  larch announce --repo R --sign-key K.key --mqtt URL --ref REF --resume [--rollout PCT] [--json]

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
  canary. Devices still fetch and verify the signed summary over HTTP: the announcement is a
  signed trigger, not the authority.
  A plan (--rollout-over) and a halt rule (--halt-on-failures) are recorded the same way, with
  the release they apply to, and carried out by a running 'larch serve --sign-key K --mqtt URL'
  on R: it widens the rollout step by step, and halts the release when too many of the devices
  that took it fell back or failed. A halt is recorded in R/rollout.json; every summary then
  lists the ref's last good release instead of the halted one (the ref itself is unchanged), and
  it is announced at 100%, so devices not yet moved stay on it. A new commit on the ref ends the
  halt (a new release in flight, its plan starting again); --resume lifts it for the same
  release: it publishes the summary again (as 'larch publish', with --sign-key) and announces the
  release at PCT (default the rollout it had reached). --rollout on a halted ref is refused.
  docs/fleet.md, "Halting a rollout" and "Rollouts over time".

OPTIONS
  --repo R               the archive repo, published (required)
  --sign-key K.key       sign the announcements (required; repeatable)
  --mqtt URL             the broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (required)
  --ref REF              announce only this ref (repeatable; default every ref)
${ROLLOUT_HELP}
  --resume               lift the halt of the --ref refs (with --rollout: at PCT)
${MQTT_AUTH_HELP}
  --json                 print {"announcements": [{ref, commit, version, timestamp_s,
                         summary_serial, rollout, created_s, topic, plan, halt_rule, halted,
                         last_good}]} (the last four from R/rollout.json, null when not set)

EXIT STATUS
  0 published and acknowledged by the broker; 2 bad options; 3 no summary or unknown ref;
  4 R/rollout.json is damaged; 7 (LOCKED) another writer holds R; 9 broker unreachable;
  14 (REFUSED) --rollout on a halted ref (data.reason "halted"), --resume of a ref that is
  not halted ("not-halted").

EXAMPLES
  larch publish --repo /srv/larch --sign-key vendor.key
  larch announce --repo /srv/larch --sign-key vendor.key --mqtt mqtt://broker:1883 --rollout 10
  larch announce --repo /srv/larch --sign-key vendor.key --mqtt mqtt://broker:1883 \
      --rollout 5 --rollout-over 24h --halt-on-failures 20%
  larch announce --repo /srv/larch --sign-key vendor.key --mqtt mqtt://broker:1883 \
      --ref os/stable --resume
`,
  async run(args, io) {
    const keyFiles = list(args, 'sign-key');
    if (keyFiles.length === 0) throw new LarchError('USAGE', 'announce: --sign-key is required (devices refuse unsigned announcements)', { data: { command: 'announce', option: 'sign-key' } });
    const { resume, ...choices } = { ...rolloutChoices(args, 'announce'), resume: args.values.resume === true };
    const refs = list(args, 'ref');
    if (resume && refs.length === 0) throw new LarchError('USAGE', 'announce: --resume needs --ref REF (the halted ref)', { data: { command: 'announce', options: ['resume', 'ref'] } });
    const repo = await openRepo(args, 'announce');
    const signKeys = await Promise.all(keyFiles.map(readSecretKey));
    if (resume) {
      // The halt is lifted first, then the summary lists the release again, then it is announced.
      const now = new Date();
      await updateRolloutState(repo, (state) => {
        for (const ref of refs) state[ref] = applyChoices(ref, state[ref], { resume: true, rollout: choices.rollout }, now);
      });
      await publish(repo, { signKeys, expiresInSeconds: parseDuration(DEFAULT_EXPIRES_IN, '--expires-in') });
      delete choices.rollout;
    }
    const r = await announce(repo, { signKeys, mqtt: mqttSettings(args, 'announce'), refs, choices });
    const recorded = (ref: string) => ({ plan: r.state[ref]?.plan ?? null, halt_rule: r.state[ref]?.halt_rule ?? null, halted: r.state[ref]?.halted ?? null, last_good: r.state[ref]?.last_good ?? null });
    // The messages carry seconds (formats.md §13); --json names them so.
    if (args.json) return printJson(io, { announcements: r.announcements.map(({ timestamp, created, summarySerial, ...a }) => ({ ...a, timestamp_s: timestamp, created_s: created, summary_serial: summarySerial, ...recorded(a.ref) })) });
    for (const a of r.announcements) {
      const s = r.state[a.ref];
      const notes = [s?.plan ? `plan ${s.plan.start}% to 100% over ${s.plan.over_s} s` : '', s?.halt_rule ? `halts above ${s.halt_rule.failures_pct}% failures of at least ${s.halt_rule.min_devices} devices` : '', s?.halted ? `HALTED: version ${s.halted.version} at ${s.halted.rollout}%, ${s.halted.failure_pct}% failed` : ''].filter(Boolean);
      io.out(`${a.topic}: version ${a.version} (${a.commit.slice(0, 12)}), rollout ${a.rollout}%${notes.length ? `; ${notes.join('; ')}` : ''}\n`);
    }
    if (r.announcements.some((a) => (r.state[a.ref]?.plan && r.state[a.ref]!.rollout < 100) || r.state[a.ref]?.halt_rule) && !args.json) io.err("plans and halt rules are carried out by a running 'larch serve --sign-key K --mqtt URL' on this repo\n");
  },
};
