"""The dashboard's reads of the span store: filtered pages of spans, one trace, one session,
per-group statistics and time series.

Every query is bounded: lists are pages (``limit`` at most ``MAX_LIMIT``, with an opaque cursor
for the next page, newest first), a trace or session at most ``MAX_TRACE_SPANS`` spans, and
aggregates return one row per group or time bucket. Latency and time-to-first-token percentiles
are computed in SQL from log-spaced buckets (``BUCKETS_PER_E`` per factor e), so they are within
``PERCENTILE_ERROR`` of the exact nearest-rank value (``instrumentation-sdk stats`` reports the
exact one); counts, errors, tokens and cost are exact.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Final

from ..store import GROUP_COLUMNS, SpanStore, record_from_row

__all__ = [
    "BUCKETS_PER_E",
    "EMPTY_AGGREGATE",
    "MAX_LIMIT",
    "MAX_POINTS",
    "MAX_TRACE_SPANS",
    "PERCENTILE_ERROR",
    "SpanFilter",
    "decode_cursor",
    "ensure_math",
    "group_stats",
    "search_spans",
    "session_traces",
    "time_series",
    "trace_spans",
]

MAX_LIMIT: Final = 500
MAX_TRACE_SPANS: Final = 10_000
#: Log-spaced percentile buckets: a value is reported as its bucket's geometric middle.
BUCKETS_PER_E: Final = 100
#: The largest relative error of a reported percentile: half a bucket.
PERCENTILE_ERROR: Final = math.expm1(0.5 / BUCKETS_PER_E)
#: At most this many points in a time series.
MAX_POINTS: Final = 500
#: The aggregate of no spans.
EMPTY_AGGREGATE: Final[dict[str, Any]] = {
    "count": 0,
    "errors": 0,
    "error_rate": None,
    "p50_ms": None,
    "p95_ms": None,
    "p99_ms": None,
    "ttft_p50_ms": None,
    "ttft_p95_ms": None,
    "prompt_tokens": None,
    "completion_tokens": None,
    "cost_usd": None,
}
_STATUSES: Final = ("unset", "ok", "error")
_CURSOR: Final = re.compile(r"(-?\d{1,20})\.([0-9a-f]{1,32})")
_HEX_ID: Final = re.compile(r"[0-9a-f]{1,32}")


@dataclass(frozen=True, slots=True)
class SpanFilter:
    """What the dashboard's filters select; ``None`` selects everything.

    ``text`` matches (case-insensitively, for ASCII) a substring of the span's name, error type
    or error message; ``since_ns``/``until_ns`` bound its start time (Unix nanoseconds,
    ``until_ns`` excluded).
    """

    model: str | None = None
    provider: str | None = None
    service: str | None = None
    status: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    text: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in _STATUSES:
            raise ValueError(f"status must be one of {', '.join(_STATUSES)}, got {self.status!r}")
        if (
            self.since_ns is not None
            and self.until_ns is not None
            and self.until_ns <= self.since_ns
        ):
            raise ValueError("until must be later than since")

    def where(self) -> tuple[str, list[Any]]:
        """``" WHERE ..."`` (or ``""``) and its parameters."""
        conditions: list[str] = []
        params: list[Any] = []
        for name, column in (
            ("model", "model"),
            ("provider", "provider"),
            ("service", "service_name"),
            ("session_id", "session_id"),
            ("user_id", "user_id"),
        ):
            value = getattr(self, name)
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if self.status == "error":
            conditions.append("status = 'error'")  # literal, so the partial index applies
        elif self.status is not None:
            conditions.append("status = ?")
            params.append(self.status)
        if self.text:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", self.text) + "%"
            conditions.append(
                "(name LIKE ? ESCAPE '\\' OR error_type LIKE ? ESCAPE '\\' "
                "OR error_message LIKE ? ESCAPE '\\')"
            )
            params += [pattern] * 3
        if self.since_ns is not None:
            conditions.append("start_time_unix_nano >= ?")
            params.append(self.since_ns)
        if self.until_ns is not None:
            conditions.append("start_time_unix_nano < ?")
            params.append(self.until_ns)
        return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params

    def scan_hint(self) -> str:
        """How an aggregate over these spans should read the table: by start time when only
        the window (and status or text) narrows it. Left to itself, SQLite walks the
        (model, start) index to spare the GROUP BY a sort, and pays a table lookup per row in
        index order instead."""
        narrowed = (self.model, self.provider, self.service, self.session_id, self.user_id)
        if self.since_ns is None or any(value is not None for value in narrowed):
            return ""
        return " INDEXED BY spans_start_time"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def decode_cursor(cursor: str) -> tuple[int, str]:
    """A cursor from ``search_spans`` as (start time, span id); ``ValueError`` if malformed."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise ValueError(f"not a cursor this API returned: {cursor[:80]!r}")
    return int(match.group(1)), match.group(2)


def _cursor(record: dict[str, Any]) -> str:
    return f"{record['start_time_unix_nano']}.{record['span_id']}"


def _rows(store: SpanStore, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    cursor = store._query(sql, tuple(params))
    return cursor.fetchall() if cursor is not None else []


def search_spans(
    store: SpanStore,
    span_filter: SpanFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of matching spans, newest first: ``{"spans": [...], "next_cursor": str|None}``.

    Pass ``next_cursor`` back as ``cursor`` for the next page; spans stored meanwhile do not
    shift the pages (the cursor is the last span's start time and id).
    """
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, got {limit!r}")
    where, params = span_filter.where()
    if cursor is not None:
        start, span_id = decode_cursor(cursor)
        after = "(start_time_unix_nano < ? OR (start_time_unix_nano = ? AND span_id < ?))"
        where = f"{where} AND {after}" if where else f" WHERE {after}"
        params += [start, start, span_id]
    sql = f"{store.select_record()}{where} ORDER BY start_time_unix_nano DESC, span_id DESC LIMIT ?"
    rows = _rows(store, sql, [*params, limit + 1])
    records = [record_from_row(row) for row in rows[:limit]]
    for record in records:
        _add_derived(record)
    more = len(rows) > limit
    return {"spans": records, "next_cursor": _cursor(records[-1]) if more else None}


def _add_derived(record: dict[str, Any]) -> None:
    """The standard streaming keys the pages show, lifted out of the metadata."""
    metadata = record.get("metadata") or {}
    ttft = metadata.get("time_to_first_token_ms")
    if isinstance(ttft, int | float) and not isinstance(ttft, bool) and math.isfinite(ttft):
        record["time_to_first_token_ms"] = float(ttft)
    else:
        record["time_to_first_token_ms"] = None


def _check_id(value: str, what: str) -> str:
    text = value.strip().lower()
    if not _HEX_ID.fullmatch(text):
        raise ValueError(f"a {what} id is 1 to 32 hex digits, got {value[:80]!r}")
    return text


def trace_spans(store: SpanStore, trace_id: str) -> list[dict[str, Any]]:
    """The spans of one trace (full 32-digit id), oldest first (at most ``MAX_TRACE_SPANS``)."""
    trace = _check_id(trace_id, "trace")
    sql = (
        f"{store.select_record()} WHERE trace_id = ? ORDER BY start_time_unix_nano, span_id LIMIT ?"
    )
    records = [record_from_row(row) for row in _rows(store, sql, (trace, MAX_TRACE_SPANS))]
    for record in records:
        _add_derived(record)
    return records


def session_traces(store: SpanStore, session_id: str) -> list[dict[str, Any]]:
    """The traces that carry ``session_id``, oldest first: per trace its start and end, span
    count, errors, the name and model of its first span, token and cost totals."""
    rows = _rows(
        store,
        "SELECT trace_id, min(start_time_unix_nano) FROM spans WHERE session_id = ? "
        "GROUP BY trace_id ORDER BY 2 LIMIT ?",
        (session_id, MAX_TRACE_SPANS),
    )
    if not rows:
        return []
    ids = [trace_id for trace_id, _start in rows]
    cost = "sum(cost_usd)" if store.has_cost else "NULL"
    traces: dict[str, dict[str, Any]] = {}
    # In chunks: SQLite bounds the number of parameters of one statement.
    for offset in range(0, len(ids), 500):
        chunk = ids[offset : offset + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in _rows(
            store,
            "SELECT trace_id, min(start_time_unix_nano), max(end_time_unix_nano), count(*), "
            "sum(status = 'error'), sum(prompt_tokens), sum(completion_tokens), "
            f"{cost} FROM spans WHERE trace_id IN ({marks}) GROUP BY trace_id",
            chunk,
        ):
            traces[row[0]] = {
                "trace_id": row[0],
                "start_time_unix_nano": row[1],
                "end_time_unix_nano": row[2],
                "duration_ms": (row[2] - row[1]) / 1_000_000,
                "spans": row[3],
                "errors": row[4],
                "prompt_tokens": row[5],
                "completion_tokens": row[6],
                "cost_usd": row[7],
            }
        for trace_id, name, model in _rows(
            store,
            "SELECT trace_id, name, model FROM spans s WHERE trace_id IN "
            f"({marks}) AND start_time_unix_nano = (SELECT min(start_time_unix_nano) "
            "FROM spans WHERE trace_id = s.trace_id)",
            chunk,
        ):
            traces[trace_id].setdefault("name", name)
            traces[trace_id].setdefault("model", model)
    return [traces[trace_id] for trace_id in ids if trace_id in traces]


def _bucket_value(bucket: int) -> float:
    """A log bucket's geometric middle, in milliseconds."""
    return math.exp((bucket + 0.5) / BUCKETS_PER_E) / 1_000_000


def _percentiles(
    histogram: dict[int, int], ps: Iterable[int], low: float, high: float
) -> dict[int, float | None]:
    """Nearest-rank percentiles of a histogram (bucket -> count), clamped to the exact minimum
    and maximum (so the extremes, one value, or all equal values come out exact)."""
    total = sum(histogram.values())
    ordered = sorted(histogram.items())
    result: dict[int, float | None] = {}
    for p in ps:
        if total == 0:
            result[p] = None
            continue
        rank = max(1, -(-p * total // 100))
        if rank in (1, total):  # the minimum or the maximum: known exactly
            result[p] = low if rank == 1 else high
            continue
        seen = 0
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                result[p] = min(max(_bucket_value(bucket), low), high)
                break
    return result


def _log_bucket(column: str) -> str:
    # ln() of nanoseconds: every duration >= 1 ns lands in a bucket (0 ns in bucket 0).
    return f"CAST(ln(max({column}, 1)) * {BUCKETS_PER_E} AS INTEGER)"


def ensure_math(conn: sqlite3.Connection) -> None:
    """SQLite builds without the math functions get ``ln`` from Python (slower, same result)."""
    try:
        conn.execute("SELECT ln(2)").fetchone()
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)


def _add(a: Any, b: Any) -> Any:
    """SQL's sum: ``None`` only when every part is ``None``."""
    return b if a is None else a if b is None else a + b


class _Aggregate:
    """Counts, sums and histograms of some spans; mergeable (the total is the groups' merge)."""

    __slots__ = (
        "completion",
        "cost",
        "count",
        "errors",
        "high",
        "hist",
        "low",
        "prompt",
        "t_high",
        "t_hist",
        "t_low",
    )

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.prompt: int | None = None
        self.completion: int | None = None
        self.cost: float | None = None
        self.low = math.inf
        self.high = -math.inf
        self.hist: dict[int, int] = {}
        self.t_low = math.inf
        self.t_high = -math.inf
        self.t_hist: dict[int, int] = {}

    def merge(self, other: _Aggregate) -> None:
        self.count += other.count
        self.errors += other.errors
        self.prompt = _add(self.prompt, other.prompt)
        self.completion = _add(self.completion, other.completion)
        self.cost = _add(self.cost, other.cost)
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.t_low, self.t_high = min(self.t_low, other.t_low), max(self.t_high, other.t_high)
        for bucket, count in other.hist.items():
            self.hist[bucket] = self.hist.get(bucket, 0) + count
        for bucket, count in other.t_hist.items():
            self.t_hist[bucket] = self.t_hist.get(bucket, 0) + count

    def result(self) -> dict[str, Any]:
        if not self.count:
            return dict(EMPTY_AGGREGATE)
        latency = _percentiles(self.hist, (50, 95, 99), self.low / 1e6, self.high / 1e6)
        ttft = _percentiles(self.t_hist, (50, 95), self.t_low / 1e6, self.t_high / 1e6)
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": self.errors / self.count,
            "p50_ms": latency[50],
            "p95_ms": latency[95],
            "p99_ms": latency[99],
            "ttft_p50_ms": ttft[50],
            "ttft_p95_ms": ttft[95],
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "cost_usd": self.cost,
        }


def _aggregates(store: SpanStore, key: str, span_filter: SpanFilter) -> dict[Any, _Aggregate]:
    """Per value of the SQL expression ``key``: the aggregate of the matching spans. Two
    scans: totals with the latency histogram (grouped by key and bucket), then the TTFT
    histogram of the streamed spans."""
    where, params = span_filter.where()
    table = f"spans{span_filter.scan_hint()}"
    groups: dict[Any, _Aggregate] = {}
    cost = "sum(cost_usd)" if store.has_cost else "NULL"
    for group, bucket, count, errors, prompt, completion, cost_usd, low, high in _rows(
        store,
        f"SELECT {key}, {_log_bucket('duration_ns')}, count(*), sum(status = 'error'), "
        f"sum(prompt_tokens), sum(completion_tokens), {cost}, min(duration_ns), "
        f"max(duration_ns) FROM {table}{where} GROUP BY 1, 2",
        params,
    ):
        aggregate = groups.get(group)
        if aggregate is None:
            aggregate = groups[group] = _Aggregate()
        aggregate.count += count
        aggregate.errors += errors
        aggregate.prompt = _add(aggregate.prompt, prompt)
        aggregate.completion = _add(aggregate.completion, completion)
        aggregate.cost = _add(aggregate.cost, cost_usd)
        aggregate.low, aggregate.high = min(aggregate.low, low), max(aggregate.high, high)
        aggregate.hist[bucket] = count
    if not store.has_cost:
        return groups
    ttft_ns = "CAST(time_to_first_token_ms * 1000000 AS INTEGER)"
    present = "time_to_first_token_ms IS NOT NULL"
    condition = f"{where} AND {present}" if where else f" WHERE {present}"
    for group, bucket, count, low, high in _rows(
        store,
        f"SELECT {key}, {_log_bucket(ttft_ns)}, count(*), min({ttft_ns}), max({ttft_ns}) "
        f"FROM {table}{condition} GROUP BY 1, 2",
        params,
    ):
        aggregate = groups[group]
        aggregate.t_low, aggregate.t_high = min(aggregate.t_low, low), max(aggregate.t_high, high)
        aggregate.t_hist[bucket] = count
    return groups


def group_stats(
    store: SpanStore, span_filter: SpanFilter, by: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per model, provider or service, and for all the filtered spans together: ``count``,
    ``errors``, ``error_rate``, latency ``p50_ms``/``p95_ms``/``p99_ms``,
    ``ttft_p50_ms``/``ttft_p95_ms`` (streamed spans only), ``prompt_tokens``,
    ``completion_tokens`` and ``cost_usd`` (``None`` when nothing was priced). Returns
    ``(groups, total)``: every group in the filtered range, busiest first, each with its
    ``group``; the total is ``EMPTY_AGGREGATE`` when nothing matches."""
    column = GROUP_COLUMNS.get(by)
    if column is None:
        raise ValueError(f"by must be one of {', '.join(GROUP_COLUMNS)}, got {by!r}")
    aggregates = _aggregates(store, column, span_filter)
    total = _Aggregate()
    groups = []
    for key, aggregate in aggregates.items():
        total.merge(aggregate)
        groups.append({"group": key, **aggregate.result()})
    groups.sort(key=lambda g: (-g["count"], g["group"] is None, g["group"] or ""))
    return groups, total.result()


def time_series(
    store: SpanStore, span_filter: SpanFilter, *, since_ns: int, until_ns: int, points: int
) -> dict[str, Any]:
    """The filtered spans in ``points`` equal time buckets from ``since_ns`` to ``until_ns``:
    per bucket its start (``start_unix_nano``) and the aggregates of ``group_stats``. Empty
    buckets are listed with zero counts and ``None`` elsewhere."""
    if isinstance(points, bool) or not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points must be from 1 to {MAX_POINTS}, got {points!r}")
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    width = max(1, -(-(until_ns - since_ns) // points))
    ranged = SpanFilter(**{**span_filter.as_dict(), "since_ns": since_ns, "until_ns": until_ns})
    slot = f"(start_time_unix_nano - {int(since_ns)}) / {int(width)}"
    aggregates = _aggregates(store, slot, ranged)
    series = []
    for index in range(points):
        aggregate = aggregates.get(index)
        result = aggregate.result() if aggregate is not None else dict(EMPTY_AGGREGATE)
        series.append({"start_unix_nano": since_ns + index * width, **result})
    return {"bucket_ns": width, "points": series}
