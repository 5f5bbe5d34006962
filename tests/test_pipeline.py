"""The export pipeline: ``configure`` validation and environment variables, ``flush`` and
``shutdown``, the ``stats()`` invariant, retries with backoff, exporters that raise, hang or are
slow (the request thread never waits for them), a full buffer, many threads, and the bundled
exporters (InMemory, JSONL, Console, and the exporter strings).

Every test gets a fresh pipeline exporting to an ``InMemoryExporter`` (see ``exporter``); tests
that need another exporter call ``configure`` again. Figures from ``stats()`` are cumulative per
process, so tests compare before and after."""

from __future__ import annotations

import io
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import instrumentation_sdk
import pytest
from instrumentation_sdk import (
    configure,
    flush,
    get_settings,
    llm_span,
    shutdown,
    stats,
)
from instrumentation_sdk.exporters import ConsoleExporter, InMemoryExporter, JsonlExporter
from record_schema import RECORD_KEYS

# A fresh in-memory pipeline per test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("exporter")

FIGURES = (
    "produced",
    "exported",
    "buffered",
    "dropped",
    "dropped_buffer_full",
    "dropped_export_failed",
    "dropped_after_shutdown",
    "truncated",
    "unencodable",
    "export_errors",
    "retries",
    "span_faults",
)


class Gate:
    """An exporter whose export() blocks until ``release`` is set (a hung backend)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.records: list[dict[str, Any]] = []
        self.calls = 0

    def export(self, batch: list[dict[str, Any]]) -> None:
        self.calls += 1
        self.entered.set()
        self.release.wait()
        self.records.extend(batch)


@pytest.fixture
def gate() -> Iterator[Gate]:
    hung = Gate()
    yield hung
    hung.release.set()  # before the autouse fixture's shutdown


class Flaky:
    """Fails its first ``failures`` calls (with the given exceptions, in turn), then works."""

    def __init__(self, failures: int, errors: tuple[type[BaseException], ...] = (OSError,)):
        self.failures = failures
        self.errors = errors
        self.calls: list[float] = []
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def export(self, batch: list[dict[str, Any]]) -> None:
        with self.lock:
            self.calls.append(time.monotonic())
            attempt = len(self.calls)
        if attempt <= self.failures:
            raise self.errors[(attempt - 1) % len(self.errors)](f"attempt {attempt}")
        with self.lock:
            self.records.extend(batch)


class Counting:
    """Counts records and keeps their span ids; cheap enough for tens of thousands."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.batch_sizes: list[int] = []

    def export(self, batch: list[dict[str, Any]]) -> None:
        self.batch_sizes.append(len(batch))
        self.ids.extend(record["span_id"] for record in batch)


def make_spans(count: int, **kwargs: Any) -> list[str]:
    ids = []
    for i in range(count):
        with llm_span("gpt-4o", "openai", **kwargs) as span:
            span.set_metadata("i", i)
        ids.append(span.span_id)
    return ids


def figures() -> dict[str, int]:
    current = stats()
    return {key: current[key] for key in FIGURES}


def delta(before: dict[str, int]) -> dict[str, int]:
    after = figures()
    return {key: after[key] - before[key] for key in FIGURES}


def assert_invariant(current: dict[str, Any] | None = None) -> None:
    current = stats() if current is None else current
    assert current["produced"] == current["exported"] + current["dropped"] + current["buffered"], (
        current
    )
    assert current["dropped"] == (
        current["dropped_buffer_full"]
        + current["dropped_export_failed"]
        + current["dropped_at_shutdown"]
        + current["dropped_after_shutdown"]
        + current["dropped_no_pipeline"]
    ), current


def sdk_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "instrumentation_sdk" and record.levelno >= logging.WARNING
    ]


# -- configure: validation ---------------------------------------------------------------------

BAD_VALUES = [
    ("batch_size", 0),
    ("batch_size", -1),
    ("batch_size", True),
    ("batch_size", False),
    ("batch_size", 1.5),
    ("batch_size", float("nan")),
    ("batch_size", "10"),
    ("flush_interval", 0),
    ("flush_interval", -0.5),
    ("flush_interval", True),
    ("flush_interval", float("nan")),
    ("flush_interval", "1"),
    ("buffer_capacity", 0),
    ("buffer_capacity", -10),
    ("buffer_capacity", True),
    ("buffer_capacity", float("nan")),
    ("max_value_bytes", 0),
    ("max_value_bytes", -1),
    ("max_value_bytes", True),
    ("max_value_bytes", float("nan")),
    ("export_retries", -1),
    ("export_retries", True),
    ("export_retries", float("nan")),
    ("export_retries", 1.5),
    ("exit_timeout", 0),
    ("exit_timeout", -1),
    ("exit_timeout", True),
    ("exit_timeout", float("nan")),
    ("service_name", ""),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_bad_values_raise_a_clear_value_error(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        configure(exporter=InMemoryExporter(), **{field: value})


@pytest.mark.parametrize("exporter_value", ["bogus", "", "otlp-ish", 42, object()])
def test_bad_exporters_raise(exporter_value: Any) -> None:
    with pytest.raises(ValueError, match="exporter"):
        configure(exporter=exporter_value)


def test_an_exporter_whose_export_is_not_callable_raises() -> None:
    class NotCallable:
        export = 5

    with pytest.raises(ValueError, match="export"):
        configure(exporter=NotCallable())


def test_batch_size_above_capacity_raises() -> None:
    with pytest.raises(ValueError, match="batch_size") as info:
        configure(exporter=InMemoryExporter(), batch_size=101, buffer_capacity=100)
    assert "buffer_capacity" in str(info.value)
    configure(exporter=InMemoryExporter(), batch_size=100, buffer_capacity=100)  # equal is fine


def test_export_retries_zero_is_allowed() -> None:
    configure(exporter=InMemoryExporter(), export_retries=0)
    assert get_settings().export_retries == 0


def test_a_failed_configure_keeps_the_running_pipeline(exporter: InMemoryExporter) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        configure(exporter=InMemoryExporter(), batch_size=0)
    ids = make_spans(3)
    assert flush(timeout=5.0)
    assert [r["span_id"] for r in exporter.spans] == ids


def test_an_exit_timeout_too_large_to_wait_for_is_rejected_up_front() -> None:
    """threading cannot wait longer than threading.TIMEOUT_MAX (about 292 years). A larger
    exit_timeout must be refused by configure() (ValueError) or honoured; it must not make the
    next configure() (or the exit hook) raise OverflowError."""
    try:
        configure(exporter=InMemoryExporter(), exit_timeout=1e12)
    except ValueError:
        return
    make_spans(1)
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)
    make_spans(1)
    assert flush(timeout=5.0)
    assert len(memory.spans) == 1


def test_configured_values_are_used() -> None:
    memory = InMemoryExporter()
    configure(
        exporter=memory,
        batch_size=7,
        flush_interval=0.25,
        buffer_capacity=70,
        max_value_bytes=99,
        service_name="checkout",
        export_retries=1,
        exit_timeout=1.5,
    )
    settings = get_settings()
    assert settings.exporter is memory
    assert (settings.batch_size, settings.flush_interval, settings.buffer_capacity) == (7, 0.25, 70)
    assert (settings.max_value_bytes, settings.service_name) == (99, "checkout")
    assert (settings.export_retries, settings.exit_timeout) == (1, 1.5)
    make_spans(20)
    assert flush(timeout=5.0)
    assert len(memory.spans) == 20
    assert memory.batches >= 3  # batches of at most 7
    assert {r["service_name"] for r in memory.spans} == {"checkout"}


# -- configure: environment --------------------------------------------------------------------


def test_environment_sets_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "EXPORTER": "memory",
        "BATCH_SIZE": "7",
        "FLUSH_INTERVAL": "0.5",
        "BUFFER_CAPACITY": "99",
        "MAX_VALUE_BYTES": "123",
        "SERVICE_NAME": "from-env",
        "EXPORT_RETRIES": "2",
        "EXIT_TIMEOUT": "1.5",
    }.items():
        monkeypatch.setenv(f"INSTRUMENTATION_SDK_{name}", value)
    configure()
    settings = get_settings()
    assert settings.exporter == "memory"
    assert (settings.batch_size, settings.flush_interval, settings.buffer_capacity) == (7, 0.5, 99)
    assert (settings.max_value_bytes, settings.service_name) == (123, "from-env")
    assert (settings.export_retries, settings.exit_timeout) == (2, 1.5)
    configure(batch_size=9, service_name="explicit")  # explicit arguments win
    assert (get_settings().batch_size, get_settings().service_name) == (9, "explicit")
    assert get_settings().buffer_capacity == 99


@pytest.mark.parametrize(
    ("name", "value", "field", "default"),
    [
        ("BATCH_SIZE", "abc", "batch_size", 512),
        ("BATCH_SIZE", "0", "batch_size", 512),
        ("BATCH_SIZE", "-4", "batch_size", 512),
        ("BUFFER_CAPACITY", "1.5", "buffer_capacity", 16384),
        ("FLUSH_INTERVAL", "nan", "flush_interval", 1.0),
        ("FLUSH_INTERVAL", "soon", "flush_interval", 1.0),
        ("EXPORT_RETRIES", "-1", "export_retries", 3),
        ("EXIT_TIMEOUT", "0", "exit_timeout", 5.0),
        ("MAX_VALUE_BYTES", "lots", "max_value_bytes", 16384),
        ("EXPORTER", "bogus", "exporter", "sqlite"),
    ],
)
def test_a_bad_environment_variable_is_logged_and_ignored(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
    value: str,
    field: str,
    default: Any,
) -> None:
    variable = f"INSTRUMENTATION_SDK_{name}"
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        configure(exporter=InMemoryExporter())  # never raises for the environment's values
    assert any(variable in message for message in sdk_warnings(caplog)), sdk_warnings(caplog)
    if field != "exporter":
        assert getattr(get_settings(), field) == default
    before = figures()
    make_spans(2)
    assert flush(timeout=5.0)
    assert delta(before)["exported"] == 2


def test_environment_batch_size_and_capacity_are_validated_together(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Both variables are valid together (batch 20000 <= capacity 50000); neither may be
    rejected just because the other one had not been read yet."""
    monkeypatch.setenv("INSTRUMENTATION_SDK_BATCH_SIZE", "20000")
    monkeypatch.setenv("INSTRUMENTATION_SDK_BUFFER_CAPACITY", "50000")
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        configure(exporter=InMemoryExporter())
    assert sdk_warnings(caplog) == []
    assert (get_settings().batch_size, get_settings().buffer_capacity) == (20000, 50000)


def test_service_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    def exported_service(**kwargs: Any) -> str:
        memory = InMemoryExporter()
        configure(exporter=memory, flush_interval=0.05, **kwargs)
        make_spans(1)
        assert flush(timeout=5.0)
        return str(memory.spans[0]["service_name"])

    assert exported_service() == "unknown_service"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "otel-svc")
    assert exported_service() == "otel-svc"
    monkeypatch.setenv("INSTRUMENTATION_SDK_SERVICE_NAME", "sdk-svc")
    assert exported_service() == "sdk-svc"
    assert exported_service(service_name="arg-svc") == "arg-svc"
    memory = InMemoryExporter()
    configure(exporter=memory, service_name="arg-svc")
    with llm_span("m", service_name="span-svc"):
        pass
    assert flush(timeout=5.0)
    assert memory.spans[0]["service_name"] == "span-svc"  # the span's own name wins


# -- exporter strings --------------------------------------------------------------------------


def test_exporter_string_jsonl_uses_the_path_variable(tmp_path: Path) -> None:
    configure(exporter="jsonl", flush_interval=0.05)
    ids = make_spans(5)
    assert flush(timeout=5.0)
    lines = (tmp_path / "default.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line)["span_id"] for line in lines] == ids


def test_exporter_string_console_prints_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure(exporter="console", flush_interval=0.05)
    make_spans(3)
    assert flush(timeout=5.0)
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "gpt-4o" in line]) == 3


@pytest.mark.parametrize("name", ["memory", "none"])
def test_exporter_strings_memory_and_none_count_as_exported(name: str) -> None:
    configure(exporter=name, flush_interval=0.05)
    before = figures()
    make_spans(10)
    assert flush(timeout=5.0)
    change = delta(before)
    assert change["exported"] == 10
    assert change["produced"] == 10


def test_exporter_string_sqlite_writes_the_default_store(tmp_path: Path) -> None:
    configure(exporter="sqlite", flush_interval=0.05)
    ids = make_spans(4)
    assert flush(timeout=10.0)
    shutdown(timeout=5.0)
    with sqlite3.connect(tmp_path / "default.db") as db:
        stored = {row[0] for row in db.execute("SELECT span_id FROM spans")}
    assert stored == set(ids)


# -- flush, shutdown, stats --------------------------------------------------------------------


def test_stats_has_every_figure() -> None:
    current = stats()
    for key in (*FIGURES, "faults", "token_cache"):
        assert key in current
    assert isinstance(current["faults"], dict)
    assert isinstance(current["token_cache"], dict)
    assert_invariant(current)


def test_flush_with_nothing_to_do_returns_true_at_once() -> None:
    started = time.monotonic()
    assert flush(timeout=5.0)
    assert time.monotonic() - started < 1.0


def test_flush_waits_for_everything_ended_before_it() -> None:
    class Slow:
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def export(self, batch: list[dict[str, Any]]) -> None:
            time.sleep(0.05)
            self.records.extend(batch)

    slow = Slow()
    configure(exporter=slow, batch_size=50, flush_interval=60.0)
    before = figures()
    ids = make_spans(400)
    assert flush(timeout=20.0)
    assert [r["span_id"] for r in slow.records] == ids
    assert delta(before)["buffered"] == 0
    assert_invariant()


def test_spans_are_exported_without_flush(exporter: InMemoryExporter) -> None:
    make_spans(3)  # fewer than a batch: the flush interval exports them
    assert exporter.wait_for(3, timeout=5.0)
    memory = InMemoryExporter()
    configure(exporter=memory, batch_size=10, flush_interval=60.0)
    make_spans(10)  # a full batch wakes the flusher long before the interval
    assert memory.wait_for(10, timeout=5.0)


def test_batches_respect_batch_size() -> None:
    counting = Counting()
    configure(exporter=counting, batch_size=7, flush_interval=60.0)
    ids = make_spans(100)
    assert flush(timeout=5.0)
    assert max(counting.batch_sizes) <= 7
    assert sorted(counting.ids) == sorted(ids)


def test_exported_records_are_dicts_with_the_contract_keys(exporter: InMemoryExporter) -> None:
    seen: list[Any] = []

    class Inspect:
        def export(self, batch: Any) -> None:
            seen.append(batch)

    configure(exporter=Inspect(), flush_interval=0.05)
    make_spans(3)
    with pytest.raises(KeyError), llm_span("m", user_id="u"):
        raise KeyError("k")
    assert flush(timeout=5.0)
    records = [record for batch in seen for record in batch]
    assert all(isinstance(batch, list) for batch in seen)
    assert len(records) == 4
    for record in records:
        assert isinstance(record, dict)
        assert set(record) == set(RECORD_KEYS)
        assert isinstance(record["metadata"], dict)
    assert records[-1]["error_message"] == "'k'"


def test_invariant_holds_and_flush_empties_the_buffer() -> None:
    before = figures()
    make_spans(250)
    assert flush(timeout=5.0)
    change = delta(before)
    assert change["produced"] == 250
    assert change["exported"] == 250
    assert change["dropped"] == 0
    assert change["buffered"] == 0
    assert_invariant()


def test_figures_are_cumulative_across_configure() -> None:
    before = figures()
    make_spans(5)
    configure(exporter=InMemoryExporter(), flush_interval=0.05)
    make_spans(7)
    configure(exporter=InMemoryExporter(), flush_interval=0.05)
    make_spans(11)
    assert flush(timeout=5.0)
    change = delta(before)
    assert change["produced"] == 23
    assert change["exported"] == 23
    assert_invariant()


def test_configure_flushes_the_old_pipeline_first() -> None:
    old = InMemoryExporter()
    configure(exporter=old, flush_interval=60.0, batch_size=500)
    ids = make_spans(20)
    new = InMemoryExporter()
    configure(exporter=new, flush_interval=0.05)
    assert [r["span_id"] for r in old.spans] == ids  # before configure() returned
    make_spans(2)
    assert flush(timeout=5.0)
    assert len(new.spans) == 2
    assert len(old.spans) == 20


def test_shutdown_exports_then_drops_and_counts_later_spans() -> None:
    class WithShutdown(InMemoryExporter):
        def __init__(self) -> None:
            super().__init__()
            self.shutdowns = 0

        def shutdown(self) -> None:
            self.shutdowns += 1

    memory = WithShutdown()
    configure(exporter=memory, flush_interval=60.0, batch_size=500)
    ids = make_spans(30)
    before = figures()
    assert shutdown(timeout=5.0)
    assert [r["span_id"] for r in memory.spans] == ids
    assert memory.shutdowns == 1
    make_spans(4)
    change = delta(before)
    assert change["dropped_after_shutdown"] == 4
    assert change["produced"] == 4
    assert len(memory.spans) == 30
    assert shutdown(timeout=1.0)
    assert memory.shutdowns == 1  # the exporter is shut down once
    started = time.monotonic()
    assert flush(timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert_invariant()
    fresh = InMemoryExporter()
    configure(exporter=fresh, flush_interval=0.05)  # a new pipeline after shutdown
    ids = make_spans(3)
    assert flush(timeout=5.0)
    assert [r["span_id"] for r in fresh.spans] == ids


def test_configure_shuts_the_old_exporter_down() -> None:
    class WithShutdown(InMemoryExporter):
        shutdowns = 0

        def shutdown(self) -> None:
            type(self).shutdowns += 1

    configure(exporter=WithShutdown())
    configure(exporter=InMemoryExporter())
    assert WithShutdown.shutdowns == 1


def test_shutdown_is_bounded_when_the_exporters_own_shutdown_hangs() -> None:
    release = threading.Event()

    class HangsOnClose(InMemoryExporter):
        def shutdown(self) -> None:
            release.wait()

    configure(exporter=HangsOnClose(), flush_interval=0.01, exit_timeout=0.3)
    make_spans(2)
    caller = threading.Thread(target=shutdown, kwargs={"timeout": 0.3}, daemon=True)
    started = time.monotonic()
    caller.start()
    caller.join(3.0)
    hung = caller.is_alive()
    release.set()
    caller.join(5.0)
    assert not hung, "shutdown(timeout=0.3) was still waiting after 3 s"
    assert time.monotonic() - started < 3.5


def test_an_exporter_shutdown_that_raises_is_swallowed() -> None:
    class BadShutdown(InMemoryExporter):
        def shutdown(self) -> None:
            raise RuntimeError("cannot close")

    configure(exporter=BadShutdown())
    make_spans(1)
    assert shutdown(timeout=5.0)
    configure(exporter=InMemoryExporter())


# -- retries -----------------------------------------------------------------------------------


def test_a_flaky_exporter_is_retried_until_it_succeeds() -> None:
    flaky = Flaky(failures=2)
    configure(exporter=flaky, export_retries=3, batch_size=100, flush_interval=60.0)
    before = figures()
    ids = make_spans(10)
    assert flush(timeout=10.0)
    assert [r["span_id"] for r in flaky.records] == ids  # once each, no duplicates
    change = delta(before)
    assert change["exported"] == 10
    assert change["export_errors"] == 2
    assert change["retries"] == 2
    assert change["dropped"] == 0
    assert_invariant()


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_a_batch_is_dropped_after_its_retries(retries: int) -> None:
    flaky = Flaky(failures=10**9)
    configure(exporter=flaky, export_retries=retries, batch_size=100, flush_interval=60.0)
    before = figures()
    make_spans(10)
    assert flush(timeout=10.0)
    assert len(flaky.calls) == retries + 1
    change = delta(before)
    assert change["dropped_export_failed"] == 10
    assert change["dropped"] == 10
    assert change["exported"] == 0
    assert change["export_errors"] == retries + 1
    assert change["retries"] == retries
    assert change["buffered"] == 0
    assert_invariant()


def test_retry_backoff_grows_exponentially(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENTATION_SDK_RETRY_BACKOFF", "0.1")
    flaky = Flaky(failures=10**9)
    configure(exporter=flaky, export_retries=3, batch_size=100, flush_interval=60.0)
    make_spans(1)
    started = time.monotonic()
    assert flush(timeout=10.0)
    assert time.monotonic() - started < 5.0
    gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
    assert len(gaps) == 3
    # backoff * 2**attempt, with jitter taking off at most half
    for attempt, gap in enumerate(gaps):
        assert gap >= 0.1 * 2**attempt * 0.5 - 0.002, gaps
    assert gaps[2] > gaps[0], gaps  # at least 0.2 s against at most 0.1 s (plus scheduling)


def test_retry_backoff_has_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENTATION_SDK_RETRY_BACKOFF", "0.1")
    flaky = Flaky(failures=10**9)
    configure(exporter=flaky, export_retries=1, batch_size=1, flush_interval=60.0)
    make_spans(8)  # eight batches of one, each retried once after backoff * U(0.5, 1)
    assert flush(timeout=20.0)
    assert len(flaky.calls) == 16
    gaps = [flaky.calls[i + 1] - flaky.calls[i] for i in range(0, 16, 2)]
    assert min(gaps) >= 0.05 - 0.002, gaps
    # Eight uniform draws over 50 ms all within 10 ms of each other: about 1 in 10,000.
    assert max(gaps) - min(gaps) >= 0.01, f"no jitter: {gaps}"


@pytest.mark.parametrize(
    "errors",
    [
        (SystemExit, KeyboardInterrupt, GeneratorExit),
        (MemoryError, RecursionError, RuntimeError),
    ],
    ids=["base-exceptions", "errors"],
)
def test_the_flusher_survives_any_exception_from_the_exporter(
    errors: tuple[type[BaseException], ...],
) -> None:
    flaky = Flaky(failures=3, errors=errors)
    configure(exporter=flaky, export_retries=3, batch_size=100, flush_interval=60.0)
    ids = make_spans(5)
    assert flush(timeout=10.0)
    assert [r["span_id"] for r in flaky.records] == ids
    # Now with no retries: each kind drops a batch, and the flusher keeps going after each.
    flaky = Flaky(failures=3, errors=errors)
    configure(exporter=flaky, export_retries=0, batch_size=100, flush_interval=60.0)
    for _ in range(3):
        make_spans(2)
        assert flush(timeout=10.0)
    later = make_spans(2)
    assert flush(timeout=10.0)
    assert [r["span_id"] for r in flaky.records] == later
    assert_invariant()


def test_export_failures_are_logged_once_per_kind(
    caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    flaky = Flaky(failures=10**9)
    configure(exporter=flaky, export_retries=1, batch_size=5, flush_interval=60.0)
    before = figures()
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        make_spans(50)
        assert flush(timeout=10.0)
    assert len(flaky.calls) == 20
    messages = sdk_warnings(caplog)
    assert 1 <= len(messages) <= 2, messages  # "export failed" and "batch dropped", once each
    assert delta(before)["export_errors"] == 20


def test_flush_from_inside_the_exporter_does_not_deadlock() -> None:
    results: list[tuple[bool, float]] = []

    class Reentrant:
        def export(self, batch: list[dict[str, Any]]) -> None:
            started = time.monotonic()
            results.append((flush(timeout=3.0), time.monotonic() - started))

    configure(exporter=Reentrant(), flush_interval=0.05)
    make_spans(2)
    assert flush(timeout=10.0)
    assert results
    assert all(elapsed < 1.0 for _, elapsed in results), results


# -- exporters that hang or are slow never block the application --------------------------------


def test_ending_spans_never_waits_for_a_hung_exporter(gate: Gate) -> None:
    configure(
        exporter=gate, batch_size=100, buffer_capacity=2000, flush_interval=0.01, exit_timeout=0.2
    )
    before = figures()
    make_spans(1)
    assert gate.entered.wait(5.0)
    started = time.perf_counter()
    for i in range(1000):
        with llm_span("gpt-4o", "openai", user_id="u") as span:
            span.set_metadata("completion_tokens", i)
            span.set_metadata("payload", {"i": i})
    elapsed = time.perf_counter() - started
    # Waiting on the hung exporter would take forever (or exit_timeout a span: 200 s); the
    # loop's own work is ~5 ms. The bound only has to tell those apart on a loaded machine.
    assert elapsed < 5.0, elapsed
    started = time.monotonic()
    assert not flush(timeout=0.2)
    assert time.monotonic() - started < 3.0
    assert_invariant()
    gate.release.set()
    assert flush(timeout=10.0)
    assert len(gate.records) == 1001
    assert delta(before)["buffered"] == 0


def test_shutdown_and_configure_are_bounded_by_a_hung_exporter(gate: Gate) -> None:
    configure(exporter=gate, flush_interval=0.01, exit_timeout=0.3)
    make_spans(5)
    assert gate.entered.wait(5.0)
    started = time.monotonic()
    assert not shutdown(timeout=0.3)
    assert time.monotonic() - started < 2.0
    started = time.monotonic()
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)  # the old pipeline waits exit_timeout at most
    assert time.monotonic() - started < 2.0
    ids = make_spans(3)
    assert flush(timeout=5.0)
    assert [r["span_id"] for r in memory.spans] == ids


def test_reconfiguring_away_from_a_hung_exporter_does_not_block_request_threads(
    gate: Gate,
) -> None:
    """configure() may wait up to exit_timeout for the old exporter, but threads that end spans
    meanwhile must not wait with it."""
    configure(exporter=gate, flush_interval=0.01, exit_timeout=1.0)
    make_spans(1)
    assert gate.entered.wait(5.0)
    memory = InMemoryExporter()
    reconfigure = threading.Thread(target=configure, kwargs={"exporter": memory})
    reconfigure.start()
    time.sleep(0.1)  # configure() is now waiting for the hung flusher
    worst = 0.0
    for _ in range(20):
        started = time.perf_counter()
        with llm_span("m"):
            pass
        worst = max(worst, time.perf_counter() - started)
    reconfigure.join(10)
    assert worst < 0.25, f"ending a span took {worst:.2f}s while configure() ran"


def test_spans_stuck_in_a_replaced_hung_pipeline_are_not_buffered_forever(gate: Gate) -> None:
    """configure() gives up on a hung exporter after exit_timeout. Its spans will never be
    exported by anyone, so they must end up accounted for (dropped), not as "buffered" forever:
    after a successful flush() of the new pipeline, buffered must be 0."""
    configure(
        exporter=gate, batch_size=5, buffer_capacity=50, flush_interval=0.01, exit_timeout=0.2
    )
    before = figures()
    make_spans(5)
    assert gate.entered.wait(5.0)
    make_spans(20)
    configure(exporter=InMemoryExporter(), flush_interval=0.05)
    make_spans(1)
    assert flush(timeout=5.0)
    assert_invariant()
    change = delta(before)
    assert change["produced"] == 26
    assert change["buffered"] == 0, change
    assert change["exported"] + change["dropped"] == 26, change


def test_a_slow_exporter_does_not_slow_the_request_thread() -> None:
    class Slow:
        def __init__(self) -> None:
            self.count = 0

        def export(self, batch: list[dict[str, Any]]) -> None:
            time.sleep(0.2)
            self.count += len(batch)

    slow = Slow()
    configure(exporter=slow, batch_size=250, flush_interval=0.01)
    started = time.perf_counter()
    make_spans(1000)
    assert time.perf_counter() - started < 0.5
    assert flush(timeout=20.0)
    assert slow.count == 1000


def test_a_full_buffer_drops_new_spans_and_counts_them(
    gate: Gate, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    configure(exporter=gate, batch_size=5, buffer_capacity=10, flush_interval=0.01, exit_timeout=1)
    before = figures()
    first = make_spans(5)
    assert gate.entered.wait(5.0)  # the flusher holds those 5, hung in export()
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        started = time.perf_counter()
        kept = make_spans(10)  # fill the buffer
        make_spans(500)  # all dropped
        assert time.perf_counter() - started < 0.5
    change = delta(before)
    assert change["produced"] == 515
    assert change["dropped_buffer_full"] == 500
    assert change["dropped"] == 500
    assert change["buffered"] == 15
    assert_invariant()
    assert len(sdk_warnings(caplog)) == 1, sdk_warnings(caplog)  # one kind, logged once
    gate.release.set()
    assert flush(timeout=10.0)
    assert [r["span_id"] for r in gate.records] == first + kept
    change = delta(before)
    assert (change["exported"], change["buffered"], change["dropped"]) == (15, 0, 500)


def test_four_threads_lose_nothing_under_capacity() -> None:
    counting = Counting()
    configure(exporter=counting, buffer_capacity=100_000, batch_size=1024, flush_interval=0.05)
    before = figures()
    made: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def work(index: int) -> None:
        barrier.wait(timeout=10)
        ids = made[index]
        for i in range(20_000):
            with llm_span("gpt-4o", "openai") as span:
                span.set_metadata("completion_tokens", i)
            ids.append(span.span_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert flush(timeout=30.0)
    produced = [span_id for ids in made for span_id in ids]
    assert len(produced) == 80_000
    assert len(counting.ids) == 80_000
    assert set(counting.ids) == set(produced)
    change = delta(before)
    assert change["produced"] == 80_000
    assert change["exported"] == 80_000
    assert change["dropped"] == 0
    assert_invariant()


# -- bundled exporters -------------------------------------------------------------------------


def test_in_memory_exporter() -> None:
    memory = InMemoryExporter()
    assert memory.spans == []
    memory.export([{"span_id": "a"}, {"span_id": "b"}])
    snapshot = memory.spans
    snapshot.clear()  # a copy: the exporter keeps its records
    assert [r["span_id"] for r in memory.spans] == ["a", "b"]
    assert memory.wait_for(2, timeout=0.01)
    started = time.monotonic()
    assert not memory.wait_for(3, timeout=0.1)
    assert time.monotonic() - started < 2.0
    timer = threading.Timer(0.05, memory.export, args=([{"span_id": "c"}],))
    timer.start()
    assert memory.wait_for(3, timeout=5.0)
    timer.join()
    memory.clear()
    assert memory.spans == []


def test_jsonl_exporter_appends_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "spans.jsonl"
    exporter = JsonlExporter(path)
    exporter.export([{"span_id": "a", "metadata": {"x": "line\nbreak"}}, {"span_id": "b"}])
    exporter.export([])
    exporter.export_jsonl(b'{"span_id":"c"}\n')
    exporter.shutdown()
    again = JsonlExporter(path)  # appends, never truncates
    again.export([{"span_id": "d"}])
    again.shutdown()
    lines = path.read_text("utf-8").splitlines()
    assert [json.loads(line)["span_id"] for line in lines] == ["a", "b", "c", "d"]
    assert json.loads(lines[0])["metadata"]["x"] == "line\nbreak"


def test_an_exporter_declares_its_format_and_is_never_probed() -> None:
    class Jsonl:
        export_format = "jsonl"
        jsonl_file = None  # no core appender: the pipeline calls export_jsonl

        def __init__(self) -> None:
            self.payloads: list[bytes] = []
            self.exports = 0

        def export(self, batch: list[dict[str, Any]]) -> None:
            self.exports += 1

        def export_jsonl(self, lines: bytes) -> None:
            self.payloads.append(lines)

    class Undeclared(Jsonl):
        export_format = "records"  # has export_jsonl, but says it takes records

    declared = Jsonl()
    configure(exporter=declared, flush_interval=0.05)
    ids = make_spans(5)
    assert flush(timeout=5.0)
    assert declared.exports == 0
    records = [json.loads(line) for payload in declared.payloads for line in payload.splitlines()]
    assert [r["span_id"] for r in records] == ids
    assert all(set(r) == set(RECORD_KEYS) for r in records)

    undeclared = Undeclared()
    configure(exporter=undeclared, flush_interval=0.05)
    make_spans(3)
    assert flush(timeout=5.0)
    assert undeclared.exports >= 1
    assert undeclared.payloads == []


def test_a_wrong_format_declaration_is_refused_at_configure() -> None:
    class Bad:
        export_format = "parquet"

        def export(self, batch: list[dict[str, Any]]) -> None:
            pass

    class Missing:
        export_format = "otlp"

        def export(self, batch: list[dict[str, Any]]) -> None:
            pass

    with pytest.raises(ValueError, match="export_format must be one of records, jsonl, otlp"):
        configure(exporter=Bad())
    with pytest.raises(ValueError, match="has no export_otlp"):
        configure(exporter=Missing())


SAMPLE_METADATA: dict[str, Any] = {
    "prompt_tokens": 12,
    "completion_tokens": "40",
    "ratio": 0.1,
    "tiny": 1e-7,
    "huge": 1e300,
    "negative_zero": -0.0,
    "big_int": 2**63 - 1,
    "flag": False,
    "nothing": None,
    "text": 'naïve 中文 😀 "quoted" back\\slash \x01 \u2028',
    "nested": {"a": [1, 2.5, {"b": None}], "c": "d"},
    "tuple": (1, 2),
}


def _failing_span_with_sample_metadata(spans: list[Any]) -> None:
    span = llm_span("gpt-4o", "openai", user_id="u", session_id="s")
    spans.append(span)
    with span:
        for key, value in SAMPLE_METADATA.items():
            span.set_metadata(key, value)
        raise ValueError('why\n"not"')


def test_jsonl_and_record_forms_agree(tmp_path: Path) -> None:
    spans: list[Any] = []
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05)
    with pytest.raises(ValueError, match="why"):
        _failing_span_with_sample_metadata(spans)
    assert flush(timeout=5.0)
    path = tmp_path / "same.jsonl"
    configure(exporter=JsonlExporter(path), flush_interval=0.05)
    with pytest.raises(ValueError, match="why"):
        _failing_span_with_sample_metadata(spans)
    assert flush(timeout=5.0)
    a, b = spans
    from_records = json.loads(json.dumps(memory.spans[0]))  # tuples become lists, as in JSON
    from_jsonl = json.loads(path.read_text("utf-8"))
    for record, span in ((from_records, a), (from_jsonl, b)):
        assert record.pop("trace_id") == span.trace_id
        assert record.pop("span_id") == span.span_id
        assert record.pop("start_time_unix_nano") == span.start_time_unix_nano
        assert record.pop("end_time_unix_nano") == span.end_time_unix_nano
    assert from_jsonl == from_records
    assert from_jsonl["metadata"]["completion_tokens"] == 40
    assert math.copysign(1.0, from_jsonl["metadata"]["negative_zero"]) == -1.0


def test_console_exporter_writes_one_readable_line_per_span() -> None:
    stream = io.StringIO()
    configure(exporter=ConsoleExporter(stream=stream), flush_interval=0.05)
    with llm_span("gpt-4o", "openai") as ok:
        ok.set_metadata("prompt_tokens", 12)
        ok.set_metadata("completion_tokens", 40)
    with pytest.raises(TimeoutError), llm_span("claude-3", "anthropic") as failed:
        raise TimeoutError("Provider failed to respond")
    assert flush(timeout=5.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "gpt-4o" in lines[0]
    assert "openai" in lines[0]
    assert "ok" in lines[0]
    assert "12" in lines[0]
    assert "40" in lines[0]
    assert ok.trace_id[:8] in lines[0]
    assert "error" in lines[1]
    assert "TimeoutError" in lines[1]
    assert "Provider failed to respond" in lines[1]
    assert failed.span_id[:8] in lines[1]


def test_console_exporter_keeps_each_span_on_one_line() -> None:
    """Newlines in an error message or a name must not split a span's line."""
    stream = io.StringIO()
    configure(exporter=ConsoleExporter(stream=stream), flush_interval=0.05)
    with pytest.raises(ValueError, match="first"), llm_span("gpt-4o\nmini", name="a\r\nb"):
        raise ValueError("first line\nsecond line\rthird")
    with llm_span("gpt-4o"):
        pass
    assert flush(timeout=5.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines


def test_console_exporter_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure(exporter=ConsoleExporter(), flush_interval=0.05)
    make_spans(2)
    assert flush(timeout=5.0)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 2


def test_exporters_are_importable_from_the_package() -> None:
    from instrumentation_sdk import exporters

    for name in ("InMemoryExporter", "JsonlExporter", "ConsoleExporter", "SqliteExporter"):
        assert hasattr(exporters, name)
    assert instrumentation_sdk.exporters is exporters
