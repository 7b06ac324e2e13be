#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo run: etcd, Prometheus and
# redis-server from Debian, Traefik built from its Go module. Idempotent: a second run only checks.
# Traefik is cached outside the checkout (TRAEFIK_SD_CACHE, default
# ~/.cache/traefik-sd) because building it takes minutes and a fresh clone
# must not pay that twice.
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
CACHE="${TRAEFIK_SD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traefik-sd}"
TRAEFIK_BIN="$CACHE/traefik-$TRAEFIK_VERSION"

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages start their services; the tests start their own on free ports.
  for svc in etcd prometheus prometheus-node-exporter redis-server; do
    $sudo systemctl stop "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
  $sudo pkill -x etcd >/dev/null 2>&1 || true
  $sudo pkill -x prometheus >/dev/null 2>&1 || true
fi

if [ ! -x "$TRAEFIK_BIN" ]; then
  echo "install-deps: building Traefik $TRAEFIK_VERSION into $TRAEFIK_BIN (a few minutes, once)" >&2
  mkdir -p "$CACHE"
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  # Outside any module, with the module mode the proxy serves; go install refuses
  # Traefik's replace directives, so copy the module and build inside it.
  dir=$(cd "$work" && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "install-deps: go mod download of traefik failed" >&2; exit 1; }
  cp -r "$dir" "$work/traefik"
  chmod -R u+w "$work/traefik"
  (cd "$work/traefik" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$TRAEFIK_BIN.tmp" ./cmd/traefik)
  mv "$TRAEFIK_BIN.tmp" "$TRAEFIK_BIN"
fi
echo "$TRAEFIK_BIN"
