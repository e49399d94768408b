#!/bin/sh
# /init of the kernel WireGuard test VM (built by scripts/test-wg-kernel.sh):
# the init namespace is peer A (wgA + oracle-watchdog + Consul stand-in),
# netns `b` is peer B (wgB), joined by two veth pairs on 10.200.1.0/24 and
# 10.200.2.0/24. Same scenario as tests/wireguard.rs, on kernel devices.
# Prints `CHECK name: PASS|FAIL detail`, then `N passed, M failed`, powers off.

/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
IP=/usr/sbin/ip # iproute2, not busybox's applet
HOST=wgpeer.test
METRICS=127.0.0.1:9104
LOG=/tmp/watchdog.log
PUB_A=$(cat /etc/wg/a.pub)
PUB_B=$(cat /etc/wg/b.pub)
passed=0
failed=0

finish() {
    echo "$passed passed, $failed failed"
    sync
    poweroff -f
}
check() { # NAME OK(0|1) DETAIL
    if [ "$2" = 0 ]; then r=PASS passed=$((passed + 1)); else r=FAIL failed=$((failed + 1)); fi
    echo "CHECK $1: $r $3"
}
must() { "$@" >/tmp/must.out 2>&1 || { check setup 1 "$* -> $(cat /tmp/must.out)"; finish; }; }
# wait_for SECONDS COMMAND...: polls once a second.
wait_for() {
    n=$1
    shift
    while [ "$n" -gt 0 ]; do
        "$@" && return 0
        sleep 1
        n=$((n - 1))
    done
    "$@"
}
metric() { wget -qO- "http://$METRICS/metrics" 2>/dev/null | awk -v n="$1" '$1 == n { print $2; exit }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 >= b + 0) }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 > b + 0) }'; }
# show FIELD: A's `wg show` FIELD for peer B (show_b: B's for peer A).
show() { wg show wgA "$1" | awk -v k="$PUB_B" '$1 == k { $1 = ""; sub(/^ /, ""); print }'; }
show_b() { $IP netns exec b wg show wgB "$1" | awk -v k="$PUB_A" '$1 == k { print $2 }'; }
# hosts IP...: the name's A records; replaced atomically (no empty moment).
hosts() {
    printf '127.0.0.1 localhost\n' >/etc/hosts.new
    for ip in "$@"; do echo "$ip $HOST" >>/etc/hosts.new; done
    mv /etc/hosts.new /etc/hosts
}
logged() { grep -q "$1" "$LOG"; }

FAILURES=oracle_watchdog_wg_endpoint_resolution_failures_total
CHANGES=oracle_watchdog_wg_endpoint_changes_total
RENEWALS=oracle_watchdog_session_renewals_total
ACTIVE=oracle_watchdog_session_active
AGE="oracle_watchdog_wg_peer_handshake_age_seconds{peer=\"$PUB_B\"}"
current_ip() { echo "oracle_watchdog_wg_endpoint_current_ip{interface=\"wgA\",ip=\"$1\",peer=\"$PUB_B\"}"; }

# --- the machine -----------------------------------------------------------
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /var && ln -s /run /var/run
for m in $(cat /lib/modules/load-order); do must insmod "/lib/modules/$m"; done
echo "kernel $(uname -r), modules: $(tr '\n' ' ' </lib/modules/load-order)"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >/etc/resolv.conf
hosts 10.200.1.2

# --- the network: A (init ns) and B (netns b), two paths ---------------------
must $IP link set lo up
must $IP netns add b
must $IP -n b link set lo up
for n in 1 2; do
    must $IP link add va$n type veth peer name vb$n netns b
    must $IP addr add 10.200.$n.1/24 dev va$n
    must $IP link set va$n up
    must $IP -n b link set vb$n up
done
must $IP -n b addr add 10.200.1.2/24 dev vb1
must $IP link add wgA type wireguard
must wg set wgA private-key /etc/wg/a.key listen-port 51821 peer "$PUB_B" \
    preshared-key /etc/wg/psk endpoint 10.200.1.2:51820 \
    allowed-ips 10.200.9.2/32,10.200.10.0/24 persistent-keepalive 5
must $IP addr add 10.200.9.1/24 dev wgA
must $IP link set wgA up
must $IP -n b link add wgB type wireguard # born in b: its UDP socket lives there
must $IP netns exec b wg set wgB private-key /etc/wg/b.key listen-port 51820 \
    peer "$PUB_A" preshared-key /etc/wg/psk allowed-ips 10.200.9.1/32
must $IP -n b addr add 10.200.9.2/24 dev wgB
must $IP -n b link set wgB up

# --- the daemon --------------------------------------------------------------
watchdog-standins consul --listen 127.0.0.1:8500 >/tmp/consul.log 2>&1 &
wait_for 20 grep -q listening /tmp/consul.log || { check setup 1 "consul stand-in: $(cat /tmp/consul.log)"; finish; }
cat >/etc/oracle-watchdog.yaml <<EOF
monitor:
  session_ttl: 10s
  renew_interval: 1s
wireguard:
  enabled: true
  backend: kernel
  interface: wgA
  peer_pubkey: "$PUB_B"
  endpoint_hostname: $HOST
  endpoint_port: 51820
  resolve_interval: 10s
  stale_handshake_threshold: 30s
EOF
CONSUL_HTTP_ADDR=127.0.0.1:8500 oracle-watchdog -mode monitor -node vm1 -log-format text \
    -log-level debug -metrics-address $METRICS -config /etc/oracle-watchdog.yaml 2>$LOG &
WD=$!

# --- checks --------------------------------------------------------------------
handshaken() { gt "$(show latest-handshakes)" 0; }
wait_for 30 handshaken
check handshake $? "wgA<->wgB latest-handshake=$(show latest-handshakes)"

up() { [ "$(metric "$(current_ip 10.200.1.2)")" = 1 ] && ge "$(metric "$AGE")" 0 && [ "$(metric $ACTIVE)" = 1 ]; }
wait_for 30 up
check daemon-sees-tunnel $? "current_ip(10.200.1.2)=$(metric "$(current_ip 10.200.1.2)") age=$(metric "$AGE") session_active=$(metric $ACTIVE)"
[ "$(metric $CHANGES)" = 0 ]
check nothing-to-change-yet $? "changes=$(metric $CHANGES)"
settings() { echo "$(show allowed-ips) | keepalive $(show persistent-keepalive) | psk md5 $(show preshared-keys | md5sum | cut -c1-8)"; }
before=$(settings)

# B moves to the second path; DNS (/etc/hosts) follows.
must $IP -n b addr del 10.200.1.2/24 dev vb1
must $IP -n b addr add 10.200.2.2/24 dev vb2
t0=$(date +%s)
hosts 10.200.2.2
moved() { [ "$(show endpoints)" = 10.200.2.2:51820 ]; }
wait_for 15 moved # one resolve interval + slack for polling under emulation
check endpoint-follows-dns $? "wg show wgA endpoints=$(show endpoints) after $(($(date +%s) - t0))s (resolve_interval 10s)"
after=$(settings)
[ "$before" = "$after" ] && [ "$(show persistent-keepalive)" = 5 ]
check other-settings-unchanged $? "before: $before; after: $after"
[ "$(wg show wgA peers | wc -l)" = 1 ]
check still-one-peer $? "peers: $(wg show wgA peers | wc -l)"
b_sees_a() { [ "$(show_b endpoints)" = 10.200.2.1:51821 ]; }
wait_for 15 b_sees_a
check tunnel-over-new-path $? "wg show wgB endpoints=$(show_b endpoints)"
m=$(wget -qO- "http://$METRICS/metrics")
ge "$(metric $CHANGES)" 1 && [ "$(metric "$(current_ip 10.200.2.2)")" = 1 ] &&
    ! echo "$m" | grep -q 'ip="10.200.1.2"' && logged 'reason="\{0,1\}changed'
check change-metrics-and-log $? "changes=$(metric $CHANGES) current_ip(10.200.2.2)=$(metric "$(current_ip 10.200.2.2)") old series=$(echo "$m" | grep -c 'ip="10.200.1.2"')"

# Dead peer: no more handshakes; past 30 s the same endpoint is re-applied.
must $IP -n b link set vb2 down
c0=$(metric $CHANGES)
stale() { logged stale_handshake && gt "$(metric $CHANGES)" "$c0"; }
wait_for 70 stale
check stale-handshake-reapplies $? "changes $c0 -> $(metric $CHANGES), handshake age=$(metric "$AGE"), endpoints=$(show endpoints)"
moved && gt "$(metric "$AGE")" 30 && [ "$(metric $FAILURES)" = 0 ]
check no-failures-so-far $? "failures=$(metric $FAILURES)"

# DNS failure: the name is gone and no server answers.
hosts
r0=$(metric $RENEWALS)
dns_failed() { ge "$(metric $FAILURES)" 1; }
wait_for 25 dns_failed
check dns-failure-counted $? "failures=$(metric $FAILURES) endpoints=$(show endpoints)"
gt "$(metric $RENEWALS)" "$r0" && moved
check heartbeat-during-dns-failure $? "renewals $r0 -> $(metric $RENEWALS)"
hosts 10.200.2.2

# Interface gone: counted, not re-created, heartbeat goes on.
must $IP link del wgA
f1=$(metric $FAILURES)
r1=$(metric $RENEWALS)
missing() { gt "$(metric $FAILURES)" "$f1" && logged interface_missing; }
wait_for 25 missing
check missing-interface-counted $? "failures $f1 -> $(metric $FAILURES)"
sleep 2
! $IP link show wgA >/dev/null 2>&1 && ! $IP -o link | grep -q wgA
check interface-not-recreated $? "links: $($IP -o link | awk -F': ' '{ printf "%s ", $2 }')"
gt "$(metric $RENEWALS)" "$r1" && [ "$(metric $ACTIVE)" = 1 ] && kill -0 $WD && ! logged panicked
check heartbeat-goes-on $? "renewals $r1 -> $(metric $RENEWALS) session_active=$(metric $ACTIVE)"

if [ "$failed" != 0 ]; then
    echo "--- watchdog log (last 40 lines) ---"
    tail -n 40 $LOG
fi
finish
