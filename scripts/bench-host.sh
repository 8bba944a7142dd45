#!/usr/bin/env bash
# Host collection side by side (issue 13): the agent (`COLLECTOR_PLUGINS='["host"]'`, embedded
# store, shipping to a VictoriaMetrics on a free loopback port) and collectd 5.12 (cpu, memory,
# df, load, interface, writing csv), both every 10 s for the same wall time; prints CPU ms per
# interval, RSS (steady and peak), values per interval, and the ratios agent / collectd.
# Installs nothing: says what is missing. Run by hand (about 2.5 minutes), not in CI.
#
#   scripts/bench-host.sh [--duration 120] [--warmup 25] [--interval 10] [--dogstatsd] [--keep]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

missing=0
if ! command -v collectd >/dev/null && [ ! -x /usr/sbin/collectd ]; then
  echo "missing: collectd (Debian: apt-get install -y collectd-core)" >&2; missing=1
elif [ ! -e /usr/lib/collectd/csv.so ]; then
  echo "missing: collectd's plugins in /usr/lib/collectd (Debian: apt-get install -y collectd-core)" >&2; missing=1
fi
command -v victoria-metrics >/dev/null || { echo "missing: victoria-metrics (scripts/install-test-deps.sh)" >&2; missing=1; }
command -v python3 >/dev/null || { echo "missing: python3" >&2; missing=1; }
[ "$missing" = 0 ] || exit 1

# The agent as it ships: the static musl build (scripts/cross-build.sh, for this machine's
# x86_64), whose allocator returns memory as the boards' binary does. If it cannot be built
# here, the host's glibc release build, said in the table's header.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
agent=()
if out=$(cd "$root" && scripts/cross-build.sh x86_64-unknown-linux-musl 2>/dev/null | tail -n 1) \
  && bin="$target_dir/x86_64-unknown-linux-musl/release/chouette" && [ -n "$out" ] && [ -x "$bin" ]; then
  agent=(--chouette-bin "$bin")
else
  echo "note: no static musl build (scripts/cross-build.sh x86_64-unknown-linux-musl); measuring the glibc build" >&2
  (cd "$root" && cargo build -q --release -p chouette-agent --bin chouette)
  agent=(--chouette-bin "$target_dir/release/chouette")
fi

exec python3 "$root/scripts/bench_host.py" "${agent[@]}" "$@"
