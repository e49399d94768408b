#!/usr/bin/env bash
# Installs the amd64 .deb into a throwaway root and checks files,
# permissions, the conffile and the maintainer scripts, with and without a
# running systemd. Usage: tests/dist/deb-install.sh PATH/TO/oracle-watchdog_*_amd64.deb
#
# The throwaway root is an overlay of this (Debian) machine's own root in a
# private mount namespace: real dpkg, adduser and deb-systemd-helper run the
# real maintainer scripts, every write lands in a temporary upper layer that
# is thrown away at the end, and the host is untouched. Needs root and
# overlayfs; skips with the reason otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034  # read by finish in lib.sh
DIST_NAME="deb-install"
source "$here/lib.sh"

deb=${1:?usage: $0 DEB}
deb=$(readlink -f "$deb")
echo "== install $(basename "$deb") into a throwaway root"

if [ "$(id -u)" -ne 0 ]; then skip "needs root (overlay mount, chroot, dpkg)"; finish; exit; fi
if ! command -v unshare >/dev/null || ! command -v dpkg >/dev/null; then
    skip "needs unshare and dpkg (a Debian host)"; finish; exit
fi
if getent passwd oracle-watchdog >/dev/null || dpkg-query -W oracle-watchdog >/dev/null 2>&1; then
    bad "the host already has the oracle-watchdog user or package: the install checks would not be meaningful"
    finish; exit
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ow-debroot.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/root" "$scratch/in"
cp "$deb" "$scratch/in/"
cp "$here/lib.sh" "$here/deb-install-inside.sh" "$scratch/in/"

# The mounts exist only inside this namespace and vanish with it.
set +e
unshare --mount --propagation private bash -euo pipefail -c '
    s=$1
    if ! mount -t overlay overlay -o "lowerdir=/,upperdir=$s/upper,workdir=$s/work" "$s/root" 2>"$s/mount.err"; then
        echo "  skip  overlayfs not available here: $(cat "$s/mount.err")"; exit 77
    fi
    mount --bind /dev "$s/root/dev"
    mount -t proc proc "$s/root/proc"
    mount -t tmpfs tmpfs "$s/root/run"
    mount -t tmpfs tmpfs "$s/root/tmp"
    mkdir -p "$s/root/tmp/in"
    mount --bind "$s/in" "$s/root/tmp/in"
    exec chroot "$s/root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 bash /tmp/in/deb-install-inside.sh "/tmp/in/$2" "$3"
' _ "$scratch" "$(basename "$deb")" "$DIST_VERSION"
rc=$?
set -e
if [ $rc -eq 77 ]; then skip "throwaway root unavailable"; finish; exit; fi
exit $rc
