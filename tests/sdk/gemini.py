#!/usr/bin/env python3
"""The official Google Gen AI SDK (google-genai) against a Gemini endpoint: streams one reply
with `generate_content_stream`, prints its text as it comes and the final usage_metadata, and
exits non-zero when the stream fails, is empty, or ends without a finish reason.

    python3 -m venv /work/venv-gemini && /work/venv-gemini/bin/pip install google-genai
    relaytop sim --listen 127.0.0.1:18765 &
    /work/venv-gemini/bin/python tests/sdk/gemini.py http://127.0.0.1:18765 [model] [key]

The key defaults to an `AIza…`-shaped test key (or GEMINI_API_KEY when set); it is never
printed.
"""

import os
import sys

from google import genai
from google.genai import types

TEST_KEY = "AIzaSyTESTKEYrelaytopSDK000000000000"


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    base_url = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else "gemini-2.5-flash"
    key = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("GEMINI_API_KEY", TEST_KEY)

    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=base_url, timeout=30_000),
    )
    text = []
    chunks = 0
    last = None
    try:
        for chunk in client.models.generate_content_stream(
            model=model,
            contents="Say hello.",
            config=types.GenerateContentConfig(max_output_tokens=64),
        ):
            chunks += 1
            last = chunk
            if chunk.text:
                text.append(chunk.text)
                print(chunk.text, end="", flush=True)
    except Exception as error:  # the SDK's errors: print the class and message, never the key
        message = str(error).replace(key, "[REDACTED]")
        print(f"\nFAILED: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    print()

    if not chunks or not "".join(text):
        print("FAILED: no text streamed", file=sys.stderr)
        return 1
    finish = None
    if last is not None and last.candidates:
        finish = last.candidates[0].finish_reason
    usage = last.usage_metadata if last is not None else None
    print(f"chunks: {chunks}")
    print(f"finish_reason: {finish}")
    if usage is None:
        print("FAILED: no usage_metadata", file=sys.stderr)
        return 1
    print(
        "usage_metadata: "
        f"prompt_token_count={usage.prompt_token_count} "
        f"candidates_token_count={usage.candidates_token_count} "
        f"thoughts_token_count={usage.thoughts_token_count} "
        f"cached_content_token_count={usage.cached_content_token_count} "
        f"total_token_count={usage.total_token_count}"
    )
    if finish is None:
        print("FAILED: the stream ended without a finish reason", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
