#!/usr/bin/env bash
# Cross-builds the agent, `chouette`, as a static musl binary for an ARM board, with the
# workspace's size-tuned release profile:
#
#   scripts/cross-build.sh TARGET
#     aarch64-unknown-linux-musl        Raspberry Pi 3/4/5 on a 64-bit OS, every Jetson
#     armv7-unknown-linux-musleabihf    Raspberry Pi 2/3/4 on a 32-bit OS
#
# Output: target/TARGET/release/chouette (its path is the last line printed).
# zig (PyPI's `ziglang`) is the C compiler and linker through cargo-zigbuild (ring compiles C).
# Both come from PyPI when missing (cargo-zigbuild from crates.io if PyPI's wheel fails).
# Both build std from source on the nightly toolchain (-Zbuild-std; armv7 musl's std cannot be
# downloaded here anyway), with panic = "abort" and without unwind tables: rustup's prebuilt
# std is built to unwind and carries debug info, which makes LLVM give every function of the
# LTO'd program an .eh_frame entry (362 KB of 2.54 MB on aarch64, measured) although nothing
# unwinds here (the release profile aborts on panic). On aarch64, std, core and alloc keep the
# opt-level 3 of rustup's prebuilt std, so the hot paths run the same code as before; armv7's
# std keeps the release profile's "z", as before.
# What is missing is installed; what cannot be installed is said, and the script exits 3.
#
# Exit codes: 0 built; 1 the build failed; 2 usage; 3 skipped (a tool or target could not be
# installed: nothing was built).
set -euo pipefail
cd "$(dirname "$0")/.."

EXIT_SKIPPED=3
skip() { echo "cross-build: SKIPPED: $*" >&2; exit "$EXIT_SKIPPED"; }
note() { echo "cross-build: $*" >&2; }

target="${1:-}"
std_opt=()
case "$target" in
  aarch64-unknown-linux-musl)
    for krate in core alloc std; do std_opt+=(--config "profile.release.package.$krate.opt-level=3"); done ;;
  armv7-unknown-linux-musleabihf) ;;
  # The same static build for this machine: what scripts/bench-dogstatsd.sh measures.
  x86_64-unknown-linux-musl)
    for krate in core alloc std; do std_opt+=(--config "profile.release.package.$krate.opt-level=3"); done ;;
  *) echo "usage: scripts/cross-build.sh aarch64-unknown-linux-musl|armv7-unknown-linux-musleabihf|x86_64-unknown-linux-musl" >&2; exit 2 ;;
esac

command -v rustup > /dev/null || skip "rustup not found: cannot add the $target target"

# zig: on PATH, or PyPI's ziglang (cargo-zigbuild finds `python3 -m ziglang` itself).
if ! command -v zig > /dev/null && ! python3 -c 'import ziglang' 2> /dev/null; then
  note "installing zig from PyPI (ziglang)"
  python3 -m pip install -q ziglang > /dev/null 2>&1 || skip "zig is not installed and 'pip install ziglang' failed"
fi
# cargo-zigbuild: PyPI's prebuilt wheel takes seconds; `cargo install` (minutes) if that fails.
py_scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2> /dev/null || true)"
[ -z "$py_scripts" ] || PATH="$PATH:$py_scripts"
if ! command -v cargo-zigbuild > /dev/null; then
  note "installing cargo-zigbuild"
  python3 -m pip install -q cargo-zigbuild > /dev/null 2>&1 || true
  if ! command -v cargo-zigbuild > /dev/null; then
    cargo install -q cargo-zigbuild --locked \
      || skip "cargo-zigbuild is not installed and neither 'pip install cargo-zigbuild' nor 'cargo install cargo-zigbuild' worked"
  fi
fi

# Panic locations carry their source file's path. Dependencies' paths are shortened from
# $CARGO_HOME/registry/src/index.crates.io-<hash>/ring-0.17.14/src/... to ring-0.17.14/src/...:
# about 10 KB less (aarch64, measured), and no path of the build machine in the binary.
# (RUSTFLAGS given by the caller come first; they apply to the target, not to build scripts.)
for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  if [ -d "$registry" ]; then export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$registry="; fi
done

if ! rustup toolchain list | grep -q "^nightly"; then
  note "installing the nightly toolchain (minimal, with rust-src): $target's std is built from source"
  rustup toolchain install nightly --profile minimal --component rust-src > /dev/null 2>&1 \
    || skip "$target needs the nightly toolchain (its std is built from source), and rustup cannot install it"
fi
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  note "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly > /dev/null 2>&1 \
    || skip "rustup cannot add rust-src to nightly, needed to build $target's std"
fi
# std from source, with the release profile's panic = "abort" and no unwind tables (see the
# top), and without std's `backtrace` feature (cargo's default for build-std): its symbolizer
# (gimli, addr2line, object, rustc-demangle) was 164 KB of the aarch64 binary, useless in a
# stripped binary, and the agent's panic hook prints no backtrace; zig links, with its own musl crt objects rather than rustc's self-contained ones (not
# shipped for these targets in the nightly toolchain here).
RUSTFLAGS="${RUSTFLAGS:-} -C link-self-contained=no -C force-unwind-tables=no" \
  cargo +nightly zigbuild --release --locked -p chouette-agent --bin chouette --target "$target" \
  "${std_opt[@]}" -Zbuild-std=std,panic_abort -Zbuild-std-features=panic-unwind || exit 1

out="target/$target/release/chouette"
[ -f "$out" ] || { note "the build succeeded but $out is missing"; exit 1; }
note "$(file -b "$out" 2> /dev/null || true)"
note "$(stat -c %s "$out") bytes"
echo "$out"
