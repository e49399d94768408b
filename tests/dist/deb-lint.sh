#!/usr/bin/env bash
# Lints the built .debs and checks their contents per architecture.
# Usage: tests/dist/deb-lint.sh DEB...
# lintian must report no errors and no warnings: the few tags that do not
# fit a static Rust binary are overridden, each with its reason, in
# debian/lintian-overrides (shipped in the package). Info tags are printed
# (e.g. spelling in dependencies' strings) but do not fail.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034  # read by finish in lib.sh
DIST_NAME="deb-lint"
source "$here/lib.sh"
echo "== lintian and package contents"

[ $# -gt 0 ] || { bad "no packages given"; finish; exit; }
if ! command -v lintian >/dev/null; then bad "lintian missing (Debian lintian)"; finish; exit; fi
first_list=""
for deb in "$@"; do
    name=$(basename "$deb")
    [ -f "$deb" ] || { bad "$name: missing (make deb)"; continue; }
    out=$(lintian --pedantic --info --display-info "$deb" 2>&1 | grep -v 'running with root privileges')
    errors=$(grep -c '^E:' <<<"$out"); warnings=$(grep -c '^W:' <<<"$out")
    infos=$(grep -Ec '^(I|P):' <<<"$out")
    overridden=$(lintian --show-overrides "$deb" 2>/dev/null | grep -c '^O:')
    if [ "$errors" -eq 0 ] && [ "$warnings" -eq 0 ]; then
        ok "$name: lintian 0 errors, 0 warnings, $infos info/pedantic, $overridden overridden (see debian/lintian-overrides)"
    else
        bad "$name: lintian $errors errors, $warnings warnings"; grep -E '^(E|W):' <<<"$out" | sed 's/^/        /'
    fi
    grep -E '^(I|P):' <<<"$out" | sed 's/^/        /'

    arch=$(dpkg-deb -f "$deb" Architecture)
    want=$([ "$arch" = arm64 ] && echo "ARM aarch64" || echo "x86-64")
    tmp=$(mktemp -d); dpkg-deb -x "$deb" "$tmp"
    desc=$(file -b "$tmp/usr/bin/oracle-watchdog")
    [[ "$desc" == *"$want"* && "$desc" == *static* ]] && ok "$name: /usr/bin/oracle-watchdog is $want, static" \
        || bad "$name: /usr/bin/oracle-watchdog is $desc"
    list=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' | sort)
    rm -rf "$tmp"
    if [ -z "$first_list" ]; then first_list=$list
    elif [ "$list" = "$first_list" ]; then ok "$name: same files and modes as the first package"
    else bad "$name: contents differ from the first package"; diff <(echo "$first_list") <(echo "$list") | sed 's/^/        /'
    fi
    printf '        %s: %d bytes, %s\n' "$name" "$(stat -c %s "$deb")" "$(dpkg-deb -f "$deb" Version Installed-Size | paste -sd' ')"
done
finish
