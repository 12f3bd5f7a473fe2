#!/usr/bin/env bash
# Makes the README's screenshots from the real binary, with its real colours:
#   1. tmux (on a private socket) runs target/release/relaytop at a fixed size;
#   2. `tmux capture-pane -e -p` captures the screen with its colour codes;
#   3. screenshots/ansi2html.py turns the capture into an HTML page in DejaVu Sans Mono;
#   4. headless Chromium renders the page to a PNG in screenshots/.
# Needs tmux, python3, chromium and fonts-dejavu-core (Debian: apt-get install tmux chromium
# fonts-dejavu-core). Takes about two minutes: each shot lets the default world run a while.
set -euo pipefail
cd "$(dirname "$0")/.."

# RELAYTOP_BIN=target/debug/relaytop uses a binary already built (no release build).
BIN="${RELAYTOP_BIN:-${CARGO_TARGET_DIR:-target}/release/relaytop}"
OUT=screenshots
SOCKET="relaytop-shots-$$"
TMP=$(mktemp -d)
FONT_PX=14
CHROME=${CHROME:-chromium}

cleanup() {
    tmux -L "$SOCKET" kill-server 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -z ${RELAYTOP_BIN:-} ]]; then
    cargo build --release --quiet
fi

# shoot NAME COLS ROWS SECONDS BG "KEY KEY ..." [relaytop arguments...]
#   runs relaytop for SECONDS, sends the keys (tmux key names; `text:Some_words` types the
#   words, `wait:N` waits N seconds), captures and renders.
#   ONLY=name1,name2 makes only those shots.
shoot() {
    local name=$1 cols=$2 rows=$3 seconds=$4 bg=$5 keys=$6
    shift 6
    local session="shot-$name"
    if [[ -n ${ONLY:-} && ",$ONLY," != *",$name,"* ]]; then
        return 0
    fi
    tmux -L "$SOCKET" new-session -d -s "$session" -x "$cols" -y "$rows" \
        -e COLORTERM=truecolor -e RELAY_KEY="${RELAY_KEY:-}" -e ALERT_WEBHOOK_URL="${ALERT_WEBHOOK_URL:-}" "$BIN --log-dir $TMP/logs $*"
    sleep "$seconds"
    if ! tmux -L "$SOCKET" has-session -t "$session" 2>/dev/null; then
        echo "relaytop exited early for the $name shot; see $TMP/logs" >&2
        exit 1
    fi
    for key in $keys; do
        if [[ $key == text:* ]]; then
            # Typed text, `_` for a space: text:Why_do_streams_die?
            local text=${key#text:}
            tmux -L "$SOCKET" send-keys -t "$session" -l "${text//_/ }"
        elif [[ $key == wait:* ]]; then
            sleep "${key#wait:}"
        else
            tmux -L "$SOCKET" send-keys -t "$session" "$key"
        fi
        sleep 0.4
    done
    sleep 1.2
    tmux -L "$SOCKET" capture-pane -e -p -t "$session" > "$TMP/$name.ansi"
    tmux -L "$SOCKET" send-keys -t "$session" Escape q
    sleep 1
    tmux -L "$SOCKET" kill-session -t "$session" 2>/dev/null || true

    python3 "$OUT/ansi2html.py" "$TMP/$name.ansi" "$TMP/$name.html" \
        --cols "$cols" --rows "$rows" --bg "$bg" --font-px "$FONT_PX"
    # DejaVu Sans Mono: 0.602 em a column, 1.2 em a row, 10 px of padding around.
    local width height
    width=$(python3 -c "print(round($cols * $FONT_PX * 0.6021) + 22)")
    height=$(python3 -c "print($rows * round($FONT_PX * 1.2) + 20)")
    "$CHROME" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
        --force-device-scale-factor=1 --user-data-dir="$(mktemp -d -p "$TMP")" \
        --screenshot="$PWD/$OUT/$name.png" --window-size="$width,$height" \
        "file://$TMP/$name.html" >/dev/null 2>&1
    echo "screenshots/$name.png ($cols x $rows)"
}

DARK_BG="#1c1c1c"
LIGHT_BG="#fafafa"

# The default world after 30 s: sessions, health, cost, stream and events.
shoot main 200 50 30 "$DARK_BG" ""
# The help overlay, generated from the key table.
shoot help 200 50 6 "$DARK_BG" "?"
# The light theme, with the selection moved to a legacy session.
shoot light 200 50 25 "$LIGHT_BG" "Down Down Down" --theme light
# The default world at 80x24: the compact layout.
shoot small 80 24 20 "$DARK_BG" ""

# A relay that turns every connection away: its sessions back off; the filter shows them and
# the stream pane follows the first one.
tmux -L "$SOCKET" new-session -d -s overloaded-relay \
    "$BIN --log-dir $TMP/logs sim --listen 127.0.0.1:18765 --profile $OUT/overloaded-relay.toml"
sleep 1
shoot backoff 200 50 22 "$DARK_BG" "/ s t a g i n g Enter" --config "$OUT/backoff-world.toml"

# `relaytop URL`: one Anthropic-format station watched with no configuration file (the
# simulator's newapi profile thinks before it answers; the stream pane shows both times).
export RELAY_KEY=sk-ant-api03-screenshotsOnly0000000000
tmux -L "$SOCKET" new-session -d -s newapi-station \
    "$BIN --log-dir $TMP/logs sim --listen 127.0.0.1:18766 --profile newapi"
sleep 1
shoot url 200 50 14 "$DARK_BG" "" http://127.0.0.1:18766/v1/messages --key-env RELAY_KEY --probes 3 --interval 2

# A chat pane: a question typed, its reply streamed with its latency and cost under it.
shoot chat 120 36 3 "$DARK_BG" "text:Why_do_streams_die_after_60_seconds_without_heartbeats? Enter wait:5" chat
# The canary of the users' YAML on simulated relays, 120 times faster: its pane and rules.
shoot canary 200 50 25 "$DARK_BG" "" --config tests/data/canary_deployment_config.yaml --simulate --time-scale 120
# A recorded run replayed on the dashboard: paused, 10 s in, with the timeline and its markers.
if [[ -z ${ONLY:-} || ",$ONLY," == *",replay,"* ]]; then
    "$BIN" --log-dir "$TMP/logs" --record-dir "$TMP/rec" headless --duration 20s --format json >/dev/null
    shoot replay 200 50 3 "$DARK_BG" "space Right" replay "$(ls -d "$TMP"/rec/*/ | head -1)"
fi

# The alerts pane (`a`) over docs/examples/alerts.toml: the legacy relay's TTFT p99 above
# 800 ms fires within 30 s and is delivered to a local webhook that answers 200.
if [[ -z ${ONLY:-} || ",$ONLY," == *",alerts,"* ]]; then
    tmux -L "$SOCKET" new-session -d -s alert-hook "python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get(\"content-length\", 0)))
        self.send_response(200); self.send_header(\"content-length\", \"2\"); self.end_headers(); self.wfile.write(b\"ok\")
    def log_message(self, *a): pass
http.server.HTTPServer((\"127.0.0.1\", 18767), H).serve_forever()
'"
    export ALERT_WEBHOOK_URL=http://127.0.0.1:18767/hook
    shoot alerts 200 50 32 "$DARK_BG" "a" --config docs/examples/alerts.toml
fi

# The fleet view (`relaytop --prometheus URL`): a Prometheus scraping relaytop agents in two
# places, e.g. tests/fleet_prometheus.sh's set-up left running. Only with FLEET_PROMETHEUS=URL.
if [[ -n ${FLEET_PROMETHEUS:-} ]]; then
    shoot fleet 200 50 6 "$DARK_BG" "" --prometheus "$FLEET_PROMETHEUS"
fi
