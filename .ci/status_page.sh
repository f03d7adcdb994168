#!/usr/bin/env bash
# The gateway's status page in a real headless browser (Debian's chromium): the numbers it
# shows equal /metrics, and a screenshot is taken (/tmp/ballast-status.png).
#   bash .ci/status_page.sh http://127.0.0.1:18080
set -euo pipefail
base=$1
browser() {
    chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --virtual-time-budget=10000 "$@" 2>/dev/null
}
dom=$(browser --dump-dom "$base/")
case "$dom" in *'data-ready="1"'*) ;; *) echo "the status page did not load /metrics: $dom"; exit 1 ;; esac
metrics=$(curl -fsS "$base/metrics")
shown() { # the raw value the page shows in element $1
    echo "$dom" | grep -o "id=\"$1\" data-value=\"[^\"]*\"" | sed 's/.*data-value="//; s/"$//'
}
metric() { # the value of series $1 (its name and labels, exactly) in /metrics, or $2
    local line
    line=$(echo "$metrics" | grep -F "$1 " | grep -v '^#' | head -n 1 || true)
    if [ -n "$line" ]; then echo "${line##* }"; else echo "$2"; fi
}
check() { # check ELEMENT SERIES DEFAULT
    local page expected
    page=$(shown "$1")
    expected=$(metric "$2" "$3")
    if [ "$page" != "$expected" ]; then
        echo "status page $1 shows '$page', /metrics has $2 = '$expected'"
        exit 1
    fi
    echo "status page $1 = $page = $2"
}
check spend ballast_spend_today_usd 0
check error-rate ballast_error_rate 0
check latency ballast_avg_latency_seconds 0
check budget-remaining 'ballast_budget_remaining_usd{scope="global"}' ''
rows=$(echo "$dom" | grep -o '<td class="state-[a-z_]*">' | wc -l)
series=$(echo "$metrics" | grep -c '^ballast_breaker_state{' || true)
[ "$rows" -eq "$series" ] || { echo "status page shows $rows breakers, /metrics has $series"; exit 1; }
echo "status page breakers: $rows"
rm -f /tmp/ballast-status.png
browser --window-size=1000,700 --screenshot=/tmp/ballast-status.png "$base/" >/dev/null
size=$(stat -c %s /tmp/ballast-status.png)
[ "$size" -gt 10000 ] || { echo "screenshot too small: $size bytes"; exit 1; }
echo "screenshot /tmp/ballast-status.png: $size bytes"
