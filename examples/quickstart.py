"""instrumentation-sdk in one file: a fake LLM client (no network) wrapped in spans.

Run it, then look at what it recorded in the local store:

    python examples/quickstart.py
    instrumentation-sdk spans --last 10
    instrumentation-sdk stats --by model

With nothing configured, spans go to the embedded SQLite store (INSTRUMENTATION_SDK_DB, or
~/.local/share/instrumentation-sdk/spans.db). This file follows the spec's examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from instrumentation_sdk import flush, get_settings, llm_span, llm_span_with_tokens, stats
from instrumentation_sdk.exporters.sqlite import default_db_path


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Message:
    content: str


@dataclass
class Choice:
    message: Message
    finish_reason: str = "stop"


@dataclass
class Completion:
    model: str
    usage: Usage
    choices: list[Choice]


class FakeChatCompletions:
    """Answers like an OpenAI client would, after a short, random delay."""

    def __init__(self, fail_every: int = 5) -> None:
        self.calls = 0
        self.fail_every = fail_every

    async def create(self, model: str, messages: list[dict[str, str]]) -> Completion:
        self.calls += 1
        await asyncio.sleep(random.uniform(0.005, 0.03))
        if self.calls % self.fail_every == 0:
            raise TimeoutError("Provider failed to respond")
        prompt = " ".join(m["content"] for m in messages)
        answer = f"A short answer about {prompt[:30]!r}."
        return Completion(
            model=f"{model}-2024-08-06",
            usage=Usage(prompt_tokens=len(prompt) // 4 + 7, completion_tokens=len(answer) // 4),
            choices=[Choice(Message(answer))],
        )

    async def stream(self, model: str, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        """Streams the answer a few words at a time, as a streamed completion arrives."""
        await asyncio.sleep(random.uniform(0.005, 0.02))  # time to the first token
        prompt = " ".join(m["content"] for m in messages)
        for word in f"A streamed answer about {prompt[:30]!r}.".split(" "):
            await asyncio.sleep(0.002)
            yield word + " "


class FakeChat:
    def __init__(self) -> None:
        self.completions = FakeChatCompletions()


class FakeClient:
    def __init__(self) -> None:
        self.chat = FakeChat()


client = FakeClient()


async def handle_request(user_id: str, prompt: str) -> str | None:
    """The spec's basic example: set metadata from the provider's response."""
    async with llm_span(model="gpt-4o", provider="openai", user_id=user_id) as span:
        response = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": prompt}]
        )
        span.set_metadata("prompt_tokens", response.usage.prompt_tokens)
        span.set_metadata("completion_tokens", response.usage.completion_tokens)
        span.set_metadata("actual_model", response.model)
        return response.choices[0].message.content


async def handle_with_tokens(prompt: str) -> None:
    """Token pre-counting: prompt_tokens is recorded before the call goes out."""
    async with llm_span_with_tokens(model="gpt-4o", provider="openai", prompt=prompt) as span:
        response = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": prompt}]
        )
        span.set_metadata("completion_tokens", response.usage.completion_tokens)
        span.set_metadata("finish_reason", response.choices[0].finish_reason)


async def handle_streamed(prompt: str) -> str:
    """Streaming: the span ends when the stream does, with time to first token and chunks."""
    messages = [{"role": "user", "content": prompt}]
    async with llm_span_with_tokens(model="gpt-4o", provider="openai", prompt=messages) as span:
        stream = span.wrap_stream(client.chat.completions.stream(model="gpt-4o", messages=messages))
        return "".join([chunk async for chunk in stream])


async def router(question: str) -> None:
    """Nesting: a router span with a worker span inside it."""
    async with llm_span(model="router-v2", service_name="agent-router"):
        messages = [
            {"role": "system", "content": "You are a concise writer."},
            {"role": "user", "content": question},
        ]
        async with llm_span_with_tokens(
            model="gpt-4o-mini", provider="openai", service_name="writer-agent", prompt=messages
        ) as child:
            response = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            child.set_metadata("completion_tokens", response.usage.completion_tokens)


async def main() -> None:
    questions = [
        "What is a span?",
        "Why count tokens before the call?",
        "How do nested spans link?",
        "What happens when the provider times out?",
    ]
    for index, question in enumerate(questions):
        for task in (
            handle_request(f"user-{index}", question),
            handle_with_tokens(question),
            handle_streamed(question),
            router(question),
        ):
            # On a timeout the span records status="error"; the application handles the error.
            with contextlib.suppress(TimeoutError):
                await task


if __name__ == "__main__":
    asyncio.run(main())
    flush()
    figures = stats()
    print(
        f"recorded {figures['produced']} spans: {figures['exported']} exported, "
        f"{figures['dropped']} dropped"
    )
    settings = get_settings()
    if settings.exporter == "sqlite":
        print(f"stored in {settings.sqlite_path or default_db_path()}")
    print("now run: instrumentation-sdk spans --last 10   and   instrumentation-sdk stats")
