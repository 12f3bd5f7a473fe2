#!/usr/bin/env bash
# The fleet against a real Prometheus (Debian's `prometheus` package: prometheus, promtool):
# the generated rules pass `promtool check rules`; two agents with different locations on
# 127.0.0.1 are scraped; the fleet view (`relaytop --prometheus URL`, as text off a terminal)
# shows both locations; the generated "legacy slow" rule fires in Prometheus (the simulated
# legacy relay's TTFT p99 is about 890 ms, over the 800 ms of docs/fleet/agent.toml); and
# each agent's resident memory is sampled from /healthz.
#
#   cargo build && tests/fleet_prometheus.sh
#   RECORD_FIXTURES=1 tests/fleet_prometheus.sh    # also records tests/fixtures/prometheus/
#   cargo test --test it fleet -- --ignored        # the same, from cargo
#
# Ports 19090 (Prometheus), 19464 and 19465 (agents) on 127.0.0.1. Prints PASS at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${RELAYTOP_BIN:-$ROOT/target/debug/relaytop}"
WAIT="${FLEET_WAIT:-75}"
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
  echo "SKIP: prometheus and promtool are not installed (apt-get install prometheus)"
  exit 0
}
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# The example's alerts, sooner: `for` of 10 s instead of 30 s.
sed 's/^for_s = 30$/for_s = 10/' "$ROOT/docs/fleet/agent.toml" > "$TMP/agent.toml"
"$BIN" rules --config "$TMP/agent.toml" > "$TMP/rules.yml"
promtool check rules "$TMP/rules.yml"
promtool check rules "$ROOT/docs/fleet/rules.yml"
promtool check config "$ROOT/docs/fleet/prometheus.yml"
if command -v amtool >/dev/null; then # Debian's prometheus-alertmanager
  amtool check-config "$ROOT/docs/fleet/alertmanager.yml"
fi

start_agent() { # location port
  "$BIN" --record-dir "$TMP/rec-$1" agent --config "$TMP/agent.toml" --location "$1" \
    --label team=qa --listen "127.0.0.1:$2" --record-max-bytes 50M --record-max-age 1h \
    > "$TMP/agent-$1.out" 2> "$TMP/agent-$1.err" &
  PIDS+=($!)
}
start_agent sg 19464
start_agent fra 19465

cat > "$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: ["$TMP/rules.yml"]
scrape_configs:
  - job_name: relaytop
    static_configs:
      - targets: ["127.0.0.1:19464", "127.0.0.1:19465"]
EOF
promtool check config "$TMP/prometheus.yml"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address=127.0.0.1:19090 > "$TMP/prometheus.log" 2>&1 &
PIDS+=($!)

rss() { curl -s "http://127.0.0.1:$1/healthz" | sed -n 's/.*resident \([0-9]*\) MiB.*/\1/p'; }
echo "waiting ${WAIT}s for data and alerts; resident memory (MiB) sg, fra:"
for ((i = 0; i < WAIT; i += 15)); do
  sleep 15
  echo "  t=$((i + 15))s  $(rss 19464) $(rss 19465)"
done

for port in 19464 19465; do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null
done
curl -s http://127.0.0.1:19464/metrics > "$TMP/metrics.txt"
grep -m1 'relaytop_requests_total{' "$TMP/metrics.txt"
grep -q 'location="sg"' "$TMP/metrics.txt"

echo "--- the fleet view (text):"
"$BIN" --prometheus http://127.0.0.1:19090 | tee "$TMP/fleet.txt"
grep -q '^sg ' "$TMP/fleet.txt"
grep -q '^fra ' "$TMP/fleet.txt"
grep -q 'legacy slow at sg' "$TMP/fleet.txt"
grep -q 'legacy slow at fra' "$TMP/fleet.txt"

echo "--- Prometheus' alerts:"
curl -s http://127.0.0.1:19090/api/v1/alerts | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
for a in alerts:
    l = a["labels"]
    print(" ", a["state"], l["alertname"], l.get("location"), l.get("provider"), a["value"])
firing = {(a["labels"]["alertname"], a["labels"].get("location")) for a in alerts if a["state"] == "firing"}
assert ("legacy slow", "sg") in firing and ("legacy slow", "fra") in firing, firing
'

if [[ "${RECORD_FIXTURES:-}" == 1 ]]; then
  # The fleet view's queries, answered by this Prometheus, for `cargo test`.
  mkdir -p "$ROOT/tests/fixtures/prometheus"
  RELAYTOP_RECORD_PROMQL="$ROOT/tests/fixtures/prometheus" "$BIN" --prometheus http://127.0.0.1:19090 >/dev/null
fi

kill -TERM "${PIDS[0]}"
wait "${PIDS[0]}" || { echo "FAIL: the sg agent did not exit cleanly"; exit 1; }
grep -q 'terminated (SIGTERM)' "$TMP/agent-sg.out"
echo PASS
