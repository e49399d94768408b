#!/usr/bin/env bash
# make test-dist: runs the distribution checks in tests/dist/ against the
# artefacts in dist/ (static binaries, .debs, staged image binary) and prints
# one total line. Run it through `make test-dist`, which builds and installs
# what the checks need first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

passed=0 failed=0 skipped=0 broken=()
run() {
    local out rc line log
    log=$(mktemp)
    "$@" 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}
    out=$(cat "$log"); rm -f "$log"
    line=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' <<<"$out" | tail -1)
    if [ -z "$line" ]; then broken+=("$1 (exit $rc, no summary)"); failed=$((failed + 1)); return; fi
    read -r p f s < <(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped/\1 \2 \3/' <<<"$line")
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || { broken+=("$1 (exit $rc)"); failed=$((failed + 1)); }
}

run tests/dist/static.sh
run tests/dist/deb-lint.sh dist/oracle-watchdog_"$version"-*_amd64.deb dist/oracle-watchdog_"$version"-*_arm64.deb
run tests/dist/deb-install.sh dist/oracle-watchdog_"$version"-*_"$arch".deb
run tests/dist/docker.sh
run tests/dist/prometheus.sh

[ ${#broken[@]} -eq 0 ] || printf 'broken test script: %s\n' "${broken[@]}"
echo
echo "test-dist: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
