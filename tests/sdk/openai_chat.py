"""The official OpenAI Python SDK streaming a chat completion from `relaytop sim`, unchanged,
with an ordinary `sk-…` key. Usage: python tests/sdk/openai_chat.py http://127.0.0.1:PORT/v1
Exits non-zero when the stream fails or carries no text or usage."""

import sys

import openai


def main() -> int:
    base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765/v1"
    client = openai.OpenAI(base_url=base_url, api_key="sk-proj-relaytopSdkCheck0123456789")
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=12,
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    print(f"text: {text!r}")
    print(f"finish_reason: {finish}, usage: {usage}")
    try:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        bad = openai.OpenAI(base_url=base_url, api_key="not-a-key")
        bad.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        print("a malformed key was accepted")
        return 1
    except openai.AuthenticationError as e:
        print(f"malformed key refused: {e.status_code}")
    return 0 if text and usage and usage.completion_tokens > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
