#!/usr/bin/env bash
# Idle CPU of the agent's serial source: the agent (embedded store, nothing to send) for
# SECONDS (default 30) with no serial device, with one device connected and silent (a Unix
# socket that accepts and says nothing: the device's hello never comes, so the gateway repeats
# its own every 2 s and its time request every second), and with one device absent (reopened
# with a backoff up to 5 s). Prints the CPU each used (utime + stime, in clock ticks of 10 ms)
# and the difference to the agent without serial devices.
#
#   scripts/bench-serial-idle.sh [SECONDS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-30}"
cd "$root"
cargo build --release -q -p chouette-agent
agent="${CARGO_TARGET_DIR:-$root/target}/release/chouette"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A silent device: accepts one connection and holds it open.
python3 - "$work/silent.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
conn, _ = s.accept()
time.sleep(3600)
PY
for _ in $(seq 50); do [ -S "$work/silent.sock" ] && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # name, SERIAL_DEVICES
  local dir="$work/$1"; mkdir -p "$dir"
  env -i PATH="$PATH" CHOUETTE_STATE_DIR="$dir" DATADOG_URL=http://127.0.0.1:9 API_KEY=x \
    SEND_SELF_METRICS=false SERIAL_DEVICES="$2" "$agent" >"$dir/log" 2>&1 &
  local pid=$!
  sleep 2 # startup is not idle
  local before; before=$(cpu_ticks "$pid")
  sleep "$seconds"
  local after; after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo $((after - before))
}

base=$(run none '[]')
silent=$(run silent "[\"unix:$work/silent.sock\"]")
absent=$(run absent "[\"unix:$work/absent.sock\"]")
printf '%-34s %12s %14s\n' "agent over ${seconds} s idle" "CPU ticks" "vs no serial"
printf '%-34s %12s %14s\n' "no serial device" "$base" "-"
printf '%-34s %12s %+14d\n' "one device, connected and silent" "$silent" $((silent - base))
printf '%-34s %12s %+14d\n' "one device, absent" "$absent" $((absent - base))
echo "(one tick = 10 ms of CPU; ${seconds} s = $((seconds * 100)) ticks of one core)"
