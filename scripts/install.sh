#!/usr/bin/env bash
# Installs the chouette binary and its systemd unit on a board (run as root on the board), or
# into a directory tree for packaging and tests (--root DIR, no root needed).
#
#   scripts/install.sh [OPTIONS] [BINARY]     BINARY defaults to target/release/chouette
#   scripts/install.sh --uninstall [--purge]
#
# Options:
#   --root DIR     install under DIR instead of / (no systemctl is run then)
#   --prefix DIR   binary in DIR/bin (default /usr/local)
#   --uninstall    stop and disable the service, remove the binary and the unit; keeps
#                  /etc/chouette and the state directory
#   --purge        with --uninstall: also remove /etc/chouette and /var/lib/chouette
#   --no-start     install and enable nothing at runtime (no systemctl at all)
#
# Installs BINARY to PREFIX/bin/chouette, deploy/chouette.service to
# /etc/systemd/system/chouette.service, and deploy/chouette.env to /etc/chouette/chouette.env
# (every variable commented out with its default) unless that file exists: an existing
# configuration is never overwritten. Then, when systemd is running and ROOT is /:
# `systemctl daemon-reload && systemctl enable --now chouette`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

root=/ prefix=/usr/local binary="" uninstall=0 purge=0 start=1
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) root="${1#*=}"; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    --no-start) start=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [ -z "$binary" ] || { echo "install.sh: one binary only" >&2; exit 2; }; binary="$1"; shift ;;
  esac
done
if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then
  echo "install.sh: --purge goes with --uninstall" >&2; exit 2
fi

root="${root%/}"  # "" for /
bin_path="$prefix/bin/chouette"
unit_path=/etc/systemd/system/chouette.service
env_path=/etc/chouette/chouette.env

# systemctl only on the live system, and only where systemd is PID 1.
use_systemctl=0
if [ -z "$root" ] && [ "$start" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  use_systemctl=1
fi
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: installing into / needs root (or use --root DIR)" >&2; exit 1
fi

if [ "$uninstall" = 1 ]; then
  if [ "$use_systemctl" = 1 ]; then
    systemctl disable --now chouette 2>/dev/null || true
  fi
  rm -f "$root$bin_path" "$root$unit_path"
  echo "removed $root$bin_path and $root$unit_path"
  if [ "$use_systemctl" = 1 ]; then systemctl daemon-reload; fi
  if [ "$purge" = 1 ]; then
    # DynamicUser= keeps the state in /var/lib/private/chouette behind a /var/lib/chouette link.
    rm -rf "$root/etc/chouette" "$root/var/lib/chouette" "$root/var/lib/private/chouette"
    echo "purged $root/etc/chouette and the state directory $root/var/lib/chouette"
  else
    echo "kept $root/etc/chouette and the state directory $root/var/lib/chouette (--purge removes them)"
  fi
  exit 0
fi

binary="${binary:-$here/target/release/chouette}"
if [ ! -f "$binary" ]; then
  echo "install.sh: no binary at $binary (build it: cargo build --release -p chouette-agent," >&2
  echo "or scripts/cross-build.sh TARGET, then pass target/TARGET/release/chouette)" >&2
  exit 1
fi

install -d -m 0755 "$root$prefix/bin" "$root/etc/systemd/system"
install -m 0755 "$binary" "$root$bin_path"
sed "s|^ExecStart=/usr/local/bin/chouette|ExecStart=$bin_path|" "$here/deploy/chouette.service" > "$root$unit_path.tmp"
chmod 0644 "$root$unit_path.tmp"
mv "$root$unit_path.tmp" "$root$unit_path"
echo "installed $root$bin_path and $root$unit_path"

install -d -m 0755 "$root/etc/chouette"
if [ -e "$root$env_path" ]; then
  echo "kept the existing $root$env_path"
else
  # It will hold the API key: root-only.
  install -m 0600 "$here/deploy/chouette.env" "$root$env_path"
  echo "installed $root$env_path (every variable commented out with its default)"
fi

if [ "$use_systemctl" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --now chouette
  # A running agent picks up a new binary only on restart.
  systemctl restart chouette
  systemctl --no-pager --lines=0 status chouette || true
else
  echo "systemd not managed here (--root, --no-start, or systemd not running): start it with"
  echo "  systemctl daemon-reload && systemctl enable --now chouette"
fi
