#!/usr/bin/env bash
# The larch demo: compose two signed versions of an OS tree made from real Debian packages,
# inspect them, apply a signed static delta offline, then serve the repo over HTTP to a
# simulated device that is provisioned, upgrades, reboots, takes a bad update that fails its
# health check until the bootloader falls back by itself, and goes back to an older version.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm install --no-audit --no-fund
[ -x dist/larch ] || npm run build --silent
node scripts/test-setup.mjs
LARCH="$PWD/dist/larch"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/larch-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cd "$WORK"

step "Vendor: a signing key and an archive repo (what a web server publishes)"
run "$LARCH" keygen --out vendor
run "$LARCH" init --repo repo --mode archive

step "Version 1.0: busybox, bash, coreutils and libc from Debian, plus our /etc"
mkdir -p v1/etc
for p in busybox bash coreutils libc6 dash; do dpkg-deb -x "$OLDPWD"/.cache/debs/${p}_*.deb v1; done
echo "device" > v1/etc/hostname
printf 'NAME=larch-demo\nVERSION=1.0\n' > v1/etc/os-release
run "$LARCH" commit --repo repo -b demo/stable --tree v1 --version 1.0 --subject "first release" \
  --sign-key vendor.key --owner 0:0 --metadata built-by=demo

step "Version 1.1: sed and grep added, os-release changed, dash removed"
cp -a v1 v2
for p in sed grep; do dpkg-deb -x "$OLDPWD"/.cache/debs/${p}_*.deb v2; done
printf 'NAME=larch-demo\nVERSION=1.1\n' > v2/etc/os-release
rm -f v2/bin/dash v2/usr/bin/dash
run "$LARCH" commit --repo repo -b demo/stable --tree v2 --version 1.1 --subject "add sed and grep" \
  --sign-key vendor.key --owner 0:0

step "History, signatures and what changed"
run "$LARCH" log --repo repo demo/stable
run "$LARCH" verify --repo repo --key vendor.pub demo/stable
"$LARCH" diff --repo repo 'demo/stable^' demo/stable | awk 'NR<=12; END { print "... (" NR " paths changed)" }'

step "Check version 1.1 out, the way a device deploys it"
run "$LARCH" checkout --repo repo demo/stable rootfs --json | head -8
run cat rootfs/etc/os-release

step "A device holding version 1.0 (copied from the archive repo, as a factory would)"
run "$LARCH" init --repo device --mode "$( [ "$(id -u)" = 0 ] && echo bare || echo bare-user )"
run "$LARCH" pull-local --repo device repo 'demo/stable^'

step "A signed static delta 1.0 -> 1.1, applied on the device (offline, as from a USB stick)"
run "$LARCH" delta generate --repo repo --from 'demo/stable^' --to demo/stable --sign-key vendor.key --out update.delta
run "$LARCH" delta apply --repo device update.delta --key vendor.pub --ref demo/stable
run "$LARCH" verify --repo device --key vendor.pub demo/stable
printf 'the delta is %s bytes; version 1.1 unpacked is %s bytes\n' "$(stat -c %s update.delta)" "$(du -sb rootfs | cut -f1)"

step "Publish: a signed summary, served over HTTP by larch serve"
run "$LARCH" publish --repo repo --sign-key vendor.key
"$LARCH" serve --repo repo --port 0 --log serve.log > serve.url &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do [ -s serve.url ] && break; sleep 0.1; done
URL=$(cat serve.url); echo "serving at $URL"

step "A device (a directory standing in for its root filesystem), provisioned with version 1.0"
run "$LARCH" provision --sysroot dev --repo-url "$URL" --ref demo/stable --keys vendor.pub --version 1.0 --bootloader uboot
run "$LARCH" sim-boot --sysroot dev
run "$LARCH" status --sysroot dev

step "The admin edits /etc; /var holds user data"
echo "device-42" > dev/larch/deploy/A/etc/hostname
mkdir -p dev/var/lib/app && echo "user data" > dev/var/lib/app/data
run "$LARCH" check --sysroot dev
run "$LARCH" upgrade --sysroot dev
run "$LARCH" status --sysroot dev

step "Reboot into 1.1: healthy, marked good"
run "$LARCH" sim-boot --sysroot dev
run cat dev/larch/deploy/B/etc/hostname dev/var/lib/app/data
run "$LARCH" status --sysroot dev

step "Version 1.2 is bad: its required health check fails"
cp -a v2 v3
mkdir -p v3/etc/larch/health.d/required.d
printf '#!/bin/sh\necho "myapp did not start" >&2\nexit 1\n' > v3/etc/larch/health.d/required.d/50-myapp
chmod +x v3/etc/larch/health.d/required.d/50-myapp
printf 'NAME=larch-demo\nVERSION=1.2\n' > v3/etc/os-release
run "$LARCH" commit --repo repo -b demo/stable --tree v3 --version 1.2 --subject "broken release" --sign-key vendor.key --owner 0:0
run "$LARCH" delta generate --repo repo --from 'demo/stable^' --to demo/stable --sign-key vendor.key
run "$LARCH" publish --repo repo --sign-key vendor.key
run "$LARCH" upgrade --sysroot dev
for i in 1 2 3 4; do run "$LARCH" sim-boot --sysroot dev; done
run "$LARCH" status --sysroot dev
step "Why it rolled back"
run "$LARCH" history --sysroot dev --limit 8

step "rollback by hand: back to 1.0 (slot A held 1.2, which failed; 1.0 is gone), so deploy 1.0 again"
set +e; "$LARCH" rollback --sysroot dev; echo "(exit code $?)"; set -e
run "$LARCH" deploy 1.0 --allow-downgrade --sysroot dev
run "$LARCH" sim-boot --sysroot dev
run "$LARCH" status --sysroot dev

step "fsck catches a corrupted object in the vendor repo, and names the file that uses it"
run "$LARCH" fsck --repo repo
obj=$("$LARCH" ls --repo repo demo/stable /etc --json | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(r.find(e=>e.path==="/etc/os-release").object)')
f=repo/objects/${obj:0:2}/${obj:2}.filez
printf 'X' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") - 2 )) conv=notrunc status=none
set +e; "$LARCH" fsck --repo repo; echo "(exit code $?)"; set -e

step "Done"
echo "The demo ran in $WORK (removed on exit). Next: 'npm test' runs the test suite."
