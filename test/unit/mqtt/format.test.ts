/** MQTT messages (docs/formats.md §13): the signed envelope vectors, body parsing, command freshness, rollout, daemon.conf. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import * as ed from '@noble/ed25519';
import { rejectsCode } from '../../helpers.ts';
import { parseDaemonConfig, policyAction } from '../../../src/agent/policy.ts';
import { MAX_COMMAND_WINDOW_S, MAX_SIGNED_BYTES, MessageFormatError, announceTopic, commandFreshness, commandResultTopic, commandTopic, encodeSigned, formatAnnouncement, formatCommand, isValidDeviceId, parseCommandArgs, openSigned, parseAnnouncement, parseCommand, signingMessage, statusTopic, type SignedKind } from '../../../src/mqtt/format.ts';
import { inRollout, rolloutPosition } from '../../../src/mqtt/rollout.ts';

const file = JSON.parse(readFileSync(new URL('../../vectors/mqtt/messages.json', import.meta.url), 'utf8'));
const seed = Uint8Array.from(Buffer.from(file.secret_seed, 'hex'));
const trusted = [Uint8Array.from(Buffer.from(file.public_key, 'hex'))];

t.test('vectors', async (t) => {
  const key = { seed, publicKey: await ed.getPublicKeyAsync(seed) };
  for (const v of file.vectors) {
    const kind = v.kind as SignedKind;
    const r = await openSigned(kind, Buffer.from(v.payload, 'utf8'), trusted);
    if (v.valid) {
      t.equal(Buffer.from(signingMessage(kind, Buffer.from(v.body, 'utf8'))).toString('hex'), v.message_hex, `${v.comment}: signed message`);
      t.equal(Buffer.from(await encodeSigned(kind, v.body, [key])).toString('utf8'), v.payload, `${v.comment}: encodes to the same bytes`);
      t.match(r, { ok: true, bodyText: v.body, signedBy: ['21fe31dfa154a261'] }, `${v.comment}: verifies`);
    } else {
      t.match(r, { ok: false, reason: v.reason }, `${v.comment}: refused as ${v.reason}`);
    }
  }
});

t.test('parse announcement and command', async (t) => {
  const a = { ref: 'os/stable', commit: 'ab'.repeat(32), version: '2', timestamp: 5, summarySerial: 7, rollout: 12.5, created: 9 };
  t.same(parseAnnouncement(JSON.parse(formatAnnouncement(a))), a, 'announcement round trip');
  const c = { cmd: 'reboot' as const, device: 'gw-1', nonce: 'n'.repeat(16), issued: 100, expires: 400 };
  t.same(parseCommand(JSON.parse(formatCommand(c))), c, 'command round trip');
  const badA: [unknown, string][] = [
    [{ ...JSON.parse(formatAnnouncement(a)), rollout: 101 }, 'rollout over 100'],
    [{ ...JSON.parse(formatAnnouncement(a)), commit: 'AB'.repeat(32) }, 'uppercase commit'],
    [{ ...JSON.parse(formatAnnouncement(a)), ref: 'os/+' }, 'wildcard in ref'],
    [{ ...JSON.parse(formatAnnouncement(a)), extra: 1 }, 'unknown key'],
    [{ ...JSON.parse(formatAnnouncement(a)), type: 'command' }, 'a command body'],
    [{ ...JSON.parse(formatAnnouncement(a)), format: 2 }, 'a later format'],
    [[1], 'an array'],
  ];
  for (const [body, name] of badA) t.throws(() => parseAnnouncement(body), MessageFormatError, name);
  const badC: [unknown, string][] = [
    [{ ...JSON.parse(formatCommand(c)), cmd: 'rm-rf' }, 'unknown command'],
    [{ ...JSON.parse(formatCommand(c)), nonce: 'short' }, 'short nonce'],
    [{ ...JSON.parse(formatCommand(c)), device: 'a/b' }, 'device with a slash'],
    [{ ...JSON.parse(formatCommand(c)), issued: -1 }, 'negative time'],
    [{ ...JSON.parse(formatCommand(c)), type: 'announce' }, 'an announcement body'],
  ];
  for (const [body, name] of badC) t.throws(() => parseCommand(body), MessageFormatError, name);
  const big = Buffer.alloc(MAX_SIGNED_BYTES + 1, 0x20);
  t.match(await openSigned('command', big, trusted), { ok: false, reason: 'too-large' });
});

t.test('command arguments (§13.3): signed with the rest, checked per command, absent where a command takes none', async (t) => {
  const base = { device: 'gw-1', nonce: 'n'.repeat(16), issued: 100, expires: 400 };
  const ok = [
    { cmd: 'deploy' as const, args: { version: '1.4' } },
    { cmd: 'deploy' as const, args: { version: 'ab12cd34', allow_downgrade: true, retry_failed: false } },
    { cmd: 'rebase' as const, args: { ref: 'os/beta' } },
    { cmd: 'rebase' as const, args: { ref: 'os/beta', remote: 'beta' } },
    { cmd: 'install' as const, args: { packages: ['jq', 'libc6-dev', 'g++'] } },
    { cmd: 'uninstall' as const, args: { packages: ['jq'] } },
  ];
  for (const c of ok) t.same(parseCommand(JSON.parse(formatCommand({ ...c, ...base }))), { ...c, ...base }, `${c.cmd} ${JSON.stringify(c.args)} round trip`);
  for (const cmd of ['pin', 'unpin', 'cancel', 'check'] as const) {
    const text = formatCommand({ cmd, ...base });
    t.notOk('args' in JSON.parse(text), `${cmd}: no args key (the body an older agent signs and reads)`);
    t.same(parseCommand(JSON.parse(text)), { cmd, ...base });
  }
  const body = (cmd: string, args: unknown) => ({ type: 'command', format: 1, cmd, ...base, args });
  const bad: [unknown, string][] = [
    [body('reboot', {}), 'args on a command that takes none'],
    [body('deploy', undefined), 'deploy without args'],
    [body('deploy', {}), 'deploy without a version'],
    [body('deploy', { version: '1', force: true }), 'an unknown key in args'],
    [body('deploy', { version: '1', allow_downgrade: 'yes' }), 'a flag that is not a boolean'],
    [body('deploy', { version: '' }), 'an empty version'],
    [body('rebase', { ref: 'os/+' }), 'a wildcard ref'],
    [body('rebase', { ref: 'os/../x' }), 'a ref with ..'],
    [body('rebase', { ref: 'os/beta', remote: 'Beta!' }), 'a bad remote name'],
    [body('install', { packages: [] }), 'no packages'],
    [body('install', { packages: ['Jq'] }), 'an upper-case package name'],
    [body('install', { packages: ['-rf'] }), 'a package name that is an option'],
    [body('install', { packages: Array.from({ length: 65 }, (_, i) => `p${i}x`) }), '65 packages'],
    [body('uninstall', ['jq']), 'args not an object'],
  ];
  for (const [b, name] of bad) t.throws(() => parseCommand(b), MessageFormatError, name);
  t.throws(() => parseCommandArgs('pin', { x: 1 }), MessageFormatError, 'parseCommandArgs refuses args for pin');
});

t.test('topics and device ids', async (t) => {
  t.equal(announceTopic('os/stable'), 'larch/v1/announce/os/stable');
  t.equal(statusTopic('gw-1'), 'larch/v1/device/gw-1/status');
  t.equal(commandTopic('gw-1'), 'larch/v1/device/gw-1/cmd');
  t.equal(commandResultTopic('gw-1'), 'larch/v1/device/gw-1/cmd/result');
  for (const id of ['', '-x', 'a/b', 'a+b', 'a#', 'x'.repeat(129), 'é']) t.notOk(isValidDeviceId(id), `'${id}' is not a device id`);
  for (const id of ['a', 'gw-0042', 'A.b_c-9', 'x'.repeat(128)]) t.ok(isValidDeviceId(id), `'${id}' is a device id`);
  t.throws(() => statusTopic('a/#'), RangeError);
  t.throws(() => announceTopic('os/#'), RangeError);
});

t.test('command freshness', async (t) => {
  const now = 1_000_000;
  t.equal(commandFreshness({ issued: now - 10, expires: now + 10 }, now), 'fresh');
  t.equal(commandFreshness({ issued: now - 100, expires: now }, now), 'stale', 'expires is exclusive');
  t.equal(commandFreshness({ issued: now - 3600, expires: now - 3540 }, now), 'stale');
  t.equal(commandFreshness({ issued: now + 301, expires: now + 600 }, now, 300), 'not-yet-valid', 'beyond the skew');
  t.equal(commandFreshness({ issued: now + 299, expires: now + 600 }, now, 300), 'fresh', 'within the skew');
  t.equal(commandFreshness({ issued: now, expires: now + MAX_COMMAND_WINDOW_S + 1 }, now), 'window-too-long');
  t.equal(commandFreshness({ issued: now, expires: now }, now), 'window-too-long', 'empty window');
});

t.test('rollout: stable, about the share asked for, monotonic in the percentage', async (t) => {
  const ids = Array.from({ length: 10_000 }, (_, i) => `device-${i}`);
  for (const pct of [1, 10, 25, 50, 90]) {
    const n = ids.filter((id) => inRollout(id, pct)).length;
    // Binomial(10000, p): 4 standard deviations is at most 200 devices (2 points); allow 2 points.
    t.ok(Math.abs(n / 100 - pct) <= 2, `${pct}%: ${n} of 10000 act (within 2 points)`);
  }
  t.equal(ids.filter((id) => inRollout(id, 0)).length, 0, '0%: none');
  t.equal(ids.filter((id) => inRollout(id, 100)).length, 10_000, '100%: all');
  t.ok(ids.every((id) => !inRollout(id, 25) || inRollout(id, 50)), 'a device in at 25% is in at 50%');
  t.equal(rolloutPosition('gw-0042'), rolloutPosition('gw-0042'), 'stable');
  const p = rolloutPosition('gw-0042');
  t.ok(p >= 0 && p < 100 && Math.round(p * 100) === p * 100, `position ${p} in [0, 100) with two decimals`);
  t.equal(inRollout('any', 50, 0), true, 'wariness 0: first');
  t.equal(inRollout('any', 99, 1), false, 'wariness 1: only at 100');
  t.equal(inRollout('any', 100, 1), true);
});

t.test('daemon.conf', async (t) => {
  t.same(parseDaemonConfig('# c\n\npolicy = "apply"\njitter_s = 0\nwariness = 0.25\nmqtt_url = "mqtt://h:1883" # trailing\ndevice_id = "a\\"b"\n', 'f'), { policy: 'apply', jitterS: 0, wariness: 0.25, mqttUrl: 'mqtt://h:1883', deviceId: 'a"b' });
  const bad: [string, number][] = [
    ['policy = "sometimes"', 1],
    ['\nunknown = 1', 2],
    ['jitter_s = "30"', 1],
    ['jitter_s = 1.5', 1],
    ['wariness = 2', 1],
    ['policy = apply', 1],
    ['mqtt_url = "unterminated', 1],
    ['[table]', 1],
  ];
  for (const [text, line] of bad) {
    await rejectsCode(t, () => parseDaemonConfig(text, 'daemon.conf'), 'INVALID_INPUT', `'${text}' refused at line ${line}`, { data: { line } });
  }
  t.equal(policyAction('apply-and-reboot'), 'stage-and-reboot');
  t.equal(policyAction('none'), 'report');
});
