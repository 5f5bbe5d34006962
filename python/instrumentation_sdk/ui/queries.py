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

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from .. import _core
from ..exporters.rollups import (
    BUCKETS_PER_E,
    DAY_NS,
    EMPTY_AGGREGATE,
    HOUR_NS,
    MINUTE_NS,
    MINUTE_ROLLUPS,
    PERCENTILE_ERROR,
    TEXT_KEY_SQL,
    TEXT_MINUTE_ROLLUPS,
    TEXT_ROLLUPS,
    Aggregate,
    ensure_math,
    floor_to,
    log_bucket_sql,
    text_rollup_column,
)
from ..exporters.sqlite import TEXT_INDEX, TEXTS_INDEX, TEXTS_TABLE
from ..store import GROUP_COLUMNS, SpanStore, record_from_row

__all__ = [
    "BUCKETS_PER_E",
    "EMPTY_AGGREGATE",
    "MAX_LIMIT",
    "MAX_POINTS",
    "MAX_TRACE_SPANS",
    "PERCENTILE_ERROR",
    "TEXT_SCAN_ROWS",
    "SpanFilter",
    "TextMatch",
    "decode_cursor",
    "ensure_math",
    "group_stats",
    "match_texts",
    "search_spans",
    "session_total",
    "session_traces",
    "time_series",
    "trace_spans",
]

MAX_LIMIT: Final = 500
MAX_TRACE_SPANS: Final = 10_000
#: At most this many points in a time series.
MAX_POINTS: Final = 500
#: A text filter without the index (under 3 characters) reads at most this many spans a page.
TEXT_SCAN_ROWS: Final = 50_000
_STATUSES: Final = ("unset", "ok", "error")
_CURSOR: Final = re.compile(r"(-?\d{1,20})\.([0-9a-f]{0,32})")
_HEX_ID: Final = re.compile(r"[0-9a-f]{1,32}")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_KEY_FILTERS: Final = (("model", "model"), ("provider", "provider"), ("service", "service_name"))


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
        if self.text is not None and "\x00" in self.text:
            # SQLite ends a LIKE pattern (and FTS5 a query) at NUL: it would match anything.
            raise ValueError("q must not contain a NUL character")
        if (
            self.since_ns is not None
            and self.until_ns is not None
            and self.until_ns <= self.since_ns
        ):
            raise ValueError("until must be later than since")

    def key_conditions(self) -> tuple[list[str], list[Any]]:
        """The conditions on model, provider, service and status (the columns a rollup row is
        keyed by, named alike in ``spans`` and ``span_rollups``) and their parameters."""
        conditions: list[str] = []
        params: list[Any] = []
        for name, column in (
            ("model", "model"),
            ("provider", "provider"),
            ("service", "service_name"),
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
        return conditions, params

    def rollups_apply(self) -> bool:
        """Whether rollups can answer for these spans: not when a session, user or text
        narrows them (those are read from the raw rows)."""
        return self.session_id is None and self.user_id is None and not self.text

    def where(
        self,
        *,
        text_index: bool = False,
        text_ids: bool = False,
        matching_ids: Sequence[int] | None = None,
    ) -> tuple[str, list[Any]]:
        """``" WHERE ..."`` (or ``""``) and its parameters; ``text_index``: the store has a
        free-text index (``SpanStore.has_text_index``); ``text_ids``: its spans carry text ids
        (``SpanStore.has_text_ids``); ``matching_ids``: the ids of the texts that match, when
        already looked up (``matching_text_ids``): the query planner then sees the list (an
        empty one selects nothing at once) instead of a subquery it cannot size (past
        ``TEXT_ID_LIST_MAX`` ids, one JSON array parameter)."""
        conditions, params = self.key_conditions()
        for name in ("session_id", "user_id"):
            value = getattr(self, name)
            if value is not None:
                conditions.append(f"{name} = ?")
                params.append(value)
        if self.text and text_ids and matching_ids is not None:
            if len(matching_ids) > TEXT_ID_LIST_MAX:
                # SQLite bounds a statement's parameters: one JSON array instead.
                conditions.append("text_id IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(list(matching_ids)))
            elif matching_ids:
                conditions.append(f"text_id IN ({', '.join('?' for _ in matching_ids)})")
                params += list(matching_ids)
            else:
                conditions.append("0")  # no text matches
        elif self.text and text_ids:
            # An id filter: the matching distinct texts picked from span_texts.
            texts, texts_params = self.texts_condition(
                text_index=text_index, index=TEXTS_INDEX, key="id"
            )
            conditions.append(f"text_id IN (SELECT id FROM {TEXTS_TABLE} WHERE {texts})")
            params += texts_params
        elif self.text:
            texts, texts_params = self.texts_condition(
                text_index=text_index, index=TEXT_INDEX, key="rowid"
            )
            conditions.append(texts)
            params += texts_params
        if self.since_ns is not None:
            conditions.append("start_time_unix_nano >= ?")
            params.append(self.since_ns)
        if self.until_ns is not None:
            conditions.append("start_time_unix_nano < ?")
            params.append(self.until_ns)
        return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params

    def texts_condition(self, *, text_index: bool, index: str, key: str) -> tuple[str, list[Any]]:
        """The text filter as a condition over the columns name, error_type and error_message
        (of ``spans``, or of ``span_texts``) and its parameters: ASCII-case-insensitive
        substring LIKE, after the trigram ``index`` narrowed the candidates (a superset: it
        also folds non-ASCII case) when there is one and the text has a trigram (3+
        characters); ``key``: the rowid column the index's rowids are."""
        text = self.text or ""
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
        like = (
            "(name LIKE ? ESCAPE '\\' OR error_type LIKE ? ESCAPE '\\' "
            "OR error_message LIKE ? ESCAPE '\\')"
        )
        if not (text_index and len(text) >= 3):
            return like, [pattern] * 3
        phrase = '"' + text.replace('"', '""') + '"'
        return (
            f"{key} IN (SELECT rowid FROM {index} WHERE {index} MATCH ?) AND {like}",
            [phrase, *[pattern] * 3],
        )

    def uses_text_index(self, text_index: bool = False, text_ids: bool = False) -> bool:
        """Whether ``where(...)`` finds the text without reading every span of the window: by
        text ids (schema 5, any length), or in schema 4's index (3+ characters)."""
        if not self.text:
            return False
        return text_ids or (text_index and len(self.text) >= 3)

    def scan_hint(self, *, text_index: bool = False, text_ids: bool = False) -> str:
        """How an aggregate over these spans should read the table: by start time when only
        the window (and status or text) narrows it. Left to itself, SQLite walks the
        (model, start) index to spare the GROUP BY a sort, and pays a table lookup per row in
        index order instead."""
        narrowed = (self.model, self.provider, self.service, self.session_id, self.user_id)
        if self.since_ns is None or any(value is not None for value in narrowed):
            return ""
        if self.uses_text_index(text_index, text_ids):
            return ""  # the text narrows more
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
    """One page of matching spans, newest first: ``{"spans": [...], "next_cursor": str|None,
    "scan_bounded": bool}``.

    Pass ``next_cursor`` back as ``cursor`` for the next page; spans stored meanwhile do not
    shift the pages (the cursor is the last span's start time and id). A text filter on a
    store without text ids (not yet migrated to schema 5) that its index cannot answer (under
    3 characters, or no index) reads about
    ``TEXT_SCAN_ROWS`` spans per page (all those that started at the last one's time): when it
    stops there, ``scan_bounded`` is true and
    ``next_cursor`` continues after the last span read, so the page may hold fewer than
    ``limit`` spans (even none) while older ones still match.
    """
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, got {limit!r}")
    conditions: list[str] = []
    params: list[Any] = []
    # Bounds on the start time go into the filter's own window: SQLite narrows its index range
    # by one lower and one upper bound per column, and cannot tell which of several is tighter.
    window = span_filter.as_dict()
    if cursor is not None:
        start, span_id = decode_cursor(cursor)
        until = window["until_ns"]
        window["until_ns"] = start + 1 if until is None else min(until, start + 1)
        conditions.append("(start_time_unix_nano < ? OR span_id < ?)")
        params += [start, span_id]
    order = " ORDER BY start_time_unix_nano DESC, span_id DESC"
    bound: int | None = None
    if span_filter.text and not span_filter.uses_text_index(
        store.has_text_index, store.has_text_ids
    ):
        unscanned = SpanFilter(**{**window, "text": None})
        where, unscanned_params = _and(unscanned.where(), conditions, params)
        # By start time alone (the index covers it): the spans read are those from the bound's
        # start on, and the next page goes on before it.
        found = _rows(
            store,
            f"SELECT start_time_unix_nano FROM spans{where}"
            " ORDER BY start_time_unix_nano DESC LIMIT 1 OFFSET ?",
            [*unscanned_params, TEXT_SCAN_ROWS - 1],
        )
        if found:
            bound = int(found[0][0])
            lowest = window["since_ns"]
            window["since_ns"] = bound if lowest is None else max(lowest, bound)
    since, until = window["since_ns"], window["until_ns"]
    if since is not None and until is not None and until <= since:  # a cursor past the window
        return {"spans": [], "next_cursor": None, "scan_bounded": False}
    bounded = SpanFilter(**window)
    matching = matching_text_ids(store, bounded.text) if bounded.text else None
    kinds = _text_kinds(store)
    if bounded.text and store.has_text_ids and matching is None:
        # Thousands of matching texts: one LIKE pass over the distinct texts finds them
        # sooner than that many candidates read from the trigram index.
        kinds["text_index"] = False
    where, all_params = _and(
        bounded.where(**kinds, matching_ids=matching),
        conditions,
        params,
    )
    select = store.select_record()
    if (
        bounded.text
        and store.has_text_ids
        and matching is None
        and bounded.session_id is None
        and bounded.user_id is None
    ):
        # Thousands of matching texts (ids in error messages): their spans are likely many,
        # so walk the window newest first and stop at the page; by text id, SQLite would
        # fetch every matching span of the window and sort them (seconds at a million).
        select = select.replace(" FROM spans", " FROM spans INDEXED BY spans_start_time", 1)
    rows = _rows(store, f"{select}{where}{order} LIMIT ?", [*all_params, limit + 1])
    records = [record_from_row(row) for row in rows[:limit]]
    for record in records:
        _add_derived(record)
    if len(rows) > limit:
        return {"spans": records, "next_cursor": _cursor(records[-1]), "scan_bounded": False}
    if bound is not None:
        # An empty span id: every span that started at the bound was read.
        return {"spans": records, "next_cursor": f"{bound}.", "scan_bounded": True}
    return {"spans": records, "next_cursor": None, "scan_bounded": False}


#: Matching texts at most this many are passed to the spans' query as a list of ids; more
#: (texts with unique parts, ids in error messages) as the subquery that finds them.
TEXT_ID_LIST_MAX: Final = 2000


def matching_text_ids(store: SpanStore, text: str) -> list[int] | None:
    """The ids of the distinct texts ``text`` matches (schema 5), ``None`` when there are more
    than ``TEXT_ID_LIST_MAX`` (or the store has no text ids)."""
    if not store.has_text_ids:
        return None
    inner, params = SpanFilter(text=text).texts_condition(
        text_index=store.has_text_index, index=TEXTS_INDEX, key="id"
    )
    rows = _rows(
        store,
        f"SELECT id FROM {TEXTS_TABLE} WHERE {inner} LIMIT ?",
        [*params, TEXT_ID_LIST_MAX + 1],
    )
    if len(rows) > TEXT_ID_LIST_MAX:
        return None
    return [int(text_id) for (text_id,) in rows]


@dataclass(frozen=True, slots=True)
class TextMatch:
    """How a text filter's matching distinct texts (schema 6) meet the text rollups:
    ``keys``, the text rollups' keys that hold exactly matching spans (the matching texts
    with rollups of their own, and minus the id of each class every text of which matches);
    ``partial``, the matching texts of classes it matches in part, whose spans are read raw;
    ``everything``: every stored text matches (then the filter selects what it would without
    the text)."""

    keys: list[int]
    partial: list[int]
    everything: bool


#: A text the trigram index finds in more distinct texts than this is matched by one LIKE
#: pass over them instead: reading that many candidates from the index costs more.
TEXT_INDEX_BROAD: Final = 2000


def match_texts(store: SpanStore, text: str) -> TextMatch:
    """Which distinct texts ``text`` matches and how the text rollups answer for them, from
    the small ``span_texts``: the matching texts with rollups of their own (at most
    ``ROLLED_TEXTS_MAX``, by LIKE), per class how many of its texts match (by the trigram
    index when it finds few texts, else by one LIKE pass that also counts each class), and
    the matching texts of the classes matched in part. Never a list of every matching text
    (there may be tens of thousands)."""
    like, like_params = SpanFilter(text=text).texts_condition(
        text_index=False, index=TEXTS_INDEX, key="id"
    )
    keys = [
        int(text_id)
        for (text_id,) in _rows(
            store, f"SELECT id FROM {TEXTS_TABLE} WHERE rolled = 1 AND {like}", like_params
        )
    ]
    (all_rolled,) = _rows(store, f"SELECT count(*) FROM {TEXTS_TABLE} WHERE rolled = 1")[0]
    inner, params = SpanFilter(text=text).texts_condition(
        text_index=store.has_text_index, index=TEXTS_INDEX, key="id"
    )
    indexed = inner != like
    if indexed:
        (found,) = _rows(
            store,
            f"SELECT count(*) FROM (SELECT rowid FROM {TEXTS_INDEX} WHERE {TEXTS_INDEX} "
            "MATCH ? LIMIT ?)",
            [params[0], TEXT_INDEX_BROAD + 1],
        )[0]
        indexed = found <= TEXT_INDEX_BROAD
    sizes = {}
    matching: dict[int, int] = {}
    if indexed:
        matching = dict(
            _rows(
                store,
                f"SELECT class_id, count(*) FROM {TEXTS_TABLE} WHERE rolled = 0 AND {inner} "
                "GROUP BY class_id",
                params,
            )
        )
        sizes = dict(
            _rows(
                store,
                f"SELECT class_id, count(*) FROM {TEXTS_TABLE} WHERE rolled = 0 GROUP BY class_id",
            )
        )
    else:
        # A class's texts share their name and error type: when those match, all its texts
        # do; only the other classes' messages are read (one LIKE pass, skipped when every
        # class matches by name or type: `q=error` over messages with ids).
        pattern = like_params[0]
        heads = _rows(
            store,
            "SELECT c.class_id, c.size, (t.name LIKE ?1 ESCAPE '\\' OR t.error_type LIKE ?1 "
            f"ESCAPE '\\') FROM {TEXTS_TABLE} AS t JOIN (SELECT class_id, count(*) AS size, "
            f"min(id) AS first FROM {TEXTS_TABLE} INDEXED BY span_texts_class "
            "WHERE rolled = 0 GROUP BY class_id) AS c ON t.id = c.first",
            [pattern],
        )
        for class_id, size, head in heads:
            sizes[class_id] = size
            if head:
                matching[class_id] = size
        if len(matching) < len(sizes):
            for class_id, matches in _rows(
                store,
                # In table order: by the class index, every text would be a scattered read.
                f"SELECT class_id, count(*) FROM {TEXTS_TABLE} NOT INDEXED WHERE rolled = 0 "
                "AND error_message LIKE ? ESCAPE '\\' GROUP BY class_id",
                [pattern],
            ):
                if class_id not in matching:
                    matching[class_id] = matches
    full = [int(c) for c, count in matching.items() if count == sizes.get(c)]
    partial_classes = [int(c) for c, count in matching.items() if count != sizes.get(c)]
    partial: list[int] = []
    for offset in range(0, len(partial_classes), 500):  # SQLite bounds the parameters
        chunk = partial_classes[offset : offset + 500]
        partial += [
            int(text_id)
            for (text_id,) in _rows(
                store,
                f"SELECT id FROM {TEXTS_TABLE} WHERE rolled = 0 AND class_id IN "
                f"({', '.join('?' for _ in chunk)}) AND {inner}",
                [*chunk, *params],
            )
        ]
    everything = len(keys) == all_rolled and len(full) == len(sizes)
    return TextMatch([*keys, *(-class_id for class_id in full)], partial, everything)


def _where(store: SpanStore, span_filter: SpanFilter) -> tuple[str, list[Any]]:
    """``span_filter.where`` for ``store``, its text looked up first where it can be."""
    matching = matching_text_ids(store, span_filter.text) if span_filter.text else None
    return span_filter.where(**_text_kinds(store), matching_ids=matching)


def _text_kinds(store: SpanStore) -> dict[str, bool]:
    """How ``store`` can find a text: the ``text_index``/``text_ids`` arguments of
    ``SpanFilter.where``."""
    return {"text_index": store.has_text_index, "text_ids": store.has_text_ids}


def _and(
    base: tuple[str, list[Any]], conditions: list[str], params: list[Any]
) -> tuple[str, list[Any]]:
    """``base`` (a ``where()``) with more conditions ANDed on."""
    where, base_params = base
    if not conditions:
        return where, base_params
    more = " AND ".join(conditions)
    return (f"{where} AND {more}" if where else f" WHERE {more}"), [*base_params, *params]


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


def session_total(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of a session's traces (``session_traces``): traces, spans, errors, tokens and
    cost (``None`` when no span of it was priced)."""
    total: dict[str, Any] = {"traces": len(traces), "spans": 0, "errors": 0}
    for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
        values = [trace[key] for trace in traces if trace[key] is not None]
        total[key] = sum(values) if values else None
    for trace in traces:
        total["spans"] += trace["spans"]
        total["errors"] += trace["errors"]
    return total


def _raw_aggregates(
    store: SpanStore,
    key: str,
    span_filter: SpanFilter,
    groups: dict[Any, Aggregate],
    where_params: tuple[str, list[Any]] | None = None,
) -> None:
    """Add to ``groups``, per value of the SQL expression ``key``, the aggregate of the matching
    raw spans (``where_params``: ``span_filter``'s condition, when already built). Two scans:
    totals with the latency histogram (grouped by key and bucket), then the TTFT histogram of
    the streamed spans; or, when text ids (or schema 4's index) pick the spans, one read of
    them, added up here."""
    where, params = where_params if where_params is not None else _where(store, span_filter)
    if span_filter.uses_text_index(**_text_kinds(store)):
        _add_rows(store, key, where, params, groups)
        return
    table = f"spans{span_filter.scan_hint(**_text_kinds(store))}"
    cost = "sum(cost_usd)" if store.has_cost else "NULL"
    for group, bucket, count, errors, prompt, completion, cost_usd, low, high in _rows(
        store,
        f"SELECT {key}, {log_bucket_sql('duration_ns')}, count(*), sum(status = 'error'), "
        f"sum(prompt_tokens), sum(completion_tokens), {cost}, min(duration_ns), "
        f"max(duration_ns) FROM {table}{where} GROUP BY 1, 2",
        params,
    ):
        _aggregate(groups, group).add_latency(
            bucket, count, errors, prompt, completion, cost_usd, low, high
        )
    if not store.has_cost:
        return
    ttft_ns = "CAST(time_to_first_token_ms * 1000000 AS INTEGER)"
    present = "time_to_first_token_ms IS NOT NULL"
    condition = f"{where} AND {present}" if where else f" WHERE {present}"
    for group, bucket, count, low, high in _rows(
        store,
        f"SELECT {key}, {log_bucket_sql(ttft_ns)}, count(*), min({ttft_ns}), max({ttft_ns}) "
        f"FROM {table}{condition} GROUP BY 1, 2",
        params,
    ):
        groups[group].add_ttft(bucket, count, low, high)


def _add_rows(
    store: SpanStore,
    key: str,
    where: str,
    params: list[Any],
    groups: dict[Any, Aggregate],
    text_keys: tuple[frozenset[int], frozenset[int]] | None = None,
) -> None:
    """The aggregates of few spans (those the text picked), added up here per group, column
    by column (the histograms in Rust): on schema 5 read from the (text_id, start) index
    alone, which covers every column read here; two grouped SQL passes over them would be
    planned on another index and read far more. The buckets are SQL's (``ln`` is the C
    library's ``log`` in both). ``text_keys``: only the spans whose text's key in the text
    rollups is in the first set or whose text id is in the second (checked here: for a short
    window, where reading its spans costs less than looking up thousands of matching
    texts)."""
    ttft_ns = "CAST(time_to_first_token_ms * 1000000 AS INTEGER)" if store.has_cost else "NULL"
    cost = "cost_usd" if store.has_cost else "NULL"
    text = f"text_id, {TEXT_KEY_SQL}" if text_keys is not None else "NULL, NULL"
    rows = _rows(
        store,
        f"SELECT {key}, duration_ns, status, prompt_tokens, completion_tokens, {cost}, "
        f"{ttft_ns}, {text} FROM spans{where}",
        params,
    )
    if text_keys is not None:
        ids, classes = text_keys
        rows = [row for row in rows if row[8] in ids or row[7] in classes]
    for group, grouped in _by_group(rows).items():
        _aggregate(groups, group).add_spans(grouped)


def _rollup_aggregates(
    store: SpanStore,
    key: str,
    span_filter: SpanFilter,
    width: int,
    low: int,
    high: int,
    groups: dict[Any, Aggregate],
    text_ids: Sequence[int] | None = None,
) -> None:
    """Add to ``groups`` the rollups of ``width`` (an hour or a day) that start in
    ``[low, high)`` and match the filter's model, provider, service and status; with
    ``text_ids``, the text rollups of those texts; of a minute, the minute rollups (schema 9:
    keyed, and by text)."""
    conditions, params = span_filter.key_conditions()
    table = MINUTE_ROLLUPS if width == MINUTE_NS else "span_rollups"
    if width == MINUTE_NS:
        key = text_rollup_column(key)  # NULL_KEY in schema 9 (a no-op on schema 8's NULLs)
    if text_ids is not None:
        table = TEXT_MINUTE_ROLLUPS if width == MINUTE_NS else TEXT_ROLLUPS
        key = text_rollup_column(key)
        conditions.append(f"text_id IN ({', '.join('?' for _ in text_ids)})")
        params += list(text_ids)
    where = "".join(f" AND {condition}" for condition in conditions)
    # Added up by SQL, one row per group: a month of text rollups is ~15,000 rows, and
    # handing each to Python (12 values) cost more than reading them. A histogram blob is a
    # list of (bucket, count) pairs, so a group's blobs concatenated are its histogram with
    # buckets repeated; the merge sorts and adds them (group_concat keeps a blob's bytes,
    # NULs included, in a UTF-8 file; CAST takes them back as a blob).
    for group, *sums in _rows(
        store,
        f"SELECT {key}, {_ROLLUP_SUMS} FROM {table} "
        f"WHERE bucket_ns = ? AND bucket_start >= ? AND bucket_start < ?{where} GROUP BY 1",
        [width, low, high, *params],
    ):
        sums[7] = _core.merge_histograms([sums[7]])
        sums[10] = _core.merge_histograms([sums[10]])
        _aggregate(groups, group).add_sums(tuple(sums))


#: A group of rollup rows added up (the order ``Aggregate.add_sums`` takes), histograms
#: concatenated.
_ROLLUP_SUMS: Final = (
    "sum(spans), sum(CASE WHEN status = 'error' THEN spans ELSE 0 END), sum(prompt_tokens), "
    "sum(completion_tokens), sum(cost_usd), min(min_duration_ns), max(max_duration_ns), "
    "CAST(group_concat(latency_histogram, '') AS BLOB), min(min_ttft_ns), max(max_ttft_ns), "
    "CAST(group_concat(ttft_histogram, '') AS BLOB)"
)


def _by_group(rows: Iterable[tuple[Any, ...]]) -> dict[Any, list[tuple[Any, ...]]]:
    """``rows`` by their first column (the group), each group's rows in order: one call per
    group to add them up, not one per row."""
    by_group: dict[Any, list[tuple[Any, ...]]] = {}
    for row in rows:
        found = by_group.get(row[0])
        if found is None:
            by_group[row[0]] = [row]
        else:
            found.append(row)
    return by_group


def _aggregate(groups: dict[Any, Aggregate], group: Any) -> Aggregate:
    """The aggregate of ``group`` in ``groups``, made empty on first use."""
    aggregate = groups.get(group)
    if aggregate is None:
        aggregate = groups[group] = Aggregate()
    return aggregate


def _aggregates(
    store: SpanStore,
    span_filter: SpanFilter,
    raw_key: str,
    rollup_key: str | None,
    *,
    days: bool = True,
    minute_key: str | None = None,
) -> dict[Any, Aggregate]:
    """Per value of ``raw_key`` (SQL over a span; ``rollup_key``: the same over a rollup row,
    ``None`` when rollups cannot answer): the aggregate of the matching spans.

    With rollups (schema 4) and a filter they can answer (no session or user; a text only
    with text rollups, schema 6), whole days (when ``days``) and whole hours come from the
    rollups and only the partial hours at the window's edges (and any hour before
    ``complete_from``) from the raw rows; a text's matching texts without text rollups are
    read raw over the whole window. All in one read transaction, so a batch committed
    meanwhile is counted in both or neither.

    Schema 8: the hours not rolled up yet (from ``rolled_until``) come from the minute
    rollups (``minute_key``: the group over a minute rollup row; ``None``: not usable) for
    whole minutes, raw for the minutes the window cuts; no text, session or user filter.
    Schema 9: also the hours rolled up in the last day (``minutes_from``): a window's cut
    edge hours by the minute (its whole hours stay hourly), a text too when the text rollups
    answer it; buckets the hourly rollups cannot answer (under a day) all by the minute."""
    groups: dict[Any, Aggregate] = {}
    with store.snapshot():
        text_rollups: list[int] | None = None  # the text rollups' keys that answer
        partial: list[int] = []  # matching texts read raw over the whole window
        # What the raw edge hours keep: spans whose text key or text id is in these.
        edge_keys: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
        if (
            (rollup_key is not None or (minute_key is not None and store.version >= 9))
            and span_filter.text
            and store.has_text_rollups
            and span_filter.session_id is None
            and span_filter.user_id is None
        ):
            matched = match_texts(store, span_filter.text)
            if matched.everything:
                span_filter = SpanFilter(**{**span_filter.as_dict(), "text": None})
            elif matched.keys and len(matched.keys) <= TEXT_ID_LIST_MAX:
                text_rollups = matched.keys
                partial = matched.partial
                edge_keys = (frozenset(matched.keys), frozenset(partial))
        minutes = minute_key is not None and (
            (store.version >= 8 and span_filter.rollups_apply())
            or (store.version >= 9 and text_rollups is not None)
        )
        texts = (text_rollups, partial, edge_keys) if text_rollups is not None else None
        usable = (
            rollup_key is not None
            and store.has_rollups
            and (span_filter.rollups_apply() or text_rollups is not None)
        )
        if minutes and not usable and minute_key is not None:
            # No hourly rollups for these buckets: the minutes answer all they hold.
            rest = _minute_aggregates(store, span_filter, raw_key, minute_key, groups, texts)
            if rest is None:
                return groups
            span_filter = rest
        if not usable or rollup_key is None:
            _raw_aggregates(store, raw_key, span_filter, groups)
            return groups
        # Rollups hold the hours from complete_from (retention) to rolled_until (schema 7
        # defers the newest hours); the rest is read raw, or by the minute where the minute
        # rollups hold it (schema 8: the hours not rolled up; 9: the last rolled ones too).
        rolled = "rolled_until" if store.version >= 7 else str(_INT64_MAX)
        cursor = store._query(f"SELECT complete_from, {rolled} FROM span_rollup_state")
        row = cursor.fetchone() if cursor is not None else None
        complete, rolled_until = (int(row[0]), int(row[1])) if row else (_INT64_MAX, _INT64_MIN)
        since = span_filter.since_ns if span_filter.since_ns is not None else _INT64_MIN
        until = span_filter.until_ns if span_filter.until_ns is not None else _INT64_MAX
        low = max(-floor_to(-since, HOUR_NS), complete)  # the first whole hour
        high = floor_to(until, HOUR_NS) if until < _INT64_MAX else _INT64_MAX
        high = min(high, rolled_until)

        def windowed(edge_since: int, edge_until: int) -> SpanFilter:
            return SpanFilter(
                **{
                    **span_filter.as_dict(),
                    "since_ns": None if edge_since == _INT64_MIN else edge_since,
                    "until_ns": None if edge_until == _INT64_MAX else edge_until,
                }
            )

        def add_edge(edge_since: int, edge_until: int, *, whole: bool = False) -> None:
            """The part of the window no whole rolled hour answers (``whole``: all of it): by
            the minute where the minute rollups hold it, the rest read as spans."""
            edge: SpanFilter | None = windowed(edge_since, edge_until)
            if minutes and minute_key is not None and edge is not None:
                edge = _minute_aggregates(store, edge, raw_key, minute_key, groups, texts)
            if edge is None:
                return
            if text_rollups is not None and not whole:
                # An hour or so of spans: read them, keep those whose text matches.
                untexted = SpanFilter(**{**edge.as_dict(), "text": None})
                where, params = untexted.where()
                _add_rows(store, raw_key, where, params, groups, edge_keys)
            else:
                _raw_aggregates(store, raw_key, edge, groups)

        if not low < high:
            add_edge(since, until, whole=True)
            return groups
        for edge_since, edge_until in ((since, low), (high, until)):
            if edge_since < edge_until and not (edge_since == _INT64_MIN == edge_until):
                add_edge(edge_since, edge_until)
        if text_rollups is not None and partial:
            # Texts of classes the filter matches in part: raw, whole hours too.
            middle = windowed(low, high)
            middle_where = middle.where(**_text_kinds(store), matching_ids=partial)
            _raw_aggregates(store, raw_key, middle, groups, middle_where)
        day_low = -floor_to(-low, DAY_NS) if low > _INT64_MIN else low
        day_high = floor_to(high, DAY_NS) if high < _INT64_MAX else high
        ranges = [(HOUR_NS, low, high)]
        if days and day_low < day_high:
            ranges = [
                (DAY_NS, day_low, day_high),
                (HOUR_NS, low, day_low),
                (HOUR_NS, day_high, high),
            ]
        for width, first, last in ranges:
            if first < last:
                _rollup_aggregates(
                    store, rollup_key, span_filter, width, first, last, groups, text_rollups
                )
    return groups


def _minute_aggregates(
    store: SpanStore,
    span_filter: SpanFilter,
    raw_key: str,
    minute_key: str,
    groups: dict[Any, Aggregate],
    texts: tuple[list[int], list[int], tuple[frozenset[int], frozenset[int]]] | None = None,
) -> SpanFilter | None:
    """Add to ``groups`` the part of the window from the first hour not rolled up (nor cut
    by retention) on: whole minutes from the minute rollups, the cut ones raw. Returns the
    filter of the rest of the window, before that part (``None`` when nothing is left).

    ``texts`` (schema 9, a text filter): the text rollups' keys that answer, the matching
    texts read raw, and what the raw cut minutes keep (as ``_aggregates`` has them): whole
    minutes from the text minute rollups of those keys and the partial texts' spans."""
    # The minute rollups hold the spans from there on (schema 9 keeps an hour more).
    kept = "minutes_from" if store.version >= 9 else "rolled_until"
    cursor = store._query(f"SELECT max(complete_from, {kept}) FROM span_rollup_state")
    row = cursor.fetchone() if cursor is not None else None
    if row is None:
        return span_filter
    since = span_filter.since_ns if span_filter.since_ns is not None else _INT64_MIN
    until = span_filter.until_ns if span_filter.until_ns is not None else _INT64_MAX
    first = max(int(row[0]), since)
    if not first < until:
        return span_filter

    def windowed(edge_since: int, edge_until: int) -> SpanFilter:
        return SpanFilter(
            **{
                **span_filter.as_dict(),
                "since_ns": None if edge_since == _INT64_MIN else edge_since,
                "until_ns": None if edge_until == _INT64_MAX else edge_until,
            }
        )

    low = -floor_to(-first, MINUTE_NS) if first > _INT64_MIN else first
    high = floor_to(until, MINUTE_NS) if until < _INT64_MAX else _INT64_MAX
    edges: list[tuple[int, int]] = [(first, until)]
    keys = texts[0] if texts is not None else None
    if low < high:
        _rollup_aggregates(store, minute_key, span_filter, MINUTE_NS, low, high, groups, keys)
        edges = [(first, low), (high, until)]
        if texts is not None and texts[1]:
            # Texts of classes the filter matches in part: raw, whole minutes too.
            middle = windowed(low, high)
            middle_where = middle.where(**_text_kinds(store), matching_ids=texts[1])
            _raw_aggregates(store, raw_key, middle, groups, middle_where)
    for edge_since, edge_until in edges:
        if edge_since < edge_until:
            edge = windowed(edge_since, edge_until)
            if texts is not None:
                # A minute or so of spans: read them, keep those whose text matches.
                where, params = SpanFilter(**{**edge.as_dict(), "text": None}).where()
                _add_rows(store, raw_key, where, params, groups, texts[2])
            else:
                _raw_aggregates(store, raw_key, edge, groups)
    if not since < first:
        return None
    # One probe of the start index: a window reaching back past the oldest span (a young or
    # busy store's) leaves nothing there, and a text's lookup alone would cost ~0.1 s.
    spans_before = _rows(
        store,
        "SELECT 1 FROM spans WHERE start_time_unix_nano >= ? AND start_time_unix_nano < ? LIMIT 1",
        [since, first],
    )
    return windowed(since, first) if spans_before else None


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
    aggregates = _aggregates(store, span_filter, column, column, minute_key=column)
    total = Aggregate()
    groups = []
    for key, aggregate in aggregates.items():
        total.merge(aggregate)
        groups.append({"group": key, **aggregate.result()})
    groups.sort(key=lambda g: (-g["count"], g["group"] is None, g["group"] or ""))
    return groups, total.result()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def time_series(
    store: SpanStore, span_filter: SpanFilter, *, since_ns: int, until_ns: int, points: int
) -> dict[str, Any]:
    """The filtered spans from ``since_ns`` to ``until_ns`` in at most ``points`` equal time
    buckets: per bucket its start (``start_unix_nano``) and the aggregates of ``group_stats``.
    Empty buckets are listed with zero counts and ``None`` elsewhere.

    A window of a day or more is cut at whole hours (buckets of whole days from ``points``
    days on), the first bucket starting at the hour (day) of ``since_ns``, so the hourly and
    daily rollups answer: then there may be fewer than ``points`` buckets, and the first and
    last cover only their part inside the window. Shorter windows have exactly ``points``."""
    if isinstance(points, bool) or not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points must be from 1 to {MAX_POINTS}, got {points!r}")
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    start, width, count = since_ns, max(1, _ceil_div(until_ns - since_ns, points)), points
    aligned = False
    if until_ns - since_ns >= DAY_NS:
        # Whole hours; whole days once a bucket would hold half a day or more of hourly rows.
        for unit in (HOUR_NS, DAY_NS):
            first = floor_to(since_ns, unit)
            step = _ceil_div(_ceil_div(until_ns - first, points), unit) * unit
            if first < _INT64_MIN or (unit == DAY_NS and width < DAY_NS // 2):
                break
            start, width, aligned = first, step, True
            count = _ceil_div(until_ns - first, step)
    ranged = SpanFilter(**{**span_filter.as_dict(), "since_ns": since_ns, "until_ns": until_ns})
    slot = "(start_time_unix_nano - {start}) / {width}"
    by_minutes = start % MINUTE_NS == 0 and width % MINUTE_NS == 0
    rollup_slot = f"(bucket_start - {int(start)}) / {int(width)}"
    aggregates = _aggregates(
        store,
        ranged,
        slot.format(start=int(start), width=int(width)),
        rollup_slot if aligned else None,
        days=aligned and width % DAY_NS == 0 and start % DAY_NS == 0,
        # Whole-minute buckets: the minute rollups of the newest hours answer too.
        minute_key=rollup_slot if by_minutes else None,
    )
    series = []
    for index in range(count):
        aggregate = aggregates.get(index)
        result = aggregate.result() if aggregate is not None else dict(EMPTY_AGGREGATE)
        series.append({"start_unix_nano": start + index * width, **result})
    return {"bucket_ns": width, "points": series}
