"""Processors on the one export path: built-in ones in the core, Python ones on records, each
format encoded once after them; editing, dropping (``filtered``), failing closed
(``processor_errors``), a slow processor never reaching the request thread, and the accounting
identity holding throughout."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import configure, flush, llm_span, stats
from instrumentation_sdk.exporters import InMemoryExporter, JsonlExporter
from instrumentation_sdk.processors import RustProcessor, drop_keys, sample


def balanced() -> dict[str, Any]:
    current = stats()
    assert current["produced"] == current["exported"] + current["dropped"] + current["buffered"]
    return current


def spans(count: int, **metadata: Any) -> list[str]:
    ids = []
    for n in range(count):
        with llm_span("gpt-4o", "openai", n=n, **metadata) as span:
            ids.append(span.trace_id)
    return ids


def test_builtin_processors_drop_keys_and_sample_by_trace(
    exporter: InMemoryExporter, tmp_path: Path
) -> None:
    jsonl = JsonlExporter(tmp_path / "spans.jsonl")
    configure(exporter=jsonl, flush_interval=0.05, processors=[drop_keys("secret"), sample(0.5)])
    before = balanced()
    trace_ids = spans(400, secret="s3cr3t", kept="yes")
    assert flush(timeout=5.0)
    after = balanced()
    records = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    assert 120 < len(records) < 280
    assert all("secret" not in r["metadata"] and r["metadata"]["kept"] == "yes" for r in records)
    # Sampling is decided by the trace id: the same ids are kept by a fresh sampler.
    bound = int(0.5 * 2**64)
    expected = [t for t in trace_ids if int(t, 16) & (2**64 - 1) < bound]
    assert [r["trace_id"] for r in records] == expected
    assert after["filtered"] - before["filtered"] == 400 - len(records)
    assert after["exported"] - before["exported"] == len(records)


def test_a_python_processor_edits_and_drops_on_records(exporter: InMemoryExporter) -> None:
    seen: list[dict[str, Any]] = []

    def redact(record: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(record)
        if record["metadata"].get("n", 0) % 2:
            return None
        record["metadata"]["user_email"] = "[redacted]"
        record["model"] = record["model"].upper()
        return record

    configure(exporter=exporter, flush_interval=0.05, processors=[drop_keys("noise"), redact])
    before = balanced()
    spans(10, user_email="a@b.c", noise=1)
    assert flush(timeout=5.0)
    after = balanced()
    assert len(seen) == 10
    assert all("noise" not in r["metadata"] for r in seen), "built-in ones run first"
    kept = exporter.spans[-5:]
    assert [r["metadata"]["n"] for r in kept] == [0, 2, 4, 6, 8]
    assert all(r["metadata"]["user_email"] == "[redacted]" for r in kept)
    assert all(r["model"] == "GPT-4O" for r in kept)
    assert after["filtered"] - before["filtered"] == 5


@pytest.mark.parametrize("exporter_kind", ["memory", "jsonl"])
def test_a_raising_processor_fails_closed(
    exporter: InMemoryExporter,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fresh_faults: None,
    exporter_kind: str,
) -> None:
    def redactor(record: dict[str, Any]) -> dict[str, Any]:
        if record["metadata"]["n"] == 3:
            raise RuntimeError("redaction backend down")
        record["metadata"]["email"] = "[redacted]"
        return record

    path = tmp_path / "spans.jsonl"
    target = exporter if exporter_kind == "memory" else JsonlExporter(path)
    configure(exporter=target, flush_interval=0.05, processors=[redactor])
    before = balanced()
    spans(6, email="alice@example.com")
    assert flush(timeout=5.0)
    after = balanced()
    text = json.dumps(exporter.spans) if exporter_kind == "memory" else path.read_text()
    assert "alice@example.com" not in text, "never exported unprocessed"
    assert text.count("[redacted]") == 5
    assert after["processor_errors"] - before["processor_errors"] == 1
    assert after["exported"] - before["exported"] == 5
    assert "RuntimeError: redaction backend down" in caplog.text


def test_a_processor_returning_a_non_record_fails_closed(
    exporter: InMemoryExporter, tmp_path: Path
) -> None:
    path = tmp_path / "spans.jsonl"
    configure(
        exporter=JsonlExporter(path),
        flush_interval=0.05,
        processors=[lambda r: {**r, "trace_id": "not hex"} if r["metadata"]["n"] else r],
    )
    before = balanced()
    spans(3)
    assert flush(timeout=5.0)
    after = balanced()
    assert after["processor_errors"] - before["processor_errors"] == 2
    assert len(path.read_text().splitlines()) == 1
    configure(exporter=exporter, flush_interval=0.05, processors=[lambda record: "text"])
    spans(2)
    assert flush(timeout=5.0)
    assert balanced()["processor_errors"] - after["processor_errors"] == 2


def test_a_slow_processor_never_slows_the_request_thread(exporter: InMemoryExporter) -> None:
    release = threading.Event()

    def slow(record: dict[str, Any]) -> dict[str, Any]:
        release.wait(10.0)
        return record

    configure(
        exporter=exporter,
        flush_interval=0.01,
        batch_size=16,
        buffer_capacity=64,
        processors=[slow],
        exit_timeout=5.0,
    )
    before = balanced()
    started = time.perf_counter()
    spans(500)  # the flusher is stuck in the processor: the buffer fills, spans are dropped
    elapsed = time.perf_counter() - started
    release.set()
    assert flush(timeout=10.0)
    after = balanced()
    # Blocking would take the processor's 10 s; never waiting takes a few milliseconds.
    assert elapsed < 5.0, f"the request thread waited for the processor ({elapsed:.1f}s)"
    assert after["dropped_buffer_full"] - before["dropped_buffer_full"] > 0
    assert after["produced"] - before["produced"] == 500


def test_processors_are_checked_at_configure(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"ratio must be from 0\.0 to 1\.0"):
        sample(1.5)
    with pytest.raises(ValueError, match=r"processors\[0\] must be a built-in processor"):
        configure(processors=[42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="built-in processors run in the core before any Python"):
        configure(processors=[lambda r: r, drop_keys("x")])
    assert repr(sample(0.25)) == "RustProcessor.sample(0.25)"
    assert isinstance(drop_keys("a"), RustProcessor)


def test_a_python_processor_switches_the_path_visibly(
    exporter: InMemoryExporter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from instrumentation_sdk import pipeline

    caplog.set_level(logging.INFO, logger="instrumentation_sdk")
    configure(exporter=JsonlExporter(tmp_path / "a.jsonl"), processors=[drop_keys("x")])
    assert pipeline._pipeline().path == "core_jsonl"
    configure(exporter=JsonlExporter(tmp_path / "b.jsonl"), processors=[lambda r: r])
    assert pipeline._pipeline().path == "records_then_jsonl"
    assert "batches go through records" in caplog.text
    assert stats()["export_path"] == "records_then_jsonl"
