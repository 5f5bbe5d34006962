"""Read the span database that ``SqliteExporter`` writes: recent spans and per-group statistics.

This is the read side behind ``instrumentation-sdk spans`` and ``instrumentation-sdk stats``. It
opens the file read-only (``mode=ro``), so it never creates a database, never changes one, and
can read while services are writing (the database is in WAL mode).

>>> import tempfile, pathlib, time
>>> from instrumentation_sdk.exporters.sqlite import SqliteExporter
>>> path = pathlib.Path(tempfile.mkdtemp()) / "spans.db"
>>> exporter = SqliteExporter(path)
>>> exporter.export([{
...     "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
...     "parent_span_id": None, "name": "llm", "model": "gpt-4o", "provider": "openai",
...     "service_name": "api", "user_id": None, "session_id": None, "status": "ok",
...     "error_type": None, "error_message": None,
...     "start_time_unix_nano": 1_700_000_000_000_000_000,
...     "end_time_unix_nano": 1_700_000_000_250_000_000,
...     "metadata": {"prompt_tokens": 12},
... }])
>>> [(s["model"], s["duration_ms"]) for s in list_spans(path)]
[('gpt-4o', 250.0)]
>>> [(g["group"], g["count"], g["p95_ms"], g["prompt_tokens"]) for g in span_stats(path)]
[('gpt-4o', 1, 250.0, 12)]
>>> list_spans(path, since_ns=time.time_ns() - parse_since("1h"))
[]
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

import msgspec

from .exporters.sqlite import (
    BUSY_TIMEOUT_SECONDS,
    DB_ENV_VAR,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    TEXT_INDEX,
    TEXTS_INDEX,
    default_db_path,
)

__all__ = [
    "GROUP_COLUMNS",
    "PERCENTILES",
    "STATS_GROUP_COLUMNS",
    "SpanStore",
    "StoreError",
    "count_spans",
    "list_spans",
    "open_store",
    "parse_since",
    "percentile",
    "record_from_row",
    "span_stats",
    "store_size",
]

GroupBy: TypeAlias = Literal["model", "provider", "service", "session"]

#: ``span_stats(by=...)`` -> the column grouped on.
GROUP_COLUMNS: Final[dict[str, str]] = {
    "model": "model",
    "provider": "provider",
    "service": "service_name",
}

#: What ``span_stats`` (``instrumentation-sdk stats --by``) groups on: those and the session
#: (spans outside any session form the group ``None``). The dashboard's ``/api/stats`` keeps to
#: ``GROUP_COLUMNS``, which its rollups are keyed by.
STATS_GROUP_COLUMNS: Final[dict[str, str]] = {**GROUP_COLUMNS, "session": "session_id"}

#: The latency percentiles ``span_stats`` reports, as ``p<N>_ms`` keys.
PERCENTILES: Final = (50, 95, 99)
#: Time to first token of streamed spans: the metadata key and the percentiles ``stats`` gives.
TTFT_KEY: Final = "time_to_first_token_ms"
TTFT_PERCENTILES: Final = (50, 95)

#: The record's keys and their columns, from the core's field table.
_RECORD_COLUMNS: Final = tuple(key for key, _type, _otlp, _column in RECORD_FIELDS)
_JSON_TYPES: Final = {
    key: type_
    for key, type_, _otlp, _column in RECORD_FIELDS
    if type_ in ("metadata", "events", "content")
}
_SELECT_COLUMNS: Final = tuple(column for _key, _type, _otlp, column in RECORD_FIELDS)
# Schema 3 added cost_usd; an older file reads it as NULL until a writer migrates it.
_SELECT_RECORD: Final = f"SELECT {', '.join(_SELECT_COLUMNS)}, duration_ns, cost_usd FROM spans"
_SELECT_RECORD_V2: Final = f"SELECT {', '.join(_SELECT_COLUMNS)}, duration_ns, NULL FROM spans"
_HEX: Final = re.compile(r"[0-9a-f]{1,32}")
_SINCE: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_NS: Final = {
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
    "w": 7 * 86_400 * 1_000_000_000,
}
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class StoreError(Exception):
    """The span database cannot be read: missing, not a span database, or from a newer release.

    The message is one line, fit to show a user as is.
    """


class SpanStore:
    """A read-only connection to one span database; use as a context manager or ``close()``.

    Get one from ``open_store``. The module's functions also accept a path and open (and close)
    a ``SpanStore`` themselves.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        has_schema: bool,
        version: int = SCHEMA_VERSION,
        *,
        has_text_index: bool = False,
    ) -> None:
        self.path = path
        self._conn = conn
        self._has_schema = has_schema
        #: The file's schema version (``PRAGMA user_version``); older files lack newer columns.
        self.version = version
        #: Whether the file has a free-text index (schema 4's over the spans, schema 5's over
        #: the distinct texts; where SQLite has FTS5 trigram) and this SQLite can read it.
        self.has_text_index = has_text_index

    @property
    def has_cost(self) -> bool:
        """Whether the file has the ``cost_usd`` and ``time_to_first_token_ms`` columns (schema
        3); an older file reads them as ``None`` until a writer migrates it."""
        return self.version >= 3

    @property
    def has_rollups(self) -> bool:
        """Whether the file has the hourly and daily rollups of schema 4
        (``exporters/rollups.py``)."""
        return self.version >= 4

    @property
    def has_text_ids(self) -> bool:
        """Whether spans carry the id of their distinct text (schema 5): a text filter then
        reads the small ``span_texts`` table, not the spans."""
        return self.version >= 5

    @property
    def has_text_rollups(self) -> bool:
        """Whether the file has rollups keyed also by text, for its most frequent texts
        (schema 6): a text filter matching most spans then adds up rollups."""
        return self.version >= 6

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state (spans and
        their rollups as one batch left them)."""
        if not self._has_schema or self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def select_record(self) -> str:
        """``SELECT <record columns>, duration_ns, cost_usd FROM spans`` for this file."""
        return _SELECT_RECORD if self.has_cost else _SELECT_RECORD_V2

    def __repr__(self) -> str:
        return f"SpanStore({str(self.path)!r})"

    def __enter__(self) -> SpanStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._conn.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor | None:
        """Run ``sql``; ``None`` for a file that holds no schema yet (nothing exported)."""
        if not self._has_schema:
            return None
        try:
            return self._conn.execute(sql, params)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot read the span database {self.path}: {error}") from None


def open_store(path: str | os.PathLike[str] | None = None) -> SpanStore:
    """Open the span database at ``path`` (``None``: ``default_db_path()``) read-only.

    Raises ``StoreError`` when the file does not exist (the message names the path and the
    ``INSTRUMENTATION_SDK_DB`` variable), is not an SQLite database, or was written by a newer
    release with a schema this code does not know. An SQLite file with no schema at all (created,
    but nothing exported yet) opens as an empty store.

    >>> with open_store("/nonexistent/spans.db") as store:  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    instrumentation_sdk.store.StoreError: no span database at /nonexistent/spans.db: ...
    """
    file = Path(path).expanduser() if path is not None else default_db_path()
    if not file.exists():
        raise StoreError(
            f"no span database at {file}: nothing has been exported there yet, or the spans are "
            f"in another file (set {DB_ENV_VAR} to the file the sqlite exporter writes, or pass "
            "--db PATH on the command line)"
        )
    if file.is_dir():
        raise StoreError(f"{file} is a directory, not a span database file")
    uri = f"{file.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open the span database {file}: {error}") from None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        conn.close()
        raise StoreError(f"{file} is not a span database: {error}") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"{file} has schema version {version}, newer than this instrumentation-sdk reads "
            f"(up to {SCHEMA_VERSION}): upgrade instrumentation-sdk"
        )
    if version == 0 and tables:
        conn.close()
        raise StoreError(f"{file} is an SQLite database, but not an instrumentation-sdk one")
    text_index = False
    index = TEXTS_INDEX if version >= 5 else TEXT_INDEX
    if index in tables:
        try:
            conn.execute(f"SELECT rowid FROM {index} WHERE {index} MATCH 'abc' LIMIT 0")
            text_index = True
        except sqlite3.DatabaseError:
            pass  # this SQLite lacks FTS5 or trigram: text filters scan
    return SpanStore(file, conn, has_schema=version > 0, version=version, has_text_index=text_index)


DbArg: TypeAlias = SpanStore | str | os.PathLike[str]


@contextmanager
def _using(db: DbArg) -> Iterator[SpanStore]:
    if isinstance(db, SpanStore):
        yield db
        return
    with open_store(db) as store:
        yield store


def _since_param(since_ns: int) -> int:
    # An absurd window ("10000000w") reaches before 1970; SQLite integers are 64-bit.
    return min(max(since_ns, _INT64_MIN), _INT64_MAX)


def _trace_condition(trace_id: str) -> tuple[str, tuple[Any, ...]]:
    prefix = trace_id.strip().lower()
    if not _HEX.fullmatch(prefix):
        raise ValueError(f"a trace id is 1 to 32 hex digits, got {trace_id!r}")
    if len(prefix) == 32:
        return "trace_id = ?", (prefix,)
    # Every id starting with `prefix` sorts between it and `prefix + "~"` ('~' > 'f'): a range
    # scan on the index, where LIKE would scan the table.
    return "trace_id >= ? AND trace_id < ?", (prefix, prefix + "~")


def _decode_json(type_: str, text: str | None) -> Any:
    """A JSON column back as the record holds it (metadata a dict, events a list)."""
    if text is None:
        return None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return {"_undecodable_metadata": text} if type_ == "metadata" else text
    if type_ == "metadata" and not isinstance(value, dict):
        return {"_metadata": value}
    if type_ == "events" and not isinstance(value, list):
        return []
    return value


def list_spans(
    db: DbArg,
    *,
    last: int | None = 20,
    trace_id: str | None = None,
    errors_only: bool = False,
    since_ns: int | None = None,
) -> list[dict[str, Any]]:
    """The newest spans first, as exported records plus ``duration_ms`` (a float) and
    ``cost_usd`` (stored with the span; ``None`` for a model the price table does not list).

    - ``last``: at most this many (``None``: all of them); a negative number is a ``ValueError``.
    - ``trace_id``: only spans of this trace; a prefix of the id (such as the 8 digits the CLI
      shows) matches too. Not hex: ``ValueError``.
    - ``errors_only``: only spans with ``status == "error"``.
    - ``since_ns``: only spans that started at or after this Unix time in nanoseconds, e.g.
      ``time.time_ns() - parse_since("1h")``.

    ``db`` is a ``SpanStore`` or a path. Ties in start time are broken by ``span_id``.
    """
    if last is not None and (isinstance(last, bool) or last < 0):
        raise ValueError(f"last must be a non-negative int or None, got {last!r}")
    conditions: list[str] = []
    params: list[Any] = []
    if trace_id is not None:
        condition, values = _trace_condition(trace_id)
        conditions.append(condition)
        params.extend(values)
    if errors_only:
        conditions.append("status = 'error'")  # literal, so the partial index applies
    if since_ns is not None:
        conditions.append("start_time_unix_nano >= ?")
        params.append(_since_param(since_ns))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order = " ORDER BY start_time_unix_nano DESC, span_id DESC LIMIT ?"
    params.append(-1 if last is None else min(last, _INT64_MAX))
    with _using(db) as store:
        cursor = store._query(f"{store.select_record()}{where}{order}", tuple(params))
        rows = cursor.fetchall() if cursor is not None else []
    return [record_from_row(row) for row in rows]


def record_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of ``SpanStore.select_record()`` as the exported record plus ``duration_ms`` and
    ``cost_usd`` (``None`` for an unpriced model)."""
    record = dict(zip(_RECORD_COLUMNS, row[:-2], strict=True))
    for key, type_ in _JSON_TYPES.items():
        record[key] = _decode_json(type_, record[key])
    record["duration_ms"] = row[-2] / 1_000_000
    record["cost_usd"] = row[-1]
    return record


def count_spans(db: DbArg) -> int:
    """How many spans the database holds (0 for a file with nothing exported yet)."""
    with _using(db) as store:
        cursor = store._query("SELECT count(*) FROM spans")
        return int(cursor.fetchone()[0]) if cursor is not None else 0


def store_size(db: DbArg) -> dict[str, Any]:
    """The store's size and age: ``spans``, ``used_bytes`` (pages in use, what
    ``store_max_bytes`` bounds), ``file_bytes`` (the database file and its WAL on disk) and
    ``oldest_start_unix_nano`` (``None`` when empty)."""
    with _using(db) as store:
        file_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                file_bytes += os.path.getsize(f"{store.path}{suffix}")
        info: dict[str, Any] = {
            "spans": 0,
            "used_bytes": 0,
            "file_bytes": file_bytes,
            "oldest_start_unix_nano": None,
        }
        cursor = store._query("SELECT count(*), min(start_time_unix_nano) FROM spans")
        if cursor is None:
            return info
        info["spans"], info["oldest_start_unix_nano"] = cursor.fetchone()
        pages = store._query(
            "SELECT page_size * (page_count - freelist_count) "
            "FROM pragma_page_size, pragma_page_count, pragma_freelist_count"
        )
        info["used_bytes"] = int(pages.fetchone()[0]) if pages is not None else 0
        return info


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (0 < p <= 100) of ascending ``sorted_values`` by the
    nearest-rank method: the smallest value with at least ``p`` percent of the values at or
    below it, i.e. ``sorted_values[ceil(p / 100 * n) - 1]``. Always one of the values.

    >>> percentile([10.0, 20.0, 30.0, 40.0], 50)
    20.0
    >>> percentile([10.0, 20.0, 30.0, 40.0], 95)
    40.0
    >>> percentile([float(v) for v in range(1, 101)], 99)
    99.0
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p!r}")
    # Exact for integer p: ceil(p * n / 100) in integer arithmetic, no float rounding.
    n = len(sorted_values)
    rank = -(-p * n // 100) if isinstance(p, int) else math.ceil(p / 100 * n)
    return sorted_values[max(1, int(rank)) - 1]


def span_stats(
    db: DbArg,
    *,
    since_ns: int | None = None,
    by: GroupBy = "model",
) -> list[dict[str, Any]]:
    """Per-group counts, errors, latency percentiles and token totals, busiest group first.

    ``by`` groups on ``model``, ``provider``, ``service`` (``service_name``) or ``session``
    (``session_id``); spans with no provider (or session) form the group ``None``.
    ``since_ns`` keeps spans that started at or after that Unix time in nanoseconds. Each
    group is a dict:

    - ``group``: the model, provider, service name or session id (or ``None``);
    - ``count``, ``errors`` (spans with ``status == "error"``), ``error_rate`` (0.0 to 1.0);
    - ``p50_ms``, ``p95_ms``, ``p99_ms``: exact nearest-rank percentiles (see ``percentile``) of
      the group's durations, in milliseconds, computed over every span of the group;
    - ``prompt_tokens``, ``completion_tokens``: totals over the spans that recorded an int
      count (``None`` when no span of the group did);
    - ``cost_usd``: total over the spans of a priced model (``None`` when none was priced);
    - ``ttft_p50_ms``, ``ttft_p95_ms``: percentiles of time to first token over the group's
      streamed spans (``Span.wrap_stream``), ``None`` when none streamed.

    Groups are sorted by count, descending, then by name.
    """
    column = STATS_GROUP_COLUMNS.get(by)
    if column is None:
        raise ValueError(f"by must be one of {', '.join(STATS_GROUP_COLUMNS)}, got {by!r}")
    where, params = "", tuple[Any, ...]()
    if since_ns is not None:
        where, params = " WHERE start_time_unix_nano >= ?", (_since_param(since_ns),)
    groups: list[dict[str, Any]] = []
    with _using(db) as store:
        cost = "cost_usd" if store.has_cost else "NULL"
        sql = (
            f"SELECT {column}, duration_ns, status = 'error', prompt_tokens, completion_tokens, "
            f"{cost}, json_extract(metadata, '$.{TTFT_KEY}') "
            f"FROM spans{where} ORDER BY {column}, duration_ns"
        )
        cursor = store._query(sql, params)
        rows: Iterable[Any] = cursor if cursor is not None else ()
        # Rows arrive grouped and sorted by duration: one group's durations in memory at a time.
        for key, group_rows in itertools.groupby(rows, key=lambda row: row[0]):
            durations: list[float] = []
            errors = 0
            prompt: int | None = None
            completion: int | None = None
            cost_usd: float | None = None
            ttfts: list[float] = []
            for row in group_rows:
                durations.append(row[1] / 1_000_000)
                errors += row[2]
                if row[3] is not None:
                    prompt = (prompt or 0) + row[3]
                if row[4] is not None:
                    completion = (completion or 0) + row[4]
                if row[5] is not None:
                    cost_usd = (cost_usd or 0.0) + row[5]
                if isinstance(row[6], int | float):
                    ttfts.append(float(row[6]))
            count = len(durations)
            stats: dict[str, Any] = {
                "group": key,
                "count": count,
                "errors": errors,
                "error_rate": errors / count,
            }
            for p in PERCENTILES:
                stats[f"p{p}_ms"] = percentile(durations, p)
            stats["prompt_tokens"] = prompt
            stats["completion_tokens"] = completion
            stats["cost_usd"] = cost_usd
            ttfts.sort()
            for p in TTFT_PERCENTILES:
                stats[f"ttft_p{p}_ms"] = percentile(ttfts, p) if ttfts else None
            groups.append(stats)
    groups.sort(key=lambda g: (-g["count"], g["group"] is None, g["group"] or ""))
    return groups


def parse_since(text: str) -> int:
    """A look-back window such as ``"45s"``, ``"30m"``, ``"1h"``, ``"2d"`` or ``"1w"``, in
    nanoseconds. A whole number (> 0) and one unit: s, m, h, d, w (lowercase).

    >>> parse_since("1h")
    3600000000000
    >>> parse_since("90s") == 90 * 10**9
    True
    >>> parse_since("1 fortnight")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: expected a whole number and a unit s, m, h, d or w (...), got '1 fortnight'
    """
    match = _SINCE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            "expected a whole number and a unit s, m, h, d or w (such as 45s, 30m, 1h, 2d, 1w), "
            f"got {text!r}"
        )
    amount = int(match.group(1))
    if amount == 0:
        raise ValueError(f"the window must be longer than zero, got {text!r}")
    return amount * _UNIT_NS[match.group(2)]
