"""Export failures say why (issue 10): the exception's type and message are logged the first
time per exporter and kind, later ones are counted and summed up at most once a minute with the
latest cause, and ``stats()["last_export_error"]`` keeps the last message per exporter.

Real failures only: a SQLite store whose path is a directory, a file that is not a database, a
path under /proc, and an exporter raising its own error."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import configure, flush, llm_span, stats
from instrumentation_sdk import pipeline as sdk_pipeline
from instrumentation_sdk.exporters import JsonlExporter, SqliteExporter

pytestmark = pytest.mark.usefixtures("exporter")


class BackendDown:
    """Raises ``RuntimeError("backend down")`` on every export."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, batch: list[dict[str, Any]]) -> None:
        self.calls += 1
        raise RuntimeError("backend down")


def sdk_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "instrumentation_sdk" and record.levelno >= logging.WARNING
    ]


def make_spans(count: int) -> None:
    for _ in range(count):
        with llm_span("gpt-4o", "openai"):
            pass


def test_a_raising_exporter_logs_its_message_once(
    caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    down = BackendDown()
    configure(exporter=down, export_retries=2, batch_size=1, flush_interval=60.0)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        make_spans(5)
        assert flush(timeout=10.0)
    assert down.calls == 15
    warnings = sdk_warnings(caplog)
    with_cause = [w for w in warnings if "RuntimeError: backend down" in w]
    assert len(with_cause) == 2, warnings  # the failed attempt, the dropped batch: once each
    assert all("BackendDown" in w for w in with_cause)
    assert len(warnings) == 2, warnings
    assert stats()["last_export_error"]["BackendDown"] == "RuntimeError: backend down"


@pytest.mark.parametrize(
    "where",
    ["directory", "not-a-database", "under-proc"],
)
def test_a_failing_sqlite_store_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_faults: None, where: str
) -> None:
    if where == "directory":
        path = tmp_path
    elif where == "not-a-database":
        path = tmp_path / "garbage.db"
        path.write_bytes(b"this is not a database, just some bytes\n" * 100)
    else:
        if not sys.platform.startswith("linux"):
            pytest.skip("/proc is Linux's")
        path = Path("/proc/nope/spans.db")
    configure(exporter=SqliteExporter(path), export_retries=0, flush_interval=60.0)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        make_spans(3)
        assert flush(timeout=10.0)
    warnings = [w for w in sdk_warnings(caplog) if "SqliteExporter" in w]
    assert warnings, sdk_warnings(caplog)
    error = stats()["last_export_error"]["SqliteExporter"]
    # The exception's type and message, e.g. "OperationalError: unable to open database file",
    # "DatabaseError: file is not a database", "FileNotFoundError: [Errno 2] ...".
    assert re.fullmatch(r"[A-Za-z]*Error: \S.*", error), error
    assert error in warnings[0]


def test_a_failing_jsonl_file_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    configure(exporter=JsonlExporter(tmp_path), export_retries=0, flush_interval=60.0)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        make_spans(3)
        assert flush(timeout=10.0)
    error = stats()["last_export_error"]["JsonlExporter"]
    assert error.startswith(f"OSError: {tmp_path}"), error
    assert any(error in w for w in sdk_warnings(caplog)), sdk_warnings(caplog)


def test_later_failures_are_summed_up_at_most_once_a_minute_with_the_latest_cause(
    caplog: pytest.LogCaptureFixture, fresh_faults: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(sdk_pipeline, "_monotonic", lambda: now[0])
    down = BackendDown()
    configure(exporter=down, export_retries=0, batch_size=1, flush_interval=60.0)
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"):
        make_spans(4)  # first failure logged, three counted
        assert flush(timeout=10.0)
        assert len(sdk_warnings(caplog)) == 2  # failed attempt, dropped batch
        now[0] += 30.0
        make_spans(2)
        assert flush(timeout=10.0)
        assert len(sdk_warnings(caplog)) == 2, "no summary within the minute"
        now[0] += 31.0
        make_spans(1)
        assert flush(timeout=10.0)
    summaries = [w for w in sdk_warnings(caplog) if "since" in w and "latest" in w]
    assert len(summaries) == 2, sdk_warnings(caplog)  # one per kind: export, export_dropped
    export_summary = next(s for s in summaries if "attempt" in s)
    assert "6 more" in export_summary, export_summary  # failures 2 to 7
    assert "RuntimeError: backend down" in export_summary


def test_stats_has_no_last_error_when_nothing_failed() -> None:
    make_spans(1)
    assert flush(timeout=10.0)
    assert stats()["last_export_error"] == {}
