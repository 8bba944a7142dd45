#!/usr/bin/env bash
# Runs every check of the project: format, lints, tests, docs, the no_std proofs. This is the
# README's test command and what CI runs.
#
# The core has two feature sets, without `alloc` (boards, firmware, the probe) and with it (the
# agent). Cargo unifies features across the packages one command builds, and the agent turns
# `alloc` on, so a workspace run always builds the core with it: the core is also linted and
# tested alone, which builds it without (core/tests/features.rs checks which one was built).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy: the workspace (the core with alloc), then the core alone (without)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p chouette-core --all-targets --locked -- -D warnings

step "tests: the core alone (without alloc), then the workspace (the core with alloc)"
CHOUETTE_EXPECT_ALLOC=0 cargo test -p chouette-core --locked
CHOUETTE_EXPECT_ALLOC=1 cargo test --workspace --locked

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "no_std proofs"
scripts/check-no-std.sh

step "demo firmware: format, lints, size budget (flash 64 KiB, static RAM 32 KiB)"
cargo fmt --manifest-path firmware/Cargo.toml -- --check
(cd firmware && cargo clippy --release --locked -- -D warnings)
scripts/firmware-qemu.sh --size

step "installer (into a temporary root)"
scripts/test-install.sh

step "fuzz targets compile"
cargo check --manifest-path fuzz/Cargo.toml --locked
cargo check --manifest-path boards/fuzz/Cargo.toml --locked
cargo check --manifest-path shell-linux/fuzz/Cargo.toml --locked

step "the JSON comparison compiles (json-eval/: the core's scanner against serde-json-core)"
cargo check --manifest-path json-eval/Cargo.toml --all-targets --locked

step "all checks passed"
