#!/usr/bin/env bash
# Alert rules and dashboard against the real binary: promtool checks and
# unit-tests deploy/prometheus/alerts.yml, scrapes the static binary in
# monitor and agent mode (plus the WireGuard re-resolver and the WAN-IP DDNS
# updater, so their families exist), runs `promtool check metrics` on every
# scrape, and checks that the Grafana dashboard queries only scraped names.
# Usage: tests/dist/prometheus.sh (after make static and the stand-ins build)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034  # read by finish in lib.sh
DIST_NAME="prometheus"
source "$here/lib.sh"
source "$here/world.sh"
NETNS=""
cleanup() {
    if [ -n "$NETNS" ]; then
        # Processes left in the namespace are ours (wireguard-go, monitor, stand-in).
        for p in $(ip netns pids "$NETNS" 2>/dev/null); do kill "$p" 2>/dev/null; done
        sleep 0.3; ip netns del "$NETNS" 2>/dev/null
    fi
    world_stop
}
trap cleanup EXIT
echo "== alert rules, live scrapes, dashboard"
bin=$DIST_ROOT/dist/oracle-watchdog-$DIST_VERSION-linux-x86_64
rules=$DIST_ROOT/deploy/prometheus/alerts.yml
dashboard=$DIST_ROOT/deploy/grafana/oracle-watchdog.json
command -v promtool >/dev/null || { bad "promtool missing (Debian prometheus)"; finish; exit; }

out=$(promtool check rules "$rules" 2>&1) && ok "promtool check rules: $(grep -o '[0-9]* rules found' <<<"$out")" \
    || { bad "promtool check rules"; sed 's/^/        /' <<<"$out"; }
out=$(cd "$here" && promtool test rules alerts_test.yml 2>&1) \
    && ok "promtool test rules: $(grep -c '^  - name:' "$here/alerts_test.yml") alert scenarios behave" \
    || { bad "promtool test rules"; sed 's/^/        /' <<<"$out"; }

world_start || { bad "could not start the stand-ins"; finish; exit; }
scrapes=()
# take_scrape NAME ADDR METRIC: waits until METRIC shows, saves, checks it.
take_scrape() {
    local name=$1 addr=$2 want=$3 file=$WORLD/scrape-$1.txt
    has() { scrape "$addr" "$file" && grep -q "^$want" "$file"; }
    if ! wait_for 20 has; then
        bad "$name: $want never appeared at $addr"; tail -3 "$WORLD/$name.log" 2>/dev/null | sed 's/^/        /'; return 1
    fi
    scrapes+=("$file")
    local lint
    if lint=$(promtool check metrics < "$file" 2>&1); then
        ok "$name: promtool check metrics clean ($(grep -c '^# TYPE' "$file") families)"
    else
        bad "$name: promtool check metrics"; sed 's/^/        /' <<<"$lint"
    fi
}

# Monitor: plain, and with the WireGuard re-resolver on a real userspace
# WireGuard device (wireguard-go) in a private network namespace.
mon_port=$(free_port)
world_daemon monitor env CONSUL_HTTP_ADDR="$CONSUL" "$bin" -mode monitor -node dist1 \
    -config "$WORLD/monitor.yaml" -metrics-address "127.0.0.1:$mon_port" >/dev/null
take_scrape monitor "127.0.0.1:$mon_port" 'oracle_watchdog_session_active 1'
# dist2's heartbeat too, so the agent below has no node to restart.
world_daemon monitor2 env CONSUL_HTTP_ADDR="$CONSUL" "$bin" -mode monitor -node dist2 \
    -config "$WORLD/monitor.yaml" -metrics-address 127.0.0.1:0 >/dev/null

# Agent with the WAN-IP DDNS updater: a Cloudflare stand-in holding the record
# and two IP providers, the first one dead so a detection failure is counted.
_standin CF cloudflare --token dist-token --zone distzone --record home.dist.test=198.51.100.1 || bad "cloudflare stand-in"
_standin IPP ipprovider --ip 203.0.113.7 || bad "ipprovider stand-in"
dead=127.0.0.1:$(free_port)
cat "$WORLD/host/agent.yaml" - > "$WORLD/host/agent-wandns.yaml" <<YAML
wan_dns:
  enabled: true
  hostname: home.dist.test
  cloudflare:
    api_token_env: DIST_CF_TOKEN
    zone_id: distzone
    api_url: "http://$CF/client/v4"
  detection_providers: ["http://$dead/", "http://$IPP/"]
YAML
agent_port=$(free_port)
world_daemon agent env DIST_CF_TOKEN=dist-token "$bin" -mode agent -config "$WORLD/host/agent-wandns.yaml" \
    -metrics-address "127.0.0.1:$agent_port" >/dev/null
take_scrape agent "127.0.0.1:$agent_port" 'oracle_watchdog_cloudflare_record_updates_total{result="success"} 1'

wg_reason=""
if [ "$(id -u)" -ne 0 ]; then wg_reason="needs root for a network namespace"
elif ! command -v wireguard-go >/dev/null || ! command -v wg >/dev/null || ! command -v ip >/dev/null; then
    wg_reason="needs wireguard-go, wg and ip (Debian wireguard-go wireguard-tools iproute2)"
elif [ ! -c /dev/net/tun ]; then wg_reason="no /dev/net/tun"
fi
if [ -z "$wg_reason" ]; then
    NETNS=owdist$$
    ip netns add "$NETNS"
    inns() { ip netns exec "$NETNS" "$@"; }
    inns ip link set lo up
    peer_pub=$(wg genkey | wg pubkey)
    (umask 077; wg genkey > "$WORLD/wg.key")
    inns wireguard-go wg0 >/dev/null 2>&1  # daemonizes
    inns wg set wg0 private-key "$WORLD/wg.key" listen-port 51820 \
        peer "$peer_pub" endpoint 127.0.0.2:51821 allowed-ips 10.77.0.2/32
    inns ip link set wg0 up
    inns "$STANDINS" consul --listen 127.0.0.1:0 > "$WORLD/nsconsul.out" 2>&1 &
    wait_for 10 grep -q "listening on" "$WORLD/nsconsul.out"
    nconsul=$(sed -n 's/.* listening on \([0-9.:]*\).*/\1/p' "$WORLD/nsconsul.out")
    cat > "$WORLD/monitor-wg.yaml" <<YAML
monitor:
  session_ttl: 10s
  renew_interval: 1s
wireguard:
  enabled: true
  interface: wg0
  peer_pubkey: "$peer_pub"
  endpoint_hostname: localhost
  endpoint_port: 51821
  resolve_interval: 10s
  backend: userspace
YAML
    (inns env CONSUL_HTTP_ADDR="$nconsul" "$bin" -mode monitor -node distwg -config "$WORLD/monitor-wg.yaml" \
        -metrics-address 127.0.0.1:9104 >> "$WORLD/monitor-wg.log" 2>&1 &)
    nsscrape() { inns curl -fsS --max-time 5 http://127.0.0.1:9104/metrics -o "$WORLD/scrape-monitor-wg.txt" \
        && grep -q '^oracle_watchdog_wg_endpoint_current_ip' "$WORLD/scrape-monitor-wg.txt"; }
    if wait_for 20 nsscrape; then
        scrapes+=("$WORLD/scrape-monitor-wg.txt")
        lint=$(promtool check metrics < "$WORLD/scrape-monitor-wg.txt" 2>&1) \
            && ok "monitor with WireGuard: promtool check metrics clean; endpoint now $(inns wg show wg0 endpoints | awk '{print $2}')" \
            || { bad "monitor with WireGuard: promtool check metrics"; sed 's/^/        /' <<<"$lint"; }
    else
        bad "monitor with WireGuard: no oracle_watchdog_wg_endpoint_current_ip"; tail -3 "$WORLD/monitor-wg.log" | sed 's/^/        /'
    fi
else
    skip "WireGuard scrape: $wg_reason; the dashboard's oracle_watchdog_wg_* queries are checked against nothing"
fi

ignore=()
[ -n "$wg_reason" ] && ignore=(--ignore-prefix oracle_watchdog_wg_)
out=$(python3 "$here/check_dashboard.py" "${ignore[@]}" "$dashboard" "$WORLD/dashboard-rules.yml" "${scrapes[@]}" 2>&1) \
    && ok "$(head -1 <<<"$out"): all present" || { bad "dashboard queries names no scrape has:"; sed 's/^/        /' <<<"$out"; }
out=$(promtool check rules "$WORLD/dashboard-rules.yml" 2>&1) && ok "every dashboard query parses as PromQL ($(grep -o '[0-9]* rules' <<<"$out"))" \
    || { bad "dashboard PromQL"; sed 's/^/        /' <<<"$out"; }
finish
