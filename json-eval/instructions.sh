#!/usr/bin/env bash
# Instructions per record of each parser, counted by valgrind (cachegrind, no cache simulation):
# examples/instructions.rs parses a group of records N times; the count at N less the count at 0
# (start-up), divided by N times the records in the group. Deterministic, so it ranks the two on a
# busy machine where bench.sh's times vary; it does not weigh cache misses or branch mispredictions.
#   json-eval/instructions.sh [N]        N = 2000 by default
set -euo pipefail
cd "$(dirname "$0")"
n="${1:-2000}"
command -v valgrind >/dev/null || { echo "SKIPPED: valgrind is not installed"; exit 3; }
cargo build --locked --release -q --example instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/instructions"
count() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$@" 2>&1 >/dev/null \
    | awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}
echo "| group | scanner, instructions/record | serde-json-core, instructions/record | ratio |"
echo "|---|---|---|---|"
for group in raw raw-numbers raw-escaped wrapped log; do
  records=$("$bin" scanner "$group" 1)
  per() {
    local base full
    base=$(count "$1" "$group" 0)
    full=$(count "$1" "$group" "$n")
    echo $(( (full - base) / (n * records) ))
  }
  s=$(per scanner)
  d=$(per serde)
  echo "| $group | $s | $d | $(python3 -c "print(f'{$d / $s:.2f}')") |"
done
