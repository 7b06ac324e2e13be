#!/usr/bin/env bash
# Runs every fuzz target for a short while (first argument, default 10s).
# The seeds are in the tests (f.Add); a failure leaves its input under the
# package's testdata/fuzz/, to be committed with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-10s}"
targets=(
  "./sidecar/scrape FuzzParse"
  "./sidecar/kv FuzzDecode"
  "./sidecar/dynamic FuzzStore"
  "./sidecar/pluginsync FuzzDecode"
)
for t in "${targets[@]}"; do
  set -- $t
  echo "fuzz: $2 in $1 for $fuzztime"
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1"
done
