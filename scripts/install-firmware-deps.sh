#!/usr/bin/env bash
# Installs what the demo firmware needs (issue 11): the thumbv7m-none-eabi Rust target (the
# lm3s6965evb's Cortex-M3) and qemu-system-arm from bookworm-backports. Plain bookworm's QEMU 7.2
# would downgrade the qemu-utils already on the machine, so the backports suite is added, derived
# from the machine's own Debian source (same mirror, same keyring): no host is written here.
# With CI=true a failed install fails the script; otherwise it says so and exits 1 as well (the
# caller decides).
set -euo pipefail

if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi

if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7m-none-eabi; then
  rustup target add thumbv7m-none-eabi >/dev/null
fi

if ! command -v qemu-system-arm >/dev/null; then
  backports=/etc/apt/sources.list.d/chouette-bookworm-backports.sources
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src=""
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
      if [ -f "$f" ] && grep -q '^Suites:.*\bbookworm\b' "$f"; then src=$f; break; fi
    done
    if [ -n "$src" ]; then
      # The first stanza whose suites include plain bookworm, with Suites: set to backports.
      awk 'BEGIN { RS = ""; ORS = "\n\n" }
           /\nSuites:[^\n]*bookworm( |\n|$)/ && !done { gsub(/Suites:[^\n]*/, "Suites: bookworm-backports"); print; done = 1 }' \
        "$src" | "${sudo[@]}" tee "$backports" >/dev/null
    elif grep -qs '^deb .* bookworm ' /etc/apt/sources.list; then
      grep -m1 '^deb .* bookworm ' /etc/apt/sources.list | sed 's/ bookworm / bookworm-backports /' \
        | "${sudo[@]}" tee /etc/apt/sources.list.d/chouette-bookworm-backports.list >/dev/null
    else
      echo "install-firmware-deps: no bookworm apt source to derive bookworm-backports from" >&2
      exit 1
    fi
  fi
  "${sudo[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    -t bookworm-backports qemu-system-arm >/dev/null
fi
echo "firmware dependencies: thumbv7m-none-eabi, $(qemu-system-arm --version | head -n1)"
