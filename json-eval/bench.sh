#!/usr/bin/env bash
# Runs json-eval's criterion comparison RUNS times (default 2) under `nice` and prints, per run and
# group, the time per record of each parser and the ratio serde-json-core / scanner (above 1: the
# prototype is slower). Both are measured in the same run, so the ratio holds on a busy machine
# where the absolute times do not.
#   json-eval/bench.sh [RUNS]      BENCH_SECS=3 by default
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-2}"
secs="${BENCH_SECS:-3}"
target="${CARGO_TARGET_DIR:-target}"
for run in $(seq 1 "$runs"); do
  nice -n 10 cargo bench --locked --bench compare -- --warm-up-time 1 --measurement-time "$secs" >/dev/null 2>&1
  RUN="$run" TARGET="$target" python3 - <<'PY'
import json, os, pathlib
root = pathlib.Path(os.environ["TARGET"]) / "criterion"
groups = {}
for est in root.glob("*/*/new/estimates.json"):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    n = (bench.get("throughput") or {}).get("Elements", 1)
    per = json.loads(est.read_text())["mean"]["point_estimate"] / n
    groups.setdefault(bench["group_id"], {})[bench["function_id"]] = per
if os.environ["RUN"] == "1":
    print("| run | group | scanner, ns/record | serde-json-core, ns/record | ratio |")
    print("|---|---|---|---|---|")
for g in sorted(groups):
    t = groups[g]
    if "scanner" in t and "serde-json-core" in t:
        print(f"| {os.environ['RUN']} | {g} | {t['scanner']:.0f} | {t['serde-json-core']:.0f} | {t['serde-json-core'] / t['scanner']:.2f} |")
PY
done
