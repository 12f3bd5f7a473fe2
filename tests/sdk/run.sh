#!/usr/bin/env bash
# The official SDKs (OpenAI chat and Responses, Anthropic, Google GenAI) streaming from
# `relaytop sim` unchanged, with ordinary keys. Needs python3 and PyPI (it makes a venv in
# target/sdk-venv); not part of `cargo test`, which touches nothing but loopback and
# needs no registry. Usage: tests/sdk/run.sh [PROFILE]   (default: newapi, which thinks)
set -euo pipefail
cd "$(dirname "$0")/../.."
profile="${1:-newapi}"
venv=target/sdk-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q openai anthropic google-genai
fi
cargo build -q -p relaytop
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/relaytop --no-record sim --listen "127.0.0.1:$port" --profile "$profile" 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null' EXIT
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
failed=0
for check in openai_chat:/v1 openai_responses:/v1 anthropic_messages: gemini:; do
  script="${check%%:*}"; path="${check#*:}"
  [ -f "tests/sdk/$script.py" ] || continue
  echo "== $script"
  if ! "$venv/bin/python" "tests/sdk/$script.py" "http://127.0.0.1:$port$path"; then
    echo "FAILED: $script"; failed=1
  fi
done
exit $failed
