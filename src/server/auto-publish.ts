/**
 * `larch serve --sign-key K [--mqtt URL]`: keeps the repo's signed summary current and announces
 * what changed, so a vendor's pipeline only commits and generates deltas.
 *
 * Every interval it reads what a summary would list now (refs, complete deltas: publish.ts
 * summaryContents) and compares it with the published summary. When they differ, or the summary
 * is past half its lifetime, it publishes again; with a broker, it then announces each ref whose
 * commit or set of deltas changed since it last announced it (all refs once at start: the
 * announcements are retained, and a device that already runs that commit only checks).
 * Polling, not inotify: it works the same on NFS and object-store mounts, and a change is seen
 * within one interval.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { type AnnounceOptions, announce } from './mqtt-publisher.ts';
import { deltaTrust, publish, summaryContents } from './publish.ts';
import { type Summary, decodeSummary } from '../protocol/summary.ts';
import type { RolloutDriver } from './rollout-driver.ts';
import { type RolloutChoices, hasChoices, serveChoices } from './rollout-rules.ts';

export interface AutoPublishOptions {
  signKeys: SecretKey[];
  expiresInSeconds: number;
  /** Announce through this broker (none: only keep the summary current). */
  mqtt?: AnnounceOptions['mqtt'];
  /**
   * serve's --rollout, --rollout-over, --halt-on-failures: recorded for every ref at the first
   * announcement, as `larch announce` would (serveChoices: what is recorded already is left as it
   * is, so a restart changes nothing); absent: R/rollout.json decides.
   */
  choices?: RolloutChoices;
  /** Carries out plans and halts each round (rollout-driver.ts). */
  driver?: RolloutDriver;
  intervalMs?: number;
  log: (line: string) => void;
  /** Seconds since the epoch; injectable for tests. */
  now?: () => number;
}

export interface AutoPublisher {
  /** Resolves after the first round (published and announced, or failed and logged). */
  ready: Promise<void>;
  close(): Promise<void>;
}

type Listing = Pick<Summary, 'refs' | 'deltas'>;

/** What devices would see differently: each ref's commit and the deltas leading to it. */
export function refFingerprints(l: Listing): Map<string, string> {
  const out = new Map<string, string>();
  for (const [ref, r] of Object.entries(l.refs)) {
    const deltas = l.deltas
      .filter((d) => d.to === r.commit)
      .map((d) => `${d.from ?? 'empty'}:${d.envelope.sha256}`)
      .sort();
    out.set(ref, [r.commit, ...deltas].join(' '));
  }
  return out;
}

function sameListing(a: Listing, b: Listing): boolean {
  const fa = refFingerprints(a);
  const fb = refFingerprints(b);
  return fa.size === fb.size && [...fa].every(([ref, f]) => fb.get(ref) === f);
}

async function readPublished(repo: Repo): Promise<Summary | null> {
  const bytes = await readFile(join(repo.path, 'summary')).catch(() => null);
  if (!bytes) return null;
  try {
    return decodeSummary(bytes);
  } catch {
    return null; // unreadable: publishing again replaces it
  }
}

export function startAutoPublish(repo: Repo, opts: AutoPublishOptions): AutoPublisher {
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const intervalMs = opts.intervalMs ?? 2000;
  /** ref → fingerprint as last announced; a ref missing here is announced next round. */
  const announced = new Map<string, string>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let running: Promise<void> = Promise.resolve();
  let lastError = '';
  /** Explicit choices are recorded once; after that the repo's rollout state decides (announce may change it). */
  let choices = opts.choices && hasChoices(opts.choices) ? opts.choices : undefined;
  let saidSkipped = new Set<string>();

  async function round(): Promise<void> {
    // Steps and halts first: a halt changes what the summary lists in this same round.
    const driven = opts.driver ? await opts.driver.round() : [];
    const published = await readPublished(repo);
    let listing: Listing = published ?? { refs: {}, deltas: [] };
    const halfLife = published ? published.created + (published.expires - published.created) / 2 : 0;
    const current = await summaryContents(repo, await deltaTrust(repo, opts.signKeys));
    // Each delta left out is said once (again if it is fixed and breaks again); one leading to no ref is normal.
    const skipped = current.skipped.filter((s) => s.reason !== 'no_ref');
    for (const s of skipped) if (!saidSkipped.has(`${s.name} ${s.reason}`)) opts.log(`delta ${s.name} left out (${s.reason}): ${s.message}`);
    saidSkipped = new Set(skipped.map((s) => `${s.name} ${s.reason}`));
    if (!published || !sameListing(published, current) || now() >= halfLife) {
      const r = await publish(repo, { signKeys: opts.signKeys, expiresInSeconds: opts.expiresInSeconds, now: now() });
      listing = { refs: r.refs, deltas: current.deltas };
      opts.log(`published summary serial ${r.serial}: ${Object.keys(r.refs).length} ref(s), ${r.deltas.length} delta(s)`);
    }
    if (!opts.mqtt) return;
    const changed = [...refFingerprints(listing)].filter(([ref, f]) => announced.get(ref) !== f || driven.includes(ref));
    if (changed.length === 0) return;
    const given = choices;
    const r = await announce(repo, { signKeys: opts.signKeys, mqtt: opts.mqtt, refs: changed.map(([ref]) => ref), choices: given ? (ref, recorded) => serveChoices(given, recorded, (line) => opts.log(`${ref}: ${line}`)) : undefined, now: now() });
    choices = undefined;
    for (const [ref, f] of changed) announced.set(ref, f);
    for (const a of r.announcements) opts.log(`announced ${a.ref} ${a.version} (${a.commit.slice(0, 12)}) rollout ${a.rollout}%`);
  }

  function schedule(): void {
    if (closed) return;
    timer = setTimeout(() => {
      running = tick().then(schedule);
    }, intervalMs);
  }

  async function tick(): Promise<void> {
    try {
      await round();
      lastError = '';
    } catch (err) {
      // A commit holding the repo lock, a broker away: tried again next round, said once.
      const message = (err as Error).message;
      if (message !== lastError) opts.log(`auto-publish: ${message}; retrying every ${intervalMs} ms`);
      lastError = message;
    }
  }

  running = tick();
  const ready = running.then(schedule);
  return {
    ready,
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}
