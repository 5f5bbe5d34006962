"""Spans around LLM calls: the ``llm_span`` / ``llm_span_with_tokens`` API, ids and timing,
nesting through the context (asyncio tasks, threads, ``parent=``, ``with_current_context``),
errors, standard metadata types and odd metadata (objects, NaN, megabyte strings, nested and
self-referential structures, lone surrogates, non-str keys) reaching the exporter intact or
bounded, never raising into the application.

Every test gets a fresh pipeline exporting to an ``InMemoryExporter`` (see ``exporter``)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import instrumentation_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from instrumentation_sdk import (
    Span,
    configure,
    count_tokens,
    current_span,
    flush,
    llm_span,
    llm_span_with_tokens,
    stats,
    with_current_context,
)
from instrumentation_sdk.exporters import InMemoryExporter, JsonlExporter
from record_schema import RECORD_KEYS

# A fresh in-memory pipeline per test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("exporter")

HEX = set("0123456789abcdef")


def exported(memory: InMemoryExporter) -> list[dict[str, Any]]:
    assert flush(timeout=10.0), "flush timed out"
    return memory.spans


def only_record(memory: InMemoryExporter) -> dict[str, Any]:
    records = exported(memory)
    assert len(records) == 1, records
    return records[0]


def by_id(memory: InMemoryExporter) -> dict[str, dict[str, Any]]:
    return {record["span_id"]: record for record in exported(memory)}


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


def is_hex(text: str | None, length: int) -> bool:
    return text is not None and len(text) == length and set(text) <= HEX and set(text) != {"0"}


# -- the API -----------------------------------------------------------------------------------


def test_public_names() -> None:
    for name in (
        "llm_span",
        "llm_span_with_tokens",
        "current_span",
        "with_current_context",
        "Span",
        "configure",
        "flush",
        "shutdown",
        "stats",
    ):
        assert name in instrumentation_sdk.__all__
        assert hasattr(instrumentation_sdk, name)


def test_sync_span_attributes(exporter: InMemoryExporter) -> None:
    span = llm_span(
        "gpt-4o", "openai", service_name="svc", user_id="u1", session_id="s1", name="chat"
    )
    assert isinstance(span, Span)
    with span as entered:
        assert entered is span
        assert span.status == "unset"
    assert span.status == "ok"
    assert is_hex(span.trace_id, 32)
    assert is_hex(span.span_id, 16)
    assert span.parent_span_id is None
    assert (span.name, span.model, span.provider) == ("chat", "gpt-4o", "openai")
    assert (span.service_name, span.user_id, span.session_id) == ("svc", "u1", "s1")
    assert span.error_type is None
    assert span.error_message is None
    record = only_record(exporter)
    assert set(record) == set(RECORD_KEYS)
    assert record == {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": None,
        "name": "chat",
        "model": "gpt-4o",
        "provider": "openai",
        "service_name": "svc",
        "user_id": "u1",
        "session_id": "s1",
        "status": "ok",
        "error_type": None,
        "error_message": None,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "events": [],
        "prompt": None,
        "completion": None,
        "metadata": {},
    }


def test_defaults(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span:
        pass
    assert span.name == "llm"
    assert span.provider is None
    assert span.service_name is None
    assert span.user_id is None
    assert span.session_id is None
    record = only_record(exporter)
    assert record["name"] == "llm"
    assert record["provider"] is None
    assert record["service_name"] == "unknown_service"


def test_keyword_attributes_become_metadata(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o", temperature=0.2, route="a", prompt_tokens="12") as span:
        assert span.metadata == {"temperature": 0.2, "route": "a", "prompt_tokens": 12}
    assert only_record(exporter)["metadata"] == {
        "temperature": 0.2,
        "route": "a",
        "prompt_tokens": 12,
    }


def test_arguments_bind_like_a_python_signature(exporter: InMemoryExporter) -> None:
    """llm_span and llm_span_with_tokens match their keywords by hand (fastcall): every way of
    passing the documented parameters binds as Python would bind the signature."""
    with llm_span(model="m", provider="p", name="n", user_id="u", session_id="s") as span:
        pass
    assert (span.model, span.provider, span.name, span.user_id, span.session_id) == (
        "m",
        "p",
        "n",
        "u",
        "s",
    )
    with llm_span("m", service_name="svc", parent=None, **{"odd key": 1, "prompt": "x"}) as span:
        pass
    assert span.service_name == "svc"
    assert span.parent_span_id is None
    assert dict(span.metadata) == {"odd key": 1, "prompt": "x"}
    with llm_span("m", **{"\ud800": 2}) as span:  # a keyword no codec can encode
        pass
    assert list(span.metadata.values()) == [2]
    with llm_span_with_tokens("gpt-4o", prompt="Hello world!", provider="openai") as counted:
        pass
    assert counted.provider == "openai"
    assert counted.metadata["prompt_tokens"] == 3
    assert len(exported(exporter)) == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: llm_span(), "llm_span() missing 1 required positional argument: 'model'"),
        (
            lambda: llm_span("m", "p", "x"),
            "llm_span() takes from 1 to 2 positional arguments but 3 were given",
        ),
        (
            lambda: llm_span("m", model="n"),
            "llm_span() got multiple values for argument 'model'",
        ),
        (
            lambda: llm_span("m", "p", provider="q"),
            "llm_span() got multiple values for argument 'provider'",
        ),
        (
            lambda: llm_span_with_tokens("m"),
            "llm_span_with_tokens() missing 1 required keyword-only argument: 'prompt'",
        ),
        (
            lambda: llm_span_with_tokens(prompt="x"),
            "llm_span_with_tokens() missing 1 required positional argument: 'model'",
        ),
    ],
)
def test_a_wrong_call_is_a_type_error(call: Any, message: str) -> None:
    with pytest.raises(TypeError) as raised:
        call()
    assert str(raised.value) == message


def _reference_llm_span(
    model: Any,
    provider: Any = None,
    *,
    service_name: Any = None,
    user_id: Any = None,
    session_id: Any = None,
    name: Any = None,
    parent: Any = None,
    **attributes: Any,
) -> dict[str, Any]:
    return {k: v for k, v in locals().items() if k != "attributes"} | {"attributes": attributes}


def _reference_with_tokens(
    model: Any,
    provider: Any = None,
    *,
    prompt: Any,
    service_name: Any = None,
    user_id: Any = None,
    session_id: Any = None,
    name: Any = None,
    parent: Any = None,
    **attributes: Any,
) -> dict[str, Any]:
    bound = _reference_llm_span(
        model,
        provider,
        service_name=service_name,
        user_id=user_id,
        session_id=session_id,
        name=name,
        parent=parent,
        **attributes,
    )
    return bound | {"prompt": prompt}


_KEYWORDS = [
    "model",
    "provider",
    "service_name",
    "user_id",
    "session_id",
    "name",
    "parent",
    "prompt",
    "temperature",
    "route",
    "model_",
]


@settings(max_examples=300, deadline=None)
@given(
    with_tokens=st.booleans(),
    positional=st.lists(st.sampled_from(["m0", "p0", "x0"]), max_size=3),
    keywords=st.dictionaries(
        st.sampled_from(_KEYWORDS), st.integers(0, 9).map(lambda i: f"v{i}"), max_size=6
    ),
)
def test_arguments_bind_exactly_as_python_binds_the_signature(
    with_tokens: bool, positional: list[str], keywords: dict[str, str]
) -> None:
    """The hand-written keyword matching (fastcall) against Python's own binding of the
    documented signature: the same calls fail, and the others bind the same values."""
    if "parent" in keywords:
        keywords["parent"] = None  # a span or None; anything else is ignored with a fault
    ours = llm_span_with_tokens if with_tokens else llm_span
    reference = _reference_with_tokens if with_tokens else _reference_llm_span
    try:
        expected = reference(*positional, **keywords)
    except TypeError:
        with pytest.raises(TypeError):
            ours(*positional, **keywords)
        return
    span = ours(*positional, **keywords)
    assert span.model == expected["model"]
    assert span.provider == expected["provider"]
    assert span.service_name == expected["service_name"]
    assert span.user_id == expected["user_id"]
    assert span.session_id == expected["session_id"]
    assert span.name == (expected["name"] or "llm")
    assert dict(span.metadata) == expected["attributes"]


def test_signatures_are_introspectable() -> None:
    import inspect

    assert str(inspect.signature(llm_span)) == (
        "(model, provider=None, *, service_name=None, user_id=None, session_id=None, "
        "name=None, parent=None, **attributes)"
    )
    assert str(inspect.signature(llm_span_with_tokens)) == (
        "(model, provider=None, *, prompt, service_name=None, user_id=None, session_id=None, "
        "name=None, parent=None, **attributes)"
    )
    assert llm_span.__name__ == "llm_span"
    assert llm_span.__doc__ is not None
    assert llm_span.__doc__.startswith("A span around one LLM call")


def test_async_with(exporter: InMemoryExporter) -> None:
    async def handle() -> Span:
        async with llm_span("gpt-4o", "openai", user_id="u") as span:
            assert current_span() is span
            await asyncio.sleep(0)
            span.set_metadata("completion_tokens", 5)
        assert current_span() is None
        return span

    span = asyncio.run(handle())
    assert span.status == "ok"
    record = only_record(exporter)
    assert record["span_id"] == span.span_id
    assert record["metadata"] == {"completion_tokens": 5}


def test_ids_are_unique_and_roots_start_new_traces(exporter: InMemoryExporter) -> None:
    spans = []
    for _ in range(2000):
        with llm_span("m") as span:
            pass
        spans.append(span)
    assert len({s.span_id for s in spans}) == 2000
    assert len({s.trace_id for s in spans}) == 2000
    assert all(is_hex(s.trace_id, 32) and is_hex(s.span_id, 16) for s in spans)
    assert len(exported(exporter)) == 2000


def test_current_span_follows_nesting_and_is_restored() -> None:
    assert current_span() is None
    with llm_span("outer") as outer:
        assert current_span() is outer
        with llm_span("inner") as inner:
            assert current_span() is inner
        assert current_span() is outer
        with pytest.raises(RuntimeError), llm_span("failing"):
            raise RuntimeError("x")
        assert current_span() is outer
    assert current_span() is None


def test_metadata_is_a_read_only_mapping() -> None:
    with llm_span("m") as span:
        span.set_metadata("a", 1)
        with pytest.raises(TypeError):
            span.metadata["b"] = 2  # type: ignore[index]
        snapshot = span.metadata
        span.set_metadata("c", 3)
    assert dict(span.metadata) == {"a": 1, "c": 3}
    assert "b" not in span.metadata
    assert "a" in snapshot


# -- timing ------------------------------------------------------------------------------------


def test_duration_covers_the_block(exporter: InMemoryExporter) -> None:
    before = time.time_ns()
    with llm_span("m") as span:
        time.sleep(0.05)
    after = time.time_ns()
    duration = span.end_time_unix_nano - span.start_time_unix_nano
    assert duration >= 50_000_000
    assert duration < 5_000_000_000
    # Wall-clock start is close to time.time_ns() (allow 50 ms of clock skew between readers).
    assert before - 50_000_000 <= span.start_time_unix_nano <= after
    assert span.end_time_unix_nano <= after + 50_000_000
    record = only_record(exporter)
    assert record["start_time_unix_nano"] == span.start_time_unix_nano
    assert record["end_time_unix_nano"] == span.end_time_unix_nano


def test_end_never_precedes_start() -> None:
    for _ in range(500):
        with llm_span("m") as span:
            pass
        assert span.end_time_unix_nano >= span.start_time_unix_nano > 1_600_000_000 * 10**9


def test_async_duration_is_measured(exporter: InMemoryExporter) -> None:
    async def handle() -> Span:
        async with llm_span("m") as span:
            await asyncio.sleep(0.05)
        return span

    span = asyncio.run(handle())
    assert span.end_time_unix_nano - span.start_time_unix_nano >= 50_000_000


# -- nesting -----------------------------------------------------------------------------------


def test_child_inherits_trace_and_identity(exporter: InMemoryExporter) -> None:
    with llm_span("router", service_name="svc", user_id="u", session_id="s") as parent:
        with llm_span("worker") as child:
            pass
        with llm_span("writer", service_name="writer-agent", user_id="u2") as other:
            pass
    assert child.trace_id == parent.trace_id == other.trace_id
    assert child.parent_span_id == parent.span_id == other.parent_span_id
    assert (child.service_name, child.user_id, child.session_id) == ("svc", "u", "s")
    assert (other.service_name, other.user_id, other.session_id) == ("writer-agent", "u2", "s")
    records = by_id(exporter)
    assert records[child.span_id]["parent_span_id"] == parent.span_id
    assert records[child.span_id]["trace_id"] == parent.trace_id
    assert records[child.span_id]["service_name"] == "svc"
    assert records[other.span_id]["service_name"] == "writer-agent"
    assert records[parent.span_id]["parent_span_id"] is None


def test_child_inherits_a_session_set_through_metadata() -> None:
    with llm_span("router") as parent:
        parent.set_metadata("session_id", "conv-9")
        assert parent.session_id == "conv-9"
        with llm_span("worker") as child:
            pass
    assert child.session_id == "conv-9"


def test_three_levels_and_siblings(exporter: InMemoryExporter) -> None:
    with llm_span("a") as a:
        with llm_span("b") as b, llm_span("c") as c:
            pass
        with llm_span("d") as d:
            pass
    assert b.parent_span_id == a.span_id
    assert c.parent_span_id == b.span_id
    assert d.parent_span_id == a.span_id
    assert len({a.trace_id, b.trace_id, c.trace_id, d.trace_id}) == 1
    assert len(exported(exporter)) == 4


def test_a_new_root_after_a_trace_starts_a_new_trace() -> None:
    with llm_span("a") as a:
        pass
    with llm_span("b") as b:
        pass
    assert a.trace_id != b.trace_id
    assert b.parent_span_id is None


def test_concurrent_asyncio_tasks_never_cross_link(exporter: InMemoryExporter) -> None:
    rng = random.Random(7)
    delays = [[rng.random() * 0.01 for _ in range(3)] for _ in range(300)]

    async def task(i: int) -> tuple[Span, Span, Span]:
        async with llm_span("router", user_id=f"u{i}", session_id=f"s{i}") as parent:
            await asyncio.sleep(delays[i][0])
            async with llm_span("worker") as child:
                await asyncio.sleep(delays[i][1])
                assert current_span() is child
                async with llm_span("tool") as leaf:
                    await asyncio.sleep(delays[i][2])
                    assert current_span() is leaf
                assert current_span() is child
            assert current_span() is parent
        assert current_span() is None
        return parent, child, leaf

    async def main() -> list[tuple[Span, Span, Span]]:
        return await asyncio.gather(*(task(i) for i in range(300)))

    results = asyncio.run(main())
    assert len({parent.trace_id for parent, _, _ in results}) == 300
    for i, (parent, child, leaf) in enumerate(results):
        assert parent.parent_span_id is None
        assert child.parent_span_id == parent.span_id
        assert leaf.parent_span_id == child.span_id
        assert parent.trace_id == child.trace_id == leaf.trace_id
        assert leaf.user_id == f"u{i}"
        assert leaf.session_id == f"s{i}"
    records = by_id(exporter)
    assert len(records) == 900
    for parent, child, leaf in results:
        assert records[leaf.span_id]["parent_span_id"] == child.span_id
        assert records[child.span_id]["parent_span_id"] == parent.span_id


def test_task_created_inside_a_span_nests_under_it() -> None:
    async def worker() -> Span:
        async with llm_span("worker") as span:
            await asyncio.sleep(0)
        return span

    async def main() -> tuple[Span, Span]:
        async with llm_span("router") as parent:
            child = await asyncio.create_task(worker())
        return parent, child

    parent, child = asyncio.run(main())
    assert child.parent_span_id == parent.span_id
    assert child.trace_id == parent.trace_id


def test_threads_do_not_inherit_each_others_spans() -> None:
    results: dict[int, tuple[Span, Span]] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with llm_span("outer") as outer:
            barrier.wait(timeout=10)
            with llm_span("inner") as inner:
                barrier.wait(timeout=10)
        results[i] = (outer, inner)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for outer, inner in results.values():
        assert outer.parent_span_id is None
        assert inner.parent_span_id == outer.span_id
        assert inner.trace_id == outer.trace_id
    assert len({outer.trace_id for outer, _ in results.values()}) == 4


def test_explicit_parent_links_across_threads(exporter: InMemoryExporter) -> None:
    children: list[Span] = []

    def work() -> None:
        with llm_span("worker", parent=parent) as child, llm_span("tool") as grandchild:
            pass
        children.extend([child, grandchild])

    with llm_span("router", service_name="svc", user_id="u", session_id="s") as parent:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    child, grandchild = children
    assert child.parent_span_id == parent.span_id
    assert child.trace_id == parent.trace_id
    assert (child.service_name, child.user_id, child.session_id) == ("svc", "u", "s")
    assert grandchild.parent_span_id == child.span_id
    assert by_id(exporter)[child.span_id]["parent_span_id"] == parent.span_id


def test_explicit_parent_wins_over_the_current_span() -> None:
    with llm_span("a") as a:
        pass
    with llm_span("b") as b, llm_span("c", parent=a) as c:
        pass
    assert c.parent_span_id == a.span_id
    assert c.trace_id == a.trace_id
    assert b.trace_id != a.trace_id


@pytest.mark.parametrize("bad_parent", ["not a span", 42, object()])
def test_a_parent_that_is_not_a_span_is_ignored(
    exporter: InMemoryExporter, bad_parent: Any
) -> None:
    with llm_span("m", parent=bad_parent) as span:
        pass
    assert span.status == "ok"
    assert span.parent_span_id is None
    assert only_record(exporter)["span_id"] == span.span_id


def test_with_current_context_carries_the_span_into_a_thread_pool(
    exporter: InMemoryExporter,
) -> None:
    def work(tag: str) -> tuple[str | None, str, Span | None]:
        seen = current_span()
        with llm_span("worker", name=tag) as child:
            pass
        return child.parent_span_id, child.trace_id, seen

    with llm_span("router") as parent, ThreadPoolExecutor(max_workers=4) as pool:
        wrapped = with_current_context(work)
        carried = list(pool.map(wrapped, [f"t{i}" for i in range(16)]))
        plain = pool.submit(work, "plain").result()
    assert all(p == parent.span_id and t == parent.trace_id for p, t, _ in carried)
    assert all(seen is parent for _, _, seen in carried)
    if not getattr(sys.flags, "thread_inherit_context", False):
        assert plain[0] is None  # without the wrapper the pool thread has no active span
        assert plain[2] is None
    assert current_span() is None
    assert len(exported(exporter)) == 18


def test_with_current_context_keeps_the_function_signature() -> None:
    def add(a: int, b: int = 2) -> int:
        """Adds."""
        return a + b

    wrapped = with_current_context(add)
    assert wrapped(1) == 3
    assert wrapped(1, b=5) == 6
    assert wrapped.__name__ == "add"
    assert wrapped.__doc__ == "Adds."


# -- errors ------------------------------------------------------------------------------------


class CustomBase(BaseException):
    pass


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() fails")


def _raiser(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(
    ("exc", "type_name", "message"),
    [
        (TimeoutError("Provider failed to respond"), "TimeoutError", "Provider failed to respond"),
        (ValueError("multi\nline"), "ValueError", "multi\nline"),
        (KeyboardInterrupt(), "KeyboardInterrupt", ""),
        (SystemExit(3), "SystemExit", "3"),
        (CustomBase("base"), "CustomBase", "base"),
        (asyncio.CancelledError(), "CancelledError", ""),
    ],
    ids=["timeout", "multiline", "keyboard-interrupt", "system-exit", "base", "cancelled"],
)
def test_an_exception_ends_the_span_as_error_and_propagates_unchanged(
    exporter: InMemoryExporter, exc: BaseException, type_name: str, message: str
) -> None:
    with pytest.raises(type(exc)) as info, llm_span("m") as span:
        _raiser(exc)
    raised = info.value
    assert raised is exc
    assert raised.__cause__ is None
    assert raised.__context__ is None
    assert not raised.__suppress_context__
    assert not hasattr(raised, "__notes__")
    frames = []
    tb = raised.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "_raiser"  # the traceback still ends where it was raised
    assert span.status == "error"
    assert span.error_type == type_name
    assert span.error_message == message
    assert current_span() is None
    record = only_record(exporter)
    assert (record["status"], record["error_type"], record["error_message"]) == (
        "error",
        type_name,
        message,
    )


def test_an_exception_whose_str_fails_still_ends_the_span(exporter: InMemoryExporter) -> None:
    error = BadStr()
    with pytest.raises(BadStr) as info, llm_span("m") as span:
        raise error
    assert info.value is error
    assert span.status == "error"
    assert span.error_type == "BadStr"
    assert isinstance(span.error_message, str)
    assert only_record(exporter)["status"] == "error"


def test_error_type_is_the_class_name_for_nested_classes() -> None:
    class Outer:
        class ProviderError(Exception):
            pass

    with pytest.raises(Outer.ProviderError), llm_span("m") as span:
        raise Outer.ProviderError("x")
    assert span.error_type == "ProviderError"


def test_error_in_a_child_does_not_mark_the_parent(exporter: InMemoryExporter) -> None:
    with (
        llm_span("parent") as parent,
        pytest.raises(ValueError, match="child"),
        llm_span("child") as child,
    ):
        raise ValueError("child")
    assert child.status == "error"
    assert parent.status == "ok"
    assert parent.error_type is None
    assert len(exported(exporter)) == 2


def test_async_exception_ends_the_span_as_error(exporter: InMemoryExporter) -> None:
    error = TimeoutError("Provider failed to respond")

    async def handle() -> None:
        async with llm_span("gpt-4o", "openai"):
            await asyncio.sleep(0)
            raise error

    with pytest.raises(TimeoutError) as info:
        asyncio.run(handle())
    assert info.value is error
    record = only_record(exporter)
    assert (record["status"], record["error_type"]) == ("error", "TimeoutError")
    assert record["error_message"] == "Provider failed to respond"


def test_cancelling_a_task_ends_its_span_as_error(exporter: InMemoryExporter) -> None:
    holder: dict[str, Span] = {}

    async def work(started: asyncio.Event) -> None:
        async with llm_span("gpt-4o") as span:
            holder["span"] = span
            started.set()
            await asyncio.sleep(30)

    async def main() -> bool:
        started = asyncio.Event()
        task = asyncio.create_task(work(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert current_span() is None
        return task.cancelled()

    assert asyncio.run(main())
    span = holder["span"]
    assert span.status == "error"
    assert span.error_type == "CancelledError"
    record = only_record(exporter)
    assert record["status"] == "error"
    assert record["error_type"] == "CancelledError"


def test_many_concurrent_cancellations(exporter: InMemoryExporter) -> None:
    async def work(i: int) -> None:
        async with llm_span("m", name=f"t{i}"), llm_span("m", name=f"c{i}"):
            await asyncio.sleep(30)

    async def main() -> None:
        tasks = [asyncio.create_task(work(i)) for i in range(100)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)

    asyncio.run(main())
    records = exported(exporter)
    assert len(records) == 200
    assert {r["status"] for r in records} == {"error"}
    names = {r["span_id"]: r["name"] for r in records}
    for record in records:
        if record["name"].startswith("c"):
            assert names[record["parent_span_id"]] == "t" + record["name"][1:]


# -- standard metadata keys --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["prompt_tokens", "completion_tokens", "retry_count"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [(12, 12), ("12", 12), (" 12 ", 12), (12.0, 12), (0, 0), ("-3", -3)],
    ids=["int", "str", "padded-str", "float", "zero", "negative-str"],
)
def test_int_keys_convert_losslessly(
    exporter: InMemoryExporter, key: str, value: Any, expected: int
) -> None:
    with llm_span("m") as span:
        span.set_metadata(key, value)
        assert span.metadata[key] == expected
        assert type(span.metadata[key]) is int
    stored = only_record(exporter)["metadata"][key]
    assert stored == expected
    assert type(stored) is int


@pytest.mark.parametrize("value", [12.5, "twelve", None, [1], float("nan")])
def test_int_keys_keep_a_value_that_does_not_convert(
    exporter: InMemoryExporter, value: Any
) -> None:
    with llm_span("m") as span:
        span.set_metadata("completion_tokens", value)  # never raises
    assert span.status == "ok"
    stored = only_record(exporter)["metadata"]["completion_tokens"]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(stored)
    else:
        assert stored == value


@pytest.mark.parametrize("key", ["actual_model", "session_id", "finish_reason"])
def test_str_keys_keep_strs(exporter: InMemoryExporter, key: str) -> None:
    with llm_span("m") as span:
        span.set_metadata(key, "gpt-4o-2024-08-06")
    value = only_record(exporter)["metadata"][key]
    assert value == "gpt-4o-2024-08-06"
    assert type(value) is str


def test_setting_session_id_sets_the_span_session(exporter: InMemoryExporter) -> None:
    with llm_span("m", session_id="first") as span:
        span.set_metadata("session_id", "second")
        assert span.session_id == "second"
    assert span.session_id == "second"
    record = only_record(exporter)
    assert record["session_id"] == "second"
    assert record["metadata"]["session_id"] == "second"


def test_later_values_replace_earlier_ones(exporter: InMemoryExporter) -> None:
    with llm_span("m") as span:
        span.set_metadata("completion_tokens", 1)
        span.set_metadata("note", "a")
        span.set_metadata("completion_tokens", "2")
    assert only_record(exporter)["metadata"] == {"completion_tokens": 2, "note": "a"}


def test_metadata_after_end_is_ignored_and_counted(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    before = faults()
    with llm_span("m") as span:
        span.set_metadata("inside", 1)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        for i in range(50):
            span.set_metadata("late", i)
            span.set_metadata("completion_tokens", 7)
    assert dict(span.metadata) == {"inside": 1}
    assert fault_delta(before, "metadata_after_end") == 100
    assert only_record(exporter)["metadata"] == {"inside": 1}
    assert len(sdk_warnings(caplog)) == 1, sdk_warnings(caplog)  # one kind, logged once


def test_end_span_with_records_the_pairs_and_ends_the_span(
    exporter: InMemoryExporter, fresh_faults: None
) -> None:
    """The client integrations' one call per response (``_core.end_span_with``): each group's
    ``key, value`` pairs as ``set_metadata`` records them, a ``None`` value left out, then the
    span ends as ``__exit__`` ends it (the context goes back to the parent)."""
    before = faults()
    with llm_span("router") as parent:
        span = llm_span("gpt-4o", "openai")
        span.__enter__()
        assert current_span() is span
        instrumentation_sdk._core.end_span_with(
            span,
            ("retry_count", 0, "http_status_code", None),
            ("prompt_tokens", "12", "finish_reason", "stop", "note", [1, 2]),
            (),
        )
        assert span.ended
        assert current_span() is parent
    assert span.status == "ok"
    assert dict(span.metadata) == {
        "retry_count": 0,
        "prompt_tokens": 12,  # converted as set_metadata converts it
        "finish_reason": "stop",
        "note": [1, 2],
    }
    # After the end: ignored and counted, as set_metadata and __exit__ are.
    instrumentation_sdk._core.end_span_with(span, ("late", 1))
    assert "late" not in span.metadata
    assert fault_delta(before, "metadata_after_end") == 1
    # Not key, value pairs: the odd key is ignored and counted, never raised.
    lone = llm_span("gpt-4o")
    lone.__enter__()
    instrumentation_sdk._core.end_span_with(lone, ("a", 1, "b"), "not a tuple")
    assert lone.ended
    assert dict(lone.metadata) == {"a": 1}
    assert fault_delta(before, "argument_type") == 2
    assert by_id(exporter)[span.span_id]["metadata"]["prompt_tokens"] == 12


# -- odd metadata ------------------------------------------------------------------------------


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr fails")

    def __str__(self) -> str:
        raise RuntimeError("str fails")


class BadIndex:
    def __index__(self) -> int:
        raise RuntimeError("index fails")


def _self_referential() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


ODD_VALUES: dict[str, Any] = {
    "object": object(),
    "opaque": Opaque(),
    "bad-repr": BadRepr(),
    "nan": float("nan"),
    "inf": float("inf"),
    "megabyte": "x" * 1_000_000,
    "nested": {"a": [1, 2.5, None, {"b": ("t", True)}], "c": {"d": {"e": "f"}}},
    "self-referential": _self_referential(),
    "deep": _deep(100_000),
    "lone-surrogate": "ok \ud800 ok",
    "surrogate-in-nested": {"k\udcff": ["\ud800"]},
    "bytes": b"\x00\xffbytes",
    "set": {1, 2, 3},
    "big-int": 2**200,
    "decimal": Decimal("1.5"),
    "generator": (i for i in range(3)),
    "function": lambda: None,
    "exception": ValueError("x"),
    "type": int,
    "non-str-dict-keys": {(1, 2): 3, None: 4},
    "bad-index": BadIndex(),
    "empty": "",
    "control-chars": 'a\x00b\x1fc\n"q"\\',
}


@pytest.mark.parametrize("key", ["note", "prompt_tokens", "actual_model"])
@pytest.mark.parametrize("value", list(ODD_VALUES.values()), ids=list(ODD_VALUES))
def test_odd_values_never_raise_and_export(
    exporter: InMemoryExporter, key: str, value: Any
) -> None:
    with llm_span("m") as span:
        span.set_metadata(key, value)
        span.set_metadata("after", 1)
    assert span.status == "ok"
    record = only_record(exporter)
    assert record["span_id"] == span.span_id
    assert set(record["metadata"]) == {key, "after"}
    assert record["metadata"]["after"] == 1


@pytest.mark.parametrize("value", list(ODD_VALUES.values()), ids=list(ODD_VALUES))
def test_odd_values_become_valid_json_lines(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "spans.jsonl"
    configure(exporter=JsonlExporter(path), flush_interval=0.05, max_value_bytes=4096)
    with llm_span("m") as span:
        span.set_metadata("value", value)
        span.set_metadata("after", 1)
    assert flush(timeout=10.0)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0].decode("utf-8"))  # strict UTF-8: no lone surrogates
    assert set(record) == set(RECORD_KEYS)
    assert record["span_id"] == span.span_id
    assert record["metadata"]["after"] == 1
    assert len(lines[0]) < 4096 + 2048


def test_non_str_keys_use_their_str(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    before = faults()
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"), llm_span("m") as span:
        for i in range(20):
            span.set_metadata(i, "int")
        span.set_metadata(None, "none")
        span.set_metadata(("a", 1), "tuple")
        span.set_metadata(BadRepr(), "dropped")  # its str() fails: ignored, never raises
    metadata = only_record(exporter)["metadata"]
    assert metadata["0"] == "int"
    assert metadata["19"] == "int"
    assert metadata["None"] == "none"
    assert metadata["('a', 1)"] == "tuple"
    assert len(metadata) == 22
    assert fault_delta(before, "metadata_key_not_str") == 23
    assert len(sdk_warnings(caplog)) == 1, sdk_warnings(caplog)  # one kind, logged once


def test_lone_surrogates_everywhere_export_as_valid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    configure(exporter=JsonlExporter(path), flush_interval=0.05)
    span = llm_span(
        "gpt-\ud800",
        "prov\udfff",
        service_name="svc\ud800",
        user_id="\udcff",
        session_id="s\ud83d",
        name="n\ud800",
    )
    span.set_metadata("k\ud800", "v\udfff")
    span.set_metadata("nested", {"a\ud800": ["b\udcff"]})
    with pytest.raises(ValueError, match="bad"), span:
        raise ValueError("bad \ud800")
    assert flush(timeout=10.0)
    raw = path.read_bytes()
    record = json.loads(raw.decode("utf-8"))
    assert record["status"] == "error"
    assert record["model"].startswith("gpt-")
    assert record["error_message"].startswith("bad ")
    assert any(key.startswith("k") for key in record["metadata"])
    assert "\ud800" not in raw.decode("utf-8")


def test_nan_and_infinity_become_null_in_json(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    configure(exporter=JsonlExporter(path), flush_interval=0.05)
    with llm_span("m") as span:
        span.set_metadata("nan", float("nan"))
        span.set_metadata("inf", float("-inf"))
        span.set_metadata("list", [1.5, float("nan"), float("inf")])
        span.set_metadata("nested", {"score": float("nan")})
    assert flush(timeout=10.0)
    text = path.read_text("utf-8")
    assert "NaN" not in text
    assert "Infinity" not in text
    record = json.loads(text)  # strict JSON parsers reject NaN: check with one
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert record["metadata"] == {
        "nan": None,
        "inf": None,
        "list": [1.5, None, None],
        "nested": {"score": None},
    }


def test_a_megabyte_string_is_truncated_with_a_marker(exporter: InMemoryExporter) -> None:
    before = stats()["truncated"]
    big = "y" * 1_000_000
    with llm_span("m") as span:
        span.set_metadata("big", big)
        span.set_metadata("small", "z" * 100)
    value = only_record(exporter)["metadata"]["big"]
    limit = instrumentation_sdk.get_settings().max_value_bytes
    assert value == "y" * limit + f"...[truncated {1_000_000 - limit} bytes]"
    assert only_record(exporter)["metadata"]["small"] == "z" * 100
    assert stats()["truncated"] - before == 1


def test_truncation_cuts_at_a_character_boundary() -> None:
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05, max_value_bytes=1001)
    with llm_span("m") as span:
        span.set_metadata("text", "é" * 1000)  # 2000 bytes
        span.set_metadata("exact", "a" * 1001)
    metadata = only_record(memory)["metadata"]
    assert metadata["text"] == "é" * 500 + "...[truncated 1000 bytes]"
    assert metadata["exact"] == "a" * 1001


def test_large_nested_values_and_error_messages_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    configure(exporter=JsonlExporter(path), flush_interval=0.05, max_value_bytes=1000)
    before = stats()["truncated"]
    span = llm_span("m", vector=[0.125] * 100_000, doc={"text": "w" * 100_000})
    with pytest.raises(RuntimeError, match="boom"), span:
        raise RuntimeError("boom")
    assert flush(timeout=10.0)
    raw = path.read_bytes()
    assert len(raw) < 10_000
    record = json.loads(raw)
    for key in ("vector", "doc"):
        value = record["metadata"][key]
        assert isinstance(value, str)
        assert "...[truncated " in value
    assert record["metadata"]["vector"].startswith("[0.125,0.125")
    assert record["error_message"] == "boom"
    assert stats()["truncated"] - before == 2


def test_unencodable_values_become_their_repr(exporter: InMemoryExporter) -> None:
    before = stats()["unencodable"]
    with llm_span("m") as span:
        span.set_metadata("opaque", Opaque())
        span.set_metadata("nested", {"inner": Opaque()})
        span.set_metadata("bad", BadRepr())
        span.set_metadata("fine", {"a": [1, 2]})
    metadata = only_record(exporter)["metadata"]
    assert metadata["opaque"] == "<Opaque>"
    assert metadata["nested"] == "{'inner': <Opaque>}"
    assert isinstance(metadata["bad"], str)
    assert metadata["fine"] == {"a": [1, 2]}
    assert stats()["unencodable"] - before == 3


def test_no_warning_per_span_for_odd_metadata(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    configure(exporter=exporter, flush_interval=0.05, max_value_bytes=100)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        for i in range(200):
            with llm_span("m") as span:
                span.set_metadata("big", "x" * 1000)
                span.set_metadata("opaque", Opaque())
                span.set_metadata("nan", float("nan"))
                span.set_metadata(i, "non-str key")
                span.set_metadata("completion_tokens", "many")
            span.set_metadata("late", 1)
        assert flush(timeout=10.0)
    messages = sdk_warnings(caplog)
    assert len(messages) <= 6, messages  # one per kind at most, never one per span
    assert len(exporter.spans) == 200


def test_truncation_and_unencodable_values_are_each_logged_once(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    """The contract: one warning per kind of fault. A user whose values are cut or replaced by
    their repr should hear about it once (not silently, not once per span)."""
    configure(exporter=exporter, flush_interval=0.05, max_value_bytes=100)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        for _ in range(50):
            with llm_span("m") as span:
                span.set_metadata("big", "x" * 1000)
                span.set_metadata("opaque", Opaque())
        assert flush(timeout=10.0)
    # Two kinds (a value cut to max_value_bytes, a value replaced by its repr): two warnings.
    assert len(sdk_warnings(caplog)) == 2, sdk_warnings(caplog)


def test_concurrent_set_metadata_on_one_span_never_raises(exporter: InMemoryExporter) -> None:
    errors: list[BaseException] = []

    def writer(span: Span, tag: int) -> None:
        try:
            for i in range(2000):
                span.set_metadata(f"k{tag}-{i % 50}", i)
                span.set_metadata("completion_tokens", str(i))
        except BaseException as error:  # pragma: no cover - the failure being tested
            errors.append(error)

    with llm_span("m") as span:
        threads = [threading.Thread(target=writer, args=(span, t)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(only_record(exporter)["metadata"]) >= 1


def test_a_span_ending_while_another_thread_sets_metadata_is_not_lost(
    exporter: InMemoryExporter,
) -> None:
    """A worker thread is inside set_metadata (converting a value through Python code, which
    lets other threads run) when the owner's block ends. The span must still end and be
    exported (or at least be counted), never vanish."""

    class SlowIndex:
        def __index__(self) -> int:
            time.sleep(0.2)
            return 5

    def owner() -> tuple[Span, Span | None]:
        span = llm_span("m")
        with span:
            worker = threading.Thread(target=span.set_metadata, args=("prompt_tokens", SlowIndex()))
            worker.start()
            time.sleep(0.05)  # the worker is now inside set_metadata
        worker.join()
        return span, current_span()

    before = stats()["produced"]
    # In a copy of the context, so a span left current cannot leak into later tests.
    span, leaked = contextvars.copy_context().run(owner)
    assert (span.status, leaked) == ("ok", None), "the span never ended and is still current"
    assert stats()["produced"] - before == 1
    assert [r["span_id"] for r in exported(exporter)] == [span.span_id]


# -- llm_span_with_tokens ----------------------------------------------------------------------

TOKEN_CASES = [
    ("gpt-4o", "Hello world!"),
    ("gpt-4", "The quick brown fox jumps over the lazy dog."),
    ("gpt-4o-mini", "x" * 5000 + " long prompt counted off the interpreter"),
    ("claude-3-opus", "Bonjour le monde, ceci est un test."),
    ("gpt-4o", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]),
    ("gpt-4o", ""),
    ("gpt-4o", "lone \ud800 surrogate"),
]


@pytest.mark.parametrize(("model", "prompt"), TOKEN_CASES)
def test_with_tokens_records_the_count_before_the_body(
    exporter: InMemoryExporter, model: str, prompt: Any
) -> None:
    expected = count_tokens(prompt, model)
    with llm_span_with_tokens(model, "p", prompt=prompt) as span:
        inside = dict(span.metadata)  # already there when the body runs
        span.set_metadata("completion_tokens", 3)
    assert inside["prompt_tokens"] == expected.tokens
    assert inside["token_count_method"] == expected.method
    if expected.encoding is None:
        assert expected.method == "heuristic"
        assert "token_encoding" not in inside
    else:
        assert inside["token_encoding"] == expected.encoding
    metadata = only_record(exporter)["metadata"]
    assert metadata["prompt_tokens"] == expected.tokens
    assert metadata["token_count_method"] == expected.method
    assert metadata["completion_tokens"] == 3


def test_with_tokens_methods() -> None:
    with llm_span_with_tokens("gpt-4o", prompt="Hello world!") as exact:
        pass
    with llm_span_with_tokens("some-unknown-model", prompt="Hello world!") as estimate:
        pass
    assert exact.metadata["token_count_method"] == "tiktoken"
    assert exact.metadata["token_encoding"] == "o200k_base"
    assert exact.metadata["prompt_tokens"] == 3
    assert estimate.metadata["token_count_method"] == "heuristic"
    assert "token_encoding" not in estimate.metadata


def test_with_tokens_keeps_a_precount_of_the_callers_own(exporter: InMemoryExporter) -> None:
    """``prompt_tokens_estimate=`` given: the prompt is captured, not counted again, and the
    caller's method stands."""
    configure(exporter=exporter, flush_interval=0.05, capture_content=True)
    try:
        with llm_span_with_tokens(
            "gpt-4o",
            prompt="Hello world!",
            prompt_tokens_estimate=7,
            token_count_method="estimate",
        ) as span:
            pass
    finally:
        configure(capture_content=False)
    record = only_record(exporter)
    assert record["prompt"] == "Hello world!"
    assert "prompt_tokens" not in span.metadata
    assert (span.metadata["prompt_tokens_estimate"], span.metadata["token_count_method"]) == (
        7,
        "estimate",
    )


class FixedStr:
    def __str__(self) -> str:
        return "an object that prints as a fairly long sentence of words"


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    "prompt",
    [
        123456789,
        FixedStr(),
        {"role": "user", "content": "a dict, not a list"},
        None,
        3.5,
        b"some bytes",
        [1, 2, 3],
        ["not", "messages"],
    ],
    ids=["int", "object", "dict", "none", "float", "bytes", "list-of-ints", "list-of-strs"],
)
def test_with_tokens_odd_prompts_are_estimated_from_str(
    exporter: InMemoryExporter, prompt: Any
) -> None:
    expected = count_tokens(str(prompt), "some-unknown-model")
    assert expected.method == "heuristic"
    with llm_span_with_tokens("gpt-4o", prompt=prompt) as span:
        pass
    assert span.status == "ok"
    metadata = only_record(exporter)["metadata"]
    assert metadata["token_count_method"] == "heuristic"
    assert metadata["prompt_tokens"] == expected.tokens


def test_with_tokens_prompt_whose_str_fails_never_raises(exporter: InMemoryExporter) -> None:
    with llm_span_with_tokens("gpt-4o", prompt=RaisingStr()) as span:
        span.set_metadata("completion_tokens", 1)
    assert span.status == "ok"
    assert only_record(exporter)["metadata"]["completion_tokens"] == 1


def test_with_tokens_async_and_nested(exporter: InMemoryExporter) -> None:
    async def main() -> tuple[Span, Span]:
        async with (
            llm_span("router") as parent,
            llm_span_with_tokens("gpt-4o", "openai", prompt="Hello world!") as child,
        ):
            await asyncio.sleep(0)
        return parent, child

    parent, child = asyncio.run(main())
    assert child.parent_span_id == parent.span_id
    assert child.metadata["prompt_tokens"] == 3
    assert len(exported(exporter)) == 2


def test_with_tokens_from_many_threads_matches_one_thread(exporter: InMemoryExporter) -> None:
    rng = random.Random(3)
    prompts = [" ".join(rng.choice(["alpha", "beta", "中文", "😀", "12345"]) for _ in range(n))
               for n in rng.choices(range(1, 600), k=64)]  # fmt: skip
    expected = [count_tokens(p, "gpt-4o").tokens for p in prompts]

    def work(index: int) -> int:
        with llm_span_with_tokens("gpt-4o", prompt=prompts[index]) as span:
            pass
        return int(span.metadata["prompt_tokens"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(work, range(64)))
    assert got == expected
