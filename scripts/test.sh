#!/usr/bin/env bash
# Runs every check of the project: format, lints, tests (both feature sets), docs, the no_std
# proofs. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (default features, then alloc)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --features chouette-core/alloc -- -D warnings

step "tests"
cargo test --workspace --locked
cargo test --workspace --locked --features chouette-core/alloc

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --features chouette-core/alloc

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

step "all checks passed"
