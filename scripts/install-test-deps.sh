#!/usr/bin/env bash
# Installs what the integration tests run against: a real Redis, a real VictoriaMetrics and a real
# InfluxDB 1.6 (Debian packages), and the original Python client from PyPI (to write records
# exactly as existing apps do). Tests start their own servers on free loopback ports and stop them.
set -euo pipefail
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
# The TLS Redis tests make their CA and certificates with it.
command -v openssl >/dev/null || need_apt+=(openssl)
command -v victoria-metrics >/dev/null || need_apt+=(victoria-metrics)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi
  "${apt[@]}" update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q "${need_apt[@]}" >/dev/null
fi
# Redis and VictoriaMetrics are started by the tests; stop the service apt may have started.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi
# InfluxDB 1.6 (Debian's `influxdb`) is the strict line-protocol oracle. It is not installed as a
# service: its package is unpacked into a cache directory, and the tests find `influxd` there
# (or wherever CHOUETTE_INFLUXD points, or on the PATH).
influx_dir="${XDG_CACHE_HOME:-$HOME/.cache}/chouette/influxdb"
if [ -z "${CHOUETTE_INFLUXD:-}" ] && ! command -v influxd >/dev/null && [ ! -x "$influx_dir/usr/bin/influxd" ]; then
  download=$(mktemp -d)
  (cd "$download" && apt-get download -q influxdb >/dev/null 2>&1) \
    || { if [ "$(id -u)" = 0 ]; then apt-get update -q >/dev/null; else sudo apt-get update -q >/dev/null; fi
         (cd "$download" && apt-get download -q influxdb >/dev/null 2>&1); }
  mkdir -p "$influx_dir"
  dpkg -x "$download"/influxdb_*.deb "$influx_dir"
  rm -rf "$download"
fi
python3 -c 'import chouette_iot_client' 2>/dev/null \
  || python3 -m pip install -q 'chouette-iot-client==0.0.1' 'redis>=3.5' \
  || echo "note: could not install the Python chouette-iot-client; the test that uses it will fail"
# The official Datadog client (DogStatsD), for tests/tests/dogstatsd_e2e.rs.
python3 -c 'import datadog' 2>/dev/null \
  || python3 -m pip install -q 'datadog>=0.49' \
  || echo "note: could not install the Python datadog client; tests/tests/dogstatsd_e2e.rs will fail"
# The demo firmware's Rust target and QEMU (tests/tests/firmware_qemu.rs); in CI a failure fails.
if ! "$(dirname "$0")/install-firmware-deps.sh"; then
  [ "${CI:-}" = true ] && { echo "install-test-deps: the firmware's dependencies did not install" >&2; exit 1; }
  echo "note: could not install the firmware's dependencies; tests/tests/firmware_qemu.rs will fail"
fi
influxd_path="${CHOUETTE_INFLUXD:-$(command -v influxd || echo "$influx_dir/usr/bin/influxd")}"
echo "test dependencies: redis-server $(redis-server --version | awk '{print $3}'), victoria-metrics, influxd $("$influxd_path" version 2>/dev/null | awk '{print $2}') ($influxd_path), chouette-iot-client, datadog $(python3 -c 'import datadog; print(datadog.__version__)' 2>/dev/null)"
