"""Span events and opt-in content capture, through every local exporter: events recorded with
times and attributes and bounded per span; prompts and completions absent unless capture is
switched on (by ``configure`` or either environment variable), bounded by
``max_content_bytes`` and counted when cut, with the token count always covering the whole
prompt."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import (
    configure,
    count_tokens,
    flush,
    llm_span,
    llm_span_with_tokens,
    shutdown,
    stats,
)
from instrumentation_sdk.exporters import (
    ConsoleExporter,
    InMemoryExporter,
    JsonlExporter,
    SqliteExporter,
)
from instrumentation_sdk.store import list_spans

SECRET_PROMPT = "my card is 4111 1111 1111 1111, please help"
SECRET_COMPLETION = "sure, the card ending 1111 is noted"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for name in list(os.environ):
        if name.startswith("INSTRUMENTATION_SDK_") or name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(tmp_path / "default.db"))
    yield
    shutdown(timeout=5.0)


def one_call(prompt: Any = SECRET_PROMPT, completion: Any = SECRET_COMPLETION) -> None:
    with llm_span_with_tokens("gpt-4o", "openai", prompt=prompt) as span:
        span.add_event("first_token", {"ttft_ms": 12.5})
        span.set_completion(completion)


def exported_everywhere(tmp_path: Path, **settings: Any) -> dict[str, str]:
    """One call through each local exporter; the text each one wrote or kept."""
    written: dict[str, str] = {}
    memory = InMemoryExporter()
    console = tmp_path / "console.txt"
    with console.open("w") as stream:
        for name, exporter in (
            ("memory", memory),
            ("jsonl", JsonlExporter(tmp_path / "spans.jsonl")),
            ("sqlite", SqliteExporter(tmp_path / "spans.db")),
            ("console", ConsoleExporter(stream)),
        ):
            configure(exporter=exporter, flush_interval=0.05, **settings)
            one_call()
            assert flush(timeout=5.0), name
            shutdown(timeout=5.0)
    written["memory"] = json.dumps(memory.spans)
    written["jsonl"] = (tmp_path / "spans.jsonl").read_text()
    with sqlite3.connect(tmp_path / "spans.db") as conn:
        written["sqlite"] = json.dumps(conn.execute("SELECT * FROM spans").fetchall())
    written["store"] = json.dumps(list_spans(tmp_path / "spans.db"))
    written["console"] = console.read_text()
    return written


def test_content_is_off_by_default_and_reaches_no_exporter_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    written = exported_everywhere(tmp_path)
    for name, text in written.items():
        assert "4111" not in text, name
        assert "ending 1111" not in text, name
    assert "4111" not in caplog.text
    record = json.loads(written["jsonl"].splitlines()[0])
    assert record["prompt"] is None
    assert record["completion"] is None
    assert record["metadata"]["prompt_tokens"] == count_tokens(SECRET_PROMPT, "gpt-4o").tokens
    assert [event["name"] for event in record["events"]] == ["first_token"]


def test_content_on_reaches_every_exporter(tmp_path: Path) -> None:
    written = exported_everywhere(tmp_path, capture_content=True)
    for name in ("memory", "jsonl", "sqlite", "store"):
        assert SECRET_PROMPT in written[name], name
        assert SECRET_COMPLETION in written[name], name
    record = json.loads(written["jsonl"].splitlines()[0])
    assert (record["prompt"], record["completion"]) == (SECRET_PROMPT, SECRET_COMPLETION)
    (stored,) = list_spans(tmp_path / "spans.db")
    assert (stored["prompt"], stored["completion"]) == (SECRET_PROMPT, SECRET_COMPLETION)
    assert stored["events"][0]["name"] == "first_token"
    assert stored["events"][0]["attributes"] == {"ttft_ms": 12.5}


@pytest.mark.parametrize(
    "variable",
    ["INSTRUMENTATION_SDK_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"],
)
def test_either_environment_variable_turns_capture_on(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "true")
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)
    one_call()
    assert flush(timeout=5.0)
    assert memory.spans[-1]["prompt"] == SECRET_PROMPT
    # configure() wins over the environment.
    configure(exporter=memory, flush_interval=0.05, capture_content=False)
    one_call()
    assert flush(timeout=5.0)
    assert memory.spans[-1]["prompt"] is None
    assert memory.spans[-1]["completion"] is None


def test_the_sdk_variable_cannot_switch_off_what_otel_switched_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("INSTRUMENTATION_SDK_CAPTURE_CONTENT", "false")
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)
    one_call()
    assert flush(timeout=5.0)
    assert memory.spans[-1]["prompt"] == SECRET_PROMPT


def test_the_environment_applies_to_spans_before_any_pipeline(tmp_path: Path) -> None:
    """The default pipeline starts when the first span ends: the first span's prompt (recorded
    when it starts) already follows the environment."""
    path = tmp_path / "spans.jsonl"
    code = textwrap.dedent(
        """
        import instrumentation_sdk as sdk
        with sdk.llm_span_with_tokens("gpt-4o", prompt="first prompt") as span:
            span.set_completion("first completion")
        sdk.flush()
        """
    )
    env = {
        **os.environ,
        "INSTRUMENTATION_SDK_EXPORTER": "jsonl",
        "INSTRUMENTATION_SDK_JSONL_PATH": str(path),
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "TRUE",
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (record["prompt"], record["completion"]) == ("first prompt", "first completion")


def test_a_bad_capture_variable_is_logged_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("INSTRUMENTATION_SDK_CAPTURE_CONTENT", "maybe")
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)
    one_call()
    assert flush(timeout=5.0)
    assert memory.spans[-1]["prompt"] is None
    assert "INSTRUMENTATION_SDK_CAPTURE_CONTENT='maybe'" in caplog.text
    with pytest.raises(ValueError, match="capture_content must be True or False"):
        configure(capture_content="yes")  # type: ignore[arg-type]


def test_content_is_bounded_and_counted_but_the_count_covers_the_whole_prompt() -> None:
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05, capture_content=True, max_content_bytes=64)
    long_prompt = "word " * 1000
    messages = [{"role": "user", "content": "x" * 500}]
    before = stats()["truncated"]
    with llm_span_with_tokens("gpt-4o", prompt=long_prompt) as span:
        span.set_completion(messages)
    with llm_span_with_tokens("gpt-4o", prompt=messages) as small:
        small.set_completion("short")
    assert flush(timeout=5.0)
    first, second = memory.spans[-2:]
    assert first["metadata"]["prompt_tokens"] == count_tokens(long_prompt, "gpt-4o").tokens
    assert first["prompt"].startswith("word word")
    assert first["prompt"].endswith("...[truncated 4936 bytes]")
    assert len(first["prompt"].split("...[truncated")[0].encode()) == 64
    # A message list over the bound: its JSON text, cut and marked.
    assert first["completion"].startswith('[{"role":"user","content":"xxx')
    assert "...[truncated" in first["completion"]
    assert second["prompt"].startswith('[{"role":"user","content":"xxx')
    assert second["completion"] == "short"
    assert stats()["truncated"] - before == 3


def test_message_lists_are_kept_as_given_under_the_bound() -> None:
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05, capture_content=True)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    with llm_span_with_tokens("gpt-4o", prompt=messages) as span:
        span.set_completion([{"role": "assistant", "content": "hello"}])
    assert flush(timeout=5.0)
    record = memory.spans[-1]
    assert record["prompt"] == messages
    assert record["completion"] == [{"role": "assistant", "content": "hello"}]


def test_events_have_times_attributes_and_a_bound(exporter: InMemoryExporter) -> None:
    before = stats()["events_dropped"]
    with llm_span("gpt-4o") as span:
        span.add_event("retry", {"attempt": 1, "error": {"status": 503}})
        for n in range(200):
            span.add_event("chunk", {"n": n})
        live = span.events
    span.add_event("late")  # after the end: ignored
    assert flush(timeout=5.0)
    record = exporter.spans[-1]
    assert len(record["events"]) == 128
    assert live == record["events"]
    first = record["events"][0]
    assert first["name"] == "retry"
    assert first["attributes"] == {"attempt": 1, "error": {"status": 503}}
    times = [event["time_unix_nano"] for event in record["events"]]
    assert times == sorted(times)
    assert record["start_time_unix_nano"] <= times[0] <= times[-1] <= record["end_time_unix_nano"]
    assert stats()["events_dropped"] - before == 73
    assert stats()["faults"].get("event_after_end", 0) >= 1


def test_set_completion_without_capture_records_nothing(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span:
        span.set_completion("text")
        span.add_event("odd", "not a dict")  # type: ignore[arg-type]
    assert flush(timeout=5.0)
    record = exporter.spans[-1]
    assert record["completion"] is None
    assert [(e["name"], e["attributes"]) for e in record["events"]] == [("odd", {})]
    assert stats()["faults"].get("argument_type", 0) >= 1
