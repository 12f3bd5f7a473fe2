#!/usr/bin/env python3
"""The official OpenAI Python SDK against a relay's (or `relaytop sim`'s) Responses API.

Usage: openai_responses.py BASE_URL [MODEL]   (BASE_URL ends in /v1, e.g. http://127.0.0.1:8765/v1)

Streams one response with `client.responses.create(..., stream=True)`, printing the text
deltas and the final usage; then the same with the `client.responses.stream(...)` helper, whose
final response is rebuilt by the SDK from the events. Exits non-zero on any failure: an
exception, no text, no terminal event, a sequence_number that does not go up by one, usage
missing.
"""

import os
import sys

import openai


def check_sequence(numbers):
    for before, after in zip(numbers, numbers[1:]):
        if after != before + 1:
            raise AssertionError(f"sequence_number jumped from {before} to {after}")


def raw_stream(client, model):
    print("== responses.create(stream=True)")
    stream = client.responses.create(
        model=model,
        instructions="Answer in one short sentence.",
        input=[{"role": "user", "content": "Say hello to the relay."}],
        max_output_tokens=64,
        store=False,
        stream=True,
    )
    text, thinking, numbers, final = [], [], [], None
    for event in stream:
        numbers.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
            print(f"delta: {event.delta!r}")
        elif event.type == "response.reasoning_summary_text.delta":
            thinking.append(event.delta)
        elif event.type in ("response.completed", "response.incomplete"):
            final = event.response
        elif event.type in ("response.failed", "error"):
            raise AssertionError(f"the stream failed: {event}")
    check_sequence(numbers)
    if final is None:
        raise AssertionError("no terminal event")
    if not text:
        raise AssertionError("no text")
    u = final.usage
    if u is None:
        raise AssertionError("no usage")
    print(f"thinking: {''.join(thinking)!r}")
    print(f"text: {''.join(text)!r}")
    print(
        f"status={final.status} id={final.id} model={final.model} "
        f"usage: input={u.input_tokens} (cached {u.input_tokens_details.cached_tokens}) "
        f"output={u.output_tokens} (reasoning {u.output_tokens_details.reasoning_tokens}) "
        f"total={u.total_tokens}"
    )
    if final.output_text != "".join(text):
        raise AssertionError(f"output_text {final.output_text!r} is not the deltas")
    print(f"events: {len(numbers)}, sequence_number {numbers[0]}..{numbers[-1]}")


def helper_stream(client, model):
    print("== responses.stream(...) helper")
    with client.responses.stream(
        model=model,
        input="Say hello again.",
        max_output_tokens=64,
        store=False,
    ) as stream:
        text = []
        for event in stream:
            if event.type == "response.output_text.delta":
                text.append(event.delta)
        final = stream.get_final_response()
    if not text or final.output_text != "".join(text):
        raise AssertionError(f"helper: {final.output_text!r} vs {''.join(text)!r}")
    print(f"text: {final.output_text!r}")
    print(f"status={final.status} usage: {final.usage.input_tokens} in, {final.usage.output_tokens} out")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    base_url = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else "gpt-5-mini"
    api_key = os.environ.get("OPENAI_API_KEY", "sk-proj-relaytopSDKcheck000000000000")
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    try:
        raw_stream(client, model)
        helper_stream(client, model)
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
