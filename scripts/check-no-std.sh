#!/usr/bin/env bash
# Proves chouette-core is no_std and heap-free:
# 1. the probe (probe/), a #![no_std] staticlib with panic = "abort", its own panic handler and
#    no global allocator, builds: anything that links `std` (duplicate panic_impl) or `alloc`
#    ("no global memory allocator found") breaks this build;
# 2. the core, the board drivers and the MCU shell (chouette-mcu) build for thumbv7em-none-eabihf (a Cortex-M4F, which has no std at all), when
#    rustup can install that target; otherwise this says so and skips.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "probe: host build"
cargo build --manifest-path probe/Cargo.toml --release --locked

target=thumbv7em-none-eabihf
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" >/dev/null 2>&1 || true
fi
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "probe and core: $target"
  cargo build --manifest-path probe/Cargo.toml --release --locked --target "$target"
  cargo build -p chouette-core --release --locked --target "$target"
  cargo build -p chouette-boards --release --locked --target "$target"
  cargo build -p chouette-mcu --release --locked --target "$target"
else
  echo "SKIPPED: rustup could not install $target here, so the bare-metal build was not run"
fi
