#!/bin/sh
# The vendor pipeline of docs/oci.md: the OS built with the container toolchain, shipped to
# devices as signed larch deltas. Devices never see an image: they follow a larch ref.
#
#   pipeline.sh base   REPO REF IMAGE TAG           export REF and push it as IMAGE:TAG
#   pipeline.sh build  IMAGE BASE_TAG TAG DEBS_DIR  build Containerfile FROM IMAGE:BASE_TAG with
#                                                   the .debs of DEBS_DIR, push it as IMAGE:TAG
#   pipeline.sh commit REPO REF IMAGE TAG KEY       commit IMAGE:TAG to REF, a delta from REF's
#                                                   head, publish
#   pipeline.sh follow REPO REF IMAGE KEY           commit every tag of IMAGE newer than REF's
#                                                   head (Debian version order), oldest first
#
# IMAGE is HOST[:PORT]/NAME. Environment: LARCH (default larch), BUILDAH_ARGS (global options,
# e.g. --root and --runroot), TLS_VERIFY (default true; false for a registry on plain HTTP).
set -eu
LARCH=${LARCH:-larch}
BUILDAH_ARGS=${BUILDAH_ARGS:-}
TLS_VERIFY=${TLS_VERIFY:-true}
HERE=$(cd "$(dirname "$0")" && pwd)

commit_tag() { # REPO REF IMAGE TAG KEY
  head=$("$LARCH" show --repo "$1" "$2" --json 2>/dev/null | sed -n 's/^  "commit": *"\([0-9a-f]*\)".*/\1/p')
  out=$("$LARCH" commit --repo "$1" --branch "$2" --oci "docker://$3:$4" --larch-layout --sign-key "$5" --json)
  echo "$out"
  new=$(printf '%s\n' "$out" | sed -n 's/^  "commit": *"\([0-9a-f]*\)".*/\1/p')
  if [ -n "$head" ] && [ "$new" != "$head" ]; then
    "$LARCH" delta generate --repo "$1" --from "$head" --to "$new" --sign-key "$5" >/dev/null
  fi
  "$LARCH" publish --repo "$1" --sign-key "$5" >/dev/null
}

case "${1:-}" in
base)
  [ $# -eq 5 ] || { echo "usage: $0 base REPO REF IMAGE TAG" >&2; exit 2; }
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$LARCH" export-oci --repo "$2" "$3" --out "$tmp/base.tar" --tag "$5" >/dev/null
  skopeo copy --quiet --dest-tls-verify="$TLS_VERIFY" "oci-archive:$tmp/base.tar" "docker://$4:$5"
  ;;
build)
  [ $# -eq 5 ] || { echo "usage: $0 build IMAGE BASE_TAG TAG DEBS_DIR" >&2; exit 2; }
  ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
  mkdir "$ctx/debs" && cp "$5"/*.deb "$ctx/debs/"
  # shellcheck disable=SC2086
  buildah $BUILDAH_ARGS build --quiet --layers --isolation chroot --tls-verify="$TLS_VERIFY" \
    --build-arg "BASE=$2:$3" --build-arg "VERSION=$4" -t "$2:$4" -f "$HERE/Containerfile" "$ctx" >/dev/null
  # shellcheck disable=SC2086
  buildah $BUILDAH_ARGS push --quiet --tls-verify="$TLS_VERIFY" "$2:$4" "docker://$2:$4"
  ;;
commit)
  [ $# -eq 6 ] || { echo "usage: $0 commit REPO REF IMAGE TAG KEY" >&2; exit 2; }
  commit_tag "$2" "$3" "$4" "$5" "$6"
  ;;
follow)
  [ $# -eq 5 ] || { echo "usage: $0 follow REPO REF IMAGE KEY" >&2; exit 2; }
  current=$("$LARCH" show --repo "$2" "$3" --json 2>/dev/null | sed -n 's/^  "version": *"\([^"]*\)".*/\1/p')
  skopeo list-tags --tls-verify="$TLS_VERIFY" "docker://$4" | sed -n 's/^ *"\([^"]*\)",\{0,1\}$/\1/p' | grep -v '^Tags$' |
    while read -r tag; do
      if [ -z "$current" ] || dpkg --compare-versions "$tag" gt "$current"; then echo "$tag"; fi
    done | sort -V | while read -r tag; do
      commit_tag "$2" "$3" "$4" "$tag" "$5"
    done
  ;;
*)
  echo "usage: $0 base|build|commit|follow ... (see the comment at the top)" >&2
  exit 2
  ;;
esac
