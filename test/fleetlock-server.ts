/**
 * A small FleetLock server for tests (node:http on 127.0.0.1): a counting semaphore of N slots
 * per group, with recursive locks owned by the client id, as the protocol describes (Airlock
 * does the same over etcd). Written here because no FleetLock server is packaged in Debian.
 * Requests without the `fleet-lock-protocol: true` header or with a malformed body are refused
 * with 400, so a client that gets them wrong fails the test.
 */
import { type Server, createServer } from 'node:http';
import type { Test } from './device-helpers.ts';

export interface FleetLockRequestLog {
  op: string;
  id: string | null;
  group: string | null;
  status: number;
  time: number;
}

export interface FleetLockServer {
  url: string;
  /** group → ids holding a slot. */
  holders: Map<string, Set<string>>;
  requests: FleetLockRequestLog[];
  /** Slots per group; may be changed while running. */
  slots: number;
  /** When set, every request answers this status (e.g. 503: the server is down for maintenance). */
  failWith: number | null;
  close(): Promise<void>;
}

export async function startFleetLock(t: Test, slots: number): Promise<FleetLockServer> {
  const fl: FleetLockServer = { url: '', holders: new Map(), requests: [], slots, failWith: null, close: async () => {} };
  const server: Server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (text += d));
    req.on('end', () => {
      const answer = (status: number, id: string | null, group: string | null, err?: { kind: string; value: string }) => {
        fl.requests.push({ op: req.url ?? '', id, group, status, time: Date.now() });
        res.writeHead(status, { 'content-type': 'application/json' }).end(err ? JSON.stringify(err) : '');
      };
      if (req.method !== 'POST' || (req.url !== '/v1/pre-reboot' && req.url !== '/v1/steady-state')) return answer(404, null, null, { kind: 'not_found', value: `${req.method} ${req.url}` });
      if (req.headers['fleet-lock-protocol'] !== 'true') return answer(400, null, null, { kind: 'missing_header', value: 'fleet-lock-protocol: true is required' });
      let id: unknown;
      let group: unknown;
      try {
        ({ id, group } = (JSON.parse(text) as { client_params: { id: unknown; group: unknown } }).client_params);
      } catch {
        return answer(400, null, null, { kind: 'bad_body', value: 'expected {"client_params": {"id", "group"}}' });
      }
      if (typeof id !== 'string' || id === '' || typeof group !== 'string' || !/^[a-zA-Z0-9.-]+$/.test(group)) return answer(400, null, null, { kind: 'bad_params', value: 'id and group must be strings' });
      if (fl.failWith !== null) return answer(fl.failWith, id, group, { kind: 'unavailable', value: 'test server told to fail' });
      const held = fl.holders.get(group) ?? new Set<string>();
      fl.holders.set(group, held);
      if (req.url === '/v1/steady-state') {
        held.delete(id);
        return answer(200, id, group);
      }
      if (held.has(id) || held.size < fl.slots) {
        held.add(id);
        return answer(200, id, group);
      }
      return answer(409, id, group, { kind: 'failed_lock', value: `all ${fl.slots} slots of group ${group} are held (${[...held].join(', ')})` });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  fl.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  fl.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  t.teardown(() => fl.close());
  return fl;
}
