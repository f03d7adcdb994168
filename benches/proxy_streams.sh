#!/usr/bin/env bash
# The gateway serving many streams at once (benches/proxy_streams.rs): builds the release
# gateway, then opens BALLAST_STREAMS (1,000) streams straight at a loopback upstream and
# through the proxy: time to first byte, streams read whole, memory per stream.
#
#   bash benches/proxy_streams.sh
#   BALLAST_STREAMS=2000 bash benches/proxy_streams.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ballast-gateway
cargo bench -p ballast-benches --bench proxy_streams
