#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 60) each
# with the nightly toolchain and prints runs and crashes per target.
# Usage: scripts/fuzz.sh [TARGET...]   (default: all targets)
# Installs cargo-fuzz if missing. Corpora live in fuzz/corpus/TARGET (kept
# between runs, gitignored), seeded from the repository's own fixtures;
# crashing inputs land in fuzz/artifacts/TARGET. Exit 1 when any target crashed.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || exit 1
rustup toolchain list | grep -q "^$TOOLCHAIN" || rustup toolchain install "$TOOLCHAIN" --profile minimal || exit 1

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +"$TOOLCHAIN" fuzz list --fuzz-dir fuzz)

# seed TARGET NAME CONTENT: a seed input, written once.
seed() { local d=fuzz/corpus/$1; mkdir -p "$d"; [ -e "$d/seed-$2" ] || printf '%b' "$3" > "$d/seed-$2"; }
seed_file() { local d=fuzz/corpus/$1; mkdir -p "$d"; [ -e "$d/seed-$(basename "$2")" ] || cp "$2" "$d/seed-$(basename "$2")"; }

seed_file config_yaml config.example.yaml
seed config_yaml monitor 'monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n'
seed config_yaml wandns 'wan_dns:\n  enabled: true\n  hostname: h.example.com\n  cloudflare:\n    api_token_env: CF\n    zone_id: "z"\n  detection_providers: ["https://api.ipify.org"]\n  poll_interval: 5m\n  cooldown: 15m\n'
seed oci_ini default '[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\nkey_file=~/.oci/key.pem\npass_phrase=p\n\n[OTHER]\nregion = eu-frankfurt-1\n  continued\n# comment\n'
for k in tests/fixtures/oci/keys/*.pem; do seed_file pem_key "$k"; done
for d in 0 5m 1m30s 1.5h 500ms 100us 2h45m0.5s +3s 9223372036854775807ns; do seed duration "$d" "$d"; done
seed consul_kv list '[{"Key":"oracle-watchdog/nodes/n1","Value":"eyJ4IjoxfQ==","Session":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","ModifyIndex":7,"LockIndex":1,"Flags":0,"CreateIndex":5}]'
seed consul_kv null '[{"Key":"k","Value":null,"Session":""}]'
seed oci_response ok '\x00\x64{"id":"ocid1.instance.oc1.iad.x","lifecycleState":"RUNNING","displayName":"n1","region":"iad"}'
seed oci_response capacity '\x01\x90{"code":"InternalError","message":"Out of host capacity."}'
seed oci_response conflict '\x01\x35{"code":"IncorrectState","message":"busy"}'
seed cloudflare_response one '\x00\x64{"success":true,"errors":[],"messages":[],"result":{"id":"r1","name":"h.example.com","type":"A","content":"1.2.3.4","ttl":1,"proxied":false}}'
seed cloudflare_response list '\x00\x64{"success":true,"errors":[],"result":[{"id":"r1","type":"A","content":"1.2.3.4"}]}'
seed cloudflare_response denied '\x01\x2d{"success":false,"errors":[{"code":9109,"message":"Invalid access token"}]}'
seed ip_body plain '203.0.113.7\n'
seed ip_body trace 'fl=1\nh=1.1.1.1\nip=203.0.113.7\nts=1\n'
seed ip_body html '<!DOCTYPE html><html>portal</html>'

total_crashes=0
summary=()
for t in "${targets[@]}"; do
    log=$(mktemp)
    before=$(ls fuzz/artifacts/"$t" 2>/dev/null | wc -l)
    echo "== fuzz $t for ${SECONDS_EACH}s" >&2
    cargo +"$TOOLCHAIN" fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    after=$(ls fuzz/artifacts/"$t" 2>/dev/null | wc -l)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    crashes=$((after - before))
    if [ $rc -ne 0 ] && [ $crashes -eq 0 ]; then crashes=1; fi
    if [ $crashes -gt 0 ]; then
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 >&2
        echo "   artifacts: fuzz/artifacts/$t (full log: $log)" >&2
    else
        rm -f "$log"
    fi
    total_crashes=$((total_crashes + crashes))
    summary+=("$(printf '%-22s %12s runs %3d crashes' "$t" "${runs:-?}" "$crashes")")
done
printf '%s\n' "${summary[@]}"
echo "fuzz: ${#targets[@]} targets, $total_crashes crashes (${SECONDS_EACH}s each)"
[ $total_crashes -eq 0 ]
