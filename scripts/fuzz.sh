#!/usr/bin/env bash
# Runs every fuzz target for a budget (first argument, default 100000x).
# The budget is a count of executions, not a duration: Go 1.26's fuzzing
# coordinator can fail a duration-bounded run with "context deadline
# exceeded" and no failing input when the deadline races a busy worker
# (golang/go#75804, fixed in Go 1.27). The seeds are in the tests (f.Add);
# a real failure leaves its input under the package's testdata/fuzz/, to be
# committed with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-100000x}"
targets=(
  "./sidecar/scrape FuzzParse"
  "./sidecar/kv FuzzDecode"
  "./sidecar/dynamic FuzzStore"
  "./sidecar/dynamic FuzzSlimDecodesTheSame"
  "./sidecar/dynamic FuzzMayHoldObjectIsMayHold"
  "./sidecar/pluginsync FuzzDecode"
  "./sidecar/traefikapi FuzzRouterAnswer"
  "./sidecar/routeinfo FuzzDecode"
  "./sidecar/watch FuzzParseRange"
  "./sidecar/serverurl FuzzPlainReadsAsURLParse"
  "./plugin FuzzOkAgreesWithCheck"
)
for t in "${targets[@]}"; do
  set -- $t
  echo "fuzz: $2 in $1 for $fuzztime"
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1"
done
