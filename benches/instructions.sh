#!/usr/bin/env bash
# Instructions per request of each stack in benches/stack.rs, counted by valgrind's callgrind:
# a figure a noisy machine does not move, for comparing two versions of the code.
#
#   bash benches/instructions.sh                      # the Ballast stacks, 2 KB response
#   BALLAST_SMALL_RESPONSE=1 bash benches/instructions.sh bare ballast_bookkeeping
#
# Each stack runs twice (500 and 2500 calls after the same set-up); the difference in
# instructions over the difference in calls is its cost per request.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo bench -p ballast-benches --bench stack --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*stack-[^"]*"' | head -1 | cut -d'"' -f4 > /tmp/ballast-stack-bench
bin=$(cat /tmp/ballast-stack-bench)
stacks=("$@")
if [ ${#stacks[@]} -eq 0 ]; then
  stacks=(bare classify classify+cost_log retry breaker budget ballast_bookkeeping ballast_facade tower_retry_tpsbudget_timeout)
fi
count() {
  BALLAST_ONLY=$1 BALLAST_CALLS=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
    | grep "I   refs" | tail -1 | awk '{print $4}' | tr -d ,
}
for stack in "${stacks[@]}"; do
  few=$(count "$stack" 500)
  many=$(count "$stack" 2500)
  printf "%-32s %8d instructions per request\n" "$stack" $(((many - few) / 2000))
done
