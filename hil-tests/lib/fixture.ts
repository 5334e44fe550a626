/**
 * The host side of a HIL run: a vendor repo with a signing key, the board's disk image built from
 * images/BOARD.toml by `larch image build`, new versions composed from the same definition with a
 * few changes (a good one, one whose required health check fails, one whose kernel panics), and
 * `larch serve` on 127.0.0.1 so the board can reach it (QEMU's 10.0.2.2 is this loopback).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { parse, stringify } from 'smol-toml';

export const ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
/** The .deb cache image.test.ts also uses, so the packages are downloaded once per machine. */
export const DEB_CACHE = join(ROOT, '.cache', 'compose');

/** The device's larch binary (HIL_DEVICE_LARCH: another build, e.g. to try a fix on the board). */
export function larchBinary(architecture: 'amd64' | 'arm64'): string {
  const override = architecture === 'amd64' ? process.env.HIL_DEVICE_LARCH : process.env.HIL_DEVICE_LARCH_ARM64;
  if (override) return override;
  const path = join(ROOT, 'dist', architecture === 'amd64' ? 'larch' : 'larch-arm64');
  if (!existsSync(path)) throw new Error(`hil: ${path} is missing: run node scripts/build.mjs ${architecture === 'amd64' ? 'linux-x64' : 'linux-arm64'}`);
  return path;
}

/** The host's own larch (x86_64 build machines). */
export const HOST_LARCH = join(ROOT, 'dist', 'larch');

export function run(cmd: string, args: string[], what = `${cmd} ${args.join(' ')}`): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`hil: ${what} exited ${r.status}:\n${(r.stderr || r.stdout).slice(-3000)}`);
  return r.stdout;
}

/** A free TCP port on 127.0.0.1 (the image's repo URL names it before the server starts). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export interface BaseImage {
  board: string;
  /** The definition the image was built from (a copy under the work dir, with its overlays). */
  definition: string;
  repo: string;
  signKey: string;
  image: string;
  commit: string;
  version: string;
  port: number;
  /** The interface `larch serve` listens on (127.0.0.1 for QEMU: slirp's 10.0.2.2 ends there). */
  listenHost: string;
  seconds: number;
  /** The agent the image carries at /usr/bin/larch (the definition's `agent` is relative to images/, not to the copy). */
  agent: string;
}

/** Builds the board's pristine disk image (once per run); the repo URL in it is http://10.0.2.2:PORT/. */
export async function buildBaseImage(board: string, architecture: 'amd64' | 'arm64', workDir: string, opts: { serverHost?: string; listenHost?: string; reuse?: boolean; definition?: string; firmwareDir?: string } = {}): Promise<BaseImage> {
  const started = Date.now();
  mkdirSync(workDir, { recursive: true });
  // --reuse: a base built by an earlier run in the same work dir (for working on the scenarios).
  const saved = join(workDir, 'base.json');
  if (opts.reuse && existsSync(saved)) return { ...(JSON.parse(readFileSync(saved, 'utf8')) as BaseImage), seconds: 0 };
  rmSync(join(workDir, 'repo'), { recursive: true, force: true });
  // The board's definition, or the lab's own (a lab config's `definition`), with its directory.
  const source = opts.definition ?? join(ROOT, 'images', `${board}.toml`);
  if (!existsSync(source)) throw new Error(`hil: ${source} is missing: the board has no image definition yet`);
  // Variants are composed from copies next to the overlays (overlay paths must stay inside the definition's directory).
  const images = join(workDir, 'images');
  rmSync(images, { recursive: true, force: true });
  cpSync(dirname(source), images, { recursive: true });
  cpSync(join(ROOT, 'board'), join(workDir, 'board'), { recursive: true });
  const definition = join(images, basename(source));
  const repo = join(workDir, 'repo');
  run(HOST_LARCH, ['init', '--repo', repo, '--mode', 'archive']);
  for (const f of ['vendor.key', 'vendor.pub']) rmSync(join(workDir, f), { force: true });
  run(HOST_LARCH, ['keygen', '--out', join(workDir, 'vendor')]);
  const port = await freePort();
  const image = join(workDir, 'pristine.img');
  const agent = larchBinary(architecture);
  const out = run(HOST_LARCH, ['image', 'build', definition, '--board', board, '--out', image, '--repo', repo, '--sign-key', join(workDir, 'vendor.key'), '--larch-bin', agent, '--agent', agent, '--cache', DEB_CACHE, '--work-dir', workDir, '--repo-url', `http://${opts.serverHost ?? '10.0.2.2'}:${port}/`, ...(opts.firmwareDir === undefined ? [] : ['--firmware-dir', opts.firmwareDir]), '--json'], 'larch image build');
  const built = JSON.parse(out) as { commit: string; version: string };
  const base: BaseImage = { board, definition, repo, signKey: join(workDir, 'vendor.key'), image, commit: built.commit, version: built.version, port, listenHost: opts.listenHost ?? '127.0.0.1', seconds: (Date.now() - started) / 1000, agent };
  writeFileSync(saved, JSON.stringify(base, null, 2) + '\n');
  return base;
}

export type VariantKind = 'good' | 'bad-health' | 'bad-kernel' | 'vendor-kargs' | 'live-demo' | 'kernel-touch';

/** What each kind of variant adds to the definition's commands (run in the tree, after the definition's own). */
export function variantCommands(kind: VariantKind, label: string): string[] {
  const common = [`mkdir -p usr/share/hil && echo '${label}' > usr/share/hil/version`];
  switch (kind) {
    case 'good':
      // A vendor change in /etc too, so the three-way merge has something to carry over.
      return [...common, `echo 'vendor ${label}' > etc/hil-vendor.conf`];
    case 'bad-health':
      return [...common, `printf '#!/bin/sh\\necho "hil: ${label} fails its required health check on purpose"\\nexit 1\\n' > etc/larch/health.d/required.d/50-hil-fail`, 'chmod 755 etc/larch/health.d/required.d/50-hil-fail'];
    case 'vendor-kargs':
      // A vendor kernel argument the upgrade adds to the device's own (docs/formats.md §11, kargs.d).
      return [...common, 'mkdir -p usr/lib/larch/kargs.d', "echo 'vendor.test=1' > usr/lib/larch/kargs.d/10-vendor.conf"];
    case 'live-demo':
      // Two services as a board's rc starts them (/etc/init.d, pid files in /run; docs/cli.md apply-live):
      // larch-demo runs a shell script that writes its label and the message file every second (the
      // shell keeps its script open: the process apply-live finds), larch-idle holds nothing that changes.
      return [
        ...common,
        'mkdir -p usr/libexec usr/share/larch-demo etc/init.d',
        `printf '#!/bin/sh\\nwhile :; do echo "larch-demo ${label}: $(cat /usr/share/larch-demo/message)" > /run/larch-demo.out; sleep 1; done\\n' > usr/libexec/larch-demo`,
        `echo 'message of ${label}' > usr/share/larch-demo/message`,
        ...['larch-demo', 'larch-idle'].map((n) => `printf '#!/bin/sh\\nmkdir -p /run\\ncase "$1" in\\n  start) ${n === 'larch-demo' ? 'sh /usr/libexec/larch-demo' : 'sleep 100000'} </dev/null >/dev/null 2>&1 & echo $! > /run/${n}.pid ;;\\n  stop) kill "$(cat /run/${n}.pid)" 2>/dev/null; rm -f /run/${n}.pid ;;\\n  restart) "$0" stop; "$0" start ;;\\nesac\\n' > etc/init.d/${n}`),
        'chmod 755 usr/libexec/larch-demo etc/init.d/larch-demo etc/init.d/larch-idle',
      ];
    case 'kernel-touch':
      // One byte more at the end of the kernel image: a kernel change apply-live must refuse (never booted).
      return [...common, 'for k in boot/vmlinuz-*; do [ -L "$k" ] || printf x >> "$k"; done'];
    case 'bad-kernel':
      // The initramfs /init exits right after the bootloader's line (which on systemd-boot boards the
      // init itself prints: images/overlay/initramfs/usr/lib/larch/init): the kernel panics
      // ("Attempted to kill init") on every boot.
      return [
        ...common,
        "grep -q '^bootloader_line$' usr/lib/larch/init",
        `sed -i '/^bootloader_line$/a echo "hil: the init of ${label} exits on purpose (kernel panic)"; exit 1' usr/lib/larch/init`,
        'sh usr/lib/larch/mkinitramfs',
      ];
  }
}

/** The commit time of a scenario's nth variant: newer than the base (2026-01-01) and than every earlier variant (upgrades refuse older timestamps). */
export function variantTimestamp(n: number): number {
  return Date.UTC(2026, 0, 1) / 1000 + n * 86400;
}

/**
 * The scratch definition warmVariantTrees composes for a definition (parsed TOML): what decides
 * the resolved tree and its cache key (packages, kernel, architecture, recommends, local .deb
 * files, here by their names), and one command, which fails: the tree is stored in the cache
 * before the commands run, so the compose ends there and commits nothing (that would be work for
 * nothing). null for an exact definition, which resolves nothing (no tree to build ahead).
 */
export function treeWarmUpDefinition(def: Record<string, unknown>): Record<string, unknown> | null {
  if (def.exact === true) return null;
  const scratch: Record<string, unknown> = { ref: 'hil/tree-warm-up', version: def.version, architecture: def.architecture, packages: def.packages };
  for (const field of ['kernel', 'recommends']) if (def[field] !== undefined) scratch[field] = def[field];
  if (Array.isArray(def.local_packages)) scratch.local_packages = (def.local_packages as string[]).map((p) => basename(p));
  scratch.commands = ["echo 'hil: tree stored; the warm-up stops here' >&2; exit 1"];
  return scratch;
}

/**
 * Builds, in the background, the resolved trees that the composes of a scenario's first `count`
 * variants will ask compose's tree cache for (src/compose/tree-cache.ts), so that each of those
 * composes takes its tree from the cache instead of running mmdebstrap (about a minute, more on a
 * loaded machine) while the board waits. The tree's cache key is the definition's packages and
 * the timestamp (maintainer scripts see it as SOURCE_DATE_EPOCH), never the variant's commands,
 * so a scratch compose of the packages alone at variant n's timestamp stores the very tree that
 * variant n's compose takes. They run one after the other, in one process group; a compose that
 * needs a tree still being built waits for its lock, then takes it, so no tree is built twice.
 * Only a warm-up: if it fails, the variant's own compose builds the tree (and reports why not).
 */
export function warmVariantTrees(source: string, count: number, workDir: string): { stop(): void } {
  const scratch = treeWarmUpDefinition(parse(readFileSync(source, 'utf8')) as Record<string, unknown>);
  if (count <= 0 || scratch === null) return { stop() {} };
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  // Local .deb files beside the scratch definition, by their names (the key takes their names and content, not where they are).
  for (const p of (scratch.local_packages as string[] | undefined) ?? []) copyFileSync(resolve(dirname(source), p), join(workDir, basename(p)));
  const definition = join(workDir, 'packages-only.toml');
  writeFileSync(definition, stringify(scratch));
  const repo = join(workDir, 'repo');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  // Each compose ends with the scratch definition's failing command (exit 4): the next one runs regardless.
  const composes = Array.from({ length: count }, (_, i) => `${q(HOST_LARCH)} compose ${q(definition)} --repo ${q(repo)} --cache ${q(DEB_CACHE)} --timestamp ${variantTimestamp(i + 1)} --work-dir ${q(workDir)} --json >/dev/null`);
  const script = [`${q(HOST_LARCH)} init --repo ${q(repo)} --mode bare-user >/dev/null`, ...composes, `rm -rf ${q(repo)}`].join('; ');
  const log = openSync(join(workDir, 'warm-up.log'), 'w');
  const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'ignore', log] });
  closeSync(log);
  child.on('error', () => {});
  child.unref();
  return {
    stop() {
      // The whole group: larch compose, its mmdebstrap and the flock helper holding the key's lock.
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}

export interface Variant {
  kind: VariantKind;
  commit: string;
  version: string;
}

/** The nth variant's definition (parsed TOML), from the base's: its version and subject, the kind's commands after the base's; its timestamp comes from compose --timestamp. */
export function variantDefinition(base: Record<string, unknown>, kind: VariantKind, version: string, n: number): Record<string, unknown> {
  const def: Record<string, unknown> = { ...base, version, subject: `hil ${kind} variant ${n}`, commands: [...((base.commands as string[]) ?? []), ...variantCommands(kind, version)] };
  delete def.timestamp;
  return def;
}

/**
 * Composes a variant onto the device's ref in `repo` and publishes the summary; newer than everything
 * before it. It carries `agent` at /usr/bin/larch (default: the base image's).
 */
export function composeVariant(base: BaseImage, repo: string, kind: VariantKind, n: number, agent = base.agent): Variant {
  const version = `${base.version}.${n}-${kind}`;
  const def = variantDefinition(parse(readFileSync(base.definition, 'utf8')) as Record<string, unknown>, kind, version, n);
  const path = join(base.definition, '..', `hil-${kind}-${n}.toml`);
  writeFileSync(path, stringify(def));
  const out = run(HOST_LARCH, ['compose', path, '--repo', repo, '--sign-key', base.signKey, '--cache', DEB_CACHE, '--timestamp', String(variantTimestamp(n)), '--agent', agent, '--json'], `larch compose ${path}`);
  const commit = (JSON.parse(out) as { commit: string }).commit;
  run(HOST_LARCH, ['publish', '--repo', repo, '--sign-key', base.signKey]);
  return { kind, commit, version };
}

/**
 * A larch binary for the architecture whose `--version` says `larch VERSION` (scripts/build.mjs with
 * LARCH_BUILD_VERSION), built once into dir: the agents A1 and A2 of scenario agent.
 */
export function buildAgent(version: string, architecture: 'amd64' | 'arm64', dir: string): string {
  const out = join(dir, `larch-${version}-${architecture}`);
  if (existsSync(out)) return out;
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), architecture === 'amd64' ? 'linux-x64' : 'linux-arm64', '--outfile', out], { encoding: 'utf8', env: { ...process.env, LARCH_BUILD_VERSION: version } });
  if (r.status !== 0) throw new Error(`hil: building the ${version} agent for ${architecture} failed:\n${r.stderr.slice(-2000)}`);
  return out;
}

/** `larch serve` of a repo on the port the image's config names. */
export class Server {
  private proc: ChildProcess | null = null;
  constructor(readonly repo: string, readonly port: number, readonly logPath: string, readonly host = '127.0.0.1') {}

  async start(): Promise<void> {
    const proc = spawn(HOST_LARCH, ['serve', '--repo', this.repo, '--host', this.host, '--port', String(this.port), '--log', this.logPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('http://')) resolve();
      });
      proc.stderr!.on('data', (d) => (out += d));
      proc.on('exit', (code) => reject(new Error(`hil: larch serve exited ${code}: ${out}`)));
    });
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.on('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }
}
