#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo run: etcd, Prometheus,
# redis-server, redis-sentinel, Chromium, buildah and systemd (systemd-analyze) from Debian, Traefik built from its Go module. Idempotent: a second run only checks.
# Traefik is cached outside the checkout (DEPS_CACHE, default
# ~/.cache/traefik-sd) because building it takes minutes and a fresh clone
# must not pay that twice.
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
CACHE="${DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traefik-sd}"
TRAEFIK_BIN="$CACHE/traefik-$TRAEFIK_VERSION"

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)   # the Sentinel failover test
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)   # the status page's test
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)   # verifies examples/traefik-sd.service
command -v buildah >/dev/null 2>&1 || need_apt+=(buildah)     # make image, without a daemon
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  # Debian's packages start their services on install; the tests start their
  # own on free ports. Keep them from starting (policy-rc.d, Debian's own
  # mechanism) when no policy is in place; otherwise stop just the services
  # these packages installed, through the service manager. Nothing is ended
  # by process name: an etcd or Redis of the machine's own is left alone.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# install-deps (traefik-sd): no service starts while it installs\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ -n "$policy" ]; then
    $sudo rm -f "$policy"
    trap - EXIT
  else
    for pkg in "${need_apt[@]}"; do
      case "$pkg" in
        etcd-server) svc=etcd ;;
        prometheus|redis-server|redis-sentinel) svc=$pkg ;;
        *) continue ;;
      esac
      $sudo systemctl stop "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
    done
  fi
fi

if [ ! -x "$TRAEFIK_BIN" ]; then
  . "$(dirname "$0")/progress.sh"
  echo "install-deps: building Traefik $TRAEFIK_VERSION into $TRAEFIK_BIN, once" >&2
  mkdir -p "$CACHE"
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  # Outside any module, with the module mode the proxy serves; go install refuses
  # Traefik's replace directives, so copy the module and build inside it.
  dir=$(cd "$work" && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "install-deps: go mod download of traefik failed" >&2; exit 1; }
  cp -r "$dir" "$work/traefik"
  chmod -R u+w "$work/traefik"
  # -v: a line per package compiled, which progress_run counts. The version,
  # as Traefik's release build sets it, so that `traefik version` names it.
  GOFLAGS=-mod=mod CGO_ENABLED=0 PROGRESS_LOG="$work/build.log" PROGRESS_TOTAL=2500 progress_run install-deps "building Traefik $TRAEFIK_VERSION" \
    "about 5 minutes on 2 idle cores, up to 25 on a busy machine" \
    go build -C "$work/traefik" -v -trimpath \
      -ldflags "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      -o "$TRAEFIK_BIN.tmp" ./cmd/traefik
  mv "$TRAEFIK_BIN.tmp" "$TRAEFIK_BIN"
fi
echo "$TRAEFIK_BIN"
