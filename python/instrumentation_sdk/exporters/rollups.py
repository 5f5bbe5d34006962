"""Hourly and daily rollups of the span store, written with the spans, read by the dashboard.

A month of spans is too many rows to aggregate per request (seconds at a million spans), so
``SqliteExporter`` keeps, in the same transaction as each batch, one row per hour and per UTC
day and per (model, provider, service, status) in ``span_rollups``: span count, token and cost
sums, the exact minimum and maximum duration and time to first token, and their log-bucket
histograms (``BUCKETS_PER_E`` buckets per factor e, the same buckets the dashboard's percentile
SQL uses over raw spans, so a percentile from rollups is the one from the raw rows).

Histograms are blobs of little-endian ``i64`` pairs ``(bucket, count)`` sorted by bucket; the
Rust core merges many of them (``_core.merge_histograms``).

Each batch adds what it inserted (the rows after the table's largest ``rowid`` before the
insert: a retried batch whose spans are already stored inserts nothing, so adds nothing).
Deleting spans (retention) moves ``span_rollup_state.complete_from`` past the hour of the
newest span deleted: rollups before it are dropped and readers take those hours from the raw
rows, so an answer never counts a deleted span.

Schema 6 keeps a second table, ``span_text_rollups``, with the same rows keyed also by the
span's distinct text (``span_texts.id``), for the texts marked ``rolled``: a free-text filter
that matches most spans (``q=l``) then adds up rollup rows instead of every matching span. At
most ``ROLLED_TEXTS_MAX`` texts are rolled (the most frequent when a store is migrated, then
the first new ones), so texts with unique parts (request ids in error messages) do not
multiply the rows: the spans of every other text are rolled up by its text's class, the
(name, error type) it shares with others (``span_texts.class_id``; its key in the text rollups
is ``-class_id``). Texts with unique parts share a template, and a filter on the template
matches every text of the class: then the class's rollups answer; only a class the filter
matches in part (a request id) is read raw.

Schema 7 clusters the text rollups by their key (a WITHOUT ROWID table; a NULL provider or
service is stored as ``NULL_KEY``), and defers the rollups of the newest hours: spans from
``span_rollup_state.rolled_until`` on have none yet and readers take them raw (like the
partial hours at a window's edges). A batch adds only its spans of earlier hours (late ones);
the first batch with a span of a later hour rolls the hours before it up from the stored
spans, once (never past the writer's clock's current hour). So a busy service's batches,
all in the current hour, write no rollup row, and the rows of an hour are written once
instead of rewritten by every batch.

Schema 8 adds rollups by the minute (``MINUTE_ROLLUPS``) of the hours not rolled up yet,
added to by every batch, so readers take whole minutes of a busy service's newest hours from
them. Schema 9 keys them (WITHOUT ROWID; a batch adds to its rows by upserts, histograms
merged in Rust, instead of reading them back), adds the same rows keyed also by text
(``TEXT_MINUTE_ROLLUPS``, the text rollups' keys), so a text filter over those hours adds up
rollups too, and keeps the minutes of the last 25 hours rolled up (``MINUTES_KEPT``, from
``span_rollup_state.minutes_from`` on): a window of the last hour, 6 or 24 hours cuts the
hour it starts in, and a 6-hour chart's buckets are no whole hours.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from .. import _core

__all__ = [
    "BUCKETS_PER_E",
    "DAY_NS",
    "EMPTY_AGGREGATE",
    "HOUR_NS",
    "MIGRATION",
    "MINUTES_KEPT",
    "MINUTE_CLUSTER_MIGRATION",
    "MINUTE_MIGRATION",
    "MINUTE_NS",
    "MINUTE_ROLLUPS",
    "NULL_KEY",
    "PERCENTILE_ERROR",
    "ROLLED_TEXTS_MAX",
    "TEXT_CLUSTER_MIGRATION",
    "TEXT_KEY_SQL",
    "TEXT_MIGRATION",
    "TEXT_MINUTE_ROLLUPS",
    "TEXT_ROLLUPS",
    "Aggregate",
    "add_inserted",
    "complete_from",
    "decode_histogram",
    "encode_histogram",
    "ensure_math",
    "floor_to",
    "forget_through",
    "insert_text_sql",
    "log_bucket_sql",
    "minutes_from",
    "rebuild",
    "rebuild_texts",
    "rolled_until",
    "text_key",
    "text_rollup_column",
]

HOUR_NS: Final = 3600 * 1_000_000_000
#: Schema 8: the hours not rolled up yet (from ``rolled_until`` on) have rollups by the minute.
MINUTE_NS: Final = 60 * 1_000_000_000
MINUTE_ROLLUPS: Final = "span_minute_rollups"
#: Schema 9: those minutes' rollups keyed also by text, as ``TEXT_ROLLUPS`` are by the hour.
TEXT_MINUTE_ROLLUPS: Final = "span_text_minute_rollups"
#: Schema 9: rolling hours up keeps the minutes of the last 25 hours before ``rolled_until``
#: (``span_rollup_state.minutes_from``): a window of the last 1, 6 or 24 hours (the overview's)
#: cuts the hour it starts in, which would otherwise be read as spans (up to ~2 M at a busy
#: service's rate), and a 6-hour chart's 6-minute buckets are answered by the minute.
MINUTES_KEPT: Final = 25 * 3600 * 1_000_000_000
DAY_NS: Final = 24 * HOUR_NS
#: Log-spaced percentile buckets: a value is reported as its bucket's geometric middle.
BUCKETS_PER_E: Final = 100
#: The largest relative error of a reported percentile: half a bucket.
PERCENTILE_ERROR: Final = math.expm1(0.5 / BUCKETS_PER_E)
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
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_KEY_COLUMNS: Final = ("model", "provider", "service_name", "status")
_LITTLE_ENDIAN: Final = sys.byteorder == "little"

#: (hour or day start, model, provider, service, status), and the text id in the text rollups.
Key = tuple[Any, ...]
#: The rollups keyed also by text (schema 6).
TEXT_ROLLUPS: Final = "span_text_rollups"
#: At most this many distinct texts have text rollups: a broad text filter reads at most this
#: many rows per (hour or day, model, provider, service, status).
ROLLED_TEXTS_MAX: Final = 200


def log_bucket_sql(column: str) -> str:
    """SQL for a value's log bucket: ``ln()`` of nanoseconds, ``BUCKETS_PER_E`` per factor e
    (every value >= 1 ns has one; 0 and below land in bucket 0)."""
    return f"CAST(ln(max({column}, 1)) * {BUCKETS_PER_E} AS INTEGER)"


_TTFT_NS: Final = "CAST(time_to_first_token_ms * 1000000 AS INTEGER)"


def ensure_math(conn: sqlite3.Connection) -> None:
    """SQLite builds without the math functions get ``ln`` from Python (slower, same result)."""
    try:
        conn.execute("SELECT ln(2)").fetchone()
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)


def floor_to(value: int, width: int) -> int:
    """``value`` rounded down to a multiple of ``width`` (toward minus infinity)."""
    return value - value % width


def encode_histogram(histogram: Mapping[int, int]) -> bytes:
    """A histogram (bucket -> count) as the blob ``span_rollups`` stores."""
    pairs = array("q", itertools.chain.from_iterable(sorted(histogram.items())))
    if not _LITTLE_ENDIAN:
        pairs.byteswap()
    return pairs.tobytes()


def decode_histogram(blob: bytes) -> list[tuple[int, int]]:
    """A histogram blob as ``(bucket, count)`` pairs in bucket order."""
    pairs = array("q")
    pairs.frombytes(blob)
    if not _LITTLE_ENDIAN:
        pairs.byteswap()
    return list(zip(pairs[0::2], pairs[1::2], strict=True))


def _add(a: Any, b: Any) -> Any:
    """SQL's sum: ``None`` only when every part is ``None``."""
    return b if a is None else a if b is None else a + b


def _sum(values: Iterable[Any]) -> Any:
    """SQL's sum of a column: ``None`` only when every value is ``None`` (or there is none)."""
    present = [value for value in values if value is not None]
    return sum(present) if present else None


class Aggregate:
    """Counts, sums and histograms of some spans; mergeable. Histograms are held as a dict
    (counts added from raw rows) plus blobs (from rollup rows), merged in Rust when read."""

    __slots__ = (
        "completion",
        "cost",
        "count",
        "errors",
        "high",
        "hist",
        "hist_blobs",
        "low",
        "prompt",
        "t_blobs",
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
        self.low: float = math.inf
        self.high: float = -math.inf
        self.hist: dict[int, int] = {}
        self.hist_blobs: list[bytes] = []
        self.t_low: float = math.inf
        self.t_high: float = -math.inf
        self.t_hist: dict[int, int] = {}
        self.t_blobs: list[bytes] = []

    def add_latency(
        self,
        bucket: int,
        count: int,
        errors: int,
        prompt: int | None,
        completion: int | None,
        cost: float | None,
        low: int,
        high: int,
    ) -> None:
        """One (group, latency bucket) row of raw spans."""
        self.count += count
        self.errors += errors
        self.prompt = _add(self.prompt, prompt)
        self.completion = _add(self.completion, completion)
        self.cost = _add(self.cost, cost)
        self.low, self.high = min(self.low, low), max(self.high, high)
        self.hist[bucket] = self.hist.get(bucket, 0) + count

    def add_ttft(self, bucket: int, count: int, low: int, high: int) -> None:
        """One (group, time-to-first-token bucket) row of raw spans."""
        self.t_low, self.t_high = min(self.t_low, low), max(self.t_high, high)
        self.t_hist[bucket] = self.t_hist.get(bucket, 0) + count

    def add_rollup(self, row: tuple[Any, ...], is_error: bool) -> None:
        """One ``span_rollups`` row: ``_ROLLUP_VALUES`` in order."""
        spans, prompt, completion, cost, low, high, hist, t_low, t_high, t_hist = row
        self.count += spans
        if is_error:
            self.errors += spans
        self.prompt = _add(self.prompt, prompt)
        self.completion = _add(self.completion, completion)
        self.cost = _add(self.cost, cost)
        self.low, self.high = min(self.low, low), max(self.high, high)
        self.hist_blobs.append(hist)
        if t_low is not None:
            self.t_low, self.t_high = min(self.t_low, t_low), max(self.t_high, t_high)
            self.t_blobs.append(t_hist)

    def add_sums(self, sums: tuple[Any, ...]) -> None:
        """Many ``span_rollups`` rows of one group added up (by SQL: a month of text
        rollups is ~15,000 rows): spans, errors, the sums, extremes and merged histograms."""
        spans, errors, prompt, completion, cost, low, high, hist, t_low, t_high, t_hist = sums
        self.count += spans
        self.errors += errors
        self.prompt = _add(self.prompt, prompt)
        self.completion = _add(self.completion, completion)
        self.cost = _add(self.cost, cost)
        self.low, self.high = min(self.low, low), max(self.high, high)
        self.hist_blobs.append(hist)
        if t_low is not None:
            self.t_low, self.t_high = min(self.t_low, t_low), max(self.t_high, t_high)
            self.t_blobs.append(t_hist)

    def add_spans(self, rows: list[tuple[Any, ...]]) -> None:
        """Many raw spans at once, each ``(anything, duration_ns, status, prompt_tokens,
        completion_tokens, cost_usd, ttft_ns, ...)``: column by column, their histograms
        bucketed in Rust (the buckets of ``log_bucket_sql``)."""
        _, durations, statuses, prompt, completion, cost, ttfts, *_ = zip(*rows, strict=True)
        self.count += len(durations)
        self.errors += statuses.count("error")
        self.prompt = _add(self.prompt, _sum(prompt))
        self.completion = _add(self.completion, _sum(completion))
        self.cost = _add(self.cost, _sum(cost))
        self.low, self.high = min(self.low, min(durations)), max(self.high, max(durations))
        self.hist_blobs.append(bytes(_core.log_histogram(list(durations), BUCKETS_PER_E)))
        streamed = [ttft for ttft in ttfts if ttft is not None]
        if streamed:
            self.t_low, self.t_high = (
                min(self.t_low, min(streamed)),
                max(self.t_high, max(streamed)),
            )
            self.t_blobs.append(bytes(_core.log_histogram(streamed, BUCKETS_PER_E)))

    def merge(self, other: Aggregate) -> None:
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
        self.hist_blobs += other.hist_blobs
        self.t_blobs += other.t_blobs

    def latency_blob(self) -> bytes:
        return _merged(self.hist, self.hist_blobs)

    def ttft_blob(self) -> bytes:
        return _merged(self.t_hist, self.t_blobs)

    def result(self) -> dict[str, Any]:
        """What the dashboard reports: counts, error rate, percentiles, sums."""
        if not self.count:
            return dict(EMPTY_AGGREGATE)
        latency = _percentiles(
            _pairs(self.hist, self.hist_blobs), (50, 95, 99), self.low / 1e6, self.high / 1e6
        )
        ttft = _percentiles(
            _pairs(self.t_hist, self.t_blobs), (50, 95), self.t_low / 1e6, self.t_high / 1e6
        )
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


def _merged(histogram: dict[int, int], blobs: list[bytes]) -> bytes:
    if not blobs:
        return encode_histogram(histogram)
    if histogram:
        blobs = [*blobs, encode_histogram(histogram)]
    return bytes(_core.merge_histograms(blobs)) if len(blobs) > 1 else blobs[0]


def _pairs(histogram: dict[int, int], blobs: list[bytes]) -> tuple[Sequence[int], Sequence[int]]:
    """A histogram's buckets in order and their counts."""
    if not blobs:
        ordered = sorted(histogram.items())
        return [bucket for bucket, _ in ordered], [count for _, count in ordered]
    pairs = array("q")
    pairs.frombytes(_merged(histogram, blobs))
    if not _LITTLE_ENDIAN:
        pairs.byteswap()
    return pairs[0::2], pairs[1::2]


def _bucket_value(bucket: int) -> float:
    """A log bucket's geometric middle, in milliseconds."""
    return math.exp((bucket + 0.5) / BUCKETS_PER_E) / 1_000_000


def _percentiles(
    histogram: tuple[Sequence[int], Sequence[int]],
    ps: Iterable[int],
    low: float,
    high: float,
) -> dict[int, float | None]:
    """Nearest-rank percentiles of a histogram (its buckets in order and their counts),
    clamped to the exact minimum and maximum (so the extremes, one value, or all equal values
    come out exact)."""
    buckets, counts = histogram
    # Running totals (C loops): a rank's bucket is the first whose running total reaches it.
    running = list(itertools.accumulate(counts))
    total = running[-1] if running else 0
    result: dict[int, float | None] = {}
    for p in ps:
        if total == 0:
            result[p] = None
            continue
        rank = max(1, -(-p * total // 100))
        if rank in (1, total):  # the minimum or the maximum: known exactly
            result[p] = low if rank == 1 else high
            continue
        bucket = buckets[bisect.bisect_left(running, rank)]
        result[p] = min(max(_bucket_value(bucket), low), high)
    return result


# -- the write side -----------------------------------------------------------------------------

#: ``span_rollups``' value columns, in the order ``Aggregate.add_rollup`` takes them.
ROLLUP_VALUES: Final = (
    "spans",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "min_duration_ns",
    "max_duration_ns",
    "latency_histogram",
    "min_ttft_ns",
    "max_ttft_ns",
    "ttft_histogram",
)


def _hour_start_sql(width: int = HOUR_NS) -> str:
    return f"(start_time_unix_nano - (((start_time_unix_nano % {width}) + {width}) % {width}))"


def _hourly(
    conn: sqlite3.Connection,
    condition: str,
    params: tuple[Any, ...],
    *,
    by_text: bool = False,
    width: int = HOUR_NS,
) -> dict[Key, Aggregate]:
    """Per (hour, model, provider, service, status) of the spans matching ``condition`` (and
    per text id, when ``by_text``): their aggregate, from two grouped scans (the same SQL the
    dashboard runs over raw rows). ``width``: per minute instead of per hour."""
    hours: dict[Key, Aggregate] = {}
    keys = ", ".join((*_KEY_COLUMNS, TEXT_KEY_SQL) if by_text else _KEY_COLUMNS)
    start = _hour_start_sql(width)
    width = len(_KEY_COLUMNS) + 1 + by_text  # the hour, the key columns
    group_by = ", ".join(str(n) for n in range(1, width + 2))
    for row in conn.execute(
        f"SELECT {start}, {keys}, {log_bucket_sql('duration_ns')}, count(*), "
        "sum(prompt_tokens), sum(completion_tokens), sum(cost_usd), min(duration_ns), "
        f"max(duration_ns) FROM spans WHERE {condition} GROUP BY {group_by}",
        params,
    ):
        key = tuple(row[:width])
        aggregate = hours.get(key)
        if aggregate is None:
            aggregate = hours[key] = Aggregate()
        bucket, count, prompt, completion, cost, low, high = row[width:]
        errors = count if key[4] == "error" else 0
        aggregate.add_latency(bucket, count, errors, prompt, completion, cost, low, high)
    for row in conn.execute(
        f"SELECT {start}, {keys}, {log_bucket_sql(_TTFT_NS)}, count(*), "
        f"min({_TTFT_NS}), max({_TTFT_NS}) FROM spans WHERE ({condition}) "
        f"AND time_to_first_token_ms IS NOT NULL GROUP BY {group_by}",
        params,
    ):
        bucket, count, low, high = row[width:]
        hours[tuple(row[:width])].add_ttft(bucket, count, low, high)
    return hours


#: What ``add_inserted`` takes per span when the caller has the batch in hand, in order.
BATCH_COLUMNS: Final = (
    "start_time_unix_nano",
    "model",
    "provider",
    "service_name",
    "status",
    "duration_ns",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "time_to_first_token_ms",
    "text_id",
)


def _hourly_from(
    spans: Iterable[tuple[Any, ...]], text_keys: Mapping[int, int], width: int = HOUR_NS
) -> tuple[dict[Key, Aggregate], dict[Key, Aggregate]] | None:
    """What ``_hourly`` computes, without and with the text key (``text_keys``: a text id's
    key in the text rollups, ``text_key``),
    from the spans' values (``BATCH_COLUMNS``) instead of grouped scans: the same buckets
    (``ln`` is the C library's ``log`` in both; SQL's CAST truncates as ``int`` does). ``None``
    for a time to first token past int64 nanoseconds, where SQL's CAST saturates: the caller
    then takes the SQL path. ``width``: per minute instead of per hour."""
    # The spans of each (hour, key, text key), then each group added up column by column
    # (histograms in Rust, ``Aggregate.add_spans``); the hours without the text key are
    # those groups merged: per span only a key is built, in Python.
    by_key: dict[Key, list[tuple[Any, ...]]] = {}
    for (
        start,
        model,
        provider,
        service,
        status,
        duration,
        prompt,
        completion,
        cost,
        ttft,
        text_id,
    ) in spans:
        ttft_ns = None
        if ttft is not None:
            ttft_ns = int(ttft * 1_000_000)
            if not _INT64_MIN <= ttft_ns <= _INT64_MAX:
                return None
        key = (start - start % width, model, provider, service, status, text_keys.get(text_id))
        row = (None, duration, status, prompt, completion, cost, ttft_ns)
        found = by_key.get(key)
        if found is None:
            by_key[key] = [row]
        else:
            found.append(row)
    hours: dict[Key, Aggregate] = {}
    text_hours: dict[Key, Aggregate] = {}
    log, per_e = math.log, BUCKETS_PER_E
    for key, rows in by_key.items():
        aggregate = text_hours[key] = Aggregate()
        if len(rows) >= _FEW_SPANS:
            aggregate.add_spans(rows)
        else:  # spread spans (a backfill): a call into Rust per group would cost more
            for _, duration, status, prompt, completion, cost, ttft_ns in rows:
                bucket = int(log(max(duration, 1)) * per_e)
                errors = 1 if status == "error" else 0
                aggregate.add_latency(
                    bucket, 1, errors, prompt, completion, cost, duration, duration
                )
                if ttft_ns is not None:
                    aggregate.add_ttft(int(log(max(ttft_ns, 1)) * per_e), 1, ttft_ns, ttft_ns)
        hour = hours.get(key[:-1])
        if hour is None:
            hour = hours[key[:-1]] = Aggregate()
        hour.merge(aggregate)
    return hours, text_hours


#: Spans of one (hour, key, text) at least this many are added up column by column.
_FEW_SPANS: Final = 8


def _with_days(hours: dict[Key, Aggregate]) -> dict[tuple[int, Key], Aggregate]:
    """The hourly aggregates and the daily ones they add up to, keyed by (width, key)."""
    levels: dict[tuple[int, Key], Aggregate] = {}
    for key, aggregate in hours.items():
        levels[(HOUR_NS, key)] = aggregate
        day_key: Key = (floor_to(key[0], DAY_NS), *key[1:])
        day = levels.get((DAY_NS, day_key))
        if day is None:
            day = levels[(DAY_NS, day_key)] = Aggregate()
        day.merge(aggregate)
    return levels


def _values(aggregate: Aggregate) -> tuple[Any, ...]:
    has_ttft = aggregate.t_low != math.inf
    return (
        aggregate.count,
        aggregate.prompt,
        aggregate.completion,
        aggregate.cost,
        int(aggregate.low),
        int(aggregate.high),
        aggregate.latency_blob(),
        int(aggregate.t_low) if has_ttft else None,
        int(aggregate.t_high) if has_ttft else None,
        aggregate.ttft_blob(),
    )


def _key_columns(table: str) -> tuple[str, ...]:
    return (*_KEY_COLUMNS, "text_id") if table in _TEXT_TABLES else _KEY_COLUMNS


#: The tables keyed also by text.
_TEXT_TABLES: Final = (TEXT_ROLLUPS, TEXT_MINUTE_ROLLUPS)
#: The tables keyed by their key columns (WITHOUT ROWID: a NULL provider or service stored as
#: ``NULL_KEY``), added to by upserts: the text rollups (schema 7) and both minute rollups
#: (schema 9).
_KEYED_TABLES: Final = (TEXT_ROLLUPS, MINUTE_ROLLUPS, TEXT_MINUTE_ROLLUPS)


#: What the text rollups (schema 7, a WITHOUT ROWID table whose key cannot hold NULL) store
#: for a NULL provider or service: an empty blob, which no provider or service (text) equals.
NULL_KEY: Final = "x''"
#: The text rollups' key columns that may be NULL in ``spans``.
_NULLABLE_KEYS: Final = ("provider", "service_name")


def text_rollup_column(column: str) -> str:
    """SQL for ``column`` of a text rollup row as ``spans`` has it (``NULL_KEY`` -> NULL)."""
    return f"nullif({column}, {NULL_KEY})" if column in _NULLABLE_KEYS else column


def _insert_sql(table: str, *, null_key: bool = True) -> str:
    """Inserts rows ``(bucket_ns, bucket_start, *key columns, *ROLLUP_VALUES)``; into the
    keyed tables (``_KEYED_TABLES``) with ``NULL_KEY`` for a NULL provider or service (unless
    ``null_key`` is false: schema 6's text rollups, schema 8's minute rollups)."""
    keys = _key_columns(table)
    marks = ["?", "?"]
    for column in keys:
        nullable = null_key and table in _KEYED_TABLES and column in _NULLABLE_KEYS
        marks.append(f"coalesce(?, {NULL_KEY})" if nullable else "?")
    marks += ["?"] * len(ROLLUP_VALUES)
    return (
        f"INSERT INTO {table} (bucket_ns, bucket_start, {', '.join(keys)}, "
        f"{', '.join(ROLLUP_VALUES)}) VALUES ({', '.join(marks)})"
    )


def _update_sql(table: str) -> str:
    return (
        f"UPDATE {table} SET {', '.join(f'{column} = ?' for column in ROLLUP_VALUES)} "
        "WHERE rowid = ?"
    )


def text_key(text_id: int, rolled: bool, class_id: int) -> int:
    """A text's key in the text rollups: its id when it has rollups of its own, else minus
    its class's id."""
    return text_id if rolled else -class_id


#: ``text_key`` of a span's text, in SQL.
TEXT_KEY_SQL: Final = (
    "(SELECT CASE WHEN t.rolled = 1 THEN t.id ELSE -t.class_id END "
    "FROM span_texts AS t WHERE t.id = spans.text_id)"
)


def add_inserted(
    conn: sqlite3.Connection,
    after_rowid: int,
    spans: Iterable[tuple[Any, ...]] | None = None,
    text_keys: Mapping[int, int] | None = None,
) -> None:
    """Roll up what the current transaction inserted (the spans with ``rowid >
    after_rowid``; call inside it). Schema 7 defers the newest hours: spans from
    ``rolled_until`` on have no rollups yet (readers take them raw), so a batch adds only its
    spans of earlier hours (late ones) to their hourly and daily rollups; once a batch brings
    a span of a later hour, the hours before it are rolled up from the stored spans, once,
    and ``rolled_until`` moves there. ``spans``: the inserted spans' ``BATCH_COLUMNS`` when the
    caller knows every one was inserted, which spares reading them back. ``text_keys``: the
    batch's text ids' keys in the text rollups (``text_key``; ``None`` on a store without text
    rollups).

    Schema 8: the spans of the deferred hours are added to their minute's rollups
    (``MINUTE_ROLLUPS``) with every batch, so readers take whole minutes of those hours from
    them; rolling an hour up deletes its minutes. Schema 9: also to the text minute rollups
    (``TEXT_MINUTE_ROLLUPS``, with ``text_keys``), and rolling up keeps the minutes of the
    last 25 hours rolled up (``minutes_from``): the batch's spans from there on, late ones too,
    go to their minutes."""
    until = rolled_until(conn)
    kept = minutes_from(conn)
    if spans is not None:
        batch = list(spans)
        newest = max((span[0] for span in batch), default=None)
    else:
        (newest,) = conn.execute(
            "SELECT max(start_time_unix_nano) FROM spans WHERE rowid > ?", (after_rowid,)
        ).fetchone()
    target = until
    if newest is not None:
        # Not past this clock's current hour: a span stamped ahead (clock skew) would leave
        # every later batch "late", rolled up per batch again.
        target = max(until, min(floor_to(newest, HOUR_NS), floor_to(time.time_ns(), HOUR_NS)))
    # The minutes kept from now on: those of the last hours rolled up, and later ones.
    kept = max(kept, target - MINUTES_KEPT) if target > until else kept
    # Spans before ``until`` are late (added to their hours now); those from ``until`` to
    # ``target`` are rolled up below from the stored spans; those from ``kept`` on (late ones
    # too) go to their minutes.
    split = minutes = None
    if spans is not None:
        split = _hourly_from([span for span in batch if span[0] < until], text_keys or {})
        minutes = _hourly_from(
            [span for span in batch if span[0] >= kept], text_keys or {}, MINUTE_NS
        )
    if split is None or minutes is None:
        late = ("rowid > ? AND start_time_unix_nano < ?", (after_rowid, until))
        hours = _hourly(conn, *late)
        text_hours = _hourly(conn, *late, by_text=True) if text_keys is not None else {}
        newer = ("rowid > ? AND start_time_unix_nano >= ?", (after_rowid, kept))
        minute_rows = _hourly(conn, *newer, width=MINUTE_NS)
        text_minutes = (
            _hourly(conn, *newer, by_text=True, width=MINUTE_NS) if text_keys is not None else {}
        )
    else:
        hours, text_hours = split
        minute_rows, text_minutes = minutes
    if hours:
        _merge_into(conn, "span_rollups", _with_days(hours))
    if text_keys is not None and text_hours:
        _merge_into(conn, TEXT_ROLLUPS, _with_days(text_hours))
    if minute_rows:
        _merge_into(
            conn, MINUTE_ROLLUPS, {(MINUTE_NS, key): value for key, value in minute_rows.items()}
        )
    if text_keys is not None and text_minutes:
        _merge_into(
            conn,
            TEXT_MINUTE_ROLLUPS,
            {(MINUTE_NS, key): value for key, value in text_minutes.items()},
        )
    if target > until:
        _roll_up(conn, until, target, kept, texts=text_keys is not None)


def _roll_up(conn: sqlite3.Connection, until: int, target: int, kept: int, *, texts: bool) -> None:
    """Roll up the stored spans of the hours from ``until`` (``rolled_until``) to ``target``
    (both whole hours; those before ``complete_from`` are read raw anyway), then move
    ``rolled_until`` to ``target`` and drop the minutes before ``kept`` (``minutes_from``)."""
    low = max(until, complete_from(conn))
    if low < target:
        # The spans read once and added up here (both tables in one pass), as a batch in
        # hand is; the grouped SQL scans (two per table) cost more.
        window = "start_time_unix_nano >= ? AND start_time_unix_nano < ?"
        spans = conn.execute(
            f"SELECT {', '.join(BATCH_COLUMNS)} FROM spans WHERE {window}", (low, target)
        ).fetchall()
        text_keys = (
            {
                int(text_id): text_key(text_id, rolled, class_id)
                for text_id, rolled, class_id in conn.execute(
                    "SELECT id, rolled, class_id FROM span_texts WHERE id IN "
                    f"(SELECT DISTINCT text_id FROM spans WHERE {window})",
                    (low, target),
                )
            }
            if texts
            else {}
        )
        split = _hourly_from(spans, text_keys)
        if split is None:  # a time to first token past int64 nanoseconds: SQL's buckets
            hours = _hourly(conn, window, (low, target))
            text_hours = _hourly(conn, window, (low, target), by_text=True) if texts else {}
        else:
            hours, text_hours = split
        _merge_into(conn, "span_rollups", _with_days(hours))
        if texts and text_hours:
            _merge_into(conn, TEXT_ROLLUPS, _with_days(text_hours))
    for table in (MINUTE_ROLLUPS, TEXT_MINUTE_ROLLUPS):
        conn.execute(f"DELETE FROM {table} WHERE bucket_start < ?", (kept,))
    conn.execute("UPDATE span_rollup_state SET rolled_until = ?, minutes_from = ?", (target, kept))


def rolled_until(conn: sqlite3.Connection) -> int:
    """The start of the first hour whose spans are not rolled up yet (schema 7)."""
    (until,) = conn.execute("SELECT rolled_until FROM span_rollup_state").fetchone()
    return int(until)


def minutes_from(conn: sqlite3.Connection) -> int:
    """The start of the first minute the minute rollups hold (schema 9; they hold every span
    from there, or from ``complete_from`` when later, on)."""
    (kept,) = conn.execute("SELECT minutes_from FROM span_rollup_state").fetchone()
    return int(kept)


def _start_rolled_until(conn: sqlite3.Connection) -> None:
    """Schema 7: every span stored so far is rolled up (schema 4-6 rolled up each batch)."""
    (newest,) = conn.execute("SELECT max(start_time_unix_nano) FROM spans").fetchone()
    if newest is not None:
        until = min(floor_to(int(newest), HOUR_NS) + HOUR_NS, _INT64_MAX)
        conn.execute("UPDATE span_rollup_state SET rolled_until = ?", (until,))


def _merge_into(
    conn: sqlite3.Connection, table: str, levels: dict[tuple[int, Key], Aggregate]
) -> None:
    """Add ``levels`` to the rows of ``table``: new keys inserted, stored ones updated."""
    if table in _KEYED_TABLES:
        # Keyed (schema 7, minutes schema 9): one upsert per row, stored rows added to in SQL
        # (histograms merged in Rust); nothing is read back into Python (a batch touches
        # hundreds of text rollup rows, a busy service's batch a hundred minute rows).
        conn.create_function(_MERGE_FUNCTION, 2, _merge_pair, deterministic=True)
        conn.executemany(
            _UPSERTS[table],
            ((width, *key, *_values(aggregate)) for (width, key), aggregate in levels.items()),
        )
        return
    keys = _key_columns(table)
    # The stored rows of the hours and days the batch touched, in one read per width.
    stored: dict[tuple[int, Key], tuple[Any, ...]] = {}
    for width in sorted({level for level, _ in levels}):
        starts = sorted({key[0] for level, key in levels if level == width})
        for offset in range(0, len(starts), 500):  # SQLite bounds a statement's parameters
            chunk = starts[offset : offset + 500]
            for rowid, *row in conn.execute(
                f"SELECT rowid, bucket_start, {', '.join(keys)}, "
                f"{', '.join(ROLLUP_VALUES)} FROM {table} WHERE bucket_ns = ? AND "
                f"bucket_start IN ({', '.join('?' for _ in chunk)})",
                (width, *chunk),
            ):
                stored[(width, tuple(row[: len(keys) + 1]))] = (rowid, *row[len(keys) + 1 :])
    inserts, updates = [], []
    for (width, key), aggregate in levels.items():
        found = stored.get((width, key))
        if found is None:
            inserts.append((width, *key, *_values(aggregate)))
            continue
        aggregate.add_rollup(found[1:], is_error=False)  # errors: the key's status says
        updates.append((*_values(aggregate), found[0]))
    conn.executemany(_insert_sql(table), inserts)
    conn.executemany(_update_sql(table), updates)


#: The SQL function the text rollups' upsert merges two histogram blobs with.
_MERGE_FUNCTION: Final = "rollup_merge_histograms"


def _merge_pair(stored: bytes, added: bytes) -> bytes:
    return bytes(_core.merge_histograms([stored, added]))


def _sql_sum(column: str) -> str:
    """SQL's sum of the stored and the added value: NULL only when both are."""
    return f"coalesce({column} + excluded.{column}, {column}, excluded.{column})"


def _sql_extreme(function: str, column: str) -> str:
    """The smaller (``min``) or larger (``max``) of the stored and the added value, either
    of which may be NULL (no streamed span)."""
    return f"coalesce({function}({column}, excluded.{column}), {column}, excluded.{column})"


def _upsert_sql(table: str, key: str, *, append: bool = False) -> str:
    """Adds a rollup row (``_insert_sql``'s parameters) to the stored row of its ``key`` (the
    table's primary key), or inserts it. ``append``: the histograms' pairs are appended to the
    stored ones instead of merged (a blob with buckets repeated and out of order, which
    readers merge: they merge every group's blobs concatenated anyway)."""
    values: tuple[str, ...] = _ADDED_VALUES
    if append:
        values = tuple(
            # (``||`` makes text of the bytes, CAST takes them back as a blob)
            f"{column} = CAST({column} || excluded.{column} AS BLOB)"
            if column in ("latency_histogram", "ttft_histogram")
            else value
            for column, value in zip(ROLLUP_VALUES, _ADDED_VALUES, strict=True)
        )
    return _insert_sql(table) + f" ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(values)


#: How an upsert adds a row's values to the stored ones.
_ADDED_VALUES: Final = (
    "spans = spans + excluded.spans",
    f"prompt_tokens = {_sql_sum('prompt_tokens')}",
    f"completion_tokens = {_sql_sum('completion_tokens')}",
    f"cost_usd = {_sql_sum('cost_usd')}",
    f"min_duration_ns = {_sql_extreme('min', 'min_duration_ns')}",
    f"max_duration_ns = {_sql_extreme('max', 'max_duration_ns')}",
    f"latency_histogram = {_MERGE_FUNCTION}(latency_histogram, excluded.latency_histogram)",
    f"min_ttft_ns = {_sql_extreme('min', 'min_ttft_ns')}",
    f"max_ttft_ns = {_sql_extreme('max', 'max_ttft_ns')}",
    f"ttft_histogram = {_MERGE_FUNCTION}(ttft_histogram, excluded.ttft_histogram)",
)

#: Each keyed table's upsert (its primary key's columns).
_UPSERTS: Final = {
    TEXT_ROLLUPS: _upsert_sql(
        TEXT_ROLLUPS, "bucket_ns, bucket_start, text_id, model, provider, service_name, status"
    ),
    MINUTE_ROLLUPS: _upsert_sql(
        MINUTE_ROLLUPS, "bucket_start, model, provider, service_name, status"
    ),
    # A text minute row holds few spans (a row per text key too), and a merge by a Python
    # SQL function per row and batch cost half the upsert: its histograms are appended.
    TEXT_MINUTE_ROLLUPS: _upsert_sql(
        TEXT_MINUTE_ROLLUPS,
        "text_id, bucket_start, model, provider, service_name, status",
        append=True,
    ),
}


def rebuild(conn: sqlite3.Connection) -> None:
    """Every rollup again from the spans stored (the schema 4 migration's backfill)."""
    conn.execute("DELETE FROM span_rollups")
    conn.execute("UPDATE span_rollup_state SET complete_from = ?", (_INT64_MIN,))
    ensure_math(conn)
    hours = _hourly(conn, "1", ())
    conn.executemany(
        _insert_sql("span_rollups"),
        (
            (width, *key, *_values(aggregate))
            for (width, key), aggregate in _with_days(hours).items()
        ),
    )


def rebuild_texts(conn: sqlite3.Connection) -> None:
    """Every text rollup again from the spans stored (the schema 6 migration's backfill, into
    schema 6's table: NULL keys as NULL; schema 7 copies them). Hours before
    ``complete_from`` are read raw, so none are kept."""
    conn.execute(f"DELETE FROM {TEXT_ROLLUPS}")
    ensure_math(conn)
    hours = _hourly(conn, "1", (), by_text=True)
    conn.executemany(
        _insert_sql(TEXT_ROLLUPS, null_key=False),
        (
            (width, *key, *_values(aggregate))
            for (width, key), aggregate in _with_days(hours).items()
        ),
    )
    conn.execute(
        f"DELETE FROM {TEXT_ROLLUPS} "
        "WHERE bucket_start < (SELECT complete_from FROM span_rollup_state)"
    )


def forget_through(conn: sqlite3.Connection, newest_deleted_start: int) -> None:
    """After deleting spans that started at or before ``newest_deleted_start``: rollups of its
    hour and earlier no longer hold, so readers take those hours from the raw rows. Call inside
    the deleting transaction."""
    boundary = floor_to(newest_deleted_start, HOUR_NS) + HOUR_NS
    conn.execute(
        "UPDATE span_rollup_state SET complete_from = max(complete_from, ?)",
        (min(boundary, 2**63 - 1),),
    )
    for table in ("span_rollups", TEXT_ROLLUPS):
        if table == TEXT_ROLLUPS and not _has_table(conn, table):
            continue  # a store before schema 6 (its migration runs forget_through too)
        conn.execute(
            # Both widths named: the text rollups' key (schema 7) starts with the width.
            f"DELETE FROM {table} WHERE bucket_ns IN ({HOUR_NS}, {DAY_NS}) "
            "AND bucket_start < (SELECT complete_from FROM span_rollup_state)"
        )
    for table in (MINUTE_ROLLUPS, TEXT_MINUTE_ROLLUPS):
        if _has_table(conn, table):  # schema 8, 9
            conn.execute(
                f"DELETE FROM {table} "
                "WHERE bucket_start < (SELECT complete_from FROM span_rollup_state)"
            )


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return found.fetchone() is not None


def complete_from(conn: sqlite3.Connection) -> int:
    """The start of the first hour whose rollups hold every span stored (``-2**63``: all)."""
    row = conn.execute("SELECT complete_from FROM span_rollup_state").fetchone()
    return int(row[0]) if row is not None else _INT64_MIN


#: Schema 4: the rollup tables, filled from the spans already stored. (Not WITHOUT ROWID: its
#: key columns provider and service_name may be NULL, which a WITHOUT ROWID key cannot hold.)
MIGRATION: Final = (
    f"""
    CREATE TABLE span_rollups (
        bucket_ns         INTEGER NOT NULL,
        bucket_start      INTEGER NOT NULL,
        model             TEXT NOT NULL,
        provider          TEXT,
        service_name      TEXT,
        status            TEXT NOT NULL,
        spans             INTEGER NOT NULL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL,
        min_duration_ns   INTEGER NOT NULL,
        max_duration_ns   INTEGER NOT NULL,
        latency_histogram BLOB NOT NULL,
        min_ttft_ns       INTEGER,
        max_ttft_ns       INTEGER,
        ttft_histogram    BLOB NOT NULL,
        CHECK (bucket_ns IN ({HOUR_NS}, {DAY_NS}))
    )
    """,
    "CREATE INDEX span_rollups_bucket ON span_rollups "
    "(bucket_ns, bucket_start, model, provider, service_name, status)",
    "CREATE TABLE span_rollup_state (complete_from INTEGER NOT NULL)",
    f"INSERT INTO span_rollup_state VALUES ({_INT64_MIN})",
)


def _mark_rolled(conn: sqlite3.Connection) -> None:
    """The most frequent texts stored get text rollups of their own (``ROLLED_TEXTS_MAX``)."""
    conn.execute(
        "UPDATE span_texts SET rolled = 1 WHERE id IN (SELECT text_id FROM spans "
        "WHERE text_id IS NOT NULL GROUP BY text_id ORDER BY count(*) DESC, text_id LIMIT ?)",
        (ROLLED_TEXTS_MAX,),
    )


def insert_text_sql(table: str) -> str:
    """Inserts a distinct text (``INSERT OR IGNORE``, parameters name, error type, error
    message): a new one has text rollups of its own while fewer than ``ROLLED_TEXTS_MAX``
    texts do (counted per row, so the bound holds within a batch), and joins the class of the
    texts with its name and error type, else starts one: a class id is the id of a text of
    the class, no larger than any of its texts' ids, so the next id is always free."""
    return (
        f"INSERT OR IGNORE INTO {table} (name, error_type, error_message, rolled, class_id) "
        f"VALUES (?1, ?2, ?3, (SELECT count(*) < {int(ROLLED_TEXTS_MAX)} FROM {table} "
        "WHERE rolled = 1), coalesce((SELECT class_id FROM "
        f"{table} WHERE name = ?1 AND error_type = ?2 LIMIT 1), "
        f"(SELECT coalesce(max(id), 0) + 1 FROM {table})))"
    )


#: Schema 6: which distinct texts are rolled up by text (the most frequent ones stored, up to
#: ``ROLLED_TEXTS_MAX``; new texts while fewer are), the others' classes, and the text
#: rollups (``rebuild_texts``).
TEXT_MIGRATION: Final[tuple[str | Callable[[sqlite3.Connection], None], ...]] = (
    "ALTER TABLE span_texts ADD COLUMN rolled INTEGER NOT NULL DEFAULT 0",
    _mark_rolled,
    # A class: the texts of one name and error type (their messages may differ by ids); its
    # id is its first text's (the smallest id).
    "ALTER TABLE span_texts ADD COLUMN class_id INTEGER",
    # Through a small table of the classes: a correlated min() per text would walk a class's
    # texts once per text (a class may hold tens of thousands).
    "CREATE TEMP TABLE text_classes AS SELECT name, error_type, min(id) AS first "
    "FROM span_texts GROUP BY name, error_type",
    "CREATE INDEX temp.text_classes_key ON text_classes (name, error_type)",
    "UPDATE span_texts SET class_id = (SELECT first FROM text_classes AS c "
    "WHERE c.name = span_texts.name AND c.error_type = span_texts.error_type)",
    "DROP TABLE temp.text_classes",
    # A class's size (how many texts it has) is a short walk of it.
    "CREATE INDEX span_texts_class ON span_texts (rolled, class_id)",
    # Counting the rolled texts (each batch that brings a new text does) reads only these.
    "CREATE INDEX span_texts_rolled ON span_texts (rolled) WHERE rolled = 1",
    f"""
    CREATE TABLE {TEXT_ROLLUPS} (
        bucket_ns         INTEGER NOT NULL,
        bucket_start      INTEGER NOT NULL,
        model             TEXT NOT NULL,
        provider          TEXT,
        service_name      TEXT,
        status            TEXT NOT NULL,
        text_id           INTEGER NOT NULL,
        spans             INTEGER NOT NULL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL,
        min_duration_ns   INTEGER NOT NULL,
        max_duration_ns   INTEGER NOT NULL,
        latency_histogram BLOB NOT NULL,
        min_ttft_ns       INTEGER,
        max_ttft_ns       INTEGER,
        ttft_histogram    BLOB NOT NULL,
        CHECK (bucket_ns IN ({HOUR_NS}, {DAY_NS}))
    )
    """,
    f"CREATE INDEX {TEXT_ROLLUPS}_bucket ON {TEXT_ROLLUPS} "
    "(bucket_ns, bucket_start, text_id, model, provider, service_name, status)",
)


#: The text rollups' columns after schema 7, key first in the order of its primary key.
_TEXT_ROLLUP_COLUMNS: Final = (
    "bucket_ns",
    "bucket_start",
    "text_id",
    "model",
    "provider",
    "service_name",
    "status",
    *ROLLUP_VALUES,
)

#: Schema 7: the text rollups clustered by their key (WITHOUT ROWID, primary key (width,
#: start, text key, model, provider, service, status)): a month of a broad text filter reads
#: ~15,000 rows of them, which as rowid rows were scattered over the table's pages among the
#: other hours and texts; clustered, a window's rows are neighbours, and a batch updates its
#: own rows by key. A key cannot hold NULL: a NULL provider or service is ``NULL_KEY``.
TEXT_CLUSTER_MIGRATION: Final[tuple[str | Callable[[sqlite3.Connection], None], ...]] = (
    f"DROP INDEX {TEXT_ROLLUPS}_bucket",
    f"ALTER TABLE {TEXT_ROLLUPS} RENAME TO {TEXT_ROLLUPS}_v6",
    f"""
    CREATE TABLE {TEXT_ROLLUPS} (
        bucket_ns         INTEGER NOT NULL,
        bucket_start      INTEGER NOT NULL,
        text_id           INTEGER NOT NULL,
        model             TEXT NOT NULL,
        provider          TEXT NOT NULL,
        service_name      TEXT NOT NULL,
        status            TEXT NOT NULL,
        spans             INTEGER NOT NULL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL,
        min_duration_ns   INTEGER NOT NULL,
        max_duration_ns   INTEGER NOT NULL,
        latency_histogram BLOB NOT NULL,
        min_ttft_ns       INTEGER,
        max_ttft_ns       INTEGER,
        ttft_histogram    BLOB NOT NULL,
        CHECK (bucket_ns IN ({HOUR_NS}, {DAY_NS})),
        PRIMARY KEY (bucket_ns, bucket_start, text_id, model, provider, service_name, status)
    ) WITHOUT ROWID
    """,
    f"INSERT INTO {TEXT_ROLLUPS} ({', '.join(_TEXT_ROLLUP_COLUMNS)}) SELECT "
    + ", ".join(
        f"coalesce({column}, {NULL_KEY})" if column in _NULLABLE_KEYS else column
        for column in _TEXT_ROLLUP_COLUMNS
    )
    + f" FROM {TEXT_ROLLUPS}_v6 ORDER BY bucket_ns, bucket_start, text_id",
    f"DROP TABLE {TEXT_ROLLUPS}_v6",
    # Rollups of the newest hours are deferred (``add_inserted``): readers take the spans from
    # ``rolled_until`` on raw. A batch no longer rewrites its hour's and day's rows.
    f"ALTER TABLE span_rollup_state ADD COLUMN rolled_until INTEGER NOT NULL "
    f"DEFAULT ({_INT64_MIN})",
    _start_rolled_until,
)


def _fill_minutes(conn: sqlite3.Connection) -> None:
    """Schema 8: the minute rollups of the spans stored from ``rolled_until`` on."""
    ensure_math(conn)
    minutes = _hourly(conn, "start_time_unix_nano >= ?", (rolled_until(conn),), width=MINUTE_NS)
    conn.executemany(
        _insert_sql(MINUTE_ROLLUPS, null_key=False),
        ((MINUTE_NS, *key, *_values(aggregate)) for key, aggregate in minutes.items()),
    )


#: Schema 8: rollups by the minute of the hours not rolled up yet (from ``rolled_until`` on),
#: added to by every batch: a busy service's newest hours hold most of its spans (a million in
#: half an hour at 560 a second), which readers took raw (4-7 s). Rolling an hour up deleted
#: its minutes (schema 9 keeps those of the last rolled hours: ``MINUTES_KEPT``).
MINUTE_MIGRATION: Final[tuple[str | Callable[[sqlite3.Connection], None], ...]] = (
    MIGRATION[0]
    .replace("TABLE span_rollups", f"TABLE {MINUTE_ROLLUPS}")
    .replace(f"bucket_ns IN ({HOUR_NS}, {DAY_NS})", f"bucket_ns = {MINUTE_NS}"),
    f"CREATE INDEX {MINUTE_ROLLUPS}_bucket ON {MINUTE_ROLLUPS} "
    "(bucket_start, model, provider, service_name, status)",
    _fill_minutes,
)


def _minute_table(table: str, key: str) -> str:
    """Schema 9's ``CREATE TABLE`` of a minute rollup table keyed by ``key`` (WITHOUT ROWID,
    ``NULL_KEY`` for a NULL provider or service)."""
    text_id = "text_id           INTEGER NOT NULL," if table == TEXT_MINUTE_ROLLUPS else ""
    return f"""
    CREATE TABLE {table} (
        bucket_ns         INTEGER NOT NULL,
        bucket_start      INTEGER NOT NULL,
        {text_id}
        model             TEXT NOT NULL,
        provider          TEXT NOT NULL,
        service_name      TEXT NOT NULL,
        status            TEXT NOT NULL,
        spans             INTEGER NOT NULL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL,
        min_duration_ns   INTEGER NOT NULL,
        max_duration_ns   INTEGER NOT NULL,
        latency_histogram BLOB NOT NULL,
        min_ttft_ns       INTEGER,
        max_ttft_ns       INTEGER,
        ttft_histogram    BLOB NOT NULL,
        CHECK (bucket_ns = {MINUTE_NS}),
        PRIMARY KEY ({key})
    ) WITHOUT ROWID
    """


_MINUTE_COLUMNS: Final = ("bucket_ns", "bucket_start", *_KEY_COLUMNS, *ROLLUP_VALUES)


def _fill_text_minutes(conn: sqlite3.Connection) -> None:
    """Schema 9: the text minute rollups of the spans stored from ``rolled_until`` on."""
    ensure_math(conn)
    minutes = _hourly(
        conn,
        "start_time_unix_nano >= ?",
        (rolled_until(conn),),
        by_text=True,
        width=MINUTE_NS,
    )
    conn.executemany(
        _insert_sql(TEXT_MINUTE_ROLLUPS),
        ((MINUTE_NS, *key, *_values(aggregate)) for key, aggregate in minutes.items()),
    )


#: Schema 9: the minute rollups keyed (WITHOUT ROWID, primary key (minute, model, provider,
#: service, status)), so a batch adds to its rows by upserts (histograms merged in Rust)
#: instead of reading them back into Python; and text minute rollups (keyed by text key
#: first, then minute), so a text filter over a busy service's newest hours adds up rollup rows
#: instead of reading hundreds of thousands of matching spans (0.3-0.9 s at 1 M spans).
MINUTE_CLUSTER_MIGRATION: Final[tuple[str | Callable[[sqlite3.Connection], None], ...]] = (
    f"DROP INDEX {MINUTE_ROLLUPS}_bucket",
    f"ALTER TABLE {MINUTE_ROLLUPS} RENAME TO {MINUTE_ROLLUPS}_v8",
    _minute_table(MINUTE_ROLLUPS, "bucket_start, model, provider, service_name, status"),
    f"INSERT INTO {MINUTE_ROLLUPS} ({', '.join(_MINUTE_COLUMNS)}) SELECT "
    + ", ".join(
        f"coalesce({column}, {NULL_KEY})" if column in _NULLABLE_KEYS else column
        for column in _MINUTE_COLUMNS
    )
    + f" FROM {MINUTE_ROLLUPS}_v8 ORDER BY bucket_start",
    f"DROP TABLE {MINUTE_ROLLUPS}_v8",
    _minute_table(
        TEXT_MINUTE_ROLLUPS, "text_id, bucket_start, model, provider, service_name, status"
    ),
    _fill_text_minutes,
    # Schema 8 held the minutes from rolled_until on; from now on rolling up keeps those of the
    # last hours rolled up too (MINUTES_KEPT).
    f"ALTER TABLE span_rollup_state ADD COLUMN minutes_from INTEGER NOT NULL "
    f"DEFAULT ({_INT64_MIN})",
    "UPDATE span_rollup_state SET minutes_from = rolled_until",
)
