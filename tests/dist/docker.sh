#!/usr/bin/env bash
# The scratch image: builds offline from the staged static binary, checks
# its metadata, runs --version, then runs the agent in it (host network)
# against the Consul and OCI stand-ins until a real signed stop/start cycle
# succeeds and the image's own HEALTHCHECK reports healthy.
# Usage: tests/dist/docker.sh (after make docker-context). Skips without an engine.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034  # read by finish in lib.sh
DIST_NAME="docker"
source "$here/lib.sh"
source "$here/world.sh"
IMG=oracle-watchdog:dist-test
NAME=ow-dist-test-$$
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1
    docker rmi "$IMG" >/dev/null 2>&1
    world_stop
}
echo "== scratch container image"

if ! command -v docker >/dev/null; then skip "no docker CLI: image not tested"; finish; exit; fi
if ! docker info >/dev/null 2>&1; then skip "no Docker engine answering: image not tested"; finish; exit; fi
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
staged=$DIST_ROOT/dist/docker/$arch/oracle-watchdog
[ -x "$staged" ] || { bad "$staged missing (make docker-context)"; finish; exit; }
trap cleanup EXIT

# --network none: the build cannot download anything.
if out=$(cd "$DIST_ROOT" && docker build --network none --build-arg TARGETARCH="$arch" \
        --build-arg VERSION="$DIST_VERSION" -t "$IMG" . 2>&1); then
    ok "image builds FROM scratch with no network: $(docker image inspect -f '{{.Size}}' "$IMG") bytes, $(docker image inspect -f '{{len .RootFS.Layers}}' "$IMG") layer(s)"
else
    bad "docker build failed"; sed 's/^/        /' <<<"$out" | tail -20; finish; exit
fi
meta=$(docker image inspect -f 'user={{.Config.User}} ports={{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}} entrypoint={{json .Config.Entrypoint}} health={{json .Config.Healthcheck.Test}}' "$IMG")
[[ "$meta" == *"user=65532:65532"* && "$meta" == *"ports=9105/tcp"* && "$meta" == *'entrypoint=["/oracle-watchdog"]'* \
   && "$meta" == *'health=["CMD","/oracle-watchdog","healthcheck"]'* ]] && ok "image metadata: $meta" || bad "image metadata: $meta"

out=$(docker run --rm "$IMG" --version 2>&1)
case "$out" in "oracle-watchdog $DIST_VERSION ("*) true;; *) false;; esac && ok "docker run IMAGE --version: $out" || bad "--version in the container said: $out"

if python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 9105))' 2>/dev/null; then :; else
    bad "127.0.0.1:9105 is busy on this host; the HEALTHCHECK uses that port"; finish; exit
fi
world_start || { bad "could not start the stand-ins"; finish; exit; }
# Health timings shortened for the test; the check command is the image's own.
docker run -d --name "$NAME" --network host -v "$WORLD:/etc/oracle-watchdog:ro" \
    --health-interval 1s --health-start-period 2s --health-retries 3 \
    "$IMG" -mode agent -config /etc/oracle-watchdog/agent.yaml -metrics-address 127.0.0.1:9105 >/dev/null \
    || { bad "docker run of the agent failed"; finish; exit; }
metric() { curl -fsS --max-time 3 http://127.0.0.1:9105/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
health() { docker inspect -f '{{.State.Health.Status}}' "$NAME"; }
is_healthy() { [ "$(health)" = healthy ]; }
is_leader() { [ "$(metric oracle_watchdog_agent_leader)" = 1 ]; }
if wait_for 30 is_healthy; then ok "HEALTHCHECK (oracle-watchdog healthcheck inside scratch) reports healthy"
else bad "health status: $(health)"; docker logs "$NAME" 2>&1 | tail -5 | sed 's/^/        /'; fi
wait_for 15 is_leader && ok "agent in the container took the leader lock in the Consul stand-in" || bad "agent never became leader"

# No monitor is running: both nodes are missing, so after the 2 s timeout the
# agent stops and starts them through the OCI stand-in (which checks every
# signature). Then the monitors come up as if the instances had booted.
attempted() { [ "$(metric 'oracle_watchdog_agent_restart_attempts_total{node="dist1"}')" = 1 ]; }
wait_for 30 attempted && ok "agent restarted the missing node through OCI from the container" \
    || bad "no restart attempt; agent log: $(docker logs "$NAME" 2>&1 | tail -3)"
host_bin=$DIST_ROOT/dist/oracle-watchdog-$DIST_VERSION-linux-x86_64
for n in dist1 dist2; do
    world_daemon "mon-$n" env CONSUL_HTTP_ADDR="$CONSUL" "$host_bin" -mode monitor -node "$n" \
        -config "$WORLD/monitor.yaml" -metrics-address 127.0.0.1:0 >/dev/null
done
recovered() {
    [ "$(metric 'oracle_watchdog_agent_restart_successes_total{node="dist1"}')" = 1 ] \
        && [ "$(metric oracle_watchdog_agent_nodes_missing)" = 0 ]
}
if wait_for 40 recovered; then
    ok "cycle finished: dist1 successes=1, failures=$(metric 'oracle_watchdog_agent_restart_failures_total{node="dist1"}'), oci_connected=$(metric oracle_watchdog_agent_oci_connected), nodes_missing=0"
else
    bad "no successful cycle"; curl -s http://127.0.0.1:9105/metrics | grep '^oracle_watchdog_agent' | sed 's/^/        /'
fi
if docker stop -t 20 "$NAME" >/dev/null; then
    code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
    [ "$code" = 0 ] && ok "docker stop: SIGTERM to PID 1, exit code 0" || bad "docker stop: exit code $code"
fi
finish
