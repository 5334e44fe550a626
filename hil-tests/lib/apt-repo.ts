/**
 * The host's apt repository for scenario `layer`: Debian's real jq and the libraries it needs
 * (libjq1, libonig5, none of them in the demo image), in a flat repository (dpkg-scanpackages)
 * served over HTTP on 127.0.0.1, which the board reaches as 10.0.2.2 (QEMU user networking), as
 * it reaches `larch serve`. Unsigned: the board's sources line says `[trusted=yes]`.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { type Server as HttpServer, createServer } from 'node:http';
import type { Socket } from 'node:net';
import { join, normalize, sep } from 'node:path';
import { ROOT, run } from './fixture.ts';

/** jq needs libjq1, which needs libonig5: a dependency chain apt resolves on the board. */
export const LAYER_PACKAGES = ['jq', 'libjq1', 'libonig5'];
/** The same cache as test/layering-helpers.ts realDebs (downloaded once per machine). */
const DEB_DIR = join(ROOT, '.cache', 'layering', 'debs');

/** The host's apt-get download of LAYER_PACKAGES (bookworm, as the demo image), cached. */
export function layerDebs(): string[] {
  mkdirSync(DEB_DIR, { recursive: true });
  const have = () => readdirSync(DEB_DIR).filter((f) => f.endsWith('.deb'));
  const missing = LAYER_PACKAGES.filter((p) => !have().some((f) => f.startsWith(`${p}_`)));
  if (missing.length > 0) {
    // Into a directory of this process's own, moved in whole: a layering test may be reading DEB_DIR.
    const tmp = join(DEB_DIR, `.tmp-hil-${process.pid}`);
    mkdirSync(tmp, { recursive: true });
    const r = spawnSync('apt-get', ['download', ...missing], { cwd: tmp, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`hil: apt-get download ${missing.join(' ')} exited ${r.status} (the host's apt needs bookworm's indexes: apt-get update):\n${r.stderr.slice(-2000)}`);
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(DEB_DIR, f));
    rmSync(tmp, { recursive: true, force: true });
  }
  return have()
    .filter((f) => LAYER_PACKAGES.some((p) => f.startsWith(`${p}_`)))
    .map((f) => join(DEB_DIR, f));
}

/** A .deb's Version field (dpkg-deb). */
export function debVersion(file: string): string {
  return run('dpkg-deb', ['--show', '--showformat=${Version}', file]).trim();
}

/** A flat apt repository served on 127.0.0.1:PORT until stop(); counts the requests it answered. */
export class AptRepo {
  /** Paths asked for (200 or 404), in order: what the board fetched. */
  readonly requests: string[] = [];
  private server: HttpServer | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(readonly dir: string) {}

  /** Copies the .deb files in, indexes them (Packages, Packages.gz) and starts serving. */
  async start(debs: string[]): Promise<void> {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    for (const d of debs) run('cp', [d, this.dir]);
    run('sh', ['-c', `cd '${this.dir}' && dpkg-scanpackages --multiversion . > Packages 2>/dev/null && gzip -kf Packages`], 'dpkg-scanpackages');
    const server = createServer((req, res) => {
      const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      this.requests.push(rel);
      const path = normalize(join(this.dir, rel));
      const file = path.startsWith(this.dir + sep) ? statSync(path, { throwIfNoEntry: false }) : undefined;
      if (!file?.isFile()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': file.size });
      createReadStream(path).pipe(res);
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
  }

  /** The sources line the board uses (10.0.2.2 is the host's 127.0.0.1 through slirp). */
  sourcesLine(host = '10.0.2.2'): string {
    return `deb [trusted=yes] http://${host}:${this.port}/ ./`;
  }

  /** Stops serving: from now on the board's connections are refused, as for a device offline. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise((r) => server.close(r));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
