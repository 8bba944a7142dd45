#!/usr/bin/env bash
# The agent's end-to-end benchmark (real Redis and VictoriaMetrics on free loopback ports):
# prints drain and dispatch rates as ratios of ceilings measured in the same run, RSS and idle
# CPU. Argument: number of raw records (1000000).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# The agent as it ships: the static musl build (scripts/cross-build.sh, for this machine's
# x86_64), whose allocator returns memory as the boards' binary does. If it cannot be built
# here, the host's glibc release build, said in the table's header.
if bin=$(cd "$root" && scripts/cross-build.sh x86_64-unknown-linux-musl 2>/dev/null | tail -n 1) && [ -x "$root/$bin" ]; then
  export CHOUETTE_BIN="$root/$bin"
else
  echo "note: no static musl build (scripts/cross-build.sh x86_64-unknown-linux-musl); measuring the glibc build" >&2
fi
exec python3 "$root/scripts/bench_agent.py" "$@"
