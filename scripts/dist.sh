#!/usr/bin/env bash
# make dist: the release artifacts, versioned from `git describe`, into $DIST
# (emptied first):
#   traefik-sd-<version>-linux-amd64, traefik-sd-<version>-linux-arm64
#       static sidecar binaries (CGO_ENABLED=0, -trimpath, version stamped)
#   traefik-sd-plugin-<module version>.zip
#       the plugin's module zip, as the Go module proxy and Traefik's plugin
#       registry serve it (e2e/cmd/pluginzip, as make plugin-zip)
#   traefik-sd-plugin-<module version>.yml
#       the experimental.plugins entry for Traefik, with the zip's hash
#   SHA256SUMS
#       every file above; `sha256sum -c SHA256SUMS` checks them
# The module version is <version> when that is a semantic version (a tag
# such as v0.2.0); otherwise Go's pseudo-version of the commit
# (v0.0.0-<commit time>-<12 hex>), with -dirty when the work tree is.
# Run by make, which sets VERSION, LDFLAGS and DIST.
set -euo pipefail

: "${VERSION:?set by make}" "${LDFLAGS:?set by make}" "${DIST:?set by make}"
GO="${GO:-go}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'
if [[ "$VERSION" =~ $semver ]]; then
  module_version="$VERSION"
else
  rev=$(git rev-parse HEAD)
  module_version="v0.0.0-$(TZ=UTC git show -s --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)-${rev:0:12}"
  case "$VERSION" in *-dirty) module_version="$module_version-dirty" ;; esac
fi

rm -rf "$DIST"
mkdir -p "$DIST"
for arch in amd64 arm64; do
  echo "dist: traefik-sd-$VERSION-linux-$arch" >&2
  CGO_ENABLED=0 GOOS=linux GOARCH="$arch" "$GO" build -trimpath -ldflags "$LDFLAGS" \
    -o "$DIST/traefik-sd-$VERSION-linux-$arch" ./sidecar/cmd/traefik-sd
done

zip="traefik-sd-plugin-$module_version.zip"
echo "dist: $zip" >&2
hash=$("$GO" run ./e2e/cmd/pluginzip -version "$module_version" -o "$DIST/$zip" | sed -n 's/^hash: //p')
[ -n "$hash" ] || { echo "dist: pluginzip printed no hash" >&2; exit 1; }
cat >"$DIST/traefik-sd-plugin-$module_version.yml" <<EOF
# Traefik's static configuration for the traefik-sd plugin $module_version
# (traefik-sd $VERSION): Traefik downloads the module zip from its plugin
# registry and refuses one whose sha256 is not this hash.
experimental:
  plugins:
    traefik-sd:
      moduleName: github.com/traefik-sd/traefik-sd
      version: $module_version
      hash: $hash
EOF

(cd "$DIST" && sha256sum -- * >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "dist: $(ls "$DIST" | wc -l) files in $DIST" >&2
