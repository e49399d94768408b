#!/usr/bin/env bash
# Builds the oracle-watchdog .deb for one architecture from debian/ and a
# prebuilt static binary, with plain dpkg-deb (no debhelper, no cargo-deb).
# Usage: scripts/build-deb.sh ARCH BINARY OUTDIR    (ARCH: amd64 or arm64)
# Prints the path of the package it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 3 ] || { echo "usage: $0 amd64|arm64 BINARY OUTDIR" >&2; exit 2; }
arch=$1 bin=$2 out=$3
case "$arch" in amd64|arm64) ;; *) echo "build-deb: unsupported architecture $arch" >&2; exit 2;; esac
[ -x "$bin" ] || { echo "build-deb: $bin: no such executable (run make static)" >&2; exit 2; }

# The package version comes from debian/changelog; its upstream part must
# match Cargo.toml so the binary and the package never disagree.
version=$(sed -n '1s/^oracle-watchdog (\([^)]*\)).*/\1/p' debian/changelog)
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if [ "${version%-*}" != "$cargo_version" ]; then
    echo "build-deb: debian/changelog has $version but Cargo.toml has $cargo_version" >&2
    exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/oracle-watchdog-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/oracle-watchdog

install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
    "$root/etc/oracle-watchdog" "$root/etc/default" "$doc" \
    "$root/usr/share/man/man8" "$root/usr/share/lintian/overrides"
install -m 0755 "$bin" "$root/usr/bin/oracle-watchdog"
install -m 0644 debian/oracle-watchdog.service "$root/lib/systemd/system/oracle-watchdog.service"
install -m 0644 debian/config.yaml "$root/etc/oracle-watchdog/config.yaml"
install -m 0644 debian/default "$root/etc/default/oracle-watchdog"
install -m 0644 debian/copyright "$doc/copyright"
install -m 0644 config.example.yaml "$doc/config.example.yaml"
gzip -9n -c debian/changelog > "$doc/changelog.Debian.gz"
gzip -9n -c debian/oracle-watchdog.8 > "$root/usr/share/man/man8/oracle-watchdog.8.gz"
chmod 0644 "$doc/changelog.Debian.gz" "$root/usr/share/man/man8/oracle-watchdog.8.gz"
install -m 0644 debian/lintian-overrides "$root/usr/share/lintian/overrides/oracle-watchdog"

for script in postinst prerm postrm; do
    install -m 0755 "debian/$script" "$root/DEBIAN/$script"
done
install -m 0644 debian/conffiles "$root/DEBIAN/conffiles"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
grep -v '^#' debian/control \
    | sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    > "$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/oracle-watchdog_${version}_${arch}.deb
# Reproducible: fixed mtimes, root ownership, sorted by dpkg-deb itself.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d "$(sed -n 's/^ -- .*>  //p' debian/changelog | head -1)" +%s)}
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
