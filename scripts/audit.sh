#!/usr/bin/env bash
# make audit: supply-chain checks that need no network.
#  1. cargo-audit against an offline RustSec advisory snapshot
#     (ADVISORY_DB, default ../shared/advisory-db); accepted advisories are
#     listed with their reasons in .cargo/audit.toml.
#  2. cargo-deny for licences (allow-list in deny.toml), banned crates
#     (tokio) and sources.
set -euo pipefail
cd "$(dirname "$0")/.."
db_src=${ADVISORY_DB:-../shared/advisory-db}
[ -d "$db_src/crates" ] || { echo "audit: no advisory snapshot at $db_src (set ADVISORY_DB)" >&2; exit 2; }
command -v cargo-audit >/dev/null || cargo install cargo-audit --locked
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
# cargo-audit wants the database as a git repository.
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
cp -r "$db_src/." "$db/"
git -C "$db" init -q && git -C "$db" add -A
git -C "$db" -c user.email=audit@localhost -c user.name=audit commit -qm snapshot
echo "advisory snapshot: $(cat "$db_src/SNAPSHOT" 2>/dev/null || echo unknown)"
cargo audit --db "$db" --no-fetch
cargo deny check licenses bans sources
