"""A small service instrumented with ``llm_span``: nothing in it mentions OTLP.

Run it with two environment variables and its spans go to any OpenTelemetry backend:

    INSTRUMENTATION_SDK_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:6006 \
        python examples/otlp_service.py

Prompts and completions are recorded only when content capture is on, for example with
OpenTelemetry's own switch ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import asyncio
import sys

from instrumentation_sdk import flush, llm_span, llm_span_with_tokens


async def fake_llm(prompt: str) -> str:
    await asyncio.sleep(0.01)
    return prompt.upper()


async def handle_request(user_id: str, question: str) -> str:
    async with llm_span(
        "gpt-4o-mini", "openai", name="router", user_id=user_id, session_id=f"conv-{user_id}"
    ) as router:
        router.set_metadata("route", "answer")
        messages = [{"role": "user", "content": question}]
        async with llm_span_with_tokens("gpt-4o", "openai", prompt=messages) as span:
            span.add_event("request_sent", {"attempt": 1})
            answer = await fake_llm(question)
            span.set_completion(answer)  # recorded only with content capture on
            span.set_metadata("completion_tokens", len(answer.split()))
            span.set_metadata("actual_model", "gpt-4o-2024-08-06")
            span.set_metadata("finish_reason", "stop")
        return answer


async def main() -> None:
    print(await handle_request("u-1", "What is OTLP?"))
    try:
        async with llm_span("claude-3-5-sonnet", "anthropic", user_id="u-2"):
            raise TimeoutError("upstream took too long")
    except TimeoutError:
        pass


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0 if flush(10.0) else 1)
