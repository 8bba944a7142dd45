#!/usr/bin/env bash
# Runs the core's criterion benchmarks once (short measurement) and prints a table of throughput
# per benchmark next to the target from the issues. Figures from one run on a shared machine are
# noisy: compare ratios within one run, not absolute numbers across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${BENCH_SECS:-3}"
# Only this run's results go in the table: criterion keeps every benchmark's last result in
# target/criterion, renamed and removed ones included.
started=$(date +%s)
benches=(--bench aggregate --bench parse --bench encode --bench sketch --bench outputs)
cargo bench -p chouette-core --features alloc "${benches[@]}" -- --warm-up-time 1 --measurement-time "$secs" >/dev/null 2>&1 \
  || cargo bench -p chouette-core --features alloc "${benches[@]}" -- --warm-up-time 1 --measurement-time "$secs"
STARTED="$started" python3 - <<'PY'
import json, os, pathlib
targets = {  # benchmark id prefix -> (target elements/s, what)
    "aggregate/record_mixed_10k_series": (20e6, "record ≥ 20M samples/s"),
    "aggregate/record_batch_mixed_10k_series": (20e6, "record ≥ 20M samples/s"),
    "parse_raw_metric": (3e6, "parse ≥ 3M records/s"),
    "series/encode_100k_points": (5e6, "encode ≥ 5M points/s"),
    "sketch/QuantileSketch::insert": (50e6, "sketch insert ≥ 50M values/s"),
    "sketch/Histogram::insert/": (50e6, "sketch insert ≥ 50M values/s"),
}
rows = []
started = int(os.environ["STARTED"])
for est in sorted(pathlib.Path("target/criterion").glob("**/new/estimates.json")):
    if est.stat().st_mtime < started:
        continue
    bench = json.loads((est.parent / "benchmark.json").read_text())
    mean_ns = json.loads(est.read_text())["mean"]["point_estimate"]
    tp = bench.get("throughput") or {}
    n = tp.get("Elements") or tp.get("Bytes")
    unit = "elem" if "Elements" in tp else "B"
    rate = n / (mean_ns / 1e9) if n else None
    name = bench["full_id"]
    target = next((t for k, t in targets.items() if (name + "/").startswith(k)), None)
    rows.append((name, mean_ns / n if n else mean_ns, rate, unit, target))
print(f"| benchmark | ns per {'element'} | throughput | target | ratio to target |")
print("|---|---|---|---|---|")
for name, per, rate, unit, target in rows:
    rate_s = f"{rate/1e6:.2f} M{unit}/s" if rate else "-"
    ratio = f"{rate/target[0]:.2f}x ({target[1]})" if rate and target else ""
    print(f"| {name} | {per:.1f} | {rate_s} | {'' if not target else f'{target[0]/1e6:g} M/s'} | {ratio} |")
rate_of = {name: rate for name, _, rate, _, _ in rows}
print()
for call in ("record", "record_batch"):
    spread, cached = rate_of.get(f"aggregate/{call}_mixed_10k_series"), rate_of.get(f"aggregate/{call}_mixed_100_series_in_cache")
    if spread and cached:
        print(f"{call} over 10k series runs at {spread / cached:.2f} of its in-cache ceiling (the same samples folded into "
              f"100 series, measured in the same run): the rest is memory")
one, batch = rate_of.get("aggregate/record_mixed_10k_series"), rate_of.get("aggregate/record_batch_mixed_10k_series")
if one and batch:
    print(f"record_batch over 10k series: {batch / one:.2f}x record one by one, the same run")
PY
