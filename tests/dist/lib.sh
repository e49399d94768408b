# shellcheck shell=bash
# Shared helpers for the distribution tests (sourced, not run).
# Each check prints one line: "ok", "FAIL" or "skip" with what it measured;
# `finish` prints "N passed, N failed, N skipped" and sets the exit code.

DIST_PASSED=0
DIST_FAILED=0
DIST_SKIPPED=0

ok()   { DIST_PASSED=$((DIST_PASSED + 1)); printf '  ok    %s\n' "$*"; }
bad()  { DIST_FAILED=$((DIST_FAILED + 1)); printf '  FAIL  %s\n' "$*"; }
skip() { DIST_SKIPPED=$((DIST_SKIPPED + 1)); printf '  skip  %s\n' "$*"; }

# check DESCRIPTION COMMAND...: ok when COMMAND succeeds; its output is shown on failure.
check() {
    local what=$1 out; shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what"; printf '%s\n' "$out" | sed 's/^/        /' | head -40; fi
}

finish() {
    echo "${DIST_NAME:-dist}: $DIST_PASSED passed, $DIST_FAILED failed, $DIST_SKIPPED skipped"
    [ "$DIST_FAILED" -eq 0 ]
}

# repo root and the version of the build
DIST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIST_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$DIST_ROOT/Cargo.toml" 2>/dev/null | head -1)
