#!/usr/bin/env bash
# The shipping check (CI runs it after the tests): verifies the systemd unit with
# systemd-analyze, builds the static aarch64 binary with
# scripts/cross-build.sh, checks its size budget, and runs it under qemu-aarch64-static:
# `chouette --version`, then an end-to-end smoke (a real Redis on loopback, one raw metric in
# the original's layout, the agent in an explicit dry run (CHOUETTE_DRY_RUN=true) prints the
# point and empties the raw queue,
# SIGTERM gives exit 0).
#
#   scripts/ship-check.sh [--armv7]
#     --armv7   also build armv7-unknown-linux-musleabihf (nightly, std from source: about 5 min
#               more here) and run its --version and the smoke under qemu-arm-static
#
# Where a tool or target cannot be installed, the step prints a loud "SKIPPED: ..." line and
# the script goes on (exit 0): it never reports as checked what was not run.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_BUDGET_BYTES=2500000  # 2.5 MB, stripped aarch64 binary
with_armv7=0
for arg in "$@"; do
  case "$arg" in
    --armv7) with_armv7=1 ;;
    *) echo "usage: scripts/ship-check.sh [--armv7]" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }
skipped() { printf '\n!!!!!!!! SKIPPED: %s\n\n' "$*"; }
fail() { echo "ship-check: FAIL: $*" >&2; exit 1; }
started=$(date +%s)

apt_install() {  # apt_install PACKAGE: true if it ends up installed
  local apt=(apt-get)
  [ "$(id -u)" = 0 ] || apt=(sudo -n apt-get)
  "${apt[@]}" install -y -q "$1" > /dev/null 2>&1 && return 0
  "${apt[@]}" update -q > /dev/null 2>&1 || return 1
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q "$1" > /dev/null 2>&1
}

# cross_build TARGET: prints the binary's path; returns 3 when skipped.
cross_build() {
  local code=0 out
  out=$(scripts/cross-build.sh "$1" | tail -n 1) || code=$?
  [ "$code" = 0 ] && { echo "$out"; return 0; }
  [ "$code" = 3 ] && return 3
  fail "scripts/cross-build.sh $1 failed (exit $code)"
}

# check_binary PATH ARCH-WORD: static, stripped, the right machine.
check_binary() {
  local desc
  desc=$(file -b "$1")
  echo "$1: $desc"
  [[ "$desc" == *"$2"* ]] || fail "$1 is not an $2 binary"
  [[ "$desc" == *"statically linked"* || "$desc" == *"static-pie linked"* ]] || fail "$1 is not static"
  [[ "$desc" == *", stripped"* ]] || fail "$1 is not stripped"
}

ensure_qemu() {  # ensure_qemu NAME: true if qemu-NAME-static is (now) on PATH
  command -v "qemu-$1-static" > /dev/null && return 0
  echo "installing qemu-user-static (Debian)"
  apt_install qemu-user-static && command -v "qemu-$1-static" > /dev/null
}

# --- the systemd unit ---------------------------------------------------------------------------
step "systemd-analyze verify deploy/chouette.service"
if command -v systemd-analyze > /dev/null; then
  unit_tmp=$(mktemp -d)
  # verify checks that ExecStart's binary exists: point it at one that does.
  sed "s|^ExecStart=/usr/local/bin/chouette|ExecStart=$(command -v true)|" deploy/chouette.service > "$unit_tmp/chouette.service"
  verify_out=$(systemd-analyze verify "$unit_tmp/chouette.service" 2>&1) || fail "systemd-analyze verify: $verify_out"
  [ -z "$verify_out" ] || fail "systemd-analyze verify warned: $verify_out"
  systemd-analyze security --offline=true "$unit_tmp/chouette.service" 2> /dev/null | tail -n 1 || true
  rm -rf "$unit_tmp"
  echo "unit verified"
else
  skipped "systemd-analyze not installed: deploy/chouette.service not verified"
fi

# --- aarch64: build, size, --version ---------------------------------------------------------
step "cross-build aarch64-unknown-linux-musl"
code=0
bin=$(cross_build aarch64-unknown-linux-musl) || code=$?
if [ "$code" = 3 ]; then
  skipped "aarch64-unknown-linux-musl could not be built here (see the cross-build line above): no size, qemu or smoke check ran"
  exit 0
fi
check_binary "$bin" "ARM aarch64"

step "size budget"
size=$(stat -c %s "$bin")
awk -v b="$bin" -v s="$size" -v m="$SIZE_BUDGET_BYTES" 'BEGIN { printf "%s: %d bytes (%.2f MB), budget %d bytes\n", b, s, s / 1e6, m }'
[ "$size" -le "$SIZE_BUDGET_BYTES" ] || fail "the stripped aarch64 binary is $size bytes, over the $SIZE_BUDGET_BYTES-byte budget"

step "chouette --version under qemu-aarch64-static"
if ! ensure_qemu aarch64; then
  skipped "qemu-aarch64-static is not installed and could not be installed: the aarch64 binary was built but not run"
  exit 0
fi
version=$(qemu-aarch64-static "$bin" --version)
echo "$version"
[[ "$version" == "chouette "* ]] || fail "unexpected --version output: $version"

# --- end-to-end smoke under emulation ----------------------------------------------------------
# smoke QEMU BINARY: one raw metric in the original layout, a dry run, SIGTERM.
smoke() {
  local qemu="$1" bin="$2" tmp port ts ok code
  tmp=$(mktemp -d)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" > "$tmp/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do rcli "$port" PING 2> /dev/null | grep -q PONG && break; sleep 0.1; done
  rcli "$port" PING | grep -q PONG || fail "redis-server did not start on port $port"

  ts=$(($(date +%s) - 180))
  rcli "$port" ZADD chouette:metrics:raw.keys "$ts" smoke-1 > /dev/null
  rcli "$port" HSET chouette:metrics:raw.values smoke-1 \
    "{\"metric\": \"smoke\", \"type\": \"count\", \"value\": 1, \"timestamp\": $ts, \"tags\": {}}" > /dev/null

  # A dry run on a Redis deletes what it prints: it must be asked for (without
  # CHOUETTE_DRY_RUN=true the agent refuses to start, exit 2).
  env -i PATH="$PATH" REDIS_URL="redis://127.0.0.1:$port/0" CHOUETTE_DRY_RUN=true RELEASE_INTERVAL=1 SEND_SELF_METRICS=false \
    "$qemu" "$bin" > "$tmp/agent.out" 2> "$tmp/agent.err" &
  agent_pid=$!
  ok=0
  for _ in $(seq 600); do  # up to 60 s: emulation is slow on a busy machine
    if grep -q '^smoke{' "$tmp/agent.out" && [ "$(rcli "$port" ZCARD chouette:metrics:raw.keys)" = 0 ]; then ok=1; break; fi
    kill -0 "$agent_pid" 2> /dev/null || break
    sleep 0.1
  done
  kill -TERM "$agent_pid" 2> /dev/null || true
  code=0
  wait "$agent_pid" || code=$?
  agent_pid=""
  if [ "$ok" != 1 ] || [ "$code" != 0 ]; then
    echo "--- agent stdout"; cat "$tmp/agent.out"; echo "--- agent stderr"; cat "$tmp/agent.err"
    [ "$ok" = 1 ] || fail "the dry run did not print the smoke point with the raw queue emptied"
    fail "the agent exited $code after SIGTERM, expected 0"
  fi
  grep '^# dry run\|^smoke{' "$tmp/agent.out"
  echo "raw queue: $(rcli "$port" ZCARD chouette:metrics:raw.keys) keys, $(rcli "$port" HLEN chouette:metrics:raw.values) values; exit after SIGTERM: $code"
  [ "$(rcli "$port" HLEN chouette:metrics:raw.values)" = 0 ] || fail "raw values left behind"
  kill "$redis_pid" && wait "$redis_pid" 2> /dev/null || true
  redis_pid=""
  rm -rf "$tmp"
}
rcli() { local port="$1"; shift; redis-cli -p "$port" "$@"; }
redis_pid="" agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill -KILL "$agent_pid" 2> /dev/null || true; fi
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2> /dev/null || true; fi
}
trap cleanup EXIT

have_redis=1
if ! command -v redis-server > /dev/null || ! command -v redis-cli > /dev/null; then have_redis=0; fi

step "smoke under qemu-aarch64-static: Redis, one raw metric, dry run, SIGTERM"
if [ "$have_redis" = 1 ]; then
  smoke qemu-aarch64-static "$bin"
else
  skipped "redis-server/redis-cli not installed (scripts/install-test-deps.sh installs them): no smoke run"
fi

# --- armv7, on request -------------------------------------------------------------------------
if [ "$with_armv7" = 1 ]; then
  step "cross-build armv7-unknown-linux-musleabihf"
  code=0
  bin7=$(cross_build armv7-unknown-linux-musleabihf) || code=$?
  if [ "$code" = 3 ]; then
    skipped "armv7-unknown-linux-musleabihf could not be built here (see above)"
  else
    check_binary "$bin7" "ARM, EABI5"
    echo "$bin7: $(stat -c %s "$bin7") bytes"
    if ensure_qemu arm; then
      step "chouette --version and the smoke under qemu-arm-static"
      version=$(qemu-arm-static "$bin7" --version)
      echo "$version"
      [[ "$version" == "chouette "* ]] || fail "unexpected --version output: $version"
      if [ "$have_redis" = 1 ]; then
        smoke qemu-arm-static "$bin7"
      else
        skipped "redis-server/redis-cli not installed: no armv7 smoke run"
      fi
    else
      skipped "qemu-arm-static not installable: the armv7 binary was built but not run"
    fi
  fi
fi

step "ship-check passed in $(($(date +%s) - started)) s"
