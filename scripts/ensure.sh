#!/usr/bin/env bash
# Idempotently installs what the build and tests need, so `make test` and
# `make static` work on a fresh machine. Usage: scripts/ensure.sh TOPIC...
#   apt PKG...   Debian packages (apt-get update only when something is missing)
#   venv         Python venv at .venv with the test clients (py-consul, oci, pytest)
#   rust-targets the musl targets for static builds
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "ensure: need root to run: $*" >&2; return 1; fi
}

ensure_apt() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "ensure: installing Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Python packages for the independent cross-checks, pinned for repeatability.
PY_PACKAGES=(pytest==9.2.0 py-consul==1.8.0 oci==2.189.0 cloudflare==5.9.0)

ensure_venv() {
    local stamp=.venv/.ensure-stamp want
    want="${PY_PACKAGES[*]}"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then return 0; fi
    echo "ensure: creating .venv with ${PY_PACKAGES[*]}" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
    echo "$want" > "$stamp"
}

ensure_rust_targets() {
    local have
    have=$(rustup target list --installed)
    for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
        grep -qx "$t" <<<"$have" || rustup target add "$t"
    done
}

while [ $# -gt 0 ]; do
    case "$1" in
        apt) shift; pkgs=(); while [ $# -gt 0 ] && [[ "$1" != venv && "$1" != rust-targets ]]; do pkgs+=("$1"); shift; done
             ensure_apt "${pkgs[@]}";;
        venv) shift; ensure_venv;;
        rust-targets) shift; ensure_rust_targets;;
        *) echo "ensure: unknown topic $1" >&2; exit 2;;
    esac
done
