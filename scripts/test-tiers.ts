/**
 * The two test tiers, listed here and nowhere else. Every tap file (test/**\/*.test.ts, tap's
 * `include` in package.json) belongs to exactly one; test/unit/test-tiers.test.ts checks it.
 *
 * - quick: the unit tests and the integration tests that take well under half a minute each, for
 *   the edit loop: `npm run test:quick`.
 * - slow: the 200-device fleet, QEMU boots and image builds, the failpoint and power-loss
 *   enumerations, the fuzz budget, and the device, MQTT and real-package stories that take half a
 *   minute to several minutes each: `npm run test:slow`.
 *
 * `npm test` (the README's command, and CI's) runs tap's include: both tiers, each file once.
 *
 * Usage: node --import tsx scripts/test-tiers.ts quick|slow [tap options...]
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export type Tier = 'quick' | 'slow';

/**
 * Entries are files, or folders ending in '/' (every test file below them). The seconds are each
 * file's tap time in a CI run on 2 cores (two files at a time), to say why a file is where it is.
 */
export const TIERS: Record<Tier, string[]> = {
  quick: [
    'test/unit/', // ~90 s together; the longest: compose/debian-version 20 s, delta/lz4-view 20 s (8 MiB inputs against the lz4 tool), delta/deflate-view 10-15 s (it runs gzip, zlib, zopfli, 7-Zip), failpoint, torn-env property, bsdiff ~10 s; bench/delta-breakdown and delta-same-tree <1 s each
    'test/integration/image-arch.test.ts', // 3 s
    'test/integration/powerloss-shim.test.ts', // 6 s (the recorder itself; the enumeration is powerloss.test.ts)
    'test/integration/delta-view.test.ts', // 16 s: view records made by the real gzip, lz4 and zstd, applied by Bun and Node
    'test/integration/delta-own-part.test.ts', // 12 s: a large file chosen for on the generator's second thread, in a part of its own
    'test/integration/delta-apply-threads.test.ts', // 21 s: delta apply --threads 2 (the kernel's part on a second thread), Bun and Node, a damaged part, failpoints over both threads
    'test/integration/delta-apply-tiers.test.ts', // 4 s: the binary's apply compiles the LZ4HC search by JSC's top tier (FTL) under its runtime options
    'test/integration/compat-vectors.test.ts', // 9 s: the frozen 0.1 repo, delta, summary and sysroot read by today's code
    'test/integration/cli.test.ts', // 10 s
    'test/integration/errors-cli.test.ts', // 11 s
    'test/integration/repo-ops.test.ts', // 11 s
    'test/integration/dirtree-format.test.ts', // 12 s
    'test/integration/etc-merge.test.ts', // 13 s
    'test/integration/edge-input.test.ts', // 14 s
    'test/integration/oci-import.test.ts', // 14 s: hand-made images as layouts and archives, Node and Bun
    'test/integration/oci-hostile.test.ts', // 15 s: every refusal of docs/oci.md, the repo unchanged after each
    'test/integration/oci-export.test.ts', // 12 s: reproducible exports, the round trip, skopeo and umoci
    'test/integration/fleet-view.test.ts', // 18 s: serve --dashboard against a real Mosquitto: the API says what the broker holds, after a restart too; the page in headless Chromium, desktop and phone
    'test/integration/hostile.test.ts', // 16 s
    'test/integration/bootenv.test.ts', // 17 s
    'test/integration/determinism.test.ts', // 18 s
    'test/integration/fsck.test.ts', // 22 s
    'test/integration/delta-fallback.test.ts', // 24 s
    'test/integration/trust-rotation.test.ts', // measured below
    'test/integration/release-pipeline.test.ts', // 24 s
    'test/integration/product-binding.test.ts', // ~20 s: another product's repo, architecture or hardware refused
  ],
  slow: [
    'test/integration/fleet.test.ts', // 399 s: 200 devices on one broker
    'test/integration/fleet-halt.test.ts', // 130 s in CI: 20 rebooting devices, a release failing on 30% halts by itself; serve killed and restarted mid-plan
    'test/integration/layering.test.ts', // 94 s alone, 160-210 s at load 10 (cached base and world): install, overrides, uninstall, reset, three vendor upgrades, each built in a namespace, staged and booted
    'test/integration/layering-image.test.ts', // 204 s alone, 295 s at load (warm .deb cache): images/qemu-x86_64-grub.toml composed and provisioned (118-207 s), then install, local .deb, override replace/remove, reset, uninstall, each built and booted (80 s)
    'test/integration/layering-failures.test.ts', // 62 s alone, 109 s beside layering.test.ts: failing script, unresolvable dependency, full disk
    'test/integration/failpoints.test.ts', // 270 s: every state-changing command killed at each failpoint
    'test/integration/powerloss.test.ts', // 239 s: the same kills replayed on ext4 with un-flushed writes dropped
    'test/integration/image.test.ts', // 211 s before the UEFI board (+146 s build and 74 s boot under load): disk images built and booted under QEMU
    'test/integration/fidelity.test.ts', // 191 s: real Debian packages, byte for byte
    'test/integration/oci-tools.test.ts', // 56 s alone: buildah builds, podman/skopeo saves, umoci and podman export as oracles, podman run; the vendor pipeline through docker-registry to sim devices
    'test/integration/compose.test.ts', // 188 s: composes from real Debian packages
    'test/integration/compose-resolve.test.ts', // 395 s (load 5-6, tree cache cold): resolved composes with mmdebstrap (must-show 1 of issue 17), a --no-tree-cache rebuild, a tree-cache hit, two builds of a local .deb in a tree cache of its own
    'test/integration/device-crash.test.ts', // 187 s: device commands killed mid-way
    'test/integration/crash.test.ts', // 113 s: repo commands killed mid-way
    'test/integration/delta.test.ts', // 105 s
    'test/integration/daemon-policy.test.ts', // 104 s
    'test/integration/device-safety.test.ts', // 103 s
    'test/integration/mqtt.test.ts', // 98 s
    'test/integration/hostile-server.test.ts', // 90 s
    'test/integration/env-damage.test.ts', // 77 s
    'test/integration/mqtt-transfer.test.ts', // 73 s
    'test/integration/failed-release.test.ts', // 83 s (with the head-older case)
    'test/integration/kargs.test.ts', // 56 s: larch kargs on U-Boot and GRUB sysroots, rollback, upgrades through kargs.d, refusals
    'test/integration/release-floor.test.ts', // ~30 s idle (88 s at load 20): release floor and ref binding on one device each
    'test/fuzz/fuzz.test.ts', // 48 s: the fuzz budget (npm run fuzz is the long one)
    'test/integration/device-space.test.ts', // 48 s
    'test/integration/device-download.test.ts', // 44 s
    'test/integration/device.test.ts', // 38 s
    'test/integration/agent-in-tree.test.ts', // 71 s at load 7 (~50 s idle): two agents built, then upgrade, boot and rollback with each
    'test/integration/compose-defaults.test.ts', // 37 s
    'test/integration/board-scripts.test.ts', // 36 s: U-Boot under QEMU and grub-emu boot every case
    'test/integration/serve-http.test.ts', // 32 s
    'test/integration/provision.test.ts', // 29 s
    'test/integration/device-transport.test.ts', // 26 s
    'test/integration/json-casing.test.ts', // ~40 s: every command's --json against real fixtures
    'test/integration/remote-contract.test.ts', // ~20 s idle: one vendor repo over HTTP, MQTT (real Mosquitto) and file://
    'test/integration/barriers.test.ts', // 30 s: agent-too-old, barriers through two daemon runs, the periodic check past a replayed announcement
    'test/integration/layer-status.test.ts', // ~30 s at load: status, db diff and the upgrade preview of a layered device
    'test/integration/remotes.test.ts', // named remotes and rebase: two served vendors, one device
    'test/integration/bundle.test.ts', // bundle create, read back through the bundle fetcher and the Remote
    'test/integration/offline.test.ts', // upgrade --from-file and a file:// remote with no route to the server
    'test/integration/deploy-target.test.ts', // deploy by id prefix, the newest named, offline from the device's repo
    'test/integration/cancel.test.ts', // larch cancel in a slow download, in staging, past the point of no return, and of the daemon's job
    'test/integration/apply-live.test.ts', // apply-live in a mount namespace of the test's own: the report, the bind mounts, the one restart; a kernel change refused
    'test/integration/systemd-boot.test.ts', // ~70 s at load 3: the systemd-boot backend through the binary, and a kill at every hit of its failpoints
  ],
};

/** Every tap file, as tap's include test/**\/*.test.ts finds them: paths relative to root, sorted. */
export function testFiles(root = ROOT): string[] {
  return readdirSync(join(root, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => relative(root, join(root, 'test', f)))
    .sort();
}

/** The tiers whose list names this file (exactly one for every test file). */
export function tiersOf(file: string): Tier[] {
  return (Object.keys(TIERS) as Tier[]).filter((tier) => TIERS[tier].some((e) => (e.endsWith('/') ? file.startsWith(e) : file === e)));
}

export function filesOf(tier: Tier, root = ROOT): string[] {
  return testFiles(root).filter((f) => tiersOf(f).includes(tier));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [tier, ...tapArgs] = process.argv.slice(2);
  if (tier !== 'quick' && tier !== 'slow') {
    console.error('usage: node --import tsx scripts/test-tiers.ts quick|slow [tap options...]');
    process.exit(2);
  }
  const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'tap'), [...tapArgs, ...filesOf(tier)], { cwd: ROOT, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
