#!/usr/bin/env bash
# Runs every benchmark against its baseline in the same run and writes
# BENCHMARKS.md, goal verdicts included (e2e/cmd/benchreport judges them from
# this run's figures). Needs etcd and Traefik (make deps) and about
# forty-five minutes on two cores. etcd is 3.6, built from its Go module, as Backend.AI deploys 3.5 or
# later; the integration tests keep Debian's 3.4 covered.
set -euo pipefail
cd "$(dirname "$0")/.."
traefik_bin="$(bash scripts/install-deps.sh | tail -n 1)"
ETCD_BIN="$(bash scripts/etcd-from-module.sh | tail -n 1)"
export ETCD_BIN
# Every figure goes to bench.out (not committed) as well, so that the report
# can be written again from this run's figures: make bench-report.
raw="$PWD/bench.out" # absolute: some steps run in plugin/interpreted
: > "$raw"
# The header names what the figures were measured with (benchreport reads
# these lines, make bench-report too). Traefik built without the release's
# -ldflags calls itself "dev"; the name install-deps gives the binary is
# then the version it fetched.
traefik_version="$("$traefik_bin" version | sed -n 's/^Version:[[:space:]]*//p')"
if [ "$traefik_version" = dev ] || [ -z "$traefik_version" ]; then
  traefik_version="$(basename "$traefik_bin" | sed 's/^traefik-//') (built from its module; the binary says dev)"
fi
{ echo "etcd-version: $("$ETCD_BIN" --version | sed -n 1p)"; echo "traefik-version: $traefik_version"; } >> "$raw"

run() { echo "bench: $*" >&2; "$@" 2>&1 | tee -a "$raw" | grep -E "^(Benchmark|ok|FAIL|panic|cpu:)" >&2; }

run go test -run '^$' -bench 'ParseTraefikMetrics' -benchtime 10x ./sidecar/scrape
run go test -run '^$' -bench 'ServeTargets' -benchtime 2s ./sidecar/server
run go test -run '^$' -bench 'BuildAndRender' -benchtime 20x ./sidecar/targets
# The Yaegi benchmarks are in the nested module plugin/interpreted.
(cd plugin/interpreted && run go test -run '^$' -bench 'ServeHTTP' -benchtime 1000000x .)
(cd plugin/interpreted && run go test -run '^$' -bench 'BenchmarkNew$' -benchtime 3000x .)
# Three runs at 10,000 circuits (the goal is met in three out of three),
# then three at 100,000 (every run), each size in a process of its own;
# the sidecar is the built binary, a process of its own beside them.
SIDECAR_BIN="$PWD/bin/traefik-sd" run go test -run '^$' -bench 'EtcdChangeToTargets/circuits=10000$' -benchtime 1000x -count 3 -timeout 30m ./sidecar/daemon
SIDECAR_BIN="$PWD/bin/traefik-sd" run go test -run '^$' -bench 'EtcdChangeToTargets/circuits=100000$' -benchtime 200x -count 3 -timeout 60m ./sidecar/daemon
run go test -run '^$' -bench 'Relist100k' -benchtime 5x -timeout 60m ./sidecar/engine
echo "bench: Traefik with and without the plugin, in Backend.AI's chain; its etcd ceiling; etcd write to targets through Traefik; without etcd" >&2
# Rounds alternate the variants: ten of each for one router's throughput,
# five for loads and reloads of 10,000 routers (each in a fresh Traefik).
TRAEFIK_BIN="$traefik_bin" SIDECAR_BIN="$PWD/bin/traefik-sd" go run ./e2e/cmd/bench -round 4s -rounds 10 -reloadRounds 5 \
  -routers 10000 -publishRounds 5 2>&1 | tee -a "$raw" >&2

go run ./e2e/cmd/benchreport -o BENCHMARKS.md -go "$(go env GOVERSION)" < "$raw"
echo "bench: wrote BENCHMARKS.md" >&2
