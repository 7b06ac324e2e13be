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
  echo "etcd-from-module: building etcd $ETCD_VERSION into $ETCD_BIN (a minute or two, once)" >&2
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
  (
    cd "$work"
    export GOFLAGS=-mod=mod GO111MODULE=on
    go mod init etcd-from-module >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
    CGO_ENABLED=0 go build -trimpath -o "$ETCD_BIN.tmp" .
  )
  mv "$ETCD_BIN.tmp" "$ETCD_BIN"
fi
echo "$ETCD_BIN"
