#!/usr/bin/env bash
# Runs every benchmark against its baseline in the same run and writes
# BENCHMARKS.md. Needs etcd and Traefik (make deps) and about ten minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
traefik_bin="$(bash scripts/install-deps.sh | tail -n 1)"
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT

run() { echo "bench: $*" >&2; "$@" 2>&1 | tee -a "$raw" | grep -E "^(Benchmark|ok|FAIL|panic|cpu:)" >&2; }

run go test -run '^$' -bench 'ParseTraefikMetrics' -benchtime 10x ./sidecar/scrape
run go test -run '^$' -bench 'ServeTargets' -benchtime 2s ./sidecar/server
run go test -run '^$' -bench 'BuildAndRender' -benchtime 20x ./sidecar/targets
# The Yaegi benchmarks are in the nested module plugin/interpreted.
(cd plugin/interpreted && run go test -run '^$' -bench 'ServeHTTP' -benchtime 1000000x .)
(cd plugin/interpreted && run go test -run '^$' -bench 'BenchmarkNew$' -benchtime 3000x .)
run go test -run '^$' -bench 'EtcdChangeToTargets' -benchtime 1000x -timeout 30m ./sidecar/daemon
run go test -run '^$' -bench 'Relist100k' -benchtime 2x -timeout 60m ./sidecar/engine
echo "bench: Traefik with and without the plugin; etcd write to targets through Traefik" >&2
TRAEFIK_BIN="$traefik_bin" SIDECAR_BIN="$PWD/bin/traefik-sd" go run ./e2e/cmd/bench -round 4s -rounds 3 -routers 10000 2>&1 | tee -a "$raw" >&2

go run ./e2e/cmd/benchreport -o BENCHMARKS.md -go "$(go env GOVERSION)" < "$raw"
cat scripts/bench-goals.md >> BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md" >&2
