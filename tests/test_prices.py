"""The price table and ``cost_usd``: lookup by prefix, the arithmetic, user overrides through
``configure(prices=...)`` and ``INSTRUMENTATION_SDK_PRICES``, and the cost the SQLite store
keeps with each span (written by the real pipeline)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from instrumentation_sdk import configure, flush, llm_span, shutdown
from instrumentation_sdk.exporters.sqlite import MIGRATIONS, SqliteExporter, migrate
from instrumentation_sdk.prices import (
    Price,
    PriceTable,
    default_prices,
    load_prices,
    record_cost,
)
from instrumentation_sdk.store import list_spans
from ui_support import MS, hex_id, span

M = 1_000_000


def test_shipped_table_is_dated_and_versioned() -> None:
    table = default_prices()
    assert table.version == 1
    assert table.as_of == "2025-10-01"
    assert table.models["gpt-4o"] == Price(2.5, 1.25, 10.0)
    assert table.models["claude-sonnet-4-5"] == Price(3.0, 0.3, 15.0)
    assert len(table.models) >= 30
    raw = json.loads(
        (Path(__file__).parents[1] / "python/instrumentation_sdk/data/prices.json").read_text()
    )
    assert set(raw["sources"]) == {"openai", "anthropic", "google"}


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest listed prefix
        ("gpt-4-0613", "gpt-4"),
        ("o3-pro-2025-06-10", "o3-pro"),
        ("o1-pro", "o1-pro"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-3-5-haiku@20241022", "claude-3-5-haiku"),  # Vertex AI's spelling
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        # Not a price: the next character must separate the listed name from a suffix.
        ("gpt-4.5-preview", None),
        ("gpt-4ox", None),
        ("o30", None),
        ("text-embedding-3-small", None),
        ("my-local-llama", None),
        ("", None),
    ],
)
def test_lookup_by_longest_prefix(model: str, listed: str | None) -> None:
    found = default_prices().lookup(model)
    assert (found[0] if found else None) == listed
    assert default_prices().lookup(model) == found  # the second time, from the table's memory


def test_a_table_is_read_only_and_its_memory_of_lookups_is_bounded() -> None:
    table = PriceTable({"m": Price(1.0, None, 2.0)}, version=1, as_of="2025-01-01")
    with pytest.raises(TypeError):
        table.models["m"] = Price(0.0, None, 0.0)  # type: ignore[index]
    for n in range(10_000):  # span model strings are unbounded: the memory starts over
        assert table.lookup(f"m-{n}") == ("m", Price(1.0, None, 2.0))
        assert table.lookup(f"x-{n}") is None
    assert len(table._found) <= 4096


def test_cost_arithmetic() -> None:
    table = default_prices()
    # gpt-4o: $2.50 in, $1.25 cached in, $10 out per million.
    assert table.cost("gpt-4o", M, M) == 12.5
    assert table.cost("gpt-4o", 1000, 500, cache_read_tokens=400) == pytest.approx(
        (600 * 2.5 + 400 * 1.25 + 500 * 10) / M
    )
    # More cached than prompt tokens (a confused provider) bills the prompt as all cached.
    assert table.cost("gpt-4o", 100, 0, cache_read_tokens=1000) == pytest.approx(100 * 1.25 / M)
    # gpt-4 has no cached price: cached tokens bill as input.
    assert table.cost("gpt-4", 1000, 0, cache_read_tokens=1000) == pytest.approx(1000 * 30 / M)
    assert table.cost("gpt-4o", 1000, None) == pytest.approx(1000 * 2.5 / M)
    assert table.cost("gpt-4o", None, None) is None  # no count: no cost
    # Stored and shown as the decimal it is, not with binary float noise.
    assert repr(table.cost("gpt-4o-mini", 25, 13)) == "1.155e-05"
    assert table.cost("unknown", 1000, 1000) is None  # no price: no cost, never zero


def test_record_cost_prefers_the_model_that_answered() -> None:
    table = default_prices()
    record = {"model": "gpt-4o", "metadata": {"prompt_tokens": M, "actual_model": "gpt-4o-mini"}}
    assert record_cost(record, table) == pytest.approx(0.15)
    record["metadata"]["actual_model"] = "some-router-alias"  # unpriced: the requested model
    assert record_cost(record, table) == pytest.approx(2.5)
    record["metadata"]["prompt_tokens"] = "12"  # not an int count
    assert record_cost(record, table) is None
    assert record_cost({"model": "gpt-4o", "metadata": {"completion_tokens": True}}, table) is None


def test_overrides_from_a_mapping_and_a_file(tmp_path: Path) -> None:
    custom = load_prices(
        {"my-llama": {"input": 0.1, "output": 0.2}, "gpt-4o": {"input": 1, "output": 2}}
    )
    assert custom.version == "1+custom"
    assert custom.cost("my-llama-70b", M, M) == pytest.approx(0.3)
    assert custom.cost("gpt-4o", M, 0, cache_read_tokens=M) == pytest.approx(1.0)
    assert custom.cost("gpt-4o-mini", M, 0) == pytest.approx(0.15)  # the rest stays
    assert default_prices().models["gpt-4o"].input == 2.5  # the shipped table is untouched
    file = tmp_path / "prices.json"
    file.write_text(
        json.dumps({"models": {"corp-model": {"input": 5, "output": 7, "cached_input": 1}}})
    )
    assert load_prices(file).models["corp-model"] == Price(5.0, 1.0, 7.0)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"corp-model": {"input": 5, "output": 7}}))
    assert load_prices(str(plain)).models["corp-model"] == Price(5.0, None, 7.0)


@pytest.mark.parametrize(
    ("prices", "error", "message"),
    [
        (
            {"x": {"input": -1, "output": 1}},
            ValueError,
            r"prices\['x'\]\['input'\] must be a number >= 0",
        ),
        ({"x": {"input": 1}}, ValueError, r"prices\['x'\]\['output'\]"),
        ({"x": {"input": 1, "output": float("nan")}}, ValueError, "output"),
        ({"x": {"input": 1, "output": 1, "cahced_input": 1}}, ValueError, "unknown key"),
        ({"x": 3}, ValueError, r"prices\['x'\] must be a mapping"),
        ({"": {"input": 1, "output": 1}}, ValueError, "non-empty str"),
        ("/nonexistent/prices.json", ValueError, "cannot read /nonexistent/prices.json"),
        (42, TypeError, "prices must be a mapping"),
    ],
)
def test_bad_prices_are_refused_by_configure(prices: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        configure(exporter="memory", prices=prices)  # type: ignore[arg-type]


def test_configure_prices_reach_the_store(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    configure(
        exporter="sqlite",
        sqlite_path=db,
        prices={"house-model": {"input": 1.0, "cached_input": 0.5, "output": 4.0}},
    )
    try:
        with llm_span("house-model-v2", "house") as s:
            s.set_metadata("prompt_tokens", 1000)
            s.set_metadata("cache_read_tokens", 200)
            s.set_metadata("completion_tokens", 100)
        with llm_span("gpt-4o", "openai") as s:
            s.set_metadata("prompt_tokens", 1000)
        with llm_span("nobody-knows", "local") as s:
            s.set_metadata("prompt_tokens", 1000)
        assert flush(10)
    finally:
        shutdown()
    costs = {record["model"]: record["cost_usd"] for record in list_spans(db)}
    assert costs == {
        "house-model-v2": pytest.approx((800 * 1.0 + 200 * 0.5 + 100 * 4.0) / M),
        "gpt-4o": pytest.approx(1000 * 2.5 / M),
        "nobody-knows": None,
    }


def test_prices_file_from_the_environment(tmp_path: Path) -> None:
    """A fresh process: the variable names a file, the default pipeline stores with it."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"env-model": {"input": 2.0, "output": 0}}))
    db = tmp_path / "spans.db"
    script = (
        "from instrumentation_sdk import llm_span, flush\n"
        "with llm_span('env-model', 'x') as s:\n"
        "    s.set_metadata('prompt_tokens', 500)\n"
        "flush(10)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "INSTRUMENTATION_SDK_DB": str(db),
            "INSTRUMENTATION_SDK_PRICES": str(prices),
        },
    )
    assert [r["cost_usd"] for r in list_spans(db)] == [pytest.approx(500 * 2.0 / M)]


def test_migration_3_keeps_old_spans_and_lifts_their_ttft(tmp_path: Path) -> None:
    """A store of schema 2 with spans: migrating adds the columns, copies each stored span's
    time to first token out of its metadata, and leaves its cost NULL (prices of the time it
    was stored are unknown)."""
    db = tmp_path / "v2.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:2])
    now = time.time_ns()
    for label, metadata in (
        ("streamed", '{"prompt_tokens": 10, "time_to_first_token_ms": 87.5}'),
        ("plain", '{"prompt_tokens": 10}'),
        ("odd", '{"time_to_first_token_ms": "fast"}'),
        ("broken", "not json"),
    ):
        conn.execute(
            "INSERT INTO spans (span_id, trace_id, name, model, status, start_time_unix_nano, "
            "end_time_unix_nano, duration_ns, metadata) VALUES (?, ?, 'llm', 'gpt-4o', 'ok', "
            "?, ?, ?, ?)",
            (hex_id(label, 16), hex_id(label, 32), now, now + MS, MS, metadata),
        )
    conn.close()
    exporter = SqliteExporter(db)
    exporter.export(
        [span("new", trace="new", start=now, duration_ms=1, metadata={"prompt_tokens": 4})]
    )
    exporter.shutdown()
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT span_id, time_to_first_token_ms FROM spans").fetchall())
    costs = dict(conn.execute("SELECT span_id, cost_usd FROM spans").fetchall())
    conn.close()
    assert rows == {
        hex_id("streamed", 16): 87.5,
        hex_id("plain", 16): None,
        hex_id("odd", 16): None,
        hex_id("broken", 16): None,
        hex_id("new", 16): None,
    }
    assert costs[hex_id("streamed", 16)] is None
    assert costs[hex_id("new", 16)] == pytest.approx(4 * 2.5 / M)


def stats_command(db: Path, *options: str) -> str:
    """``instrumentation-sdk stats`` in a real subprocess; its standard output."""
    return subprocess.run(
        [sys.executable, "-m", "instrumentation_sdk.cli_store", "stats", "--db", str(db), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def test_stats_command_totals_cost(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    now = time.time_ns()
    exporter = SqliteExporter(db)
    exporter.export(
        [
            span("a", trace="a", start=now, duration_ms=5, metadata={"prompt_tokens": M}),
            span(
                "b",
                trace="b",
                start=now,
                duration_ms=5,
                model="o3",
                metadata={"completion_tokens": M},
            ),
            span(
                "c",
                trace="c",
                start=now,
                duration_ms=5,
                model="mystery",
                metadata={"prompt_tokens": 9},
            ),
        ]
    )
    exporter.shutdown()
    table = stats_command(db)
    lines = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
    assert lines["gpt-4o"][-1] == "2.5000"
    assert lines["o3"][-1] == "8.0000"
    assert lines["mystery"][-1] == "-"
    assert table.rstrip().endswith("total cost: $10.5000 (models without a price have none)")
    costs = {g["group"]: g["cost_usd"] for g in json.loads(stats_command(db, "--json"))}
    assert costs == {"gpt-4o": 2.5, "o3": 8.0, "mystery": None}


def test_stats_command_totals_cost_by_session(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    now = time.time_ns()
    exporter = SqliteExporter(db)
    exporter.export(
        [
            span(
                "a",
                trace="a",
                start=now,
                duration_ms=5,
                session="chat/1",
                metadata={"prompt_tokens": M},
            ),
            span(
                "b",
                trace="b",
                start=now,
                duration_ms=5,
                model="o3",
                session="chat/1",
                metadata={"completion_tokens": M},
            ),
            span(
                "c",
                trace="c",
                start=now,
                duration_ms=5,
                session="chat/2",
                metadata={"prompt_tokens": M},
            ),
            span("d", trace="d", start=now, duration_ms=5, metadata={"prompt_tokens": M}),
        ]
    )
    exporter.shutdown()
    groups = {g["group"]: g for g in json.loads(stats_command(db, "--by", "session", "--json"))}
    assert set(groups) == {"chat/1", "chat/2", None}
    assert groups["chat/1"]["count"] == 2
    assert groups["chat/1"]["cost_usd"] == pytest.approx(2.5 + 8.0)
    assert groups["chat/2"]["cost_usd"] == pytest.approx(2.5)
    assert groups[None]["cost_usd"] == pytest.approx(2.5)
    table = stats_command(db, "--by", "session")
    assert table.splitlines()[0].split()[0] == "SESSION"
    assert "total cost: $15.5000" in table
