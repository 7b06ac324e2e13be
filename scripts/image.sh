#!/usr/bin/env bash
# make image: builds the Containerfile with buildah, without a daemon, into
# local storage (vfs, so it needs no overlay support) as $IMAGE:$VERSION and
# $IMAGE:latest. The binary is built here, outside the image (no Go base image
# is needed or pulled). Run by make, which sets VERSION, REVISION, LDFLAGS and
# IMAGE; IMAGE_ARCH (default: Go's GOARCH) picks the architecture.
set -euo pipefail

: "${VERSION:?set by make}" "${REVISION:?set by make}" "${LDFLAGS:?set by make}" "${IMAGE:?set by make}"
GO="${GO:-go}"
ARCH="${IMAGE_ARCH:-$("$GO" env GOARCH)}"
read -r -a BUILDAH <<<"${BUILDAH:-buildah --storage-driver vfs}"
CA="${IMAGE_CA:-/etc/ssl/certs/ca-certificates.crt}"

command -v "${BUILDAH[0]}" >/dev/null 2>&1 ||
  { echo "image: ${BUILDAH[0]} not found; make deps installs buildah (apt-get install buildah)" >&2; exit 1; }
[ -s "$CA" ] || { echo "image: no CA bundle at $CA (Debian's ca-certificates)" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" "$GO" build -trimpath -ldflags "$LDFLAGS" \
  -o "$ctx/traefik-sd" ./sidecar/cmd/traefik-sd)
cp "$CA" "$ctx/ca-certificates.crt"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$ctx/passwd"
printf 'nonroot:x:65532:\n' >"$ctx/group"
chmod 0644 "$ctx/ca-certificates.crt" "$ctx/passwd" "$ctx/group"
chmod 0755 "$ctx/traefik-sd"

"${BUILDAH[@]}" build --quiet --pull=never --arch "$ARCH" --os linux \
  --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
  -f "$root/Containerfile" -t "$IMAGE:$VERSION" -t "$IMAGE:latest" "$ctx" >/dev/null
echo "image: $IMAGE:$VERSION ($ARCH), also $IMAGE:latest" >&2
