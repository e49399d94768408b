#!/usr/bin/env bash
# The static binaries: sizes, static linking, and the aarch64 one running
# `--version` and a full `check` (Consul and OCI stand-ins) under
# qemu-aarch64-static. Usage: tests/dist/static.sh (after make static)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034  # read by finish in lib.sh
DIST_NAME="static"
source "$here/lib.sh"
source "$here/world.sh"
trap world_stop EXIT
echo "== static binaries"

for arch in x86_64 aarch64; do
    bin=$DIST_ROOT/dist/oracle-watchdog-$DIST_VERSION-linux-$arch
    if [ ! -x "$bin" ]; then bad "$bin missing (make static)"; continue; fi
    size=$(stat -c %s "$bin")
    desc=$(file -b "$bin")
    machine=$([ $arch = x86_64 ] && echo x86-64 || echo "ARM aarch64")
    if [[ "$desc" == *"$machine"* && "$desc" == *"static"* && "$desc" == *"stripped"* && "$desc" != *"not stripped"* \
          && "$desc" != *"dynamically linked"* ]]; then
        ok "$arch: $size bytes ($((size / 1024)) KiB), $(grep -Eo 'static(ally|-pie)? linked' <<<"$desc"), stripped"
    else
        bad "$arch: $desc"
    fi
    # TLS roots compiled in (webpki-roots), so scratch needs no CA bundle.
    grep -aq 'ISRG Root X1' "$bin" && grep -aq 'DigiCert Global Root G2' "$bin" \
        && ok "$arch: Mozilla TLS roots embedded (ISRG Root X1, DigiCert Global Root G2 found)" \
        || bad "$arch: no embedded TLS roots found"
    # Small enough to copy around in seconds.
    [ "$size" -le $((8 * 1024 * 1024)) ] && ok "$arch: under 8 MiB" || bad "$arch: $size bytes is over 8 MiB"
done

arm=$DIST_ROOT/dist/oracle-watchdog-$DIST_VERSION-linux-aarch64
qemu=$(command -v qemu-aarch64-static || true)
if [ -z "$qemu" ]; then
    bad "qemu-aarch64-static missing (Debian qemu-user-static)"
elif [ -x "$arm" ]; then
    out=$("$qemu" "$arm" --version 2>&1)
    case "$out" in "oracle-watchdog $DIST_VERSION ("*) true;; *) false;; esac && ok "aarch64 under qemu: --version says '$out'" || bad "aarch64 --version: $out"
    if world_start; then
        out=$("$qemu" "$arm" check -config "$WORLD/host/agent.yaml" 2>&1); rc=$?
        if [ $rc -eq 0 ] && grep -q '^consul .*: ok' <<<"$out" && [ "$(grep -c RUNNING <<<"$out")" -ge 2 ]; then
            ok "aarch64 under qemu: check exits 0 against the Consul and OCI stand-ins"
            sed 's/^/        /' <<<"$out"
        else
            bad "aarch64 check (exit $rc):"; sed 's/^/        /' <<<"$out"
        fi
        printf 'oops: [\n' > "$WORLD/broken.yaml"
        out=$("$qemu" "$arm" check -config "$WORLD/broken.yaml" 2>&1); rc=$?
        [ $rc -eq 2 ] && ok "aarch64 under qemu: check of a broken file exits 2: $(head -1 <<<"$out")" \
            || bad "aarch64 check of a broken file exited $rc: $out"
    else
        bad "could not start the stand-ins"
    fi
fi
finish
