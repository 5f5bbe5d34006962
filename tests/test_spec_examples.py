"""The examples of shared/spec/context-managers.txt, run as written against a fake client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from instrumentation_sdk import configure, count_tokens, flush, llm_span, llm_span_with_tokens
from instrumentation_sdk.exporters import InMemoryExporter

REPO = Path(__file__).resolve().parent.parent


class FakeCompletions:
    """``client.chat.completions.create`` with the shape of the OpenAI SDK's response."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def _response(self, model: str, messages: list[dict[str, str]]) -> SimpleNamespace:
        self.calls.append({"model": model, "messages": messages})
        return SimpleNamespace(
            model=f"{model}-2024-08-06",
            usage=SimpleNamespace(prompt_tokens=11, completion_tokens=7),
            choices=[SimpleNamespace(message=SimpleNamespace(content="Hi there!"))],
        )


class AsyncCompletions(FakeCompletions):
    async def create(self, model: str, messages: list[dict[str, str]]) -> SimpleNamespace:
        await asyncio.sleep(0)
        return self._response(model, messages)


class SyncCompletions(FakeCompletions):
    def create(self, model: str, messages: list[dict[str, str]]) -> SimpleNamespace:
        return self._response(model, messages)


def fake_client(completions: FakeCompletions) -> SimpleNamespace:
    return SimpleNamespace(chat=SimpleNamespace(completions=completions))


@pytest.fixture
def exporter() -> InMemoryExporter:
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)
    return memory


def exported(exporter: InMemoryExporter, count: int) -> list[dict[str, Any]]:
    assert flush(10)
    spans = exporter.spans
    assert len(spans) == count, spans
    return spans


def test_basic_usage(exporter: InMemoryExporter) -> None:
    client = fake_client(AsyncCompletions())

    async def handle_request(user_id: str, prompt: str) -> str:
        async with llm_span(model="gpt-4o", provider="openai", user_id=user_id) as span:
            response = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": prompt}]
            )
            span.set_metadata("prompt_tokens", response.usage.prompt_tokens)
            span.set_metadata("completion_tokens", response.usage.completion_tokens)
            span.set_metadata("actual_model", response.model)
            return str(response.choices[0].message.content)

    assert asyncio.run(handle_request("user-42", "Hello!")) == "Hi there!"
    (record,) = exported(exporter, 1)
    assert record["model"] == "gpt-4o"
    assert record["provider"] == "openai"
    assert record["user_id"] == "user-42"
    assert record["status"] == "ok"
    assert record["metadata"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "actual_model": "gpt-4o-2024-08-06",
    }


def test_automatic_token_pre_counting(exporter: InMemoryExporter) -> None:
    completions = AsyncCompletions()
    client = fake_client(completions)
    seen_before_call: list[Any] = []

    async def handle(prompt: str) -> None:
        async with llm_span_with_tokens(
            model="gpt-4o",
            provider="openai",
            prompt=prompt,  # String prompt passed directly
        ) as span:
            seen_before_call.append(dict(span.metadata))
            response = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": prompt}]
            )
            span.set_metadata("completion_tokens", response.usage.completion_tokens)

    prompt = "Summarise the meeting notes in three bullet points."
    asyncio.run(handle(prompt))
    expected = count_tokens(prompt, "gpt-4o").tokens
    # Counted before the outbound call.
    assert seen_before_call[0]["prompt_tokens"] == expected
    (record,) = exported(exporter, 1)
    assert record["metadata"]["prompt_tokens"] == expected
    assert record["metadata"]["token_count_method"] == "tiktoken"
    assert record["metadata"]["completion_tokens"] == 7


def test_chat_message_support(exporter: InMemoryExporter) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    with llm_span_with_tokens(model="gpt-4o", provider="openai", prompt=messages):
        pass
    (record,) = exported(exporter, 1)
    assert record["metadata"]["prompt_tokens"] == 19  # shared/token-golden, cookbook rule


def test_unknown_model_falls_back_to_the_heuristic(exporter: InMemoryExporter) -> None:
    with llm_span_with_tokens(model="my-local-llama", prompt="Bonjour tout le monde"):
        pass
    (record,) = exported(exporter, 1)
    assert record["metadata"]["token_count_method"] == "heuristic"
    assert record["metadata"]["prompt_tokens"] > 0
    assert "token_encoding" not in record["metadata"]


def test_synchronous_context_manager(exporter: InMemoryExporter) -> None:
    client = fake_client(SyncCompletions())
    with llm_span(model="gpt-4o", provider="openai") as span:
        response = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}]
        )
        span.set_metadata("prompt_tokens", response.usage.prompt_tokens)
    (record,) = exported(exporter, 1)
    assert record["metadata"] == {"prompt_tokens": 11}
    assert record["end_time_unix_nano"] >= record["start_time_unix_nano"]


def test_error_handling(exporter: InMemoryExporter) -> None:
    async def failing() -> None:
        async with llm_span(model="gpt-4o", provider="openai"):
            # This will trigger an error span to be emitted
            raise TimeoutError("Provider failed to respond")

    with pytest.raises(TimeoutError, match="Provider failed to respond"):
        asyncio.run(failing())
    (record,) = exported(exporter, 1)
    assert record["status"] == "error"
    assert record["error_type"] == "TimeoutError"
    assert record["error_message"] == "Provider failed to respond"


def test_nested_context_managers(exporter: InMemoryExporter) -> None:
    client = fake_client(AsyncCompletions())

    async def topology() -> None:
        async with llm_span(model="router-v2", service_name="agent-router") as parent:
            # Router logic
            async with llm_span(model="gpt-4o", service_name="writer-agent") as child:
                # Worker logic
                response = await client.chat.completions.create(model="gpt-4o", messages=[])
                child.set_metadata("completion_tokens", response.usage.completion_tokens)
            assert child.parent_span_id == parent.span_id

    asyncio.run(topology())
    child, parent = exported(exporter, 2)  # the child ends first
    assert parent["parent_span_id"] is None
    assert child["parent_span_id"] == parent["span_id"]
    assert child["trace_id"] == parent["trace_id"]
    assert (parent["service_name"], child["service_name"]) == ("agent-router", "writer-agent")


def test_quickstart_fills_the_store_and_the_cli_shows_it(tmp_path: Path) -> None:
    """The README's main job: the example program, then `spans` and `stats`."""
    env = {**os.environ, "INSTRUMENTATION_SDK_DB": str(tmp_path / "spans.db")}
    env.pop("INSTRUMENTATION_SDK_EXPORTER", None)
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "recorded 20 spans: 20 exported, 0 dropped" in run.stdout

    cli = [sys.executable, "-m", "instrumentation_sdk"]
    spans = subprocess.run(
        [*cli, "spans", "--last", "50", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    records = json.loads(spans.stdout)
    assert len(records) == 20
    assert {r["model"] for r in records} == {"gpt-4o", "gpt-4o-mini", "router-v2"}
    assert sum(r["status"] == "error" for r in records) >= 1
    children = [r for r in records if r["parent_span_id"]]
    assert len(children) == 4
    by_id = {r["span_id"]: r for r in records}
    assert all(by_id[c["parent_span_id"]]["model"] == "router-v2" for c in children)
    streamed = [r for r in records if "stream_status" in r["metadata"]]
    assert len(streamed) == 4
    for record in streamed:
        metadata = record["metadata"]
        assert metadata["stream_status"] == "completed"
        assert metadata["stream_chunks"] >= 6  # a word a chunk
        assert metadata["completion_tokens"] >= metadata["stream_chunks"]
        assert 0 < metadata["time_to_first_token_ms"] <= record["duration_ms"]

    stats = subprocess.run(
        [*cli, "stats", "--by", "model"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "gpt-4o" in stats.stdout
    assert "P95" in stats.stdout.upper()
