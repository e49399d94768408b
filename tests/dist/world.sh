# shellcheck shell=bash
# A small world for the distribution tests (sourced): Consul and OCI
# stand-ins on 127.0.0.1, an OCI profile with the fixture key, and agent /
# monitor configs pointing at them. Everything started here is stopped by
# world_stop (called from an EXIT trap).
#   world_start          sets WORLD (temp dir), CONSUL, OCI (host:port)
#   world_daemon NAME ARGS...  starts a daemon in the background, log in $WORLD/NAME.log
#   free_port            prints a free loopback port
#   scrape HOST:PORT FILE     saves /metrics

STANDINS=${STANDINS:-$DIST_ROOT/target/debug/watchdog-standins}
WORLD_KEY=$DIST_ROOT/tests/fixtures/oci/keys/pkcs8.pem
# Fingerprint of that fixture key (tests/fixtures/oci/signatures.json).
WORLD_FINGERPRINT=79:4f:b4:ef:57:f3:b2:69:bc:5a:f9:15:1b:a0:56:76
WORLD_TENANCY=ocid1.tenancy.oc1..distest
WORLD_USER=ocid1.user.oc1..distest
WORLD_I1=ocid1.instance.oc1.iad.distone
WORLD_I2=ocid1.instance.oc1.iad.disttwo
WORLD_PIDS=()

world_stop() {
    local p
    for p in "${WORLD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${WORLD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    WORLD_PIDS=()
    [ -n "${WORLD:-}" ] && rm -rf "$WORLD"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
    local n=$(( $1 * 5 )); shift
    while [ $n -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; n=$((n - 1)); done
    return 1
}

# _standin VAR NAME ARGS...: starts a stand-in, sets VAR to its host:port.
# (Not in a $(...) subshell, so its pid is recorded for world_stop.)
_standin() {
    local var=$1 name=$2; shift 2
    "$STANDINS" "$name" --listen 127.0.0.1:0 "$@" > "$WORLD/$name.out" 2>&1 &
    WORLD_PIDS+=($!)
    wait_for 10 grep -q "listening on" "$WORLD/$name.out" || { cat "$WORLD/$name.out" >&2; return 1; }
    printf -v "$var" '%s' "$(sed -n 's/.* listening on \([0-9.:]*\).*/\1/p' "$WORLD/$name.out" | head -1)"
}

world_start() {
    [ -x "$STANDINS" ] || { echo "world: $STANDINS missing (cargo build -p watchdog-standins)" >&2; return 1; }
    WORLD=$(mktemp -d "${TMPDIR:-/tmp}/ow-dist.XXXXXX")
    chmod 755 "$WORLD"
    _standin CONSUL consul --expiry-factor 0.5 || return 1
    _standin OCI oci --instance "$WORLD_I1=RUNNING" --instance "$WORLD_I2=RUNNING" \
        --key "$WORLD_TENANCY/$WORLD_USER/$WORLD_FINGERPRINT=$WORLD_KEY" --transition-ms 300 || return 1
    # Readable by the container's user (65532), private to everyone else.
    install -m 0600 "$WORLD_KEY" "$WORLD/oci_api_key.pem"
    cat > "$WORLD/oci-config" <<INI
[DEFAULT]
user=$WORLD_USER
fingerprint=$WORLD_FINGERPRINT
tenancy=$WORLD_TENANCY
region=us-ashburn-1
key_file=/etc/oracle-watchdog/oci_api_key.pem
INI
    # Paths as the container sees them; world_paths_for_host rewrites them.
    cat > "$WORLD/agent.yaml" <<YAML
timeout: 2s
check_interval: 5s
consul_address: "$CONSUL"
oci:
  config_path: "/etc/oracle-watchdog/oci-config"
  endpoint: "http://$OCI"
agent:
  poll_interval: 1s
  leader_ttl: 10s
  shutdown_grace: 3s
nodes:
  - name: dist1
    instance_id: "$WORLD_I1"
    compartment_id: "ocid1.compartment.oc1..dist"
  - name: dist2
    instance_id: "$WORLD_I2"
    compartment_id: "ocid1.compartment.oc1..dist"
YAML
    printf 'monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n' > "$WORLD/monitor.yaml"
    # The same files with host paths, for daemons run outside a container.
    mkdir -p "$WORLD/host"
    sed "s|/etc/oracle-watchdog/|$WORLD/|" "$WORLD/oci-config" > "$WORLD/host/oci-config"
    sed "s|/etc/oracle-watchdog/|$WORLD/host/|" "$WORLD/agent.yaml" > "$WORLD/host/agent.yaml"
    chmod 600 "$WORLD/host/oci-config" "$WORLD/oci-config"
    # The container runs as 65532; root (the host daemons) reads them anyway.
    if [ "$(id -u)" -eq 0 ]; then
        chown 65532:65532 "$WORLD/oci_api_key.pem" "$WORLD/oci-config" "$WORLD/agent.yaml"
    fi
}

world_daemon() {
    local name=$1; shift
    "$@" >> "$WORLD/$name.log" 2>&1 &
    WORLD_PIDS+=($!)
    echo $!
}

scrape() {
    curl -fsS --max-time 5 "http://$1/metrics" -o "$2"
}
