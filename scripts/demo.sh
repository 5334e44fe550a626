#!/usr/bin/env bash
# The larch demo: what a vendor's build server does today. Compose two signed versions of an
# OS tree made from real Debian packages, inspect them, check one out, update a device repo
# with a signed static delta, and let fsck catch a corrupted object. Later issues extend it to
# a served repo and a simulated device that boots, falls back and rolls back.
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

step "fsck catches a corrupted object, and names the file that uses it"
run "$LARCH" fsck --repo repo
obj=$("$LARCH" ls --repo repo demo/stable /etc --json | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(r.find(e=>e.path==="/etc/os-release").object)')
f=repo/objects/${obj:0:2}/${obj:2}.filez
printf 'X' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") - 2 )) conv=notrunc status=none
set +e; "$LARCH" fsck --repo repo; echo "(exit code $?)"; set -e

step "Done"
echo "The demo ran in $WORK (removed on exit). Next: 'npm test' runs the test suite."
