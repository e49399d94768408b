#!/usr/bin/env bash
# Builds the static x86_64 binary under several release-profile settings and
# prints the stripped size of each, to justify the [profile.release] choice.
# Usage: scripts/measure-profiles.sh   (takes a few minutes; own target dir)
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR=target/profile-measure
variants=(
  "opt=3 lto=false cgu=16"
  "opt=3 lto=fat cgu=1"
  "opt=s lto=fat cgu=1"
  "opt=z lto=fat cgu=1"
  "opt=s lto=thin cgu=1"
)
printf '| opt-level | lto | codegen-units | size (bytes) |\n|---|---|---|---|\n'
for v in "${variants[@]}"; do
  eval "$(sed 's/\([a-z]*\)=\([a-z0-9]*\)/\1=\2;/g' <<<"$v")"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt CARGO_PROFILE_RELEASE_LTO=$lto \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=$cgu CARGO_PROFILE_RELEASE_STRIP=true \
    cargo build -q --release --target $target --bin oracle-watchdog
  size=$(stat -c %s "$CARGO_TARGET_DIR/$target/release/oracle-watchdog")
  printf '| %s | %s | %s | %s |\n' "$opt" "$lto" "$cgu" "$size"
done
