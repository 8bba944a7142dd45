#!/usr/bin/env bash
# Flash bytes of each JSON parser in a no_std build: json-size (json-eval/size/), a bare-metal
# program for thumbv7em-none-eabihf (a Cortex-M4F, like the MCU shell's), linked with fat LTO and
# --gc-sections, once per feature set; `llvm-size` text + data of each, less the baseline's (no
# parser linked), is what that parser and everything only it pulls in costs.
#   json-eval/size.sh            opt-levels "s" (a firmware's) and 3 (the core's in the agent)
set -euo pipefail
cd "$(dirname "$0")"
target=thumbv7em-none-eabihf
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" >/dev/null 2>&1 || { echo "SKIPPED: rustup cannot install $target"; exit 3; }
fi
target_dir="${CARGO_TARGET_DIR:-target}"
echo "| opt-level | parsers linked | text + data, bytes | cost over the baseline |"
echo "|---|---|---|---|"
for opt in s 3; do
  base=""
  for feats in "" "scanner" "serde" "serde,refuse-numeric-members" "scanner,log" "serde,log"; do
    CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" cargo build --locked --release -q -p chouette-json-eval-size \
      --target "$target" --features "$feats"
    bin="$target_dir/$target/release/json-size"
    bytes=$(llvm-size --format=berkeley "$bin" | awk 'NR == 2 { print $1 + $2 }')
    base="${base:-$bytes}"
    label="${feats:-none (baseline)}"
    label="${label/scanner/scanner: raw + wrapped}"
    label="${label/serde/serde-json-core: raw + wrapped}"
    label="${label/,log/ + log}"
    label="${label/,refuse-numeric-members/, numeric members refused (no float formatting)}"
    echo "| $opt | $label | $bytes | $((bytes - base)) |"
  done
done
