"""The read side: ``instrumentation_sdk.store`` and the ``spans`` / ``stats`` commands.

The database is filled through ``SqliteExporter`` with synthetic spans of known durations,
tokens and statuses; the commands run as real subprocesses
(``python -m instrumentation_sdk.cli_store``, the same code ``instrumentation-sdk spans`` runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk.exporters.sqlite import SqliteExporter, migrate
from instrumentation_sdk.prices import default_prices, record_cost
from instrumentation_sdk.store import (
    StoreError,
    count_spans,
    list_spans,
    open_store,
    parse_since,
    percentile,
    span_stats,
)
from record_schema import RECORD_KEYS

MS = 1_000_000
SEC = 1_000_000_000


def hex_id(label: str, digits: int) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:digits]


def record(
    label: str,
    *,
    start: int,
    duration_ms: float,
    model: str,
    provider: str | None,
    service: str,
    trace: str,
    status: str = "ok",
    metadata: dict[str, Any] | None = None,
    parent: str | None = None,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "trace_id": hex_id(trace, 32),
        "span_id": hex_id(label, 16),
        "parent_span_id": parent,
        "name": "llm",
        "model": model,
        "provider": provider,
        "service_name": service,
        "user_id": "user-1",
        "session_id": None,
        "status": status,
        "error_type": error[0] if error else None,
        "error_message": error[1] if error else None,
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + round(duration_ms * MS),
        "metadata": metadata if metadata is not None else {},
    }


def build_records(now: int) -> list[dict[str, Any]]:
    """105 spans with known answers.

    - gpt-4o / openai / api: 100 spans, durations 1..100 ms, 20 min to ~18 min ago, traces of 25
      spans each ("t0".."t3"); every 20th is an error; prompt_tokens = i, completion = 2 i.
    - claude-3-5-sonnet / anthropic / worker: 4 spans of 10, 20, 30, 40 ms, the newest of all,
      children of gpt-4o span 100; the second fails; prompt tokens on two (7 + 8), no completion.
    - local-llama / no provider / worker: 1 span of 2.5 ms, three days ago.
    """
    base = now - 20 * 60 * SEC
    records = []
    for i in range(1, 101):
        failed = i % 20 == 0
        records.append(
            record(
                f"gpt-{i}",
                start=base + i * SEC,
                duration_ms=i,
                model="gpt-4o",
                provider="openai",
                service="api",
                trace=f"t{(i - 1) // 25}",
                status="error" if failed else "ok",
                error=("TimeoutError", f"Provider failed to respond\n(attempt {i})")
                if failed
                else None,
                metadata={"prompt_tokens": i, "completion_tokens": 2 * i, "finish_reason": "stop"},
            )
        )
    claude_tokens = [{"prompt_tokens": 7}, {}, {"prompt_tokens": 8, "note": "x"}, {}]
    for j, (duration, metadata) in enumerate(zip([10, 20, 30, 40], claude_tokens, strict=True)):
        records.append(
            record(
                f"claude-{j}",
                start=base + 200 * SEC + j * SEC,
                duration_ms=duration,
                model="claude-3-5-sonnet",
                provider="anthropic",
                service="worker",
                trace="t3",
                parent=hex_id("gpt-100", 16),
                status="error" if j == 1 else "ok",
                error=("RateLimitError", "429 Too Many Requests") if j == 1 else None,
                metadata=metadata,
            )
        )
    records.append(
        record(
            "old",
            start=now - 3 * 86_400 * SEC,
            duration_ms=2.5,
            model="local-llama",
            provider=None,
            service="worker",
            trace="old",
        )
    )
    return records


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("store") / "spans.db"
    records = build_records(time.time_ns())
    exporter = SqliteExporter(path)
    # In batches, in shuffled order, one batch retried: what a flusher would do.
    shuffled = records[::2] + records[1::2]
    for start in range(0, len(shuffled), 32):
        exporter.export(shuffled[start : start + 32])
    exporter.export(shuffled[:32])
    exporter.shutdown()
    return path, records


@pytest.fixture
def db(filled: tuple[Path, list[dict[str, Any]]]) -> Path:
    return filled[0]


@pytest.fixture
def records(filled: tuple[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return filled[1]


def newest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["start_time_unix_nano"], r["span_id"]), reverse=True)


def with_duration(rec: dict[str, Any]) -> dict[str, Any]:
    duration = (rec["end_time_unix_nano"] - rec["start_time_unix_nano"]) / MS
    # Records written without the newer fields read back with their defaults.
    defaults = {"events": [], "prompt": None, "completion": None}
    cost = record_cost(rec, default_prices())
    return {**defaults, **rec, "duration_ms": duration, "cost_usd": cost}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "instrumentation_sdk.cli_store", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        check=False,
    )


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = run(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


# -- parse_since and percentile --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", 45 * SEC),
        ("30m", 30 * 60 * SEC),
        ("1h", 3600 * SEC),
        ("2d", 2 * 86_400 * SEC),
        ("1w", 7 * 86_400 * SEC),
        (" 12 h ", 12 * 3600 * SEC),
        ("100000w", 100_000 * 7 * 86_400 * SEC),
    ],
)
def test_parse_since(text: str, expected: int) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "1x", "-1h", "1.5h", "1H", "1h30m", "0m", "one h"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(").replace(".", r"\.")):
        parse_since(text)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (1, 50, 95, 99, 100)] == [1.0, 50.0, 95.0, 99.0, 100.0]
    assert [percentile([10.0, 20.0, 30.0, 40.0], p) for p in (25, 50, 51, 95)] == [
        10.0,
        20.0,
        30.0,
        40.0,
    ]
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="p must be"):
        percentile([1.0], 0)


# -- the store API ---------------------------------------------------------------------------------


def test_list_spans_newest_first_in_the_exported_shape(
    db: Path, records: list[dict[str, Any]]
) -> None:
    spans = list_spans(db, last=None)
    assert spans == [with_duration(r) for r in newest_first(records)]
    assert list(spans[0]) == [*RECORD_KEYS, "duration_ms", "cost_usd"]
    assert list_spans(db)[:3] == spans[:3]
    assert len(list_spans(db)) == 20
    assert list_spans(db, last=0) == []


def test_list_spans_filters(db: Path, records: list[dict[str, Any]]) -> None:
    now = time.time_ns()
    recent = list_spans(db, last=None, since_ns=now - parse_since("1h"))
    assert len(recent) == 104
    assert all(span["model"] != "local-llama" for span in recent)
    errors = list_spans(db, last=None, errors_only=True)
    assert [span["span_id"] for span in errors] == [
        r["span_id"] for r in newest_first(records) if r["status"] == "error"
    ]
    assert len(errors) == 6
    trace = hex_id("t1", 32)
    in_trace = list_spans(db, last=None, trace_id=trace)
    assert [span["span_id"] for span in in_trace] == [
        hex_id(f"gpt-{i}", 16) for i in range(50, 25, -1)
    ]
    assert list_spans(db, last=None, trace_id=trace[:8].upper()) == in_trace
    assert list_spans(db, last=None, trace_id="0" * 32) == []
    with pytest.raises(ValueError, match="hex"):
        list_spans(db, trace_id="nothex!")
    with pytest.raises(ValueError, match="last"):
        list_spans(db, last=-1)


def test_span_stats_exact(db: Path) -> None:
    by_model = span_stats(db, by="model")
    # Cost: gpt-4o at $2.50 in / $10 out per million; claude-3-5-sonnet $3 in; local-llama
    # is not in the price table: no cost (None), not zero.
    costs = [group.pop("cost_usd") for group in by_model]
    assert costs == [
        pytest.approx((5050 * 2.5 + 10100 * 10) / 1e6),
        pytest.approx(15 * 3 / 1e6),
        None,
    ]
    assert by_model == [
        {
            "group": "gpt-4o",
            "count": 100,
            "errors": 5,
            "error_rate": 0.05,
            "p50_ms": 50.0,
            "p95_ms": 95.0,
            "p99_ms": 99.0,
            "prompt_tokens": 5050,
            "completion_tokens": 10100,
            "ttft_p50_ms": None,
            "ttft_p95_ms": None,
        },
        {
            "group": "claude-3-5-sonnet",
            "count": 4,
            "errors": 1,
            "error_rate": 0.25,
            "p50_ms": 20.0,
            "p95_ms": 40.0,
            "p99_ms": 40.0,
            "prompt_tokens": 15,
            "completion_tokens": None,
            "ttft_p50_ms": None,
            "ttft_p95_ms": None,
        },
        {
            "group": "local-llama",
            "count": 1,
            "errors": 0,
            "error_rate": 0.0,
            "p50_ms": 2.5,
            "p95_ms": 2.5,
            "p99_ms": 2.5,
            "prompt_tokens": None,
            "completion_tokens": None,
            "ttft_p50_ms": None,
            "ttft_p95_ms": None,
        },
    ]
    since = time.time_ns() - parse_since("1h")
    assert [g["group"] for g in span_stats(db, by="model", since_ns=since)] == [
        "gpt-4o",
        "claude-3-5-sonnet",
    ]
    by_service = {g["group"]: g for g in span_stats(db, by="service")}
    # worker: 2.5, 10, 20, 30, 40 ms -> nearest rank ceil(0.5 * 5) = 3rd, ceil(0.95 * 5) = 5th.
    assert (by_service["worker"]["count"], by_service["worker"]["p50_ms"]) == (5, 20.0)
    assert by_service["worker"]["p95_ms"] == 40.0
    assert by_service["api"]["count"] == 100
    assert [(g["group"], g["count"]) for g in span_stats(db, by="provider")] == [
        ("openai", 100),
        ("anthropic", 4),
        (None, 1),
    ]
    with pytest.raises(ValueError, match="by must be"):
        span_stats(db, by="user")  # type: ignore[arg-type]


def test_ties_are_ordered(tmp_path: Path) -> None:
    """Spans that started in the same nanosecond list by span_id (descending, like the time);
    groups of equal size list by name, the unnamed group last."""
    path = tmp_path / "ties.db"
    now = time.time_ns()
    common = {"start": now, "duration_ms": 1, "service": "api", "trace": "tie"}
    exporter = SqliteExporter(path)
    exporter.export(
        [
            record("a", model="m-b", provider=None, **common),
            record("b", model="m-a", provider="zeta", **common),
            record("c", model="m-b", provider="alpha", **common),
            record("d", model="m-a", provider=None, **common),
        ]
    )
    exporter.shutdown()
    ids = sorted((hex_id(label, 16) for label in "abcd"), reverse=True)
    assert [span["span_id"] for span in list_spans(path)] == ids
    assert [g["group"] for g in span_stats(path, by="model")] == ["m-a", "m-b"]
    assert [(g["group"], g["count"]) for g in span_stats(path, by="provider")] == [
        (None, 2),
        ("alpha", 1),
        ("zeta", 1),
    ]
    # Equal counts: named groups by name, then the spans without a provider.
    exporter = SqliteExporter(path)
    exporter.export([record("e", model="m-a", provider="alpha", **common)])
    exporter.export([record("f", model="m-a", provider="zeta", **common)])
    exporter.shutdown()
    assert [(g["group"], g["count"]) for g in span_stats(path, by="provider")] == [
        ("alpha", 2),
        ("zeta", 2),
        (None, 2),
    ]


def test_open_store_missing_file_names_path_and_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    with pytest.raises(StoreError) as info:
        open_store(missing)
    assert str(missing) in str(info.value)
    assert "INSTRUMENTATION_SDK_DB" in str(info.value)
    assert not missing.exists(), "reading never creates a database"


def test_store_is_read_only(db: Path) -> None:
    with open_store(db) as store, pytest.raises(StoreError, match="readonly"):
        store._query("DELETE FROM spans")
    assert count_spans(db) == 105


def test_schema_only_and_zero_byte_files_are_empty_stores(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    conn = sqlite3.connect(fresh, isolation_level=None)
    migrate(conn)
    conn.close()
    zero = tmp_path / "zero.db"
    zero.touch()
    for path in (fresh, zero):
        assert list_spans(path) == []
        assert span_stats(path, by="model") == []
        assert count_spans(path) == 0


# -- the spans command -----------------------------------------------------------------------------


def test_spans_table(db: Path, records: list[dict[str, Any]]) -> None:
    out = ok("spans", "--db", str(db), "--last", "5")
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == [
        "TIME",
        "TRACE",
        "SPAN",
        "MODEL",
        "PROVIDER",
        "STATUS",
        "MS",
        "PROMPT",
        "COMPL",
        "ERROR",
    ]
    assert len(lines) == 6
    expected = newest_first(records)[:5]
    for line, rec in zip(lines[1:], expected, strict=True):
        start = datetime.fromtimestamp(rec["start_time_unix_nano"] // SEC)
        millis = rec["start_time_unix_nano"] % SEC // MS
        assert line.startswith(start.strftime("%Y-%m-%d %H:%M:%S.") + f"{millis:03d}  ")
        # Columns line up with the header.
        assert line.index(rec["trace_id"][:8]) == header.index("TRACE")
        assert line.index(rec["span_id"][:8]) == header.index("SPAN")
        assert line.index(rec["model"]) == header.index("MODEL")
        assert rec["trace_id"] not in line, "ids are shortened"
        # Durations are right-aligned: they end where the MS header ends.
        duration = (rec["end_time_unix_nano"] - rec["start_time_unix_nano"]) / MS
        ms_end = header.index(" MS ") + len(" MS")
        assert line[:ms_end].endswith(f" {duration:.1f}")
    # The newest is claude-3 (40 ms, ok, no tokens); then claude-2, 30 ms, 8 prompt tokens;
    # then claude-1, the RateLimitError.
    assert lines[1].split()[4:10] == ["claude-3-5-sonnet", "anthropic", "ok", "40.0", "-", "-"]
    assert lines[2].split()[4:10] == ["claude-3-5-sonnet", "anthropic", "ok", "30.0", "8", "-"]
    assert lines[3].split()[4:] == [
        "claude-3-5-sonnet",
        "anthropic",
        "error",
        "20.0",
        "-",
        "-",
        "RateLimitError:",
        "429",
        "Too",
        "Many",
        "Requests",
    ]


def test_spans_table_error_messages_stay_on_one_line(db: Path) -> None:
    out = ok("spans", "--db", str(db), "--errors", "--trace", hex_id("t3", 32))
    lines = out.splitlines()
    assert len(lines) == 4  # header, claude-1's rate limit, gpt-100's and gpt-80's timeouts
    assert lines[1].endswith("RateLimitError: 429 Too Many Requests")
    assert lines[2].endswith("TimeoutError: Provider failed to respond (attempt 100)")
    assert "  openai  " in lines[2]
    assert lines[2].split()[7:10] == ["100.0", "100", "200"]
    assert lines[3].endswith("TimeoutError: Provider failed to respond (attempt 80)")


def test_spans_default_last_is_20_and_json_matches_the_api(
    db: Path, records: list[dict[str, Any]]
) -> None:
    assert len(ok("spans", "--db", str(db)).splitlines()) == 21
    assert len(ok("spans", "--db", str(db), "--last", str(10**30)).splitlines()) == 106
    assert ok("spans", "--db", str(db), "--last", "0") == f"no spans match (105 in {db})\n"
    spans = json.loads(ok("spans", "--db", str(db), "--json", "--last", "1000"))
    assert spans == [with_duration(r) for r in newest_first(records)]
    assert list(spans[0]) == [*RECORD_KEYS, "duration_ms", "cost_usd"]


def test_spans_trace(db: Path) -> None:
    trace = hex_id("t1", 32)
    expected = [hex_id(f"gpt-{i}", 16) for i in range(50, 25, -1)]
    full = json.loads(ok("spans", "--db", str(db), "--trace", trace, "--json"))
    assert [span["span_id"] for span in full] == expected  # all 25: no default --last with --trace
    short = json.loads(ok("spans", "--db", str(db), "--trace", trace[:8], "--json"))
    assert short == full
    limited = json.loads(ok("spans", "--db", str(db), "--trace", trace, "--last", "3", "--json"))
    assert [span["span_id"] for span in limited] == expected[:3]
    assert ok("spans", "--db", str(db), "--trace", "0" * 32).startswith("no spans match (105 in ")


def test_spans_errors(db: Path, records: list[dict[str, Any]]) -> None:
    spans = json.loads(ok("spans", "--db", str(db), "--errors", "--json"))
    assert [span["span_id"] for span in spans] == [
        r["span_id"] for r in newest_first(records) if r["status"] == "error"
    ]
    assert {span["error_type"] for span in spans} == {"TimeoutError", "RateLimitError"}


def test_spans_since(db: Path) -> None:
    recent = json.loads(ok("spans", "--db", str(db), "--since", "1h", "--last", "1000", "--json"))
    assert len(recent) == 104
    week = json.loads(ok("spans", "--db", str(db), "--since", "1w", "--last", "1000", "--json"))
    assert len(week) == 105
    assert week[-1]["model"] == "local-llama"
    assert ok("spans", "--db", str(db), "--since", "5m") == f"no spans match (105 in {db})\n"


def test_db_from_environment(db: Path) -> None:
    out = ok("stats", "--json", env={"INSTRUMENTATION_SDK_DB": str(db)})
    assert [g["group"] for g in json.loads(out)] == ["gpt-4o", "claude-3-5-sonnet", "local-llama"]


def test_output_survives_a_narrow_terminal_encoding(tmp_path: Path) -> None:
    path = tmp_path / "unicode.db"
    exporter = SqliteExporter(path)
    exporter.export(
        [
            record(
                "u",
                start=time.time_ns(),
                duration_ms=3,
                model="modèle-日本",
                provider="ñ",
                service="api",
                trace="u",
                status="error",
                error=("ValueError", "réponse vide 🎉"),
            )
        ]
    )
    exporter.shutdown()
    out = ok("spans", "--db", str(path), env={"PYTHONIOENCODING": "ascii"})
    assert "mod?le-??" in out
    assert out.rstrip().endswith("ValueError: r?ponse vide ?")
    assert "modèle-日本" in ok("spans", "--db", str(path))  # UTF-8: as is


# -- the stats command -----------------------------------------------------------------------------


def test_stats_json_is_exact(db: Path) -> None:
    assert json.loads(ok("stats", "--db", str(db), "--json")) == span_stats(db, by="model")
    by_provider = json.loads(ok("stats", "--db", str(db), "--by", "provider", "--json"))
    assert [(g["group"], g["count"], g["p99_ms"]) for g in by_provider] == [
        ("openai", 100, 99.0),
        ("anthropic", 4, 40.0),
        (None, 1, 2.5),
    ]


def stats_table(*args: str) -> tuple[list[str], str]:
    """The table ``stats`` prints, and its last line about the store."""
    table, store = ok("stats", *args).split("\n\nstore: ")
    return table.splitlines(), store


def test_stats_table(db: Path) -> None:
    lines, store = stats_table("--db", str(db))
    assert store.startswith(f"{db}, 105 spans, ")
    assert " MiB in use (" in store
    assert " MiB on disk), oldest 20" in store
    assert lines[0].split() == [
        "MODEL",
        "COUNT",
        "ERRORS",
        "ERR",
        "%",
        "P50",
        "MS",
        "P95",
        "MS",
        "P99",
        "MS",
        "PROMPT",
        "TOK",
        "COMPL",
        "TOK",
        "COST",
        "USD",
    ]
    assert [line.split() for line in lines[1:]] == [
        ["gpt-4o", "100", "5", "5.0", "50.0", "95.0", "99.0", "5050", "10100", "0.1136"],
        ["claude-3-5-sonnet", "4", "1", "25.0", "20.0", "40.0", "40.0", "15", "-", "0.000045"],
        ["local-llama", "1", "0", "0.0", "2.5", "2.5", "2.5", "-", "-", "-"],
    ]
    # The total over the priced models; local-llama has no price, so no cost (not zero).
    assert store.endswith("\ntotal cost: $0.1137 (models without a price have none)\n")
    # Numbers are right-aligned under their headers.
    end = lines[0].index("COUNT") + len("COUNT")
    assert [line[end - 3 : end] for line in lines[1:]] == ["100", "  4", "  1"]


def test_stats_by_service_and_since(db: Path) -> None:
    lines, _ = stats_table("--db", str(db), "--by", "service", "--since", "1h")
    assert lines[0].split()[0] == "SERVICE"
    assert [line.split()[:3] for line in lines[1:]] == [["api", "100", "5"], ["worker", "4", "1"]]
    lines, _ = stats_table("--db", str(db), "--by", "provider")
    assert lines[0].split()[0] == "PROVIDER"
    assert [line.split()[:2] for line in lines[1:]] == [
        ["openai", "100"],
        ["anthropic", "4"],
        ["-", "1"],
    ]
    assert (
        ok("stats", "--db", str(db), "--since", "5m") == f"no spans in this window (105 in {db})\n"
    )


# -- empty stores and bad input --------------------------------------------------------------------


def test_empty_store_is_friendly(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.close()
    assert ok("spans", "--db", str(path)) == f"no spans yet in {path}\n"
    assert ok("stats", "--db", str(path)) == f"no spans yet in {path}\n"
    assert json.loads(ok("spans", "--db", str(path), "--json")) == []
    assert json.loads(ok("stats", "--db", str(path), "--json")) == []


def bad_files(tmp_path: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite, just some bytes " * 200)
    newer = tmp_path / "newer.db"
    exporter = SqliteExporter(newer)
    exporter.export([build_records(time.time_ns())[0]])
    exporter.shutdown()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    return {"garbage": garbage, "newer": newer, "foreign": foreign, "dir": tmp_path}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["spans", "--last", "-1"], "--last expects a whole number >= 0, got '-1'"),
        (["spans", "--last", "ten"], "--last expects a whole number >= 0, got 'ten'"),
        (["spans", "--since", "5x"], "--since: expected a whole number and a unit"),
        (["spans", "--since", "0h"], "--since: the window must be longer than zero"),
        (["stats", "--since", ""], "--since: expected a whole number and a unit"),
        (["stats", "--since", "1.5h"], "--since: expected a whole number and a unit"),
        (["spans", "--trace", "not-hex"], "--trace: a trace id is 1 to 32 hex digits"),
        (["spans", "--db", "{missing}"], "no span database at {missing}"),
        (["stats", "--db", "{missing}"], "no span database at {missing}"),
        (["spans", "--db", "{garbage}"], "{garbage} is not a span database"),
        (["stats", "--db", "{newer}"], "{newer} has schema version 99"),
        (["stats", "--db", "{foreign}"], "{foreign} is an SQLite database, but not an"),
        (["spans", "--db", "{dir}"], "{dir} is a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    db: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    paths = {**bad_files(tmp_path), "missing": tmp_path / "missing" / "spans.db"}
    names = {name: str(path) for name, path in paths.items()}
    args = [arg.format(**names) for arg in args]
    if "--db" not in args:
        args += ["--db", str(db)]
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"instrumentation-sdk {args[0]}: error: ")
    assert message.format(**names) in lines[0]


def test_missing_default_db_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "spans.db"
    result = run("spans", env={"INSTRUMENTATION_SDK_DB": str(missing)})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(missing) in result.stderr
    assert "INSTRUMENTATION_SDK_DB" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_unknown_group_is_an_argparse_error(db: Path) -> None:
    result = run("stats", "--by", "user", "--db", str(db))
    assert result.returncode == 2
    assert "invalid choice: 'user'" in result.stderr
    assert "Traceback" not in result.stderr
