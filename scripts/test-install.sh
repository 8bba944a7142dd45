#!/usr/bin/env bash
# Tests scripts/install.sh into a temporary root (no root needed, no systemctl), and that
# deploy/chouette.env names every variable of docs/configuration.md.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-install: FAIL: $*" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Every variable documented in docs/configuration.md is in the env file, commented out.
for var in $(grep -o '^| `[A-Z][A-Z0-9_]*`\(, `[A-Z][A-Z0-9_]*`\)*' docs/configuration.md | grep -o '[A-Z][A-Z0-9_]*' | sort -u); do
  grep -q "^#$var=" deploy/chouette.env || fail "deploy/chouette.env lacks #$var="
done
if grep -v '^#' deploy/chouette.env | grep -q '[^[:space:]]'; then
  fail "deploy/chouette.env sets a variable: every line must be a comment"
fi

# A stand-in binary: the installer copies whatever it is given.
printf '#!/bin/sh\necho chouette test\n' > "$tmp/chouette"
root="$tmp/root"

scripts/install.sh --root "$root" "$tmp/chouette" > "$tmp/out"
[ -x "$root/usr/local/bin/chouette" ] || fail "binary not installed"
[ "$("$root/usr/local/bin/chouette")" = "chouette test" ] || fail "binary not the one given"
cmp -s deploy/chouette.service "$root/etc/systemd/system/chouette.service" || fail "unit differs"
cmp -s deploy/chouette.env "$root/etc/chouette/chouette.env" || fail "env file differs"
[ "$(stat -c %a "$root/etc/chouette/chouette.env")" = 600 ] || fail "env file not 0600"
grep -q "systemd not managed here" "$tmp/out" || fail "systemctl should not run under --root"

# An existing env file is kept; the binary and unit are replaced.
echo 'API_KEY=secret' > "$root/etc/chouette/chouette.env"
printf '#!/bin/sh\necho chouette v2\n' > "$tmp/chouette"
scripts/install.sh --root "$root" "$tmp/chouette" > "$tmp/out"
grep -q "kept the existing" "$tmp/out" || fail "no 'kept' message"
[ "$(cat "$root/etc/chouette/chouette.env")" = 'API_KEY=secret' ] || fail "env file overwritten"
[ "$("$root/usr/local/bin/chouette")" = "chouette v2" ] || fail "binary not replaced"

# --prefix: the unit's ExecStart follows the binary.
scripts/install.sh --root "$tmp/root2" --prefix /opt/chouette "$tmp/chouette" > /dev/null
[ -x "$tmp/root2/opt/chouette/bin/chouette" ] || fail "--prefix binary"
grep -q '^ExecStart=/opt/chouette/bin/chouette run$' "$tmp/root2/etc/systemd/system/chouette.service" \
  || fail "--prefix ExecStart"

# A missing binary and a bad option are errors, not silent successes.
if scripts/install.sh --root "$tmp/root3" "$tmp/nonexistent" 2> /dev/null; then fail "missing binary accepted"; fi
set +e; scripts/install.sh --bogus > /dev/null 2>&1; code=$?; set -e
[ "$code" = 2 ] || fail "unknown option: exit $code, expected 2"

# --uninstall keeps configuration and state; --purge removes them.
mkdir -p "$root/var/lib/chouette" && touch "$root/var/lib/chouette/chouette.redb"
scripts/install.sh --root "$root" --uninstall > /dev/null
[ ! -e "$root/usr/local/bin/chouette" ] || fail "binary left after --uninstall"
[ ! -e "$root/etc/systemd/system/chouette.service" ] || fail "unit left after --uninstall"
[ -f "$root/etc/chouette/chouette.env" ] || fail "--uninstall removed the env file"
[ -f "$root/var/lib/chouette/chouette.redb" ] || fail "--uninstall removed the state"
scripts/install.sh --root "$root" --uninstall --purge > /dev/null
[ ! -e "$root/etc/chouette" ] || fail "--purge left /etc/chouette"
[ ! -e "$root/var/lib/chouette" ] || fail "--purge left the state"

echo "test-install: ok"
