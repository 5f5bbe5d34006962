"""Span misuse is repaired, counted and logged once (issue 10): exits out of order, an exit
without an enter, entering twice, re-entering an ended span, a span never ended.

The rule checked throughout: no ended span stays current, and one wrong call never changes the
parent of an unrelated later span. Every test gets a fresh in-memory pipeline (conftest.py)."""

from __future__ import annotations

import contextvars
import gc
import logging
import threading
from typing import Any

import pytest
from instrumentation_sdk import Span, current_span, flush, llm_span, stats
from instrumentation_sdk.exporters import InMemoryExporter

pytestmark = pytest.mark.usefixtures("exporter")


def named(name: str) -> Span:
    return llm_span("gpt-4o", "openai", name=name)


def exported(memory: InMemoryExporter) -> list[dict[str, Any]]:
    assert flush(timeout=10.0), "flush timed out"
    return memory.spans


def faults() -> dict[str, int]:
    return dict(stats()["faults"])


def fault_delta(before: dict[str, int], kind: str) -> int:
    return faults().get(kind, 0) - before.get(kind, 0)


def sdk_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "instrumentation_sdk" and record.levelno >= logging.WARNING
    ]


def assert_a_later_span_is_a_root(memory: InMemoryExporter) -> None:
    """The misuse left nothing behind: a new span starts a new trace with no parent."""
    assert current_span() is None
    with named("later") as later:
        pass
    record = next(r for r in exported(memory) if r["span_id"] == later.span_id)
    assert record["parent_span_id"] is None


def test_exiting_the_outer_span_first_restores_the_context(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    before = faults()
    a = named("a")
    b = named("b")
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)  # out of order: b is still open
        assert current_span() is None  # as before `a` was entered, not `b` (nor the ended `a`)
        b.__exit__(None, None, None)
        assert current_span() is None  # b's exit must not bring the ended `a` back
    assert a.ended
    assert b.ended
    assert fault_delta(before, "exit_order") == 1
    records = {r["name"]: r for r in exported(exporter)}
    assert records["b"]["parent_span_id"] == a.span_id  # b really was a's child
    assert records["a"]["status"] == records["b"]["status"] == "ok"
    warnings = sdk_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "exit_order" in warnings[0]
    assert "test_span_misuse.py" in warnings[0], "the call site is named"
    assert_a_later_span_is_a_root(exporter)


def test_a_misordered_exit_inside_a_parent_restores_that_parent(
    exporter: InMemoryExporter,
) -> None:
    before = faults()
    with named("root") as root:
        a = named("a").__enter__()
        b = named("b").__enter__()
        c = named("c").__enter__()
        b.__exit__(None, None, None)  # c still open
        assert current_span() is a
        c.__exit__(None, None, None)
        assert current_span() is a
        with named("sibling") as sibling:
            assert sibling.parent_span_id == a.span_id
        a.__exit__(None, None, None)
        assert current_span() is root
    assert current_span() is None
    assert fault_delta(before, "exit_order") == 1
    assert len(exported(exporter)) == 5


def test_an_exit_without_enter_exports_nothing(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    before = faults()
    produced = stats()["produced"]
    with named("outer") as outer, caplog.at_level(logging.WARNING, "instrumentation_sdk"):
        phantom = named("phantom")
        phantom.__exit__(None, None, None)
        assert current_span() is outer
        assert not phantom.ended
    assert [r["name"] for r in exported(exporter)] == ["outer"]
    assert stats()["produced"] == produced + 1
    assert fault_delta(before, "exit_without_enter") == 1
    assert any("exit_without_enter" in w for w in sdk_warnings(caplog))


def test_a_second_exit_is_counted_and_changes_nothing(exporter: InMemoryExporter) -> None:
    before = faults()
    with named("outer") as outer:
        with named("inner") as inner:
            pass
        inner.__exit__(None, None, None)
        assert current_span() is outer
    assert current_span() is None
    assert fault_delta(before, "exited_twice") == 1
    assert len(exported(exporter)) == 2


def test_entering_an_open_span_again_ends_it_at_the_outer_exit(
    exporter: InMemoryExporter,
) -> None:
    before = faults()
    span = named("twice")
    with span:
        with span:
            pass
        assert not span.ended, "the inner exit must not end it"
        assert current_span() is span
    assert span.ended
    assert current_span() is None
    assert fault_delta(before, "entered_twice") == 1
    assert [r["name"] for r in exported(exporter)] == ["twice"]
    assert_a_later_span_is_a_root(exporter)


def test_reentering_an_ended_span_is_counted_and_changes_nothing(
    exporter: InMemoryExporter,
) -> None:
    before = faults()
    span = named("once")
    with span:
        pass
    with named("outer") as outer:
        with span:
            assert current_span() is outer, "an ended span never becomes current"
        assert current_span() is outer
    assert fault_delta(before, "reentered") == 1
    assert fault_delta(before, "exited_twice") == 0  # the re-entry's own exit is part of it
    assert sorted(r["name"] for r in exported(exporter)) == ["once", "outer"]


def _enter_in_a_context_that_is_then_dropped() -> str:
    span = named("forgotten")
    contextvars.copy_context().run(span.__enter__)
    return span.span_id


def test_a_span_collected_without_being_ended_is_counted_logged_and_exported_as_error(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    before = faults()
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        span_id = _enter_in_a_context_that_is_then_dropped()
        gc.collect()
    assert fault_delta(before, "not_ended") == 1
    warnings = [w for w in sdk_warnings(caplog) if "not_ended" in w]
    assert len(warnings) == 1, sdk_warnings(caplog)
    assert "forgotten" in warnings[0]
    record = next(r for r in exported(exporter) if r["span_id"] == span_id)
    assert record["status"] == "error"
    assert record["error_type"] == "SpanNotEnded"
    assert stats()["produced"] == stats()["exported"] + stats()["dropped"] + stats()["buffered"]


def test_a_span_never_entered_and_collected_is_not_a_fault(exporter: InMemoryExporter) -> None:
    before = faults()
    named("never used")
    gc.collect()
    assert fault_delta(before, "not_ended") == 0
    assert exported(exporter) == []


def test_misuse_in_one_thread_never_changes_parents_in_another(
    exporter: InMemoryExporter,
) -> None:
    a = named("a").__enter__()
    b = named("b").__enter__()
    a.__exit__(None, None, None)
    parents: list[str | None] = []

    def other() -> None:
        with named("elsewhere") as span:
            parents.append(span.parent_span_id)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    b.__exit__(None, None, None)
    assert parents == [None]
    assert_a_later_span_is_a_root(exporter)


def test_normal_nesting_counts_no_fault(exporter: InMemoryExporter) -> None:
    before = faults()
    with named("a"), named("b"), named("c"):
        pass
    assert faults() == before
