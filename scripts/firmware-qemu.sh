#!/usr/bin/env bash
# Builds the demo firmware (firmware/, issue 11) and runs it under QEMU's lm3s6965evb.
#
#   scripts/firmware-qemu.sh --build-only          build; the ELF's absolute path is the last line
#   scripts/firmware-qemu.sh --size                build; print flash and static RAM, fail over budget
#   scripts/firmware-qemu.sh --serial unix:PATH [--ticks N] [--ack-timeout-ms MS] [--timeout S]
#   scripts/firmware-qemu.sh --serial pty [...]    QEMU prints the pty's path ("char device redirected to")
#   --elf PATH                                     run that ELF instead of building (the test harness)
#
# With --serial unix:PATH QEMU listens on PATH and waits for one client before the firmware
# starts. Semihosting output (the firmware's "demo done: ticks=N") goes to QEMU's stdout, and the
# firmware's exit code is QEMU's. The script execs QEMU, so killing it kills QEMU.
# Installs what is missing through scripts/install-firmware-deps.sh (target, qemu-system-arm).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# Budgets of the demo's release ELF (issue 11: the core must fit a small MCU).
FLASH_BUDGET=$((64 * 1024))
RAM_BUDGET=$((32 * 1024))

mode=run elf="" serial="" ticks="" ack_timeout_ms="" timeout_s=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) mode=build ;;
    --size) mode=size ;;
    --serial) serial="$2"; shift ;;
    --elf) elf="$2"; shift ;;
    --ticks) ticks="$2"; shift ;;
    --ack-timeout-ms) ack_timeout_ms="$2"; shift ;;
    --timeout) timeout_s="$2"; shift ;;
    *) echo "firmware-qemu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7m-none-eabi \
   || { [ "$mode" = run ] && ! command -v qemu-system-arm >/dev/null; }; then
  "$root/scripts/install-firmware-deps.sh" >&2
fi

if [ -z "$elf" ] || [ "$mode" != run ]; then
  target_dir="${CARGO_TARGET_DIR:-$root/firmware/target}"
  mkdir -p "$target_dir"
  target_dir="$(cd "$target_dir" && pwd)"
  (cd "$root/firmware" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked -q >&2)
  elf="$target_dir/thumbv7m-none-eabi/release/chouette-firmware"
fi

case "$mode" in
  build)
    echo "$elf"
    ;;
  size)
    # Section sizes from the ELF's section headers (readelf, binutils): flash holds what is
    # loaded from it, RAM what lives there at run time. The stack is not reserved by a section:
    # cortex-m-rt puts it at the top of RAM, growing down into whatever static RAM leaves.
    declare -A size=([.vector_table]=0 [.text]=0 [.rodata]=0 [.data]=0 [.bss]=0 [.uninit]=0)
    while read -r name hex; do
      [ -n "${size[$name]+set}" ] && size[$name]=$((16#$hex))
    done < <(LC_ALL=C readelf -S -W "$elf" | sed -n 's/^ *\[ *[0-9]*\] *\(\.[^ ]*\) *[A-Z_]* *[0-9a-f]* *[0-9a-f]* *\([0-9a-f]*\) .*/\1 \2/p')
    vt=${size[.vector_table]} text=${size[.text]} rodata=${size[.rodata]} data=${size[.data]}
    bss=$((size[.bss] + size[.uninit]))
    flash=$((vt + text + rodata + data))
    ram=$((data + bss))
    echo "firmware flash: $flash bytes (.vector_table $vt, .text $text, .rodata $rodata, .data $data), budget $FLASH_BUDGET"
    echo "firmware static RAM: $ram bytes (.data $data, .bss+.uninit $bss), budget $RAM_BUDGET; the stack takes the rest of the 64 KiB"
    if [ "$flash" -gt "$FLASH_BUDGET" ] || [ "$ram" -gt "$RAM_BUDGET" ]; then
      echo "firmware-qemu.sh: the demo firmware is over budget" >&2
      exit 1
    fi
    ;;
  run)
    case "$serial" in
      unix:*) chardev="$serial,server=on,wait=on" ;;
      pty) chardev=pty ;;
      *) echo "firmware-qemu.sh: --serial unix:PATH or --serial pty" >&2; exit 2 ;;
    esac
    append=""
    [ -n "$ticks" ] && append="ticks=$ticks"
    [ -n "$ack_timeout_ms" ] && append="$append ack_timeout_ms=$ack_timeout_ms"
    cmd=(qemu-system-arm -M lm3s6965evb -cpu cortex-m3 -display none -monitor none
         -semihosting-config enable=on,target=native -serial "$chardev" -kernel "$elf")
    [ -n "$append" ] && cmd+=(-append "$append")
    if [ -n "$timeout_s" ]; then cmd=(timeout "$timeout_s" "${cmd[@]}"); fi
    exec "${cmd[@]}"
    ;;
esac
