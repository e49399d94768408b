#!/usr/bin/env bash
# Kernel WireGuard test: boots Debian's stock kernel in qemu (TCG, no KVM)
# with an initramfs holding busybox, iproute2's `ip`, `wg`, the wireguard
# module and the static oracle-watchdog + Consul stand-in; the VM's /init
# (tests/wg-kernel/init.sh) runs the checks against two kernel WireGuard
# devices and powers off. Prints the CHECK lines; exits non-zero if a check
# failed or the VM did not finish. Usage: scripts/test-wg-kernel.sh
#   WG_KERNEL_WORK    work dir (default target/wg-kernel; kernel cached there)
#   WG_KERNEL_TIMEOUT seconds before the VM is killed (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WG_KERNEL_WORK:-target/wg-kernel}
TIMEOUT=${WG_KERNEL_TIMEOUT:-300}
MUSL=x86_64-unknown-linux-musl
start=$(date +%s)

scripts/ensure.sh apt qemu-system-x86 busybox-static wireguard-tools iproute2 cpio kmod rust-targets

# 1. The kernel and its modules, unpacked from the .deb (nothing in /boot).
apt-cache policy linux-image-amd64 | grep -q 'Candidate: [0-9]' ||
    apt-get update -qq
kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
[ -n "$kpkg" ] || { echo "cannot tell which kernel linux-image-amd64 depends on" >&2; exit 1; }
kroot=$WORK/kernel/$kpkg
if [ ! -f "$kroot/.done" ]; then
    echo "fetching $kpkg" >&2
    rm -rf "$kroot" && mkdir -p "$kroot/deb"
    (cd "$kroot/deb" && apt-get -q -o APT::Sandbox::User=root download "$kpkg" >/dev/null)
    dpkg -x "$kroot"/deb/*.deb "$kroot/root" && rm -rf "$kroot/deb"
    touch "$kroot/.done"
fi
kver=$(ls "$kroot/root/lib/modules")
depmod -b "$kroot/root" "$kver"
moddir=$kroot/root/lib/modules/$kver

# 2. Static binaries.
cargo build --release --target $MUSL -p oracle-watchdog --bin oracle-watchdog \
    -p watchdog-standins --bin watchdog-standins

# 3. The initramfs.
rootfs=$WORK/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc/wg,lib/modules}
cp /bin/busybox "$rootfs/bin/busybox" && ln -s busybox "$rootfs/bin/sh"
cp /usr/sbin/ip "$rootfs/usr/sbin/ip"   # the file must be named `ip`
cp /usr/bin/wg "$rootfs/usr/bin/wg"
for lib in $(ldd /usr/sbin/ip /usr/bin/wg | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && NF == 2 { print $1 }' | sort -u); do
    cp -L --parents "$lib" "$rootfs/"
done
cp target/$MUSL/release/{oracle-watchdog,watchdog-standins} "$rootfs/usr/bin/"

# Modules in dependency order (each one's dependencies first).
declare -A seen=()
order=()
add_module() {
    [ -n "${seen[$1]:-}" ] && return
    seen[$1]=1
    local dep
    for dep in $(sed -n "s|^$1: *||p" "$moddir/modules.dep"); do add_module "$dep"; done
    order+=("$1")
}
for name in wireguard veth; do
    m=$(grep -oE "^[^:]*/$name\.ko(\.xz|\.zst)?:" "$moddir/modules.dep" | tr -d :)
    [ -n "$m" ] || { echo "no $name module in $kpkg" >&2; exit 1; }
    add_module "$m"
done
: >"$rootfs/lib/modules/load-order"
for m in "${order[@]}"; do
    out=$(basename "${m%.xz}")
    out=${out%.zst}
    case "$m" in
        *.xz) xz -dc "$moddir/$m" ;;
        *.zst) zstd -qdc "$moddir/$m" ;;
        *) cat "$moddir/$m" ;;
    esac >"$rootfs/lib/modules/$out"
    echo "$out" >>"$rootfs/lib/modules/load-order"
done

# Throwaway keys for the two devices.
umask 077
for k in a b; do wg genkey >"$rootfs/etc/wg/$k.key"; wg pubkey <"$rootfs/etc/wg/$k.key" >"$rootfs/etc/wg/$k.pub"; done
wg genpsk >"$rootfs/etc/wg/psk"
umask 022
install -m 755 tests/wg-kernel/init.sh "$rootfs/init"
(cd "$rootfs" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"
echo "initramfs: $(du -h "$WORK/initrd.gz" | cut -f1), modules: ${order[*]##*/}" >&2

# 4. Boot; stream the CHECK lines; the whole serial log stays in $WORK.
log=$WORK/serial.log
echo "booting $kpkg in qemu (TCG), timeout ${TIMEOUT}s; serial log: $log" >&2
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -machine accel=tcg -m 512 -nographic -no-reboot \
    -kernel "$kroot/root/boot/vmlinuz-$kver" -initrd "$WORK/initrd.gz" \
    -nic none -append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1 |
    sed -u 's/\r$//' | tee "$log" | grep --line-buffered -E '^(CHECK |[0-9]+ passed, [0-9]+ failed)'
vm_status=${PIPESTATUS[0]}
set -e

summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
echo "wall time: $(($(date +%s) - start)) s" >&2
if [ -z "$summary" ]; then
    echo "FAIL: the VM did not finish (qemu status $vm_status); last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
failed=${summary##*passed, }
failed=${failed%% failed}
[ "$failed" = 0 ] || { echo "FAIL: $failed kernel WireGuard check(s) failed; see $log" >&2; exit 1; }
echo "ok: kernel WireGuard checks passed"
