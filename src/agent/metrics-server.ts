/**
 * The daemon's /metrics endpoint (`metrics_listen` in daemon.conf): GET /metrics answers the
 * Prometheus text format built by `collect` at each scrape; anything else is 404/405. Read-only
 * and unauthenticated, so the documentation says to listen on loopback or a management network.
 */
import { type Server, createServer } from 'node:http';
import { LarchError } from '../errors.ts';
import { METRICS_CONTENT_TYPE } from './metrics.ts';

/** "127.0.0.1:9105", "[::1]:9105" → host and port. @throws Error saying what is wrong */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : -1;
  if (!m || port > 65535) throw new Error(`'${text}' is not HOST:PORT (e.g. "127.0.0.1:9105" or "[::1]:9105")`);
  return { host: m[1] ?? m[2]!, port };
}

export interface MetricsServer {
  /** The address it listens on (port resolved when 0 was asked). */
  address: { host: string; port: number };
  close(): Promise<void>;
}

export async function startMetricsServer(listen: string, collect: () => Promise<string>, log: (line: string) => void): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    collect().then(
      (body) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) }).end(req.method === 'HEAD' ? undefined : body),
      (err) => {
        log(`metrics: ${(err as Error).message}`);
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new LarchError('IO', `metrics: cannot listen on ${listen}: ${err.code ?? err.message}`, { hint: 'choose a free port and an address of this device in metrics_listen (daemon.conf)', data: { listen, errno: err.code } })),
    );
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  return {
    address: { host, port: typeof a === 'object' && a ? a.port : port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper keeps its connection alive between scrapes: do not wait for it to go.
        server.closeAllConnections?.();
      }),
  };
}
