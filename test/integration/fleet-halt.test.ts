/**
 * A rollout halts by itself (issue 22, must-show 2). 20 in-process agents (test/fleet-helpers.ts:
 * policy apply-and-reboot; a reboot stops the agent, boots the sysroot through boot-check with its
 * health checks, falls back when the slot spends its tries, and starts a new agent) run v1. v2's
 * required health check fails on devices whose sysroot holds a marker; the marker goes to the
 * devices ranked 1, 4 and 7 (mod 10) by rollout position, so 30% of every prefix of the ramp fails.
 * `larch announce --rollout 10 --rollout-over 300s --halt-on-failures 20% --halt-min-devices 5`, and
 * the vendor's `larch serve --sign-key --mqtt --dashboard` (SIGKILLed and restarted once mid-plan)
 * does the rest with no further command:
 * - it widens the plan step by step, the recorded rollout unchanged by the restart;
 * - it halts v2 once more than 20% of at least 5 devices that decided fell back or failed:
 *   R/rollout.json and events.jsonl say so, the published summary lists v1 again, the retained
 *   announcement names v1 at 100%, /api/fleet/rollouts shows the halt, and the page in headless
 *   Chromium shows its banner (test-results/fleet-dashboard/halted.png);
 * - the devices not yet moved stay on v1 (no pending, no failed release, no v2 anywhere) while the
 *   plan stays frozen; devices that booted v2 good stay on it quietly (head-older, no error).
 * Then `larch announce --resume` lists v2 again.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSummary } from '../../src/protocol/summary.ts';
import { rolloutPosition } from '../../src/mqtt/rollout.ts';
import { REF, vendor } from '../device-helpers.ts';
import { BIN, ROOT, larchOk, waitUntil } from '../helpers.ts';
import { launchChromium } from '../browser.ts';
import { recorder, sleep, startBroker } from '../mqtt-helpers.ts';
import { startFleet } from '../fleet-helpers.ts';
import { tempDir } from '../helpers.ts';

const N = 20;
const MARKER = 'larch/test-fail-app';
/** v2's required check: fails where the device's sysroot holds the marker. */
const CHECK = `#!/bin/sh\nif [ -e "$LARCH_SYSROOT/${MARKER}" ]; then echo "app did not start" >&2; exit 1; fi\nexit 0\n`;

t.test(`a release failing on 30% of ${N} devices halts by itself; the devices not yet moved stay on v1`, { timeout: 600_000 }, async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'), { quiet: true });
  const statusTopic = (id: string) => `larch/v1/device/${id}/status`;
  const rec = await recorder(t, broker.url, ['larch/v1/device/+/status', `larch/v1/announce/${REF}`]);

  const ids = Array.from({ length: N }, (_, i) => `halt-${String(i).padStart(2, '0')}`);
  const byPosition = [...ids].sort((a, b) => rolloutPosition(a) - rolloutPosition(b));
  const failing = new Set(byPosition.filter((_, rank) => [1, 4, 7].includes(rank % 10)));
  const fleet = await startFleet(t, { ids, repoUrl: v.url, keyPub: `${v.key}.pub`, mqttUrl: broker.url, policy: 'apply-and-reboot', jitterS: 1, prepare: (id, dir) => void (failing.has(id) && writeFileSync(join(dir, MARKER), 'fail\n')) });
  const last = (id: string) => rec.on(statusTopic(id)).at(-1)?.json;
  for (const id of ids) await rec.waitFor((m) => m.topic === statusTopic(id) && m.json?.online === true, 60_000, `${id} online`);

  // The vendor's serve: publishes, announces, widens and halts. Its stderr is the operator's log.
  const fleetDir = join(v.repo, 'fleet');
  let serveLog = '';
  let serveChild: ChildProcess | null = null;
  const startVendorServe = async () => {
    const child = spawn(BIN, ['serve', '--repo', v.repo, '--port', '0', '--json', '--log', join(v.dir, 'serve2-access.log'), '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--dashboard', '--watch-interval', '200'], { stdio: ['ignore', 'pipe', 'pipe'] });
    serveChild = child;
    child.stderr!.on('data', (d) => (serveLog += d));
    return new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`larch serve exited ${code}: ${serveLog}`)));
    });
  };
  t.teardown(() => void serveChild?.kill('SIGKILL'));
  let dashboard = await startVendorServe();
  const rollout = () => JSON.parse(readFileSync(join(v.repo, 'rollout.json'), 'utf8')).refs[REF];
  const announced = () => rec.on(`larch/v1/announce/${REF}`).map((m) => JSON.parse(m.json.body)).at(-1);

  // The operator records the plan and the rule once; every new release is then rolled out by them
  // (a serve with --sign-key --mqtt announces a new commit within a round, at the recorded rollout).
  const a = await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--rollout', '10', '--rollout-over', '300s', '--halt-on-failures', '20%', '--halt-min-devices', '5', '--json']);
  t.same(a.json.announcements[0].halt_rule, { failures_pct: 20, min_devices: 5 }, 'announce recorded the halt rule');
  t.match(a.json.announcements[0], { version: '1', rollout: 10, plan: { start: 10, over_s: 300 } }, 'the plan recorded');
  const v2 = await v.release(2, { healthCheck: CHECK });
  const started = Date.now();
  await rec.waitFor((m) => m.topic === `larch/v1/announce/${REF}` && JSON.parse(m.json.body).commit === v2, 20_000, 'the announcement of v2');
  t.match(announced(), { commit: v2, rollout: 10 }, 'serve announced the new release v2 at the start of the plan, 10%');

  // A restart mid-plan changes nothing recorded: SIGKILL once the plan took a step, then start again.
  await waitUntil(() => rollout().rollout > 10, 60_000, "the plan's first step");
  serveChild!.kill('SIGKILL');
  await new Promise((r) => serveChild!.once('exit', r));
  const atKill = rollout();
  const logAtRestart = serveLog.length;
  dashboard = await startVendorServe();
  // The restarted serve's first round: its driver ran, then it announced every ref.
  await waitUntil(() => /announced os\/stable /.test(serveLog.slice(logAtRestart)), 30_000, "the restarted serve's first round");
  const afterRestart = rollout();
  t.ok(afterRestart.halted !== undefined || afterRestart.rollout === atKill.rollout || Date.parse(afterRestart.set) - Date.parse(atKill.set) >= 10_000, `a restart keeps the recorded rollout (${atKill.rollout}% before, ${afterRestart.rollout}% after; a step comes no sooner than 10 s after the last)`);

  // The halt, by itself.
  const halt = await (async () => {
    for (let i = 0; i < 1500; i++) {
      const r = rollout();
      if (r.halted) return r.halted;
      await sleep(200);
    }
    throw new Error(`no halt within 300 s; rollout ${JSON.stringify(rollout())}; serve's log:\n${serveLog}`);
  })();
  t.comment(`halted ${((Date.parse(halt.time) - started) / 1000).toFixed(1)} s after the announce: ${JSON.stringify(halt)}`);
  t.ok(halt.failure_pct > 20 && halt.decided >= 5, `halted at ${halt.failure_pct}% of ${halt.decided} decided (rule: more than 20% of at least 5)`);
  t.same(halt.to, { commit: v1, version: '1' }, 'the last good release is v1');
  t.equal(halt.commit, v2);
  t.ok(halt.rollout < 100, `the plan had reached ${halt.rollout}%: devices were still waiting`);
  t.match(serveLog, /rollout of os\/stable HALTED: version 2/, "serve's log says so");
  const events = readFileSync(join(fleetDir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.ok(events.some((e) => e.event === 'halt' && e.commit === v2 && e.failure_pct === halt.failure_pct), 'events.jsonl has the halt');
  t.ok(events.some((e) => e.event === 'step'), '... and the steps before it');

  // The summary lists v1 again and v1 is announced to everyone; the ref itself still points at v2.
  const summaryLists = async (commit: string) => {
    for (let i = 0; i < 100 && decodeSummary(readFileSync(join(v.repo, 'summary'))).refs[REF]!.commit !== commit; i++) await sleep(100);
    return decodeSummary(readFileSync(join(v.repo, 'summary'))).refs[REF]!.commit;
  };
  t.equal(await summaryLists(v1), v1, 'the published summary lists v1 for os/stable');
  const haltS = Math.floor(Date.parse(halt.time) / 1000);
  await rec.waitFor((m) => m.topic === `larch/v1/announce/${REF}` && JSON.parse(m.json.body).commit === v1 && JSON.parse(m.json.body).created >= haltS, 20_000, 'the announcement of v1 after the halt');
  t.match(announced(), { commit: v1, version: '1', rollout: 100 }, 'the retained announcement names v1 at 100%');
  t.equal(readFileSync(join(v.repo, 'refs/heads', REF), 'utf8').trim(), v2, 'the ref still points at v2');
  const api = await (await fetch(new URL(`/api/fleet/rollouts?ref=${encodeURIComponent(REF)}`, dashboard))).json();
  const devicesNow = await (await fetch(new URL('/api/fleet/devices', dashboard))).json();
  t.comment(`devices at the halt: ${JSON.stringify(devicesNow.map((d: any) => [d.device_id, d.state, d.releases.map((r: any) => `${r.version}:${r.relation}`).join(',')]))}`);
  t.match(api[0], { ref: REF, release: { commit: v2, version: '2' }, halted: { commit: v2, to: { commit: v1 } }, halt_rule: { failures_pct: 20, min_devices: 5 } }, '/api/fleet/rollouts shows the halt');

  // Visible on the dashboard: the banner, in a real browser (screenshot kept as an artifact).
  const browser = await launchChromium();
  t.teardown(() => browser.close());
  const page = await browser.open(new URL('/fleet/', dashboard).toString(), 1280, 900);
  await page.waitFor(`document.body.dataset.ready === 'synced' && document.querySelector('[data-halted]')`, 30_000);
  const banner = await page.evaluate<{ version: string; role: string; text: string }>(`(() => { const e = document.querySelector('[data-halted]'); return { version: e.dataset.halted, role: e.getAttribute('role'), text: e.textContent }; })()`);
  t.match(banner, { version: '2', role: 'alert', text: /HALTED.*version 2 stopped at [\d.]+%.*Version 1 is announced to the devices not yet moved/ }, `the page shows the halt: "${banner.text}"`);
  const artifacts = join(ROOT, 'test-results', 'fleet-dashboard');
  mkdirSync(artifacts, { recursive: true });
  writeFileSync(join(artifacts, 'halted.png'), await page.screenshot());
  t.comment(`screenshot: ${join(artifacts, 'halted.png')}`);

  // Once every device has acted on the announcement of v1 (and those that staged v2 rebooted): no
  // step, and nobody who had not moved took v2.
  const movedAtHalt = new Set(ids.filter((id) => rec.on(statusTopic(id)).some((m) => m.json?.pending?.commit === v2 || m.json?.commit === v2 || m.json?.update?.announced?.commit === v2 && ['checking', 'downloading', 'downloaded', 'staged'].includes(m.json?.update?.state))));
  const settled = (j: any) => j?.online === true && j.pending === null && j.update?.announced?.commit === v1 && (j.commit === v1 || j.last_skip?.reason === 'head-older');
  await waitUntil(() => ids.every((id) => settled(last(id))), 180_000, 'every device on the announcement of v1');
  t.equal(rollout().rollout, halt.rollout, 'the plan stays frozen');
  const unmoved = ids.filter((id) => !movedAtHalt.has(id));
  t.ok(unmoved.length >= N / 2, `${unmoved.length} devices had not moved at the halt`);
  for (const id of unmoved) {
    const s = last(id);
    const touched = rec.on(statusTopic(id)).some((m) => m.json?.pending?.commit === v2 || m.json?.commit === v2);
    t.ok(s?.commit === v1 && s.pending === null && !touched && (s.failed_releases ?? []).length === 0, `${id} (not moved) stays on v1: ${JSON.stringify({ version: s?.version, pending: s?.pending, failed: s?.failed_releases?.length, update: s?.update?.state })}`);
  }
  const v2good = ids.filter((id) => last(id)?.commit === v2 && last(id)?.boot?.state === 'good');
  t.ok(v2good.every((id) => !failing.has(id)), 'only devices without the marker run v2');
  // A device on v2 checks the announcement again now and then: wait out a check under way
  // ('checking'), which ends up to date (seen once in CI: halt-01 read mid-check).
  await waitUntil(() => v2good.every((id) => last(id)?.update?.state !== 'checking'), 60_000, 'no device on v2 mid-check');
  for (const id of v2good) {
    const s = last(id);
    t.ok(s.last_error === null && s.update?.state === 'up-to-date' && s.last_skip?.reason === 'head-older', `${id} runs v2 and stays quietly: up to date, no error, last skip head-older (${s.update?.state}, ${s.last_skip?.reason})`);
  }
  const fellBack = ids.filter((id) => (last(id)?.failed_releases ?? []).some((f: any) => f.commit === v2));
  t.ok(fellBack.length >= 2 && fellBack.every((id) => failing.has(id) && last(id).commit === v1), `${fellBack.length} devices fell back from v2, all with the marker, all on v1`);
  t.same(fleet.errors, [], 'no reboot went wrong');
  const reasons = fleet.devices.flatMap((d) => d.reboots.map((r) => r.reason));
  t.ok(reasons.length > 0 && reasons.every((r) => r.split('staged by policy apply-and-reboot').length === 2), `each reboot's reason says once what was staged (e.g. "${reasons[0]}")`);
  t.comment(`outcome: ${v2good.length} on v2, ${fellBack.length} fell back, ${unmoved.length} never moved; ${((Date.now() - started) / 1000).toFixed(0)} s since the announce`);

  // --resume lists v2 again.
  const logAtResume = serveLog.length;
  await larchOk(['announce', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url, '--ref', REF, '--resume']);
  t.equal(await summaryLists(v2), v2, 'after --resume the summary lists v2 again');
  // serve's next round (its driver judges the rule first) announces v2 again: by then a second halt would be recorded.
  await waitUntil(() => /announced os\/stable 2 /.test(serveLog.slice(logAtResume)), 30_000, "serve's round after the resume");
  t.notOk(rollout().halted, 'and the halt is history: the same evidence does not halt it again');
  t.same(rollout().resumed_at, { failures: halt.failures, decided: halt.decided }, 'the rule now judges the outcomes since the resume');
  t.ok(existsSync(join(fleetDir, 'progress.jsonl')), 'progress samples were written');
  await fleet.stop();
});
