#!/usr/bin/env bash
# Builds etcd from its Go module (go.etcd.io/etcd/server/v3, whose
# etcdmain.Main is etcd's own entry point) into the cache outside the
# checkout, once, and prints its path on the last line. Backend.AI deploys
# etcd 3.5 or later; Debian's etcd-server is 3.4, kept for one integration
# run (make unit), while make e2e and make bench use this one.
set -euo pipefail
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/traefik-sd}"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION"
if [ ! -x "$ETCD_BIN" ]; then
  . "$(dirname "$0")/progress.sh"
  echo "etcd-from-module: building etcd $ETCD_VERSION into $ETCD_BIN, once" >&2
  mkdir -p "$CACHE"
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  cat > "$work/main.go" <<'GO'
// Command etcd is etcd's own entry point, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  export GOFLAGS=-mod=mod GO111MODULE=on
  (cd "$work" && go mod init etcd-from-module >/dev/null 2>&1)
  PROGRESS_LOG="$work/get.log" progress_run etcd-from-module "fetching etcd $ETCD_VERSION's modules" \
    "seconds; 15 s with an empty module cache" \
    go get -C "$work" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  # -v: a line per package compiled, which progress_run counts.
  CGO_ENABLED=0 PROGRESS_LOG="$work/build.log" PROGRESS_TOTAL=580 progress_run etcd-from-module "compiling etcd $ETCD_VERSION" \
    "1 to 2 minutes on 2 cores with an empty build cache, more on a busy machine" \
    go build -C "$work" -v -trimpath -o "$ETCD_BIN.tmp" .
  mv "$ETCD_BIN.tmp" "$ETCD_BIN"
fi
echo "$ETCD_BIN"
