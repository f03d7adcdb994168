#!/usr/bin/env bash
# Callers served on the simulator's bad day (benches/proxy_bad_day.rs): builds the release
# gateway, then runs an SDK-like client straight at the provider and plain callers through
# the proxy, in real time (about 5 minutes a row with the defaults).
#
#   bash benches/proxy_bad_day.sh
#   BALLAST_REQUESTS=200 BALLAST_WORKERS=16 BALLAST_ROWS=proxy bash benches/proxy_bad_day.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ballast-gateway
cargo bench -p ballast-benches --bench proxy_bad_day
