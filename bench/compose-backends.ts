/**
 * The compose backend, chosen with numbers (docs/images.md, "Compose backend"): the same closure
 * (the essential set, images/qemu-x86_64-grub.toml's packages, dpkg and apt) built twice by each of
 *  (a) mmdebstrap --mode=unshare, as src/compose/mmdebstrap.ts runs it (host apt indexes, the
 *      .deb cache synced in and out, SOURCE_DATE_EPOCH);
 *  (b) the host's apt resolving (`apt-get -s install` against an empty status, the same indexes),
 *      the .deb files from the same cache, unpacked with dpkg-deb, then dpkg --install run in a
 *      mount and PID namespace chrooted into the tree (unshare --root), as debootstrap's second stage.
 * For each: wall time with a warm .deb cache, peak memory (/usr/bin/time -v, the process tree's
 * largest), tree size, and whether the two runs gave the same tree (a manifest of every path,
 * type, mode, owner and content hash, leaving out what compose drops: ssh host keys, /var/log,
 * /var/cache, /dev, /tmp, /run).
 *
 *   npm run bench:compose [-- --backend a|b] [-- --json]   (root: (b) unpacks as root; ~10 min on 2 cores)
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './corpus.ts';

const ARCH = 'amd64';
const EPOCH = '1767225600';
const CACHE = join(ROOT, '.cache', 'compose', 'resolved', ARCH);
const PACKAGES = ['apt', 'busybox', 'ca-certificates', 'dpkg', 'netbase', 'tiny-initramfs', 'tzdata', 'linux-image-6.1.0-56-cloud-amd64'];
const SOURCES = ['/etc/apt/sources.list', ...readdirSync('/etc/apt/sources.list.d').filter((n) => /\.(list|sources)$/.test(n)).map((n) => `/etc/apt/sources.list.d/${n}`)].filter((f) => spawnSync('test', ['-f', f]).status === 0);

interface Run {
  seconds: number;
  peakMiB: number;
  treeMiB: number;
  manifest: string;
}

/** Runs a shell script under /usr/bin/time -v; returns wall seconds and peak RSS. */
function timed(script: string, env: Record<string, string> = {}): { seconds: number; peakMiB: number } {
  const r = spawnSync('/usr/bin/time', ['-v', 'sh', '-ec', script], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`failed (${r.status}): ${r.stderr.split('\tCommand being timed')[0].slice(-3000)}`);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(r.stderr)!;
  const seconds = Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]);
  const peakMiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)![1]) / 1024;
  return { seconds, peakMiB };
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Every path compose keeps, with type, mode, owner and content hash: equal manifests, equal trees. */
function manifest(tree: string): string {
  const excludes = "-path ./dev -prune -o -path ./tmp -prune -o -path ./run -prune -o -path ./proc -prune -o -path ./sys -prune -o -path ./var/log -prune -o -path ./var/cache -prune -o -path ./var/lib/apt/lists -prune -o -name 'ssh_host_*' -prune -o -name '*-old' -prune -o -name 'lock*' -prune -o";
  const r = spawnSync('sh', ['-c', `cd ${q(tree)} && find . ${excludes} -printf '%p %y %m %U:%G %l\\n' | LC_ALL=C sort && find . ${excludes} -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`], { encoding: 'utf8', maxBuffer: 1 << 30 });
  return r.stdout;
}

function treeMiB(tree: string): number {
  return Number(spawnSync('du', ['-sb', '--exclude=./dev', tree], { encoding: 'utf8' }).stdout.split('\t')[0]) / 1048576;
}

function mmdebstrap(work: string): Run {
  const tar = join(work, 'tree.tar');
  const args = [
    '--mode=unshare', '--variant=essential', `--architectures=${ARCH}`, `--include=${PACKAGES.join(',')}`,
    '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr', '--dpkgopt=force-unsafe-io', '--skip=update,essential/unlink',
    '--setup-hook=mkdir -p "$1/var/lib/apt/lists" "$1/var/cache/apt/archives"',
    '--setup-hook=sync-in /var/lib/apt/lists /var/lib/apt/lists', `--setup-hook=sync-in ${CACHE} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${CACHE}`, '--format=tar', '-q', '', tar, ...SOURCES,
  ];
  const t = timed(`mmdebstrap ${args.map(q).join(' ')}`, { SOURCE_DATE_EPOCH: EPOCH });
  const tree = join(work, 'tree');
  mkdirSync(tree);
  spawnSync('tar', ['-xf', tar, '-C', tree, '--exclude=./dev/*']);
  rmSync(tar);
  return { ...t, treeMiB: treeMiB(tree), manifest: manifest(tree) };
}

/** apt resolves on the host, dpkg-deb unpacks, dpkg configures inside `unshare --root`. */
function aptDpkg(work: string): Run {
  const tree = join(work, 'tree');
  const status = join(work, 'empty-status');
  writeFileSync(status, '');
  const script = `
    apt_opts="-o Dir::State::status=${status} -o APT::Architecture=${ARCH} -o APT::Install-Recommends=false"
    # The closure: the essential set and the packages, as the host's apt resolves them against an empty
    # system; usr-is-merged as mmdebstrap's merged-usr hook adds it (else apt picks usrmerge and perl).
    apt-get $apt_opts -s install '?and(?essential,?architecture(${ARCH}))' usr-is-merged ${PACKAGES.join(' ')} | sed -n 's/^Inst \\([^ ]*\\) (\\([^ ]*\\) .*/\\1 \\2/p' > ${work}/closure
    mkdir -p ${tree}/usr/bin ${tree}/usr/sbin ${tree}/usr/lib ${tree}/usr/lib64 ${tree}/debs ${tree}/var/lib/dpkg/info ${tree}/var/lib/dpkg/updates ${tree}/etc
    for d in bin sbin lib lib64; do ln -s usr/$d ${tree}/$d; done
    : > ${tree}/var/lib/dpkg/status; : > ${tree}/var/lib/dpkg/available
    while read -r name version; do
      f=$(ls ${CACHE}/$name'_'$(echo "$version" | sed 's/:/%3a/')'_'*.deb)
      cp "$f" ${tree}/debs/
      # --keep-directory-symlink: /bin etc. stay the merged-/usr symlinks.
      dpkg-deb --fsys-tarfile "$f" | tar -x --keep-directory-symlink -C ${tree}
    done < ${work}/closure
    # dpkg itself, then the rest, inside a mount + PID namespace rooted at the tree.
    essential=$(apt-get $apt_opts -s install '?and(?essential,?architecture(${ARCH}))' | sed -n 's/^Inst \\([^ ]*\\) .*/\\1/p' | tr '\\n' ' ')
    unshare --mount --pid --fork --root=${tree} --mount-proc=/proc /bin/sh -ec "
      export PATH=/usr/sbin:/usr/bin DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH=${EPOCH}
      cd /debs
      dpkg --force-depends --force-unsafe-io --install \\$(for p in $essential; do ls \\$p'_'*.deb; done) >/dev/null
      dpkg --force-unsafe-io --install *.deb >/dev/null
    "
    rm -rf ${tree}/debs
  `;
  mkdirSync(join(tree, 'proc'), { recursive: true });
  const t = timed(script, { SOURCE_DATE_EPOCH: EPOCH });
  return { ...t, treeMiB: treeMiB(tree), manifest: manifest(tree) };
}

function twice(name: string, slug: string, build: (work: string) => Run): { name: string; runs: Run[]; identical: boolean } {
  const runs: Run[] = [];
  for (let i = 0; i < 2; i++) {
    const work = mkdtempSync(join(tmpdir(), `larch-bench-compose-${slug}-`));
    try {
      runs.push(build(work));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const identical = runs[0].manifest === runs[1].manifest;
  if (!identical) {
    const second = new Set(runs[1].manifest.split('\n'));
    console.error(`${name}: lines of the first run's manifest the second lacks:\n${runs[0].manifest.split('\n').filter((l) => !second.has(l)).slice(0, 20).join('\n')}`);
  }
  return { name, runs, identical };
}

// The cache is warm after one resolved compose of images/qemu-x86_64-grub.toml (the same closure: dpkg is essential).
// --backend a|b: one of the two (default both).
const only = process.argv.includes('--backend') ? process.argv[process.argv.indexOf('--backend') + 1] : undefined;
const results = [
  ...(only === undefined || only === 'a' ? [twice('(a) mmdebstrap --mode=unshare', 'mmdebstrap', mmdebstrap)] : []),
  ...(only === undefined || only === 'b' ? [twice('(b) host apt + dpkg in unshare --root', 'apt-dpkg', aptDpkg)] : []),
];
console.log('| backend | wall s (warm cache, 2 runs) | peak RSS MiB | tree MiB | two runs identical |');
console.log('|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.name} | ${r.runs.map((x) => x.seconds.toFixed(1)).join(', ')} | ${Math.max(...r.runs.map((x) => x.peakMiB)).toFixed(0)} | ${r.runs[0].treeMiB.toFixed(1)} | ${r.identical ? 'yes' : 'no'} |`);
}
if (process.argv.includes('--json')) console.log(JSON.stringify(results.map((r) => ({ name: r.name, runs: r.runs.map(({ manifest: _, ...x }) => x), identical: r.identical }))));
