#!/usr/bin/env bash
# DogStatsD end to end, side by side (issue 12's speed section): Chouette, Etsy's statsd (npm
# `statsd`) and collectd's statsd plugin (Debian `collectd-core`), each fed the same paced
# one-line datagrams over 10,000 contexts by `dogstatsd-blast`, at a ladder of rates, plain and
# with DogStatsD tags; prints a table (sent, delivered, loss, kernel drops, peak RSS, CPU) and
# each one's highest lossless rate. Takes several minutes; run by hand, not in CI.
# Options: see scripts/bench_dogstatsd.py (--systems, --modes, --rates, --duration, --contexts).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/chouette"

command -v redis-server >/dev/null && command -v victoria-metrics >/dev/null \
  || "$root/scripts/install-test-deps.sh"

# The peers. A peer that cannot be installed is skipped by the Python side, with a note.
if ! command -v collectd >/dev/null || [ ! -e /usr/lib/collectd/statsd.so ]; then
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi
  { "${apt[@]}" update -q >/dev/null \
      && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends collectd-core >/dev/null; } \
    || echo "note: could not install collectd-core; collectd is skipped" >&2
fi
if [ ! -e "$cache/statsd/node_modules/statsd/stats.js" ]; then
  if command -v npm >/dev/null; then
    mkdir -p "$cache/statsd"
    (cd "$cache/statsd" && npm install -q --no-audit --no-fund statsd >/dev/null 2>&1) \
      || echo "note: could not install npm statsd; statsd is skipped" >&2
  else
    echo "note: npm is missing; statsd is skipped" >&2
  fi
fi

# The load generator, and the agent as it ships: the static musl build (scripts/cross-build.sh,
# for this machine's x86_64), whose allocator returns memory as the boards' binary does. If it
# cannot be built here, the host's glibc release build, said in the table's header.
(cd "$root" && cargo build -q --release -p chouette-tests --no-default-features --bin dogstatsd-blast)
agent=()
if bin=$(cd "$root" && scripts/cross-build.sh x86_64-unknown-linux-musl 2>/dev/null | tail -n 1) && [ -x "$root/$bin" ]; then
  agent=(--chouette-bin "$root/$bin")
else
  echo "note: no static musl build (scripts/cross-build.sh x86_64-unknown-linux-musl); measuring the glibc build" >&2
  (cd "$root" && cargo build -q --release -p chouette-agent --bin chouette)
fi

exec python3 "$root/scripts/bench_dogstatsd.py" "${agent[@]}" "$@"
