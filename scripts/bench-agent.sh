#!/usr/bin/env bash
# The agent's end-to-end benchmark (real Redis and VictoriaMetrics on free loopback ports):
# prints drain and dispatch rates, RSS and idle CPU. Argument: number of raw records (1000000).
set -euo pipefail
exec python3 "$(dirname "$0")/bench_agent.py" "$@"
