#!/usr/bin/env bash
# make demo: a whole outage and recovery on this machine in about a minute.
#
# Starts a Consul stand-in and an OCI stand-in (which verifies every request
# signature), two monitors ("demo1", "demo2") and an agent with short timers,
# then kills demo1's monitor as if its VM had hung. The agent notices the
# heartbeat is gone, waits out its timeout, stops and starts the instance
# through the (stand-in) OCI API, and the node comes back. Everything runs on
# 127.0.0.1 and is cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/debug/oracle-watchdog
STANDINS=target/debug/watchdog-standins
KEY=tests/fixtures/oci/keys/pkcs8.pem
# Fingerprint of that fixture key (tests/fixtures/oci/signatures.json).
FINGERPRINT=79:4f:b4:ef:57:f3:b2:69:bc:5a:f9:15:1b:a0:56:76
TENANCY=ocid1.tenancy.oc1..demo
USER_OCID=ocid1.user.oc1..demo
I1=ocid1.instance.oc1.iad.demo1
I2=ocid1.instance.oc1.iad.demo2

[ -x "$BIN" ] && [ -x "$STANDINS" ] || cargo build -q --workspace --bins
WORK=$(mktemp -d /tmp/oracle-watchdog-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # Background pipelines (the log narrator) have more members than $! names.
  pkill -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

T0=$(date +%s)
if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
say() { printf '%s[%3ss] %s%s\n' "$B" "$(( $(date +%s) - T0 ))" "$*" "$N"; }

# Starts a stand-in and sets ADDR from its "<name> listening on ADDR" line.
# (Not called in $(...): the PID must be recorded in this shell.)
start_standin() {
  local name=$1; shift
  "$STANDINS" "$name" --listen 127.0.0.1:0 "$@" > "$WORK/$name.out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break
    sleep 0.05
  done
  ADDR=$(sed -n 's/.* listening on \([0-9.:]*\).*/\1/p' "$WORK/$name.out" | head -1)
  [ -n "$ADDR" ] || { echo "demo: the $name stand-in did not start:" >&2; cat "$WORK/$name.out" >&2; exit 1; }
}

say "starting a Consul stand-in (sessions expire after 0.5 x TTL to keep the demo short)"
start_standin consul --expiry-factor 0.5
CONSUL=$ADDR
say "starting an OCI stand-in: instances $I1 and $I2 RUNNING, stop/start take 3 s"
start_standin oci --instance "$I1=RUNNING" --instance "$I2=RUNNING" \
  --key "$TENANCY/$USER_OCID/$FINGERPRINT=$KEY" --transition-ms 3000
OCI=$ADDR

cat > "$WORK/oci-config" <<INI
[DEFAULT]
user=$USER_OCID
fingerprint=$FINGERPRINT
tenancy=$TENANCY
region=us-ashburn-1
key_file=$PWD/$KEY
INI
chmod 600 "$WORK/oci-config"
cat > "$WORK/monitor.yaml" <<YAML
monitor:
  session_ttl: 10s
  renew_interval: 2s
YAML
cat > "$WORK/agent.yaml" <<YAML
timeout: 10s
check_interval: 10s
consul_address: "$CONSUL"
oci:
  config_path: "$WORK/oci-config"
  endpoint: "http://$OCI"
agent:
  poll_interval: 2s
  leader_ttl: 10s
nodes:
  - name: demo1
    instance_id: "$I1"
    compartment_id: "ocid1.compartment.oc1..demo"
  - name: demo2
    instance_id: "$I2"
    compartment_id: "ocid1.compartment.oc1..demo"
YAML

start_monitor() {
  CONSUL_HTTP_ADDR=$CONSUL "$BIN" -mode monitor -node "$1" -config "$WORK/monitor.yaml" \
    -log-format text -metrics-address 127.0.0.1:0 >> "$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  eval "MON_$1=$!"
}
say "starting monitors demo1 and demo2 (they hold heartbeat keys in Consul)"
start_monitor demo1
start_monitor demo2
say "starting the agent (timeout 10s; metrics on 127.0.0.1:19105)"
"$BIN" -mode agent -config "$WORK/agent.yaml" -log-format text -metrics-address 127.0.0.1:19105 \
  > "$WORK/agent.log" 2>&1 &
PIDS+=($!)

# Narrate the agent's log: the lines that tell the story.
tail -n +1 -F "$WORK/agent.log" 2>/dev/null | grep --line-buffered -E \
  'now the leader|heartbeat missing|restarting the instance|restart cycle phase|OCI accepted|restart cycle finished|heartbeat is back' \
  | sed -u -E 's/^[^ ]+ +//; s/[a-z_]+( [A-Za-z]+)?\{[^}]*\}:+//g; s/ [a-z_:]*oracle_watchdog::[a-z_:]*: / /; s/^/          agent: /' &
PIDS+=($!)

sleep 3
echo
"$BIN" status -config "$WORK/agent.yaml" | sed 's/^/          /'
echo
say "demo1's VM hangs: killing its monitor with SIGKILL (no clean session destroy)"
kill -9 "$MON_demo1"
wait "$MON_demo1" 2>/dev/null || true
say "Consul expires its session within 5 s and deletes the key; the agent then waits 10 s"

for _ in $(seq 120); do
  grep -q 'phase="wait_stopped"' "$WORK/agent.log" && break
  sleep 0.5
done
echo
"$BIN" status -config "$WORK/agent.yaml" | sed 's/^/          /'
echo

for _ in $(seq 120); do
  grep -q "restart cycle finished" "$WORK/agent.log" && break
  sleep 0.5
done
say "the instance is RUNNING again: demo1 boots and its monitor starts"
start_monitor demo1
for _ in $(seq 40); do
  grep -q "heartbeat is back" "$WORK/agent.log" && break
  sleep 0.5
done
sleep 1
echo
"$BIN" status -config "$WORK/agent.yaml" | sed 's/^/          /'
echo
say "agent metrics:"
"$BIN" healthcheck -metrics-address 127.0.0.1:19105 && \
  (exec 3<>/dev/tcp/127.0.0.1/19105; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; cat <&3) \
  | grep -E '^oracle_watchdog_agent_(restart_(attempts|successes|failures)_total|nodes_missing|leader|consul_connected|oci_connected)' \
  | sed 's/^/          /'
say "done: one outage, one STOP, one START, node back. Logs were in $WORK (removed now)."
