/**
 * The fleet page (page.ts) and its JSON API on `larch serve`'s port (docs/design/issue-22-fleet-view.md §4):
 * `GET /api/fleet/devices` (one item per device, filters ref, state, version, online, q) and
 * `GET /api/fleet/rollouts` (per ref: the release in flight, the fleet's relation to it, the plan,
 * halt rule and halt recorded in R/rollout.json, devices per version, fallbacks by failed health
 * check, progress samples). Only clients in --dashboard-allow (default
 * loopback) are answered: the port may also be the devices' port on every interface.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { FleetAggregator } from './aggregator.ts';
import { apiDevice, deviceState, fallbacksByCheck, rolloutCounts, versionCounts } from './model.ts';
import { PAGE_FILES } from './page.ts';
import type { ProgressSample } from './history.ts';
import type { RolloutState } from '../rollout-state.ts';
import { nextStep, planSchedule } from '../rollout-rules.ts';

/** The clients answered by default: loopback only. */
export const DEFAULT_ALLOW = ['127.0.0.0/8', '::1/128'];

/** A BlockList (node:net) of CIDRs, used as an allow list. @throws Error for a CIDR it cannot read */
export function allowList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const type = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : null;
    const prefix = bits === undefined ? (type === 'ipv4' ? 32 : 128) : Number(bits);
    if (type === null || !Number.isInteger(prefix) || prefix < 0 || prefix > (type === 'ipv4' ? 32 : 128)) throw new Error(`'${c}' is not an address or CIDR`);
    list.addSubnet(addr, prefix, type);
  }
  return list;
}

function allowed(list: BlockList, remote: string | undefined): boolean {
  if (!remote) return false;
  const v4 = remote.startsWith('::ffff:') ? remote.slice(7) : remote;
  return isIPv4(v4) ? list.check(v4, 'ipv4') : list.check(remote, 'ipv6');
}

/** R/rollout.json as the rollout driver last read it, and its progress samples (serve --sign-key --mqtt). */
export interface RolloutsSource {
  state(): RolloutState;
  progress(ref: string): ProgressSample[];
}

/** The devices list, filtered as the query asks. */
export function devicesAnswer(agg: Pick<FleetAggregator, 'devices' | 'announced'>, query: URLSearchParams, rollouts?: RolloutsSource): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const recorded = rollouts?.state() ?? {};
  const inFlight = (ref: string) => recorded[ref]?.commit ?? agg.announced.get(ref)?.commit ?? null;
  for (const r of [...agg.devices.values()].sort((a, b) => (a.device_id < b.device_id ? -1 : 1))) {
    if (query.has('ref') && r.ref !== query.get('ref')) continue;
    if (query.has('version') && r.version !== query.get('version')) continue;
    if (query.has('online') && String(r.online) !== query.get('online')) continue;
    if (query.has('q') && !r.device_id.startsWith(query.get('q')!)) continue;
    const d = apiDevice(r, r.ref ? inFlight(r.ref) : null);
    if (query.has('state') && d.state !== query.get('state')) continue;
    out.push(d);
  }
  return out;
}

/** Per ref (announced or followed by a device): the release in flight and the fleet's relation to it. */
export function rolloutsAnswer(agg: Pick<FleetAggregator, 'devices' | 'announced' | 'synced' | 'dropped'>, query: URLSearchParams, rollouts?: RolloutsSource): Record<string, unknown>[] {
  const recorded = rollouts?.state() ?? {};
  const refs = new Set<string>([...agg.announced.keys(), ...Object.keys(recorded), ...[...agg.devices.values()].map((r) => r.ref).filter((r): r is string => r !== null)]);
  return [...refs]
    .sort()
    .filter((ref) => !query.has('ref') || ref === query.get('ref'))
    .map((ref) => {
      const a = agg.announced.get(ref) ?? null;
      const rec = recorded[ref];
      // The release in flight: the one the rollout state follows (a hold announces the last good one), else the announced one.
      const release = rec?.commit && rec.version ? { version: rec.version, commit: rec.commit } : a ? { version: a.version, commit: a.commit } : null;
      const records = [...agg.devices.values()];
      const states: Record<string, number> = {};
      for (const r of records) {
        if (r.ref !== ref) continue;
        const state = deviceState(r, release?.commit ?? null);
        states[state] = (states[state] ?? 0) + 1;
      }
      const step = rec ? nextStep(rec) : null;
      return {
        ref,
        release,
        announced: a ? { version: a.version, commit: a.commit, rollout: a.rollout, created_s: a.created_s } : null,
        rollout: rec?.halted ? rec.halted.rollout : (rec?.rollout ?? a?.rollout ?? null),
        plan: rec?.plan ? { ...rec.plan, ...planSchedule(rec.plan), next_step: step ? { rollout: step.rollout, time: new Date(step.due_ms).toISOString() } : null } : null,
        halt_rule: rec?.halt_rule ?? null,
        halted: rec?.halted ?? null,
        last_good: rec?.last_good ?? null,
        counts: rolloutCounts(records, ref, release?.commit ?? null),
        states,
        versions: versionCounts(records, ref),
        fallbacks_by_check: fallbacksByCheck(records, ref),
        progress: rollouts?.progress(ref) ?? [],
        synced: agg.synced,
        dropped: agg.dropped,
      };
    });
}

/** The page's files: /fleet redirects to /fleet/; the page may load only its own files (CSP). */
function servePage(req: IncomingMessage, res: ServerResponse, path: string, log: (status: number, bytes: number) => void): void {
  if (path === '/fleet') {
    res.writeHead(301, { Location: '/fleet/', 'Content-Length': '0' });
    res.end();
    return log(301, 0);
  }
  const file = PAGE_FILES[path];
  const body = Buffer.from(file ? file.body : 'not found\n');
  res.writeHead(file ? 200 : 404, {
    'Content-Type': file ? file.type : 'text/plain; charset=utf-8',
    'Content-Length': String(body.length),
    'Cache-Control': 'no-cache',
    'Content-Security-Policy': "default-src 'self'; style-src 'self' 'unsafe-inline'",
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  log(file ? 200 : 404, req.method === 'HEAD' ? 0 : body.length);
}

/**
 * Answers the page (`/fleet/`) and `/api/...` requests (true), or leaves the request to the file server (false).
 * `log(status, bytes)` records the answer in the access log.
 */
export function fleetRoutes(agg: FleetAggregator, opts: { allow: BlockList; rollouts?: RolloutsSource }) {
  return (req: IncomingMessage, res: ServerResponse, log: (status: number, bytes: number) => void): boolean => {
    const url = new URL(req.url ?? '/', 'http://x');
    const page = url.pathname === '/fleet' || url.pathname.startsWith('/fleet/');
    if (!page && url.pathname !== '/api' && !url.pathname.startsWith('/api/')) return false;
    const answer = (status: number, value: unknown, headers: Record<string, string> = {}) => {
      let bytes: Buffer = Buffer.from(status === 304 ? '' : JSON.stringify(value) + '\n');
      const gzip = status === 200 && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
      if (gzip) bytes = gzipSync(bytes, { level: 1 });
      res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache', Vary: 'Accept-Encoding', ...(gzip ? { 'Content-Encoding': 'gzip' } : {}), ...(status === 304 ? {} : { 'Content-Length': String(bytes.length) }), ...headers });
      res.end(req.method === 'HEAD' || status === 304 ? undefined : bytes);
      log(status, req.method === 'HEAD' || status === 304 ? 0 : bytes.length);
    };
    const error = (status: number, code: string, message: string) => answer(status, { error: { code, message } });
    if (!allowed(opts.allow, req.socket.remoteAddress)) return error(403, 'FORBIDDEN', 'this address may not read the fleet view (serve --dashboard-allow)'), true;
    if (req.method !== 'GET' && req.method !== 'HEAD') return error(405, 'METHOD', 'only GET and HEAD'), true;
    if (page) return servePage(req, res, url.pathname, log), true;
    const route = url.pathname === '/api/fleet/devices' ? devicesAnswer : url.pathname === '/api/fleet/rollouts' ? rolloutsAnswer : null;
    if (!route) return error(404, 'NOT_FOUND', `no such API: ${url.pathname} (there are /api/fleet/devices and /api/fleet/rollouts)`), true;
    const etag = `"fleet-${agg.generation}${agg.synced ? '' : '-syncing'}"`;
    if (req.headers['if-none-match'] === etag) return answer(304, null, { ETag: etag }), true;
    answer(200, route(agg, url.searchParams, opts.rollouts), { ETag: etag });
    return true;
  };
}
