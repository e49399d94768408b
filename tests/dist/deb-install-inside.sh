#!/usr/bin/env bash
# Runs INSIDE the throwaway root made by deb-install.sh (never on a real
# host): installs, upgrades, removes and purges the package, first with no
# systemd running, then with a recording stand-in for a running systemd.
# Usage: deb-install-inside.sh DEB VERSION
set -uo pipefail
source "$(dirname "$0")/lib.sh"
# shellcheck disable=SC2034  # read by finish in lib.sh
DIST_NAME="deb-install"
deb=$1 version=$2
unit=/lib/systemd/system/oracle-watchdog.service
wants=/etc/systemd/system/multi-user.target.wants/oracle-watchdog.service
calls=/tmp/systemctl.calls

# Docker-built hosts carry a policy-rc.d that forbids starting services;
# real nodes do not, and with it deb-systemd-invoke would never act.
rm -f /usr/sbin/policy-rc.d

# A stand-in systemctl that records what the maintainer scripts ask of it.
# Which calls happen at all is what these checks are about.
real_systemctl=$(command -v systemctl || true)
cat > /usr/local/bin/systemctl <<'SH'
#!/bin/sh
echo "$*" >> /tmp/systemctl.calls
# Offline operations on the unit files (preset, enable, mask) are real.
case "$*" in --root=*) exec /usr/bin/systemctl "$@";; esac
case "$*" in
  *--version*) echo "systemd 252 (252)";;
  *is-enabled*) [ -e /etc/systemd/system/multi-user.target.wants/oracle-watchdog.service ] && echo enabled || { echo disabled; exit 1; };;
  *is-active*) exit 3;;
esac
exit 0
SH
chmod 755 /usr/local/bin/systemctl

called() { grep -Eq "$1" "$calls" 2>/dev/null; }
mode_of() { stat -c '%a %U:%G' "$1"; }

upgrade_deb() { # same package with a higher version, to exercise upgrades
    local d=/tmp/up
    rm -rf "$d"; mkdir -p "$d"; dpkg-deb -R "$deb" "$d/root"
    sed -i "s/^Version: .*/Version: ${version}-1+upgradetest/" "$d/root/DEBIAN/control"
    dpkg-deb --root-owner-group -b "$d/root" "$d/up.deb" >/dev/null && echo "$d/up.deb"
}

echo "-- without systemd (no /run/systemd/system)"
: > "$calls"
check "dpkg -i installs the package" dpkg -i "$deb"
[ "$(mode_of /usr/bin/oracle-watchdog)" = "755 root:root" ] && ok "/usr/bin/oracle-watchdog is 755 root:root" \
    || bad "/usr/bin/oracle-watchdog is $(mode_of /usr/bin/oracle-watchdog)"
out=$(/usr/bin/oracle-watchdog --version 2>&1)
case "$out" in "oracle-watchdog $version ("*) true;; *) false;; esac && ok "installed binary runs: $out" || bad "--version said: $out"
for f in "$unit" /etc/oracle-watchdog/config.yaml /etc/default/oracle-watchdog \
         /usr/share/doc/oracle-watchdog/copyright /usr/share/man/man8/oracle-watchdog.8.gz; do
    [ "$(mode_of "$f")" = "644 root:root" ] && ok "$f is 644 root:root" || bad "$f: $(mode_of "$f" 2>&1)"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' oracle-watchdog)
grep -q '^ /etc/oracle-watchdog/config.yaml ' <<<"$conffiles" && ok "config.yaml is a conffile" \
    || bad "config.yaml not a conffile: $conffiles"
grep -q '^ /etc/default/oracle-watchdog ' <<<"$conffiles" && ok "/etc/default/oracle-watchdog is a conffile" \
    || bad "/etc/default/oracle-watchdog not a conffile"
if pw=$(getent passwd oracle-watchdog); then
    IFS=: read -r _ _ uid _ _ home shell <<<"$pw"
    [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "${shell##*/}" = nologin ] && [ ! -e /nonexistent ] \
        && getent group oracle-watchdog >/dev/null \
        && ok "system user created: uid $uid, home $home (absent), shell $shell, group oracle-watchdog" \
        || bad "user looks wrong: $pw"
else
    bad "postinst did not create the oracle-watchdog user"
fi
[ "$(readlink "$wants")" = "$unit" ] && ok "unit enabled: $wants -> $unit" || bad "unit not enabled ($wants)"
called 'start|restart' && bad "started a service without systemd: $(cat "$calls")" \
    || ok "no start attempted without a running systemd"
out=$(/usr/bin/oracle-watchdog check -config /etc/oracle-watchdog/config.yaml 2>&1 | head -1)
[[ "$out" == *": ok (monitor config"* ]] && ok "packaged config.yaml validates: $out" || bad "check said: $out"
out=$(CONSUL_HTTP_ADDR=127.0.0.1:1 /usr/bin/oracle-watchdog check -config /etc/oracle-watchdog/config.yaml 2>&1 | sed -n 2p)
[[ "$out" == *"http://127.0.0.1:1"* ]] && ok "CONSUL_HTTP_ADDR is honoured (consul_address commented out): check tried $(awk "{print \$2}" <<<"$out")" \
    || bad "CONSUL_HTTP_ADDR ignored: $out"

# systemd's own checks of the installed unit.
if [ -n "$real_systemctl" ] && command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify "$unit" 2>&1); rc=$?
    [ $rc -eq 0 ] && [ -z "$out" ] && ok "systemd-analyze verify: clean" || bad "systemd-analyze verify (rc $rc): $out"
    score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }'; then
        ok "systemd-analyze security exposure: $score (<= 3.0)"
    else
        bad "systemd-analyze security exposure: ${score:-unreadable} (want <= 3.0)"
    fi
else
    skip "systemd-analyze not installed: unit not verified"
fi

echo "# edited by the administrator" >> /etc/oracle-watchdog/config.yaml
if up=$(upgrade_deb); then
    check "upgrade to ${version}-1+upgradetest" dpkg -i --force-confdef --force-confold "$up"
    tail -1 /etc/oracle-watchdog/config.yaml | grep -q 'edited by the administrator' \
        && ok "edited config.yaml kept across the upgrade" || bad "upgrade replaced the edited config.yaml"
else
    bad "could not build the upgrade package"
fi

check "dpkg -r removes the package" dpkg -r oracle-watchdog
[ ! -e /usr/bin/oracle-watchdog ] && ok "binary gone after remove" || bad "binary still there after remove"
getent passwd oracle-watchdog >/dev/null && ok "user kept on remove" || bad "user dropped on remove"
[ -f /etc/oracle-watchdog/config.yaml ] && ok "config.yaml kept on remove" || bad "config.yaml gone on remove"
called 'stop' && bad "stop called without systemd" || ok "no stop attempted without a running systemd"
check "dpkg -P purges the package" dpkg -P oracle-watchdog
getent passwd oracle-watchdog >/dev/null && bad "user still there after purge" || ok "user dropped on purge"
getent group oracle-watchdog >/dev/null && bad "group still there after purge" || ok "group dropped on purge"
[ ! -e /etc/oracle-watchdog ] && ok "/etc/oracle-watchdog gone after purge" || bad "/etc/oracle-watchdog left: $(ls -A /etc/oracle-watchdog)"
[ ! -L "$wants" ] && [ ! -L /etc/systemd/system/oracle-watchdog.service ] && ok "enablement and mask links gone after purge" \
    || bad "links left after purge: $(ls -l "$wants" /etc/systemd/system/oracle-watchdog.service 2>&1)"

echo "-- with a running systemd (recording systemctl stand-in)"
mkdir -p /run/systemd/system
: > "$calls"
check "dpkg -i installs the package" dpkg -i "$deb"
called '^--quiet --system start oracle-watchdog.service$' && ok "postinst started the service" \
    || bad "postinst did not start the service; calls: $(tr '\n' ';' < "$calls")"
called 'daemon-reload' && ok "postinst reloaded systemd" || bad "no daemon-reload"
: > "$calls"
if [ -n "${up:-}" ]; then
    check "upgrade" dpkg -i --force-confdef --force-confold "$up"
    called '^--quiet --system restart oracle-watchdog.service$' && ok "upgrade restarted the service" \
        || bad "upgrade did not restart; calls: $(tr '\n' ';' < "$calls")"
fi
: > "$calls"
check "dpkg -r removes the package" dpkg -r oracle-watchdog
called '^stop oracle-watchdog.service$' && ok "prerm stopped the service" \
    || bad "prerm did not stop the service; calls: $(tr '\n' ';' < "$calls")"
getent passwd oracle-watchdog >/dev/null && ok "user kept on remove" || bad "user dropped on remove"
check "dpkg -P purges the package" dpkg -P oracle-watchdog
getent passwd oracle-watchdog >/dev/null && bad "user still there after purge" || ok "user dropped on purge"

finish
