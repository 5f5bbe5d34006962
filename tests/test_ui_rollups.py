"""The store's rollups and free-text index (schema 4) against the raw rows they summarize.

Every answer the dashboard takes from ``span_rollups`` is compared with the same question put to
the raw spans of the same file (a ``SpanStore`` told it has no rollups and no text index): over
random windows and filters, after retried batches, after retention deleted the oldest spans,
and after migrating a schema-3 store. Counts, errors and tokens must be equal, cost equal up to
float rounding, and percentiles equal (the rollups keep the same log buckets and exact extremes).
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import _core
from instrumentation_sdk.exporters import rollups
from instrumentation_sdk.exporters.sqlite import (
    _COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SqliteExporter,
    _row,
    migrate,
)
from instrumentation_sdk.prices import default_prices
from instrumentation_sdk.store import SpanStore, open_store
from instrumentation_sdk.ui.queries import SpanFilter, group_stats, search_spans, time_series
from ui_support import hex_id

SEC = 1_000_000_000
MINUTE = 60 * SEC
HOUR = 3600 * SEC
DAY = 24 * HOUR
MODELS = ("gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4-5", "local-model")
PROVIDERS = ("openai", "anthropic", None)
SERVICES = ("api", "worker", None)
#: An insert as schemas 3 and 4 took it (no text id).
_INSERT = f"INSERT INTO spans ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
NAMES = ("llm", "agent step", "Retrieve_docs", "tool 100%", 'quote "x"', "Café")
ERRORS = (
    ("TimeoutError", "upstream timed out after 30 s"),
    ("RateLimitError", "429: slow down"),
    ("ValueError", "bad input: 50% off_label"),
)


def _records(
    rng: random.Random, count: int, start: int, span_ns: int, *, unique_errors: bool = False
) -> list[dict[str, Any]]:
    """``unique_errors``: every error message carries a request id (a distinct text each)."""
    records = []
    for _ in range(count):
        i = rng.getrandbits(48)
        begin = start + rng.randrange(span_ns)
        status = rng.choice(("ok", "ok", "ok", "error", "unset"))
        error = rng.choice(ERRORS) if status == "error" else (None, None)
        if unique_errors and error[1] is not None:
            error = (error[0], f"{error[1]} (request req_{i:012x})")
        metadata: dict[str, Any] = {}
        if rng.random() < 0.8:
            metadata["prompt_tokens"] = rng.randrange(0, 5000)
        if rng.random() < 0.7:
            metadata["completion_tokens"] = rng.randrange(0, 900)
        if rng.random() < 0.4:
            metadata["time_to_first_token_ms"] = rng.lognormvariate(5, 1)
        records.append(
            {
                "trace_id": hex_id(f"t{i}", 32),
                "span_id": hex_id(f"s{i}", 16),
                "parent_span_id": None,
                "name": rng.choice(NAMES),
                "model": rng.choice(MODELS),
                "provider": rng.choice(PROVIDERS),
                "service_name": rng.choice(SERVICES),
                "user_id": rng.choice((None, "ada", "bob")),
                "session_id": rng.choice((None, "s/1", "s2")),
                "status": status,
                "error_type": error[0],
                "error_message": error[1],
                "start_time_unix_nano": begin,
                "end_time_unix_nano": begin + int(rng.lognormvariate(19, 1.2)),
                "metadata": metadata,
            }
        )
    return records


def _raw(store: SpanStore) -> SpanStore:
    """The same file read without rollups or text index: every answer from the raw rows."""
    raw = open_store(store.path)
    raw.version = 3
    raw.has_text_index = False
    return raw


def _same(fast: dict[str, Any], slow: dict[str, Any]) -> None:
    for key, value in slow.items():
        if key == "cost_usd" and value is not None:
            assert fast[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert fast[key] == value, key


#: Free text from broad (every text, most texts) to selective, and none.
TEXTS = (None, None, None, "l", "e", "o", "L", "r", "timed out", "Error", "429", "%", "no such")
TEXTS += ("req_", "req_0", "(request", "agent", "Café")


def _random_filter(rng: random.Random, since: int | None, until: int | None) -> SpanFilter:
    return SpanFilter(
        model=rng.choice((None, None, *MODELS)),
        provider=rng.choice((None, None, "openai", "anthropic")),
        service=rng.choice((None, None, "api", "worker")),
        status=rng.choice((None, None, "ok", "error", "unset")),
        text=rng.choice(TEXTS),
        since_ns=since,
        until_ns=until,
    )


def _check(store: SpanStore, rng: random.Random, low: int, high: int, rounds: int) -> None:
    """Rollup answers equal raw answers over ``rounds`` random windows and filters."""
    raw = _raw(store)
    try:
        for _ in range(rounds):
            since = rng.randrange(low - DAY, high) if rng.random() < 0.9 else None
            until = rng.randrange((since or low) + 1, high + DAY) if rng.random() < 0.8 else None
            points = rng.randrange(1, 80)
            if since is not None and rng.random() < 0.4:
                # Whole minutes (as the API's relative windows are): buckets of whole minutes,
                # which the minute rollups answer (schema 8).
                since -= since % MINUTE
                until = since + points * MINUTE * rng.randrange(1, 5)
            span_filter = _random_filter(rng, since, until)
            by = rng.choice(("model", "service", "provider"))
            fast_groups, fast_total = group_stats(store, span_filter, by)
            slow_groups, slow_total = group_stats(raw, span_filter, by)
            _same(fast_total, slow_total)
            assert [g["group"] for g in fast_groups] == [g["group"] for g in slow_groups]
            for fast, slow in zip(fast_groups, slow_groups, strict=True):
                _same(fast, slow)
            t0 = since if since is not None else low - DAY
            t1 = until if until is not None else high + DAY
            fast_series = time_series(store, span_filter, since_ns=t0, until_ns=t1, points=points)
            slow_series = time_series(raw, span_filter, since_ns=t0, until_ns=t1, points=points)
            assert fast_series["bucket_ns"] == slow_series["bucket_ns"]
            assert len(fast_series["points"]) == len(slow_series["points"]) <= points
            for fast, slow in zip(fast_series["points"], slow_series["points"], strict=True):
                _same(fast, slow)
    finally:
        raw.close()


def _write(path: Path, batches: list[list[dict[str, Any]]], **kwargs: Any) -> SqliteExporter:
    exporter = SqliteExporter(path, max_bytes=0, max_age=0, **kwargs)
    for batch in batches:
        exporter.export(batch)
    return exporter


def test_rollups_answer_as_the_raw_rows_do(tmp_path: Path) -> None:
    rng = random.Random(14)
    now = time.time_ns()
    start = now - 5 * DAY
    batches = [_records(rng, rng.randrange(1, 300), start, 5 * DAY) for _ in range(20)]
    # Retried batches (whole, and a part of one with new spans) add nothing twice.
    batches += [batches[3], batches[7][:50] + _records(rng, 20, start, 5 * DAY)]
    exporter = _write(tmp_path / "spans.db", batches)
    exporter.shutdown()
    with open_store(tmp_path / "spans.db") as store:
        assert store.version == SCHEMA_VERSION == 9
        assert store.has_rollups
        assert store.has_text_index
        (stored,) = store._conn.execute("SELECT count(*) FROM spans").fetchone()
        (rolled,) = store._conn.execute(
            "SELECT sum(spans) FROM span_rollups WHERE bucket_ns = ?", (HOUR,)
        ).fetchone()
        (daily,) = store._conn.execute(
            "SELECT sum(spans) FROM span_rollups WHERE bucket_ns = ?", (DAY,)
        ).fetchone()
        assert stored == sum(len(b) for b in batches[:20]) + 20
        # The newest hours are not rolled up yet (rolled_until): read raw.
        (until,) = store._conn.execute("SELECT rolled_until FROM span_rollup_state").fetchone()
        (before,) = store._conn.execute(
            "SELECT count(*) FROM spans WHERE start_time_unix_nano < ?", (until,)
        ).fetchone()
        assert rolled == daily == before
        assert 0 < stored - before < stored / 10
        # The minutes hold those spans and the last rolled hour's (schema 9 keeps them).
        minutes, kept = _minute_sums(store)
        assert minutes == kept > stored - before
        _check(store, rng, start, now, rounds=60)


def test_a_month_window_is_answered_from_whole_days(tmp_path: Path) -> None:
    rng = random.Random(30)
    now = time.time_ns()
    exporter = _write(tmp_path / "spans.db", [_records(rng, 2000, now - 30 * DAY, 30 * DAY)])
    exporter.shutdown()
    with open_store(tmp_path / "spans.db") as store:
        series = time_series(store, SpanFilter(), since_ns=now - 30 * DAY, until_ns=now, points=60)
        assert series["bucket_ns"] == DAY
        assert series["points"][0]["start_unix_nano"] % DAY == 0
        assert 30 <= len(series["points"]) <= 31
        assert sum(p["count"] for p in series["points"]) == 2000
        day = time_series(store, SpanFilter(), since_ns=now - DAY, until_ns=now, points=60)
        assert day["bucket_ns"] == HOUR
        assert len(day["points"]) in (24, 25)
        short = time_series(store, SpanFilter(), since_ns=now - HOUR, until_ns=now, points=60)
        assert short["bucket_ns"] == 60 * SEC
        assert len(short["points"]) == 60
        _check(store, rng, now - 30 * DAY, now, rounds=20)


def test_retention_keeps_rollups_exact(tmp_path: Path) -> None:
    rng = random.Random(7)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    exporter = _write(path, [_records(rng, 3000, now - 3 * DAY, 3 * DAY)])
    # Age: spans older than 36 h go; then size: the oldest go until the store is small.
    exporter.max_age = 36 * 3600.0
    exporter.export(_records(rng, 10, now - HOUR, HOUR))
    assert exporter.evicted > 0
    with open_store(path) as store:
        (complete,) = store._conn.execute("SELECT complete_from FROM span_rollup_state").fetchone()
        (oldest,) = store._conn.execute("SELECT min(start_time_unix_nano) FROM spans").fetchone()
        assert oldest >= now - 36 * HOUR - 60 * SEC
        assert complete > oldest - HOUR
        (stale,) = store._conn.execute(
            "SELECT count(*) FROM span_rollups WHERE bucket_start < ?", (complete,)
        ).fetchone()
        assert stale == 0
        _check(store, rng, now - 3 * DAY, now, rounds=30)
    evicted = exporter.evicted
    exporter.max_age = 0
    exporter.max_bytes = 200_000
    exporter.export(_records(rng, 10, now - 2 * HOUR, HOUR))
    assert exporter.evicted > evicted
    # Late spans into hours that retention already passed: stored, and still counted exactly.
    exporter.max_bytes = 0
    exporter.export(_records(rng, 50, now - 3 * DAY, 3 * DAY))
    exporter.shutdown()
    with open_store(path) as store:
        _check(store, rng, now - 3 * DAY, now, rounds=30)
    _check_text_ids(path)


def _check_text_ids(path: Path) -> None:
    """Every span carries the id of its own text; every text is carried by a span (retention
    prunes the rest); the texts' index matches its table row for row (raises if not)."""
    conn = sqlite3.connect(path)
    try:
        (wrong,) = conn.execute(
            "SELECT count(*) FROM spans LEFT JOIN span_texts AS t ON t.id = spans.text_id "
            "WHERE t.id IS NULL OR t.name != spans.name "
            "OR t.error_type != coalesce(spans.error_type, '') "
            "OR t.error_message != coalesce(spans.error_message, '')"
        ).fetchone()
        assert wrong == 0
        (orphans,) = conn.execute(
            "SELECT count(*) FROM span_texts AS t "
            "WHERE NOT EXISTS (SELECT 1 FROM spans WHERE text_id = t.id)"
        ).fetchone()
        assert orphans == 0
        (duplicates,) = conn.execute(
            "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT name, error_type, "
            "error_message FROM span_texts)) FROM span_texts"
        ).fetchone()
        assert duplicates == 0
        conn.execute("INSERT INTO span_texts_fts(span_texts_fts) VALUES ('integrity-check')")
        # Schema 6: one class per (name, error type), its id no larger than any of its texts'.
        (mixed,) = conn.execute(
            "SELECT count(*) FROM (SELECT name, error_type FROM span_texts "
            "GROUP BY name, error_type HAVING count(DISTINCT class_id) > 1)"
        ).fetchone()
        (shared,) = conn.execute(
            "SELECT count(*) FROM (SELECT class_id FROM span_texts "
            "GROUP BY class_id HAVING count(DISTINCT name || char(0) || error_type) > 1)"
        ).fetchone()
        (later,) = conn.execute("SELECT count(*) FROM span_texts WHERE class_id > id").fetchone()
        assert mixed == shared == later == 0
    finally:
        conn.close()


def test_migrating_a_schema_3_store_backfills_rollups_and_text(tmp_path: Path) -> None:
    rng = random.Random(3)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:3]) == 3
    records = _records(rng, 1500, now - 4 * DAY, 4 * DAY)
    conn.executemany(_INSERT, [_row(record, default_prices()) for record in records])
    conn.close()
    exporter = _write(path, [_records(rng, 100, now - HOUR, HOUR)])  # migrates, then writes
    exporter.shutdown()
    with open_store(path) as store:
        assert store.version == SCHEMA_VERSION
        assert store.has_text_index
        (rolled,) = store._conn.execute(
            "SELECT sum(spans) FROM span_rollups WHERE bucket_ns = ?", (DAY,)
        ).fetchone()
        (before,) = store._conn.execute(
            "SELECT count(*) FROM spans WHERE start_time_unix_nano < "
            "(SELECT rolled_until FROM span_rollup_state)"
        ).fetchone()
        assert rolled == before >= 1500  # all but the spans of an hour newer than the old ones
        _check(store, rng, now - 4 * DAY, now, rounds=30)
        _check_text(store, rng)
    _check_text_ids(path)


def test_migrating_a_schema_4_store_gives_spans_text_ids(tmp_path: Path) -> None:
    """v4 -> v5 on a real file: the per-span index and its triggers go, the spans stored get
    the ids of their distinct texts, and filters answer as LIKE over the spans does."""
    rng = random.Random(4)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    conn = sqlite3.connect(path, isolation_level=None)
    rollups.ensure_math(conn)
    assert migrate(conn, MIGRATIONS[:4]) == 4
    records = _records(rng, 2000, now - 3 * DAY, 3 * DAY)
    conn.execute("BEGIN")
    conn.executemany(_INSERT, [_row(record, default_prices()) for record in records])
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM span_text").fetchone() == (2000,)  # by trigger
    conn.close()
    exporter = _write(path, [_records(rng, 100, now - HOUR, HOUR)])  # migrates, then writes
    exporter.shutdown()
    conn = sqlite3.connect(path)
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    (texts,) = conn.execute("SELECT count(*) FROM span_texts").fetchone()
    (distinct,) = conn.execute(
        "SELECT count(*) FROM (SELECT DISTINCT name, error_type, error_message FROM spans)"
    ).fetchone()
    conn.close()
    assert not {"span_text", "span_text_insert", "span_text_delete", "span_text_update"} & names
    assert {"span_texts", "span_texts_fts", "spans_text_start"} <= names
    assert texts == distinct < 2100  # each distinct text once
    _check_text_ids(path)
    with open_store(path) as store:
        assert store.version == SCHEMA_VERSION
        assert store.has_text_ids
        assert store.has_text_index
        _check_text(store, rng)


def _check_text(store: SpanStore, rng: random.Random) -> None:
    raw = _raw(store)
    try:
        queries = ["timed out", "TIMED", "429", "50%", "off_label", 'e "x', "café", "CAFÉ", "o"]
        queries += ["l", "ll", "%", "_", "no such text", "tool 1", "Retrieve_d", "r"]
        for text in queries:
            for since in (None, time.time_ns() - DAY):
                span_filter = SpanFilter(text=text, since_ns=since)
                fast = search_spans(store, span_filter, limit=500)["spans"]
                slow = search_spans(raw, span_filter, limit=500)["spans"]
                assert [s["span_id"] for s in fast] == [s["span_id"] for s in slow], text
                _, fast_total = group_stats(store, span_filter, "model")
                _, slow_total = group_stats(raw, span_filter, "model")
                _same(fast_total, slow_total)
    finally:
        raw.close()


def test_text_index_follows_inserts_and_deletes(tmp_path: Path) -> None:
    rng = random.Random(5)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    exporter = _write(path, [_records(rng, 800, now - 2 * DAY, 2 * DAY)])
    exporter.max_age = 24 * 3600.0
    exporter.export(_records(rng, 5, now - HOUR, HOUR))
    exporter.shutdown()
    _check_text_ids(path)
    with open_store(path) as store:
        for text in ("timed out", "429: slow", "Café"):
            (indexed,) = store._conn.execute(
                "SELECT count(*) FROM spans WHERE text_id IN (SELECT rowid FROM span_texts_fts "
                "WHERE span_texts_fts MATCH ?)",
                (f'"{text}"',),
            ).fetchone()
            (stored,) = store._conn.execute(
                "SELECT count(*) FROM spans WHERE name LIKE ? OR error_message LIKE ?",
                (f"%{text}%", f"%{text}%"),
            ).fetchone()
            assert indexed == stored > 0, text
        _check_text(store, rng)


def test_histogram_blobs_round_trip_and_merge() -> None:
    histogram = {-3: 1, 0: 2, 1900: 5, 2**40: 7}
    blob = rollups.encode_histogram(histogram)
    assert len(blob) == 16 * 4
    assert rollups.decode_histogram(blob) == sorted(histogram.items())
    from instrumentation_sdk import _core

    merged = _core.merge_histograms([blob, rollups.encode_histogram({0: 3, 5: 1}), b""])
    assert rollups.decode_histogram(merged) == [(-3, 1), (0, 5), (5, 1), (1900, 5), (2**40, 7)]
    with pytest.raises(ValueError, match="17 bytes"):
        _core.merge_histograms([b"x" * 17])
    assert math.isclose(rollups.PERCENTILE_ERROR, math.expm1(0.005))


def test_short_text_reads_a_bounded_number_of_spans_per_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instrumentation_sdk.ui import queries

    rng = random.Random(9)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    _write(path, [_records(rng, 600, now - DAY, DAY)]).shutdown()
    monkeypatch.setattr(queries, "TEXT_SCAN_ROWS", 70)
    with open_store(path) as store:
        raw = _raw(store)
        cases = [("ll", raw), ("%", raw), ("timed out", raw), ("ll", store), ("%", store)]
        for text, reader in [*cases, ("l", store), ("Caf", store)]:
            span_filter = SpanFilter(text=text, since_ns=now - 2 * DAY)
            (expected,) = (
                store._conn.execute(
                    "SELECT count(*) FROM spans WHERE name LIKE ?1 OR error_type LIKE ?1 "
                    "OR error_message LIKE ?1",
                    (f"%{text}%",),
                ).fetchone()
                if text != "%"
                else store._conn.execute(
                    "SELECT count(*) FROM spans WHERE instr(name, '%') OR instr(error_message, '%')"
                ).fetchone()
            )
            seen: list[dict[str, Any]] = []
            cursor = None
            bounded = 0
            for _ in range(1000):
                page = search_spans(reader, span_filter, limit=25, cursor=cursor)
                seen += page["spans"]
                bounded += page["scan_bounded"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            keys = [(s["start_time_unix_nano"], s["span_id"]) for s in seen]
            assert keys == sorted(keys, reverse=True), text
            assert len(set(keys)) == len(keys) == expected > 0, text
            # Text ids answer any length unbounded; without them, every page is bounded.
            assert (bounded == 0) == (reader is store), text
        raw.close()


def test_many_matching_texts_are_looked_up_in_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``TEXT_ID_LIST_MAX`` matching texts the spans' query finds them itself (a
    subquery on span_texts): the same answers as the id list and as LIKE over the spans."""
    from instrumentation_sdk.ui import queries

    rng = random.Random(11)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    _write(path, [_records(rng, 700, now - 2 * DAY, 2 * DAY)]).shutdown()
    with open_store(path) as store:
        assert queries.matching_text_ids(store, "no such text") == []
        assert len(queries.matching_text_ids(store, "l") or []) > 1
        monkeypatch.setattr(queries, "TEXT_ID_LIST_MAX", 1)
        assert queries.matching_text_ids(store, "l") is None
        _check_text(store, rng)


def test_a_batch_the_rollups_cannot_add_up_in_python_is_read_back(tmp_path: Path) -> None:
    """A time to first token past int64 nanoseconds (SQL's CAST saturates, Python's int does
    not) sends the batch's rollups down the SQL path: answers still equal the raw rows'."""
    rng = random.Random(13)
    now = time.time_ns()
    records = _records(rng, 300, now - DAY, DAY)
    records[5]["metadata"] = {**records[5]["metadata"], "time_to_first_token_ms": 1e300}
    path = tmp_path / "spans.db"
    _write(path, [records]).shutdown()
    with open_store(path) as store:
        (high,) = store._conn.execute("SELECT max(max_ttft_ns) FROM span_rollups").fetchone()
        assert high == 2**63 - 1
        _check(store, rng, now - DAY, now, rounds=20)


def _minute_sums(store: SpanStore) -> tuple[int, int]:
    """Spans in the minute rollups, and spans stored from where they begin on: ``rolled_until``
    (schema 8), ``minutes_from`` (schema 9: 25 hours before, once an hour was rolled up), or
    ``complete_from`` when later."""
    conn = store._conn
    kept = "minutes_from" if store.version >= 9 else "rolled_until"
    (start, complete) = conn.execute(
        f"SELECT {kept}, complete_from FROM span_rollup_state"
    ).fetchone()
    since = max(start, complete)
    (minutes,) = conn.execute(
        "SELECT coalesce(sum(spans), 0) FROM span_minute_rollups WHERE bucket_start >= ?",
        (since,),
    ).fetchone()
    (older,) = conn.execute(
        "SELECT count(*) FROM span_minute_rollups WHERE bucket_start < ?", (start,)
    ).fetchone()
    assert older == 0  # rolling an hour up deletes the minutes before those kept
    if store.version >= 9:
        # The text minute rollups hold the same spans, each once (under its text's key).
        (texts,) = conn.execute(
            "SELECT coalesce(sum(spans), 0) FROM span_text_minute_rollups WHERE bucket_start >= ?",
            (since,),
        ).fetchone()
        (older,) = conn.execute(
            "SELECT count(*) FROM span_text_minute_rollups WHERE bucket_start < ?", (start,)
        ).fetchone()
        assert (texts, older) == (minutes, 0)
    (stored,) = conn.execute(
        "SELECT count(*) FROM spans WHERE start_time_unix_nano >= ?", (since,)
    ).fetchone()
    return minutes, stored


def _text_rollup_sums(store: SpanStore) -> tuple[int, int, int]:
    """Spans in the hourly and daily text rollups, and spans stored from ``complete_from`` to
    ``rolled_until`` (the hours the rollups hold)."""
    conn = store._conn
    (complete, until) = conn.execute(
        "SELECT complete_from, rolled_until FROM span_rollup_state"
    ).fetchone()
    sums = [
        conn.execute(
            "SELECT coalesce(sum(spans), 0) FROM span_text_rollups WHERE bucket_ns = ?", (width,)
        ).fetchone()[0]
        for width in (HOUR, DAY)
    ]
    (stored,) = conn.execute(
        "SELECT count(*) FROM spans WHERE start_time_unix_nano >= ? AND start_time_unix_nano < ?",
        (complete, until),
    ).fetchone()
    return sums[0], sums[1], stored


def test_text_rollups_answer_as_the_raw_rows_do_with_many_distinct_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Error messages with request ids (a distinct text per error) past the bound of texts
    with rollups of their own: broad filters (every text, every text without rollups of its
    own, some of them) and selective ones answer as the raw rows, also with the matching texts
    looked up by subquery, after retention and late spans."""
    from instrumentation_sdk.ui import queries

    monkeypatch.setattr(rollups, "ROLLED_TEXTS_MAX", 8)
    rng = random.Random(15)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    # The first texts stored are rolled up by text: every name (ok spans first), then errors.
    names = _records(rng, 12, now - 4 * DAY, 4 * DAY)
    for record, name in zip(names, NAMES * 2, strict=True):
        record.update(name=name, status="ok", error_type=None, error_message=None)
    batches = [names] + [
        _records(rng, rng.randrange(50, 400), now - 4 * DAY, 4 * DAY, unique_errors=True)
        for _ in range(8)
    ]
    exporter = _write(path, batches)
    with open_store(path) as store:
        assert store.has_text_rollups
        (rolled, texts) = store._conn.execute(
            "SELECT sum(rolled), count(*) FROM span_texts"
        ).fetchone()
        assert rolled == 8 < 100 < texts
        hourly, daily, stored = _text_rollup_sums(store)
        assert hourly == daily == stored  # the spans before rolled_until
        assert sum(len(b) for b in batches) * 0.9 < stored < sum(len(b) for b in batches)
        (other,) = store._conn.execute(
            "SELECT sum(spans) FROM span_text_rollups WHERE text_id < 0 AND bucket_ns = ?",
            (DAY,),
        ).fetchone()
        assert 0 < other < stored
        # "(request" matches every text of every class of error texts (their template);
        # "req_0" some texts of each; "l" rolled names and whole classes ("Retrieve_docs").
        template = queries.match_texts(store, "(request")
        assert template.partial == []
        assert any(key < 0 for key in template.keys)
        assert not template.everything
        assert queries.match_texts(store, "req_0").partial
        assert queries.match_texts(store, "").everything
        _check(store, rng, now - 4 * DAY, now, rounds=40)
        monkeypatch.setattr(queries, "TEXT_ID_LIST_MAX", 3)
        # Past the list bound: the partial texts go as one JSON array, many keys fall back to raw.
        assert len(queries.match_texts(store, "req_0").partial) > queries.TEXT_ID_LIST_MAX
        assert len(queries.match_texts(store, "e").keys) > queries.TEXT_ID_LIST_MAX
        _check(store, rng, now - 4 * DAY, now, rounds=25)
        monkeypatch.setattr(queries, "TEXT_ID_LIST_MAX", 2000)
    exporter.max_age = 2.5 * 86400
    exporter.export(_records(rng, 10, now - HOUR, HOUR, unique_errors=True))
    assert exporter.evicted > 0
    exporter.max_age = 0
    exporter.export(_records(rng, 60, now - 4 * DAY, 4 * DAY, unique_errors=True))  # late
    exporter.shutdown()
    _check_text_ids(path)
    with open_store(path) as store:
        (stale,) = store._conn.execute(
            "SELECT count(*) FROM span_text_rollups "
            "WHERE bucket_start < (SELECT complete_from FROM span_rollup_state)"
        ).fetchone()
        # Late spans into retired hours may add rows there; readers never use them.
        assert stale <= 60 * 2
        _check(store, rng, now - 4 * DAY, now, rounds=30)


def test_migrating_a_schema_5_store_rolls_up_its_most_frequent_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups, "ROLLED_TEXTS_MAX", 4)
    rng = random.Random(16)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    conn = sqlite3.connect(path, isolation_level=None)
    rollups.ensure_math(conn)
    assert migrate(conn, MIGRATIONS[:3]) == 3
    records = _records(rng, 1500, now - 3 * DAY, 3 * DAY, unique_errors=True)
    conn.execute("BEGIN")
    conn.executemany(_INSERT, [_row(record, default_prices()) for record in records])
    conn.execute("COMMIT")
    assert migrate(conn, MIGRATIONS[:5]) == 5  # rollups and text ids of the spans stored
    frequent = [
        text_id
        for (text_id,) in conn.execute(
            "SELECT text_id FROM spans GROUP BY text_id ORDER BY count(*) DESC, text_id LIMIT 4"
        )
    ]
    conn.close()
    exporter = _write(path, [_records(rng, 100, now - HOUR, HOUR, unique_errors=True)])
    exporter.shutdown()
    with open_store(path) as store:
        assert store.version == SCHEMA_VERSION
        rolled = [
            text_id
            for (text_id,) in store._conn.execute(
                "SELECT id FROM span_texts WHERE rolled = 1 ORDER BY id"
            )
        ]
        assert rolled == sorted(frequent)
        hourly, daily, stored = _text_rollup_sums(store)
        # The migration rolled up every stored span (rolled_until past its newest hour); the
        # later batch is added as it comes but for spans of a newer hour, if any.
        assert hourly == daily == stored
        assert 1500 <= stored <= 1600
        _check(store, rng, now - 3 * DAY, now, rounds=30)
        _check_text(store, rng)
    _check_text_ids(path)


def test_migrating_a_schema_6_store_clusters_its_text_rollups(tmp_path: Path) -> None:
    """v6 -> v7: the text rollups move into the WITHOUT ROWID table whole (NULL providers and
    services as ``NULL_KEY``), later batches update them by key, and every answer (grouped by
    provider and service too, whose NULL group must come back as NULL) equals the raw rows'."""
    rng = random.Random(17)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    conn = sqlite3.connect(path, isolation_level=None)
    rollups.ensure_math(conn)
    assert migrate(conn, MIGRATIONS[:3]) == 3
    records = _records(rng, 1500, now - 3 * DAY, 3 * DAY, unique_errors=True)
    conn.execute("BEGIN")
    conn.executemany(_INSERT, [_row(record, default_prices()) for record in records])
    conn.execute("COMMIT")
    assert migrate(conn, MIGRATIONS[:6]) == 6
    before = conn.execute(
        "SELECT bucket_ns, bucket_start, text_id, model, provider, service_name, status, "
        f"{', '.join(rollups.ROLLUP_VALUES)} FROM span_text_rollups"
    ).fetchall()
    assert any(row[4] is None for row in before)
    assert any(row[5] is None for row in before)
    # The dashboard may read a schema 6 file before any writer migrates it.
    with open_store(path) as store:
        assert store.version == 6
        _check(store, rng, now - 3 * DAY, now, rounds=15)
    assert migrate(conn, MIGRATIONS) == SCHEMA_VERSION
    (ddl,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'span_text_rollups'"
    ).fetchone()
    assert "WITHOUT ROWID" in ddl
    after = conn.execute(
        "SELECT bucket_ns, bucket_start, text_id, model, nullif(provider, x''), "
        f"nullif(service_name, x''), status, {', '.join(rollups.ROLLUP_VALUES)} "
        "FROM span_text_rollups"
    ).fetchall()
    assert sorted(after, key=repr) == sorted(before, key=repr)
    (nulls,) = conn.execute(
        "SELECT count(*) FROM span_text_rollups WHERE provider IS NULL OR service_name IS NULL"
    ).fetchone()
    assert nulls == 0
    conn.close()
    # Later batches (the same hours: rows updated by key) and late spans.
    exporter = _write(
        path,
        [_records(rng, 200, now - 3 * DAY, 3 * DAY, unique_errors=True) for _ in range(3)],
    )
    exporter.shutdown()
    with open_store(path) as store:
        assert store.version == SCHEMA_VERSION
        hourly, daily, stored = _text_rollup_sums(store)
        assert hourly == daily == stored
        assert 1500 <= stored <= 2100
        _check(store, rng, now - 3 * DAY, now, rounds=40)
        _check_text(store, rng)
        raw = _raw(store)
        try:
            for by in ("provider", "service"):
                for text in ("e", "(request", "l"):
                    span_filter = SpanFilter(text=text, since_ns=now - 3 * DAY, until_ns=now)
                    fast, _ = group_stats(store, span_filter, by)
                    slow, _ = group_stats(raw, span_filter, by)
                    assert None in [g["group"] for g in slow]
                    assert [g["group"] for g in fast] == [g["group"] for g in slow]
                    for fast_group, slow_group in zip(fast, slow, strict=True):
                        _same(fast_group, slow_group)
        finally:
            raw.close()
    _check_text_ids(path)


def test_the_newest_hours_are_rolled_up_once_a_later_hour_begins(tmp_path: Path) -> None:
    """Schema 7 defers the rollups of the newest hours: a batch in an hour not yet rolled up
    writes no rollup row; the first batch of a later hour rolls the earlier hours up from the
    stored spans, once; late spans into rolled hours are added as they come; a retried batch
    adds nothing; answers equal the raw rows' throughout."""
    rng = random.Random(18)
    base = (time.time_ns() // HOUR - 10) * HOUR
    path = tmp_path / "spans.db"

    def state() -> tuple[int, int, int, int]:
        with open_store(path) as store:
            conn = store._conn
            (until,) = conn.execute("SELECT rolled_until FROM span_rollup_state").fetchone()
            (rows,) = conn.execute("SELECT count(*) FROM span_rollups").fetchone()
            (text_rows,) = conn.execute("SELECT count(*) FROM span_text_rollups").fetchone()
            (spans,) = conn.execute(
                "SELECT coalesce(sum(spans), 0) FROM span_rollups WHERE bucket_ns = ?", (HOUR,)
            ).fetchone()
            _check(store, rng, base - HOUR, base + 4 * HOUR, rounds=8)
            return until, rows, text_rows, spans

    exporter = _write(path, [_records(rng, 200, base, HOUR, unique_errors=True)])
    assert state() == (base, 0, 0, 0)  # the hour is not over: nothing rolled up yet
    exporter.export(_records(rng, 150, base, HOUR, unique_errors=True))
    assert state() == (base, 0, 0, 0)
    second = _records(rng, 100, base + HOUR, HOUR, unique_errors=True)
    exporter.export(second)  # a later hour begins: the first is rolled up
    until, rows, text_rows, spans = state()
    assert (until, spans) == (base + HOUR, 350)
    assert rows > 0
    assert text_rows > 0
    exporter.export(_records(rng, 30, base, HOUR, unique_errors=True))  # late spans
    assert state()[0::3] == (base + HOUR, 380)
    exporter.export(second)  # a retry: stored already, adds nothing
    exporter.export(_records(rng, 40, base + 3 * HOUR, HOUR, unique_errors=True))
    assert state()[0::3] == (base + 3 * HOUR, 480)
    exporter.shutdown()
    with open_store(path) as store:
        hourly, daily, stored = _text_rollup_sums(store)
        assert hourly == daily == stored == 480
        _check_text(store, rng)


def test_a_span_stamped_far_ahead_does_not_stop_the_deferral(tmp_path: Path) -> None:
    """A span from a clock days ahead moves ``rolled_until`` no further than this clock's
    current hour: the batches after it, in the current hour, are still deferred, and every
    answer (the future span's included) equals the raw rows'."""
    rng = random.Random(19)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    ahead = _records(rng, 5, now + 5 * DAY, HOUR)
    exporter = _write(path, [_records(rng, 100, now - 3 * HOUR, 2 * HOUR), ahead])
    with open_store(path) as store:
        (until,) = store._conn.execute("SELECT rolled_until FROM span_rollup_state").fetchone()
        assert until <= (now // HOUR + 1) * HOUR
        (rows,) = store._conn.execute("SELECT count(*) FROM span_rollups").fetchone()
    exporter.export(_records(rng, 50, (now // HOUR) * HOUR, now % HOUR + 1))  # this hour
    exporter.shutdown()
    with open_store(path) as store:
        (after,) = store._conn.execute("SELECT count(*) FROM span_rollups").fetchone()
        assert after == rows  # deferred: no rollup row written
        _check(store, rng, now - 4 * HOUR, now + 6 * DAY, rounds=20)


def _busy_hours(rng: random.Random, now: int, batches: int) -> list[list[dict[str, Any]]]:
    """Batches of a busy service's last hour and a half, each a few minutes wide, in order."""
    begin = now - 90 * MINUTE
    step = (now - begin) // batches
    return [
        _records(rng, rng.randrange(50, 300), begin + i * step, step, unique_errors=True)
        for i in range(batches)
    ]


def test_the_newest_hours_are_answered_by_the_minute(tmp_path: Path) -> None:
    """Schema 8: every batch adds its spans of the hours not rolled up yet to their minutes'
    rollups; rolling an hour up deletes its minutes; answers over those hours (whole minutes
    from the minute rollups, cut minutes raw) equal the raw rows', late spans and retries
    included."""
    rng = random.Random(20)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    batches = _busy_hours(rng, now, 12)
    batches.append(batches[5])  # a retry adds nothing
    batches.append(_records(rng, 40, now - 3 * HOUR, 2 * HOUR))  # late spans
    exporter = _write(path, batches)
    exporter.shutdown()
    with open_store(path) as store:
        assert store.version == SCHEMA_VERSION
        minutes, stored = _minute_sums(store)
        assert minutes == stored > 0
        (rows,) = store._conn.execute("SELECT count(*) FROM span_minute_rollups").fetchone()
        assert rows > 0
        _check(store, rng, now - 2 * HOUR, now, rounds=80)
        raw = _raw(store)
        try:
            # The overview's windows, aligned to whole minutes: nothing but minute rollups
            # for the hours not rolled up.
            end = now - now % MINUTE + MINUTE
            for since in (end - HOUR, end - 15 * MINUTE, end - 2 * HOUR):
                for span_filter in (
                    SpanFilter(since_ns=since, until_ns=end),
                    SpanFilter(since_ns=since),
                    SpanFilter(since_ns=since, model="o3", status="error"),
                ):
                    fast, fast_total = group_stats(store, span_filter, "model")
                    slow, slow_total = group_stats(raw, span_filter, "model")
                    _same(fast_total, slow_total)
                    assert [g["group"] for g in fast] == [g["group"] for g in slow]
                    for a, b in zip(fast, slow, strict=True):
                        _same(a, b)
                    window = {"since_ns": since, "until_ns": end, "points": 15}
                    series = time_series(store, span_filter, **window)
                    slow_series = time_series(raw, span_filter, **window)
                    assert series["bucket_ns"] % MINUTE == 0
                    for a, b in zip(series["points"], slow_series["points"], strict=True):
                        _same(a, b)
        finally:
            raw.close()


def test_a_window_that_cuts_a_rolled_hour_takes_that_part_by_the_minute(tmp_path: Path) -> None:
    """Schema 9 keeps the minutes of the hours rolled up in the last day (``MINUTES_KEPT``):
    a 6 h or 24 h window over a busy service's day cuts the hour it starts in, and that part
    comes from the minute rollups (whole hours stay hourly), text filters too; a window
    under a day whose buckets the hours cannot answer is answered by the minute. Equal to
    the raw rows; and still equal once the cut part's spans are gone from ``spans`` (so it
    was not read from them)."""
    rng = random.Random(21)
    now = time.time_ns()
    begin = now - 7 * HOUR
    step = 15 * MINUTE
    batches = [
        _records(rng, rng.randrange(30, 120), begin + i * step, step, unique_errors=True)
        for i in range(28)
    ]
    batches.append(_records(rng, 40, now - 5 * HOUR, 3 * HOUR))  # late spans
    path = tmp_path / "spans.db"
    _write(path, batches).shutdown()
    end = now - now % MINUTE + MINUTE
    # The UI's 6 h and 24 h (buckets of 6 minutes, of an hour), then odd ones (buckets of
    # no whole minutes: read raw but for the whole hours).
    windows = [end - 6 * HOUR, end - 24 * HOUR, end - 6 * HOUR - 7 * MINUTE, end - 161 * MINUTE]
    filters = [
        {},
        {"model": "o3", "status": "error"},
        {"text": "timed out"},
        {"text": "req_"},
        {"text": "l"},
    ]
    with open_store(path) as store:
        (until, kept) = store._conn.execute(
            "SELECT rolled_until, minutes_from FROM span_rollup_state"
        ).fetchone()
        assert until >= now - now % HOUR - HOUR
        assert kept <= begin  # every span of the day in the minute rollups
        minutes, stored = _minute_sums(store)
        assert minutes == stored == sum(map(len, batches))
        _check(store, rng, now - 8 * HOUR, now, rounds=60)
        raw = _raw(store)
        expected: dict[Any, Any] = {}
        try:
            for since in windows:
                for values in filters:
                    span_filter = SpanFilter(since_ns=since, until_ns=end, **values)
                    key = (since, tuple(values.items()))
                    slow = group_stats(raw, span_filter, "service")
                    window = {"since_ns": since, "until_ns": end, "points": 60}
                    slow_series = time_series(raw, span_filter, **window)
                    expected[key] = (slow, slow_series)
                    _same_answers(store, span_filter, window, expected[key])
        finally:
            raw.close()
    # The UI's windows' cut hours' spans gone from the table (not from the rollups): the
    # same answers.
    conn = sqlite3.connect(path)
    for since in windows[:2]:
        conn.execute(
            "DELETE FROM spans WHERE start_time_unix_nano >= ? AND start_time_unix_nano < ?",
            (since, since - since % HOUR + HOUR),
        )
    conn.commit()
    conn.close()
    with open_store(path) as store:
        for since in windows[:2]:
            for values in filters:
                span_filter = SpanFilter(since_ns=since, until_ns=end, **values)
                window = {"since_ns": since, "until_ns": end, "points": 60}
                _same_answers(store, span_filter, window, expected[(since, tuple(values.items()))])


def _same_answers(
    store: SpanStore, span_filter: SpanFilter, window: dict[str, int], expected: Any
) -> None:
    """``group_stats`` by service and ``time_series`` over ``window`` equal ``expected``."""
    (slow, slow_total), slow_series = expected
    fast, fast_total = group_stats(store, span_filter, "service")
    _same(fast_total, slow_total)
    assert [g["group"] for g in fast] == [g["group"] for g in slow]
    for a, b in zip(fast, slow, strict=True):
        _same(a, b)
    series = time_series(store, span_filter, **window)
    assert series["bucket_ns"] == slow_series["bucket_ns"]
    for a, b in zip(series["points"], slow_series["points"], strict=True):
        _same(a, b)


def _minute_rows(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
    """The minute rollups and the text minute rollups from ``rolled_until`` on (what schema 8
    held), NULL provider and service as NULL."""
    values = ", ".join(rollups.ROLLUP_VALUES)
    keys = "bucket_start, model, nullif(provider, x''), nullif(service_name, x''), status"
    since = "WHERE bucket_start >= (SELECT rolled_until FROM span_rollup_state)"
    minutes = conn.execute(f"SELECT {keys}, {values} FROM span_minute_rollups {since}")
    texts = conn.execute(f"SELECT {keys}, {values}, text_id FROM span_text_minute_rollups {since}")
    return _comparable(minutes.fetchall()), _comparable(texts.fetchall())


def test_migrating_a_schema_7_store_rolls_its_newest_hours_up_by_the_minute(
    tmp_path: Path,
) -> None:
    """v7 -> v9: the minute rollups (and text minute rollups) of the spans from
    ``rolled_until`` on, equal to those the batches wrote; a v7 file read before a writer
    migrates it answers from the raw rows."""
    rng = random.Random(21)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    exporter = _write(path, _busy_hours(rng, now, 8))
    exporter.shutdown()
    conn = sqlite3.connect(path, isolation_level=None)
    rollups.ensure_math(conn)
    written = _minute_rows(conn)
    assert written[0]
    assert written[1]
    # Schema 7 is schema 9 without the minute rollups.
    conn.execute("DROP TABLE span_minute_rollups")
    conn.execute("DROP TABLE span_text_minute_rollups")
    conn.execute("ALTER TABLE span_rollup_state DROP COLUMN minutes_from")
    conn.execute("PRAGMA user_version = 7")
    with open_store(path) as store:
        assert store.version == 7
        _check(store, rng, now - 2 * HOUR, now, rounds=20)
    assert migrate(conn, MIGRATIONS) == SCHEMA_VERSION == 9
    migrated = _minute_rows(conn)
    conn.close()
    assert migrated == written
    exporter = _write(path, _busy_hours(rng, now + 30 * MINUTE, 3))
    exporter.shutdown()
    with open_store(path) as store:
        minutes, stored = _minute_sums(store)
        assert minutes == stored > 0
        _check(store, rng, now - 2 * HOUR, now + 30 * MINUTE, rounds=30)


def test_migrating_a_schema_8_store_keys_its_minutes_and_rolls_them_up_by_text(
    tmp_path: Path,
) -> None:
    """v8 -> v9: the minute rollups move to a keyed table (the same rows, NULL provider and
    service as ``NULL_KEY``) and the text minute rollups are filled from the spans, equal to
    what the batches wrote; a v8 file read before a writer migrates it answers text filters
    from the raw rows, the rest from its minute rollups."""
    rng = random.Random(22)
    now = time.time_ns()
    path = tmp_path / "spans.db"
    exporter = _write(path, _busy_hours(rng, now, 8))
    exporter.shutdown()
    conn = sqlite3.connect(path, isolation_level=None)
    rollups.ensure_math(conn)
    written = _minute_rows(conn)
    assert written[0]
    assert written[1]
    # Schema 8: a rowid minute table with NULL keys from rolled_until on, no text minute
    # rollups.
    conn.execute(
        "DELETE FROM span_minute_rollups "
        "WHERE bucket_start < (SELECT rolled_until FROM span_rollup_state)"
    )
    conn.execute("ALTER TABLE span_rollup_state DROP COLUMN minutes_from")
    conn.execute("ALTER TABLE span_minute_rollups RENAME TO keyed")
    for statement in rollups.MINUTE_MIGRATION[:2]:
        assert isinstance(statement, str)
        conn.execute(statement)
    columns = ", ".join(
        (
            "bucket_ns",
            "bucket_start",
            "model",
            "provider",
            "service_name",
            "status",
            *rollups.ROLLUP_VALUES,
        )
    )
    conn.execute(
        f"INSERT INTO span_minute_rollups ({columns}) SELECT "
        + columns.replace("provider", "nullif(provider, x'')").replace(
            "service_name", "nullif(service_name, x'')"
        )
        + " FROM keyed"
    )
    conn.execute("DROP TABLE keyed")
    conn.execute("DROP TABLE span_text_minute_rollups")
    conn.execute("PRAGMA user_version = 8")
    assert conn.execute(
        "SELECT count(*) FROM span_minute_rollups WHERE provider IS NULL"
    ).fetchone()[0]
    with open_store(path) as store:
        assert store.version == 8
        minutes, stored = _minute_sums(store)
        assert minutes == stored > 0
        _check(store, rng, now - 2 * HOUR, now, rounds=30)
    assert migrate(conn, MIGRATIONS) == SCHEMA_VERSION == 9
    migrated = _minute_rows(conn)
    conn.close()
    assert migrated == written
    exporter = _write(path, _busy_hours(rng, now + 30 * MINUTE, 3))
    exporter.shutdown()
    with open_store(path) as store:
        minutes, stored = _minute_sums(store)
        assert minutes == stored > 0
        _check(store, rng, now - 2 * HOUR, now + 30 * MINUTE, rounds=30)


def _comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rollup rows in one order, histograms decoded (a blob's pair order may differ) and the
    cost rounded (float sums in another order)."""
    out = []
    for row in rows:
        values = list(row)
        values[8] = None if values[8] is None else round(values[8], 9)
        # Merged: a text minute row's histograms are its batches' appended (schema 9).
        values[11] = rollups.decode_histogram(_core.merge_histograms([values[11]]))
        values[14] = rollups.decode_histogram(_core.merge_histograms([values[14]]))
        out.append(tuple(values))
    return sorted(out, key=repr)
