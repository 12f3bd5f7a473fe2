#!/usr/bin/env python3
"""anthropic-messages against the official Anthropic Python SDK: streams one message from a
relay (the simulator: `relaytop sim`) with `client.messages.stream(...)`, once more with
`messages.create(stream=True)`, and once with the key as `Authorization: Bearer`
(`auth_token`), printing the text and the final usage. Exits non-zero on any failure.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install anthropic
    /tmp/venv/bin/python tests/sdk/anthropic_messages.py http://127.0.0.1:PORT [MODEL]

The base URL is the relay's root (the SDK adds /v1/messages)."""

import sys

import anthropic

KEY = "sk-ant-api03-relaytopSDKcheck0001"


def check(label, text, usage, stop_reason):
    print(f"[{label}] text: {text!r}")
    print(f"[{label}] usage: {usage}")
    print(f"[{label}] stop_reason: {stop_reason}")
    if not text:
        raise SystemExit(f"{label}: no text")
    if stop_reason is None:
        raise SystemExit(f"{label}: no stop_reason")
    if not usage or not usage.get("output_tokens"):
        raise SystemExit(f"{label}: no output_tokens in {usage}")
    if usage.get("input_tokens") is None:
        raise SystemExit(f"{label}: no input_tokens in {usage}")


def with_helper(client, model):
    """`client.messages.stream(...)`: the SDK's accumulating helper."""
    with client.messages.stream(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    usage = final.usage
    check(
        "messages.stream",
        text,
        {
            "input_tokens": usage.input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "output_tokens": usage.output_tokens,
        },
        final.stop_reason,
    )


def with_raw_events(client, model, label):
    """`messages.create(stream=True)`: the raw event iterator."""
    text, usage, stop_reason, kinds = [], {}, None, []
    events = client.messages.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
    )
    for event in events:
        kinds.append(event.type)
        if event.type == "message_start":
            u = event.message.usage
            usage["input_tokens"] = u.input_tokens
            usage["output_tokens"] = u.output_tokens
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            text.append(event.delta.text)
        elif event.type == "message_delta":
            stop_reason = event.delta.stop_reason
            # Cumulative: the last one wins.
            usage["output_tokens"] = event.usage.output_tokens
    if kinds[0] != "message_start" or kinds[-1] != "message_stop":
        raise SystemExit(f"{label}: events {kinds}")
    check(label, "".join(text), usage, stop_reason)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    base_url = sys.argv[1].rstrip("/")
    model = sys.argv[2] if len(sys.argv) > 2 else "claude-sonnet-4-5"
    print(f"anthropic {anthropic.__version__} against {base_url}")
    client = anthropic.Anthropic(base_url=base_url, api_key=KEY, max_retries=0)
    with_helper(client, model)
    with_raw_events(client, model, "create(stream=True)")
    bearer = anthropic.Anthropic(base_url=base_url, auth_token=KEY, max_retries=0)
    with_raw_events(bearer, model, "auth_token (Bearer)")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except anthropic.APIError as e:
        raise SystemExit(f"failed: {type(e).__name__}: {e}")
