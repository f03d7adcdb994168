#!/usr/bin/env bash
# The gateway at load (benches/proxy_load.rs): builds the release gateway, then runs the
# open-loop and closed-loop measurements against a loopback upstream.
#
#   bash benches/proxy_load.sh
#   BALLAST_RATES=1000,2000 BALLAST_SECONDS=10 bash benches/proxy_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ballast-gateway
cargo bench -p ballast-benches --bench proxy_load
