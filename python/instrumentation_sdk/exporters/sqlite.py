"""``SqliteExporter``: the embedded default store, one SQLite file that the CLI reads.

Spans go to a table ``spans`` keyed by ``span_id``, one transaction per batch, in WAL mode so the
``instrumentation-sdk spans`` / ``stats`` commands can read while services write. Several
processes (forked workers, separate services) may write one file at once: each waits for the
write lock up to ``busy_timeout``; past that the batch raises and the pipeline retries it, and a
retried batch never duplicates rows (``ON CONFLICT(span_id) DO NOTHING``).

The schema is versioned with ``PRAGMA user_version`` and grows by appending to ``MIGRATIONS``.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "spans.db"
>>> exporter = SqliteExporter(path)
>>> exporter.export([{
...     "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
...     "parent_span_id": None, "name": "llm", "model": "gpt-4o", "provider": "openai",
...     "service_name": "api", "user_id": None, "session_id": None, "status": "ok",
...     "error_type": None, "error_message": None,
...     "start_time_unix_nano": 1_700_000_000_000_000_000,
...     "end_time_unix_nano": 1_700_000_000_250_000_000,
...     "metadata": {"prompt_tokens": 12, "completion_tokens": 40},
... }])
>>> exporter.shutdown()
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from .. import _core
from ..prices import PriceTable, default_prices, record_cost
from . import rollups

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "DB_ENV_VAR",
    "DEFAULT_STORE_MAX_AGE",
    "DEFAULT_STORE_MAX_BYTES",
    "FORK_WAIT_SECONDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TEXTS_INDEX",
    "TEXTS_TABLE",
    "SqliteExporter",
    "SqliteSchemaError",
    "default_db_path",
    "migrate",
]

#: Environment variable naming the database file; it wins over the platform's data directory.
DB_ENV_VAR: Final = "INSTRUMENTATION_SDK_DB"

#: How long a writer waits for another process's write lock before the batch fails (retried).
BUSY_TIMEOUT_SECONDS: Final = 5.0

#: Retention defaults: the store keeps at most this many bytes of pages in use, and no span that
#: started longer ago than this many seconds (30 days). 0 means unbounded.
DEFAULT_STORE_MAX_BYTES: Final = 1 << 30
DEFAULT_STORE_MAX_AGE: Final = 30 * 86400.0

#: Retention deletes the oldest spans this many rows at a time, at most ``_EVICT_STEPS`` times
#: per exported batch: small transactions that keep pace with a batch (512 spans by default)
#: without holding the write lock long.
_EVICT_ROWS: Final = 1000
_EVICT_STEPS: Final = 8

#: The free-text index: FTS5 with the trigram tokenizer (substrings, case-insensitive) over the
#: fields the dashboard's text filter searches, an external-content index of ``spans`` kept by
#: triggers, so every insert and delete (retention included) updates it in its transaction.
TEXT_INDEX: Final = "span_text"
TEXT_COLUMNS: Final = ("name", "error_type", "error_message")
_TEXT_INDEX_SQL: Final = (
    f"CREATE VIRTUAL TABLE {TEXT_INDEX} USING fts5({', '.join(TEXT_COLUMNS)}, content='spans', "
    "content_rowid='rowid', tokenize='trigram case_sensitive 0')",
    f"CREATE TRIGGER {TEXT_INDEX}_insert AFTER INSERT ON spans BEGIN "
    f"INSERT INTO {TEXT_INDEX} (rowid, {', '.join(TEXT_COLUMNS)}) "
    f"VALUES (new.rowid, {', '.join(f'new.{c}' for c in TEXT_COLUMNS)}); END",
    f"CREATE TRIGGER {TEXT_INDEX}_delete AFTER DELETE ON spans BEGIN "
    f"INSERT INTO {TEXT_INDEX} ({TEXT_INDEX}, rowid, {', '.join(TEXT_COLUMNS)}) "
    f"VALUES ('delete', old.rowid, {', '.join(f'old.{c}' for c in TEXT_COLUMNS)}); END",
    # Spans are never updated; were one, its text would be re-indexed.
    f"CREATE TRIGGER {TEXT_INDEX}_update AFTER UPDATE OF {', '.join(TEXT_COLUMNS)} ON spans BEGIN "
    f"INSERT INTO {TEXT_INDEX} ({TEXT_INDEX}, rowid, {', '.join(TEXT_COLUMNS)}) "
    f"VALUES ('delete', old.rowid, {', '.join(f'old.{c}' for c in TEXT_COLUMNS)}); "
    f"INSERT INTO {TEXT_INDEX} (rowid, {', '.join(TEXT_COLUMNS)}) "
    f"VALUES (new.rowid, {', '.join(f'new.{c}' for c in TEXT_COLUMNS)}); END",
    f"INSERT INTO {TEXT_INDEX} ({TEXT_INDEX}) VALUES ('rebuild')",
)


def _create_if_supported(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    """Runs ``statements`` all or none: an SQLite without FTS5 or its trigram tokenizer (before
    3.34) refuses them, and the store then has no such index."""
    try:
        conn.execute("SAVEPOINT optional_index")
        for statement in statements:
            conn.execute(statement)
        conn.execute("RELEASE optional_index")
    except sqlite3.OperationalError:
        conn.execute("ROLLBACK TO optional_index")
        conn.execute("RELEASE optional_index")


def _create_text_index(conn: sqlite3.Connection) -> None:
    """The free-text index, filled from the spans stored; without FTS5 trigram, none: the
    dashboard then scans, as before."""
    _create_if_supported(conn, _TEXT_INDEX_SQL)


#: Schema 5's free text: each distinct (name, error type, error message) of the spans stored
#: once in ``span_texts`` (NULL errors as ''), with its own FTS5 trigram index; a span carries
#: its text's id (``spans.text_id``, indexed with the start time). Names and errors repeat
#: heavily, so a batch indexes only the few texts it brings that are new, and a text filter
#: becomes an id filter: the ids come from the small table (by the index, or by LIKE for text
#: under 3 characters, which has no trigram).
TEXTS_TABLE: Final = "span_texts"
TEXTS_INDEX: Final = "span_texts_fts"
_TEXT_KEY_SQL: Final = "name, coalesce(error_type, ''), coalesce(error_message, '')"
_TEXTS_SQL: Final = (
    # Schema 4's per-span index goes: it cost ~55 us per span on every batch.
    *(f"DROP TRIGGER IF EXISTS {TEXT_INDEX}_{event}" for event in ("insert", "delete", "update")),
    f"DROP TABLE IF EXISTS {TEXT_INDEX}",
    f"""
    CREATE TABLE {TEXTS_TABLE} (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        error_type    TEXT NOT NULL,
        error_message TEXT NOT NULL,
        UNIQUE (name, error_type, error_message)
    )
    """,
    "ALTER TABLE spans ADD COLUMN text_id INTEGER",
    f"INSERT OR IGNORE INTO {TEXTS_TABLE} (name, error_type, error_message) "
    f"SELECT DISTINCT {_TEXT_KEY_SQL} FROM spans",
    f"UPDATE spans SET text_id = (SELECT id FROM {TEXTS_TABLE} AS t WHERE t.name = spans.name "
    "AND t.error_type = coalesce(spans.error_type, '') "
    "AND t.error_message = coalesce(spans.error_message, ''))",
    # Text-filtered lists walk it by start; text-filtered aggregates read only it (it covers
    # every column they add up), not ~20,000 scattered rows of a month.
    "CREATE INDEX spans_text_start ON spans (text_id, start_time_unix_nano, status, "
    "duration_ns, model, provider, service_name, prompt_tokens, completion_tokens, cost_usd, "
    "time_to_first_token_ms)",
)
_TEXTS_INDEX_SQL: Final = (
    f"CREATE VIRTUAL TABLE {TEXTS_INDEX} USING fts5({', '.join(TEXT_COLUMNS)}, "
    f"content='{TEXTS_TABLE}', content_rowid='id', tokenize='trigram case_sensitive 0')",
    f"CREATE TRIGGER {TEXTS_INDEX}_insert AFTER INSERT ON {TEXTS_TABLE} BEGIN "
    f"INSERT INTO {TEXTS_INDEX} (rowid, {', '.join(TEXT_COLUMNS)}) "
    f"VALUES (new.id, {', '.join(f'new.{c}' for c in TEXT_COLUMNS)}); END",
    f"CREATE TRIGGER {TEXTS_INDEX}_delete AFTER DELETE ON {TEXTS_TABLE} BEGIN "
    f"INSERT INTO {TEXTS_INDEX} ({TEXTS_INDEX}, rowid, {', '.join(TEXT_COLUMNS)}) "
    f"VALUES ('delete', old.id, {', '.join(f'old.{c}' for c in TEXT_COLUMNS)}); END",
    f"INSERT INTO {TEXTS_INDEX} ({TEXTS_INDEX}) VALUES ('rebuild')",
)


def _create_texts_index(conn: sqlite3.Connection) -> None:
    """The distinct texts' FTS5 trigram index. Without FTS5 trigram (SQLite before 3.34) there
    is none, and a text filter reads the distinct texts with LIKE (still not the spans)."""
    _create_if_supported(conn, _TEXTS_INDEX_SQL)


#: Schema migrations in order: ``MIGRATIONS[i]`` takes a database from ``user_version == i`` to
#: ``i + 1``. Each is a sequence of single SQL statements (or functions of the connection, for a
#: backfill SQL alone cannot do) run inside one ``BEGIN IMMEDIATE`` transaction together with the
#: ``user_version`` bump. Never edit a released entry; append.
MigrationStep = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: Final[tuple[tuple[MigrationStep, ...], ...]] = (
    # 1: the spans table and the indexes the CLI's queries use.
    (
        """
        CREATE TABLE spans (
            span_id              TEXT PRIMARY KEY NOT NULL,
            trace_id             TEXT NOT NULL,
            parent_span_id       TEXT,
            name                 TEXT NOT NULL,
            model                TEXT NOT NULL,
            provider             TEXT,
            service_name         TEXT,
            user_id              TEXT,
            session_id           TEXT,
            status               TEXT NOT NULL,
            error_type           TEXT,
            error_message        TEXT,
            start_time_unix_nano INTEGER NOT NULL,
            end_time_unix_nano   INTEGER NOT NULL,
            duration_ns          INTEGER NOT NULL,
            prompt_tokens        INTEGER,
            completion_tokens    INTEGER,
            metadata             TEXT NOT NULL
        )
        """,
        # `spans --since`, newest-first listing, and the time window of `stats`.
        "CREATE INDEX spans_start_time ON spans (start_time_unix_nano)",
        # `spans --trace ID` (exact id or a prefix, as a range scan).
        "CREATE INDEX spans_trace_id ON spans (trace_id)",
        # `stats --by model` without a window reads the groups in order.
        "CREATE INDEX spans_model ON spans (model)",
        # `spans --errors`: errors are rare, so a partial index keeps the lookup cheap and costs
        # nothing on the write path of successful spans.
        "CREATE INDEX spans_errors ON spans (start_time_unix_nano) WHERE status = 'error'",
    ),
    # 2: span events and captured content (JSON text; NULL when capture is off).
    (
        "ALTER TABLE spans ADD COLUMN events TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE spans ADD COLUMN prompt TEXT",
        "ALTER TABLE spans ADD COLUMN completion TEXT",
    ),
    # 3: the dashboard (`instrumentation-sdk ui`): what each span cost, its time to first token,
    # and indexes for its filters (each newest first, so a page of a filtered list is a short
    # index walk).
    (
        "ALTER TABLE spans ADD COLUMN cost_usd REAL",
        "ALTER TABLE spans ADD COLUMN time_to_first_token_ms REAL",
        # Spans stored before this version: their time to first token from the metadata (their
        # cost stays NULL: it is computed with the prices of the moment a span is stored).
        """
        UPDATE spans SET time_to_first_token_ms = json_extract(metadata, '$.time_to_first_token_ms')
        WHERE json_valid(metadata)
          AND json_type(metadata, '$.time_to_first_token_ms') IN ('integer', 'real')
        """,
        # (model, start) serves what (model) did, and the model filter's newest-first pages.
        "DROP INDEX IF EXISTS spans_model",
        "CREATE INDEX spans_model_start ON spans (model, start_time_unix_nano)",
        "CREATE INDEX spans_service_start ON spans (service_name, start_time_unix_nano)",
        "CREATE INDEX spans_provider_start ON spans (provider, start_time_unix_nano)",
        # Sessions and users are NULL on most spans: partial indexes cost those nothing.
        "CREATE INDEX spans_session_start ON spans (session_id, start_time_unix_nano) "
        "WHERE session_id IS NOT NULL",
        "CREATE INDEX spans_user_start ON spans (user_id, start_time_unix_nano) "
        "WHERE user_id IS NOT NULL",
    ),
    # 4: hourly and daily rollups for the dashboard's aggregates (exporters/rollups.py), kept
    # by every batch in its own transaction; the spans already stored are rolled up here. And
    # the dashboard's free-text index (see _create_text_index).
    (*rollups.MIGRATION, rollups.rebuild, _create_text_index),
    # 5: the free text indexed once per distinct text instead of once per span (see
    # _TEXTS_SQL); the spans stored get their text ids here.
    (*_TEXTS_SQL, _create_texts_index),
    # 6: rollups keyed also by text, for the most frequent texts (exporters/rollups.py), so a
    # text filter matching most spans adds up rollups, not the spans.
    (*rollups.TEXT_MIGRATION, rollups.rebuild_texts),
    # 7: the text rollups clustered by their key (WITHOUT ROWID), so a window's rows are read
    # together (exporters/rollups.py).
    rollups.TEXT_CLUSTER_MIGRATION,
    # 8: rollups by the minute of the hours not rolled up yet, so a busy service's newest
    # hours are not read as spans (exporters/rollups.py).
    rollups.MINUTE_MIGRATION,
    # 9: the minute rollups keyed (WITHOUT ROWID, added to by upserts), and keyed also by
    # text, so a text filter over those hours adds up rollups (exporters/rollups.py).
    rollups.MINUTE_CLUSTER_MIGRATION,
)

#: The schema version this code writes and reads.
SCHEMA_VERSION: Final = len(MIGRATIONS)

#: The record's fields from the core's table: (key, type, OTLP mapping, column).
RECORD_FIELDS: Final = tuple(_core.record_fields())
#: Columns computed from a record rather than copied: kept for the CLI's queries and indexes.
DERIVED_COLUMNS: Final = (
    "duration_ns",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "time_to_first_token_ms",
)
_COLUMNS: Final = (*(column for _key, _type, _otlp, column in RECORD_FIELDS), *DERIVED_COLUMNS)
_INSERT_WITH_TEXT: Final = (
    f"INSERT INTO spans ({', '.join(_COLUMNS)}, text_id) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?) "
    "ON CONFLICT(span_id) DO NOTHING"
)
#: Where a row's searchable texts are (``_row``'s order).
_TEXT_POSITIONS: Final = tuple(_COLUMNS.index(column) for column in TEXT_COLUMNS)
#: A row's values the rollups add up (``rollups.BATCH_COLUMNS``; the text id is appended last).
_ROLLUP_VALUES: Final = operator.itemgetter(
    *(_COLUMNS.index(c) for c in rollups.BATCH_COLUMNS[:-1]), len(_COLUMNS)
)
#: Distinct texts looked up per statement (3 parameters each, under SQLite's oldest limit).
_TEXT_CHUNK: Final = 300
_NEWEST_ROWID: Final = "SELECT coalesce(max(rowid), 0) FROM spans"
#: Fields a stored row cannot lack (NOT NULL columns); the other str fields may be None.
_REQUIRED: Final = frozenset(
    {"span_id", "trace_id", "name", "model", "status", "start_time_unix_nano", "end_time_unix_nano"}
)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_MAX_METADATA_DEPTH: Final = 32

Row = tuple[str | int | None, ...]


class SqliteSchemaError(RuntimeError):
    """The database's schema is not one this code can write: it was created by a newer
    instrumentation-sdk (``user_version`` above ``SCHEMA_VERSION``), or it is some other
    application's SQLite file."""


def default_db_path() -> Path:
    """Where spans are stored when no path is given.

    1. ``$INSTRUMENTATION_SDK_DB`` when set and not empty (``~`` is expanded);
    2. on Windows, ``%LOCALAPPDATA%\\instrumentation-sdk\\spans.db``
       (``~\\AppData\\Local`` when ``LOCALAPPDATA`` is unset);
    3. elsewhere (Linux, macOS, BSDs), ``$XDG_DATA_HOME/instrumentation-sdk/spans.db``, with
       ``XDG_DATA_HOME`` defaulting to ``~/.local/share`` when unset, empty or relative (as the
       XDG base directory specification asks).

    Nothing is created here.

    >>> import os
    >>> os.environ["INSTRUMENTATION_SDK_DB"] = "/tmp/my-spans.db"
    >>> default_db_path() == Path("/tmp/my-spans.db")
    True
    >>> del os.environ["INSTRUMENTATION_SDK_DB"]
    """
    explicit = os.environ.get(DB_ENV_VAR, "")
    if explicit.strip():
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "")
        base = Path(local) if local.strip() else Path.home() / "AppData" / "Local"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if xdg.strip() and Path(xdg).is_absolute() else None
        if base is None:
            base = Path.home() / ".local" / "share"
    return base / "instrumentation-sdk" / "spans.db"


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Sequence[MigrationStep]] = MIGRATIONS,
) -> int:
    """Bring the database behind ``conn`` up to ``len(migrations)``; returns that version.

    Safe when several processes open a fresh database at once: the version is re-read inside a
    ``BEGIN IMMEDIATE`` transaction (the write lock), so exactly one process runs each migration
    and the others see its result. A database already at the current version costs one
    ``PRAGMA`` read and takes no lock. ``conn`` must be in autocommit mode
    (``isolation_level=None``). Raises ``SqliteSchemaError`` for a database newer than
    ``migrations`` knows, or one that is not an instrumentation-sdk database.

    >>> conn = sqlite3.connect(":memory:", isolation_level=None)
    >>> migrate(conn)
    1
    >>> conn.execute("PRAGMA user_version").fetchone()[0]
    1
    """
    target = len(migrations)
    version = _user_version(conn)
    if version == target:
        return target
    _check_not_newer(conn, version, target)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)  # another process may have migrated meanwhile
        _check_not_newer(conn, version, target)
        for number in range(version, target):
            for statement in migrations[number]:
                try:
                    if callable(statement):
                        statement(conn)
                    else:
                        conn.execute(statement)
                except sqlite3.OperationalError as error:
                    if number == 0 and "already exists" in str(error):
                        raise SqliteSchemaError(
                            f"{_describe(conn)} has user_version 0 but already holds a table or "
                            f"index this schema creates ({error}): it is not an "
                            "instrumentation-sdk span database; use another path"
                        ) from None
                    raise
        # PRAGMA takes no parameters; `target` is an int we computed.
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return target


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _check_not_newer(conn: sqlite3.Connection, version: int, target: int) -> None:
    if version > target:
        raise SqliteSchemaError(
            f"{_describe(conn)} has schema version {version}, but this instrumentation-sdk knows "
            f"versions up to {target}: it was written by a newer release. Upgrade "
            f"instrumentation-sdk, or point {DB_ENV_VAR} at another file."
        )


def _describe(conn: sqlite3.Connection) -> str:
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return f"the span database {file}" if file else "the span database (in memory)"
    return "the span database"


def _encode_fallback(value: Any) -> Any:
    """``msgspec`` hook for values JSON cannot hold: store their ``str`` rather than fail the
    whole batch over one odd metadata value."""
    try:
        return str(value)
    except Exception:
        return f"<unencodable {type(value).__name__}>"


_encode_json: Callable[[Any], bytes] = msgspec.json.Encoder(enc_hook=_encode_fallback).encode


def _encode_metadata(metadata: Any) -> str:
    """JSON text of ``metadata`` (or events, or captured content); odd values (non-str keys,
    objects JSON cannot hold, deep or circular nesting) are stored as strings rather than
    failing the batch."""
    try:
        return _encode_json(metadata).decode()
    except Exception:
        pass
    try:
        return _encode_json(_jsonable(metadata, 0)).decode()
    except Exception as error:
        raise ValueError(f"metadata cannot be encoded as JSON: {error}") from None


def _jsonable(value: Any, depth: int) -> Any:
    if depth > _MAX_METADATA_DEPTH:
        return _encode_fallback(value)
    if isinstance(value, Mapping):
        return {
            key if isinstance(key, str) else _encode_fallback(key): _jsonable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item, depth + 1) for item in value]
    return value


def _token_column(metadata: Mapping[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    # bool is an int subclass: True is not a token count.
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    return None


_TEXT_TYPES: Final = frozenset(
    {"trace_id", "span_id", "parent_span_id", "str", "str | None", "status"}
)
_EMPTY_JSON: Final = {"events": "[]", "metadata": "{}"}


def _field_reader(key: str, type_: str) -> Callable[[Mapping[str, Any]], str | int | None]:
    """Reads one field of a record as its column's value; ``ValueError`` says what is wrong,
    ``KeyError`` which required key is missing. Built once per field: the flusher calls these
    for every field of every span, so the checks a field needs are chosen here, not per value."""
    required = key in _REQUIRED
    if type_ in _TEXT_TYPES:
        allowed = "a str" if required else "a str or None"

        def text(record: Mapping[str, Any]) -> str | None:
            value = record[key] if required else record.get(key)
            if isinstance(value, str) or (value is None and not required):
                return value
            raise ValueError(f"{key} must be {allowed}, got {type(value).__name__}")

        return text
    if type_ == "unix_nano":

        def unix_nano(record: Mapping[str, Any]) -> int:
            value = record[key] if required else record.get(key)
            if type(value) is not int or not _INT64_MIN <= value <= _INT64_MAX:
                raise ValueError(f"{key} must be a 64-bit int, got {value!r}")
            return value

        return unix_nano
    empty = _EMPTY_JSON.get(type_)
    expected = {"metadata": (Mapping, "a dict"), "events": (list | tuple, "a list")}.get(type_)

    def json_text(record: Mapping[str, Any]) -> str | None:
        value = record.get(key)
        if value is None:
            return empty
        if expected is not None and not isinstance(value, expected[0]):
            raise ValueError(f"{key} must be {expected[1]}, got {type(value).__name__}")
        return _encode_metadata(value)  # metadata, events, captured content: JSON text

    return json_text


#: One reader per field of the core's table, in column order.
_FIELD_READERS: Final = tuple(_field_reader(key, type_) for key, type_, _o, _c in RECORD_FIELDS)


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _row(record: Mapping[str, Any], prices: PriceTable) -> Row:
    """One record as the INSERT's parameters, column by column of the core's field table, then
    the derived columns; ``ValueError`` names what is wrong."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a span record must be a dict, got {type(record).__name__}")
    try:
        values = [read(record) for read in _FIELD_READERS]
    except KeyError as missing:
        raise ValueError(
            f"span record {record.get('span_id')!r} lacks the key {missing.args[0]!r}"
        ) from None
    except (ValueError, msgspec.EncodeError) as error:
        raise ValueError(f"span record {record.get('span_id')!r}: {error}") from None
    metadata = record.get("metadata") or {}
    start, end = record["start_time_unix_nano"], record["end_time_unix_nano"]
    return (
        *values,
        end - start,
        _token_column(metadata, "prompt_tokens"),
        _token_column(metadata, "completion_tokens"),
        record_cost(record, prices),
        _finite_number(metadata.get("time_to_first_token_ms")),
    )


def _with_text_ids(conn: sqlite3.Connection, rows: list[Row]) -> tuple[list[Row], dict[int, int]]:
    """``rows`` each with its text id appended, and those ids' keys in the text rollups: the
    batch's distinct texts are inserted once (``INSERT OR IGNORE``: those already stored keep
    their id), then their ids read back in a few statements. In the batch's transaction (the
    write lock held), so a retention step of another process cannot delete a text between the
    two."""
    name, error_type, error_message = _TEXT_POSITIONS
    keys = [(row[name], row[error_type] or "", row[error_message] or "") for row in rows]
    distinct = list(dict.fromkeys(keys))
    conn.executemany(rollups.insert_text_sql(TEXTS_TABLE), distinct)
    ids: dict[tuple[Any, ...], int] = {}
    text_keys: dict[int, int] = {}
    for start in range(0, len(distinct), _TEXT_CHUNK):
        chunk = distinct[start : start + _TEXT_CHUNK]
        values = ", ".join("(?, ?, ?)" for _ in chunk)
        for text_id, rolled, class_id, *stored in conn.execute(
            f"SELECT id, rolled, class_id, name, error_type, error_message FROM {TEXTS_TABLE} "
            f"WHERE (name, error_type, error_message) IN (VALUES {values})",
            [part for text in chunk for part in text],
        ):
            ids[tuple(stored)] = text_id
            text_keys[text_id] = rollups.text_key(text_id, rolled, class_id)
    with_ids = [(*row, ids[key]) for row, key in zip(rows, keys, strict=True)]
    return with_ids, text_keys


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, ``None`` when it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


# Connections that must be neither used nor closed: those inherited across fork() (SQLite forbids
# using them in the child, and closing one there could checkpoint or unlink the parent's WAL),
# and those to a file since deleted or replaced. Kept referenced here, never touched, so the
# garbage collector cannot close them either. One per fork or per replaced file: tiny.
_ABANDONED: list[sqlite3.Connection] = []
_LIVE_EXPORTERS: weakref.WeakSet[SqliteExporter] = weakref.WeakSet()


#: How long a fork() waits for an exporter's transaction in flight to finish, so that its
#: connection can be closed first. Past it the fork goes ahead with that connection open, and the
#: child may meet the parent's lock state ("database is locked") until it exits.
FORK_WAIT_SECONDS: Final = 2.0

# Exporters whose lock the before-fork hook holds, released after the fork in the parent.
_HELD_FOR_FORK: list[SqliteExporter] = []


def _before_fork() -> None:
    """Close every connection before a fork, waiting (bounded) for a transaction in flight: a
    child must not inherit an open database. SQLite keeps each file's lock state per process;
    a child that inherits it meets the parent's locks even on a connection of its own."""
    _HELD_FOR_FORK.extend(e for e in list(_LIVE_EXPORTERS) if e._close_before_fork())


def _after_fork_in_parent() -> None:
    """Let the parent's exporters go on: each reopens its connection on its next batch."""
    while _HELD_FOR_FORK:
        _HELD_FOR_FORK.pop()._lock.release()


def _after_fork_in_child() -> None:
    _HELD_FOR_FORK.clear()  # the child's exporters get fresh locks below
    for exporter in list(_LIVE_EXPORTERS):
        exporter._forget_parent_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class SqliteExporter:
    """Write finished spans to a SQLite database (the embedded default exporter).

    ``path`` is the database file; ``None`` means ``default_db_path()``. Nothing is opened until
    the first non-empty ``export``: then the parent directories are created, the connection is
    opened (WAL, ``synchronous=NORMAL``, ``busy_timeout``) and the schema migrated. Before a
    ``fork()`` the connection is closed (after the batch in flight, waiting at most
    ``FORK_WAIT_SECONDS``) and the parent reopens it on its next batch; a child opens its own
    (one inherited through a fork without Python's hooks is left alone, unused).

    ``export`` writes the batch in one transaction: all of it or nothing. It raises
    ``sqlite3.OperationalError`` for transient trouble (the lock held past the busy timeout, a
    full disk), ``SqliteSchemaError`` for a database it cannot write, and ``ValueError`` for a
    malformed record; in every case nothing of the batch was written. Rows are keyed by
    ``span_id``, so exporting a batch again (a retry) adds nothing twice.

    >>> import tempfile, pathlib
    >>> exporter = SqliteExporter(pathlib.Path(tempfile.mkdtemp()) / "nested" / "spans.db")
    >>> exporter.export([])          # nothing to write: does not even open the file
    >>> exporter.path.name
    'spans.db'
    >>> exporter.shutdown()
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = DEFAULT_STORE_MAX_BYTES,
        max_age: float = DEFAULT_STORE_MAX_AGE,
        prices: PriceTable | None = None,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0 (0: unbounded), got {max_bytes!r}")
        if (
            isinstance(max_age, bool)
            or not isinstance(max_age, int | float)
            or not math.isfinite(max_age)
            or max_age < 0
        ):
            raise ValueError(
                f"max_age must be a number of seconds >= 0 (0: unbounded), got {max_age!r}"
            )
        self.path: Path = Path(path).expanduser() if path is not None else default_db_path()
        #: Retention: bytes of pages in use, and seconds since a span started (0: unbounded).
        self.max_bytes = max_bytes
        self.max_age = float(max_age)
        #: Prices for each stored span's ``cost_usd`` (default: the table shipped).
        self.prices = prices if prices is not None else default_prices()
        #: Spans this process deleted to keep the store within its bounds (``stats()``).
        self.evicted = 0
        self._page_size = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self._file_id: tuple[int, int] | None = None
        _LIVE_EXPORTERS.add(self)

    def __repr__(self) -> str:
        return f"SqliteExporter({str(self.path)!r})"

    def export(self, batch: list[dict[str, Any]]) -> None:
        """Insert ``batch`` in one transaction; spans already stored are left as they are."""
        if not batch:
            return
        rows = [_row(record, self.prices) for record in batch]
        self._check_pid()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is shut down")
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                # Rows this batch inserts get rowids past the largest one now (the write lock
                # is held); spans already stored insert nothing, so a retry adds nothing twice.
                (newest_rowid,) = conn.execute(
                    "SELECT coalesce(max(rowid), 0) FROM spans"
                ).fetchone()
                with_ids, text_keys = _with_text_ids(conn, rows)
                inserted = conn.executemany(_INSERT_WITH_TEXT, with_ids).rowcount
                # Every row inserted (no retry, no duplicate): the rollups need not read them
                # back. Otherwise they read what this transaction inserted.
                rollups.add_inserted(
                    conn,
                    newest_rowid,
                    map(_ROLLUP_VALUES, with_ids) if inserted == len(rows) else None,
                    text_keys,
                )
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
            try:
                self._evict(conn)
            except sqlite3.Error as error:
                # The batch is stored; only retention failed this time (the next batch retries).
                from ..pipeline import note_fault

                note_fault("store_retention", f"store retention failed: {error}")

    def _evict(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest spans, a few small transactions at a time, while the store is past
        ``max_age`` or ``max_bytes``. With the lock held. Cheap when within bounds: an index
        lookup and two ``PRAGMA`` reads. Deleted pages go to the free list, which later inserts
        reuse, so the file stops growing at about ``max_bytes``."""
        if self.max_age:
            cutoff = time.time_ns() - int(self.max_age * 1e9)
            for _ in range(_EVICT_STEPS):
                deleted = self._delete_oldest(conn, "WHERE start_time_unix_nano < ?", (cutoff,))
                if deleted < _EVICT_ROWS:
                    break
        if self.max_bytes:
            for _ in range(_EVICT_STEPS):
                if self._used_bytes(conn) <= self.max_bytes:
                    break
                if self._delete_oldest(conn, "", ()) <= 0:
                    break

    def _delete_oldest(self, conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> int:
        """Delete up to ``_EVICT_ROWS`` of the oldest spans matching ``where``, and retire the
        rollups of their hours, in one transaction; returns how many were deleted."""
        oldest = f"SELECT rowid, start_time_unix_nano FROM spans {where} "
        oldest += "ORDER BY start_time_unix_nano LIMIT ?"
        conn.execute("BEGIN IMMEDIATE")
        try:
            (newest_start,) = conn.execute(
                f"SELECT max(start_time_unix_nano) FROM ({oldest})", (*params, _EVICT_ROWS)
            ).fetchone()
            text_ids = conn.execute(
                f"SELECT DISTINCT text_id FROM spans WHERE rowid IN (SELECT rowid FROM ({oldest}))",
                (*params, _EVICT_ROWS),
            ).fetchall()
            deleted = conn.execute(
                f"DELETE FROM spans WHERE rowid IN (SELECT rowid FROM ({oldest}))",
                (*params, _EVICT_ROWS),
            ).rowcount
            # Texts no span carries any more go too (a text with unique parts, a request id in
            # an error message, would otherwise outlive its spans and grow the store).
            conn.executemany(
                f"DELETE FROM {TEXTS_TABLE} WHERE id = ? "
                "AND NOT EXISTS (SELECT 1 FROM spans WHERE text_id = ?)",
                [(text_id, text_id) for (text_id,) in text_ids if text_id is not None],
            )
            if deleted > 0 and newest_start is not None:
                rollups.forget_through(conn, int(newest_start))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self.evicted += max(deleted, 0)
        return deleted

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        """Bytes of the database's pages in use (its size less its free list)."""
        if not self._page_size:
            self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def shutdown(self) -> None:
        """Close the connection (if this process opened one). Idempotent; ``export`` raises
        ``RuntimeError`` afterwards in this process (a child forked later starts open)."""
        self._check_pid()
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- internals ------------------------------------------------------------------------------

    def _check_pid(self) -> None:
        # Fallback for forks that bypass os.register_at_fork (e.g. a C extension's fork()).
        if os.getpid() != self._pid:
            self._forget_parent_state()

    def _close_before_fork(self) -> bool:
        """Take the lock (waiting at most ``FORK_WAIT_SECONDS`` for a transaction in flight)
        and close the connection; True if the lock is now held (the caller releases it)."""
        if os.getpid() != self._pid or not self._lock.acquire(timeout=FORK_WAIT_SECONDS):
            return False
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._same_file():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            else:  # not closed: see _connection
                _ABANDONED.append(conn)
        return True

    def _forget_parent_state(self) -> None:
        """In a forked child: drop the parent's connection (unused, unclosed) and its lock (it
        may have been held by a parent thread that does not exist here). A shutdown in the
        parent does not carry over: the child's pipeline may use the exporter afresh."""
        self._lock = threading.Lock()
        self._closed = False
        self.evicted = 0  # the child counts its own
        if self._conn is not None:
            _ABANDONED.append(self._conn)
            self._conn = None
        self._pid = os.getpid()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Undo a failed batch; a connection that cannot even roll back is discarded (closed),
        so the next export starts on a fresh one."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        """The open connection, opening and migrating it on first use. Call with the lock held.

        A file deleted or replaced since it was opened (``rm spans.db*`` to start afresh while a
        service runs) is noticed with one ``stat`` per batch: the old connection is closed and
        a new file created, rather than writing on into an unlinked inode. The old connection is
        left open and unused.
        """
        if self._conn is not None:
            if self._same_file():
                return self._conn
            # Not closed: closing the last connection to a WAL database checkpoints it and
            # unlinks "<path>-wal" and "<path>-shm" by name, which may by now be another
            # process's files for the new database.
            _ABANDONED.append(self._conn)
            self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # autocommit: transactions are explicit BEGIN/COMMIT
            # The pipeline may call shutdown() from another thread than the flusher's; every
            # use is serialized by self._lock.
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            rollups.ensure_math(conn)
            # Migrate first: a file that is not ours is refused before anything changes it.
            migrate(conn)
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: readers see it too
            conn.execute("PRAGMA synchronous = NORMAL")  # per connection; safe with WAL
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._page_size = 0  # read again: the file may be a new one
        self._file_id = _file_id(self.path)
        return conn

    def _same_file(self) -> bool:
        return self._file_id is not None and _file_id(self.path) == self._file_id
