"""``SqliteExporter``: schema and migrations, WAL, batches, idempotent retries, several processes
writing one file, fork safety, and the default path. Real files in ``tmp_path`` throughout."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import _core
from instrumentation_sdk.exporters import sqlite as sqlite_exporter
from instrumentation_sdk.exporters.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SqliteExporter,
    SqliteSchemaError,
    default_db_path,
    migrate,
)
from record_schema import RECORD_KEYS

# A day ago, in whole seconds: within the store's default retention (30 days).
BASE_NS = (time.time_ns() // 1_000_000_000 - 86_400) * 1_000_000_000

EXPECTED_COLUMNS = [
    ("span_id", "TEXT"),
    ("trace_id", "TEXT"),
    ("parent_span_id", "TEXT"),
    ("name", "TEXT"),
    ("model", "TEXT"),
    ("provider", "TEXT"),
    ("service_name", "TEXT"),
    ("user_id", "TEXT"),
    ("session_id", "TEXT"),
    ("status", "TEXT"),
    ("error_type", "TEXT"),
    ("error_message", "TEXT"),
    ("start_time_unix_nano", "INTEGER"),
    ("end_time_unix_nano", "INTEGER"),
    ("duration_ns", "INTEGER"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("metadata", "TEXT"),
    ("events", "TEXT"),
    ("prompt", "TEXT"),
    ("completion", "TEXT"),
    ("cost_usd", "REAL"),
    ("time_to_first_token_ms", "REAL"),
    ("text_id", "INTEGER"),
]


def make_record(n: int, *, worker: int = 0, **overrides: Any) -> dict[str, Any]:
    """A well-formed exported record; ``n`` and ``worker`` make the ids unique."""
    record: dict[str, Any] = {
        "trace_id": f"{worker:08x}{n // 10:024x}",
        "span_id": f"{worker:04x}{n:012x}",
        "parent_span_id": None,
        "name": "llm",
        "model": "gpt-4o",
        "provider": "openai",
        "service_name": "api",
        "user_id": None,
        "session_id": None,
        "status": "ok",
        "error_type": None,
        "error_message": None,
        "start_time_unix_nano": BASE_NS + n * 1_000_000_000,
        "end_time_unix_nano": BASE_NS + n * 1_000_000_000 + (n + 1) * 1_000_000,
        "metadata": {"prompt_tokens": n, "completion_tokens": 2 * n},
    }
    record.update(overrides)
    return record


def rows(path: Path, sql: str = "SELECT * FROM spans ORDER BY span_id") -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def count(path: Path) -> int:
    return int(rows(path, "SELECT count(*) AS n FROM spans")[0]["n"])


def user_version(path: Path) -> int:
    return int(rows(path, "PRAGMA user_version")[0][0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "spans.db"


@pytest.fixture
def exporter(db: Path) -> Any:
    exporter = SqliteExporter(db)
    yield exporter
    exporter.shutdown()


# -- schema ----------------------------------------------------------------------------------------


def test_first_export_creates_schema_at_current_version(db: Path, exporter: SqliteExporter) -> None:
    assert not db.exists(), "the file is opened lazily, on the first export"
    exporter.export([make_record(1)])
    assert SCHEMA_VERSION == len(MIGRATIONS) == 9
    assert user_version(db) == SCHEMA_VERSION
    columns = [(row["name"], row["type"]) for row in rows(db, "PRAGMA table_info(spans)")]
    assert columns == EXPECTED_COLUMNS
    pk = [row["name"] for row in rows(db, "PRAGMA table_info(spans)") if row["pk"]]
    assert pk == ["span_id"]
    indexes = {
        row["name"]: row["sql"]
        for row in rows(db, "SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        if row["sql"] is not None  # the primary key's automatic index has no SQL
    }
    assert set(indexes) == {
        "spans_start_time",
        "spans_trace_id",
        "spans_errors",
        "spans_model_start",
        "spans_service_start",
        "spans_provider_start",
        "spans_session_start",
        "spans_user_start",
        "span_rollups_bucket",
        "spans_text_start",
        "span_texts_rolled",
        "span_texts_class",
    }
    kinds = rows(db, "SELECT type, name FROM sqlite_master")
    tables = {row["name"] for row in kinds if row["type"] == "table"}
    assert {"spans", "span_rollups", "span_rollup_state", "span_texts", "span_texts_fts"} <= tables
    assert "span_text_rollups" in tables  # schema 6, clustered by its key since 7
    (ddl,) = rows(db, "SELECT sql FROM sqlite_master WHERE name = 'span_text_rollups'")[0]
    assert "WITHOUT ROWID" in ddl
    for table in ("span_minute_rollups", "span_text_minute_rollups"):  # schema 8, 9
        (ddl,) = rows(db, f"SELECT sql FROM sqlite_master WHERE name = '{table}'")[0]
        assert "WITHOUT ROWID" in ddl, table
    assert "span_text" not in tables  # schema 4's per-span index, dropped by 5
    triggers = {row["name"] for row in kinds if row["type"] == "trigger"}
    assert triggers == {"span_texts_fts_insert", "span_texts_fts_delete"}
    assert "WHERE status = 'error'" in indexes["spans_errors"]
    assert "WHERE rolled = 1" in indexes["span_texts_rolled"]
    assert "WHERE session_id IS NOT NULL" in indexes["spans_session_start"]


def test_wal_mode_synchronous_normal_and_busy_timeout(db: Path, exporter: SqliteExporter) -> None:
    exporter.export([make_record(1)])
    # journal_mode=WAL is a property of the file: a fresh connection sees it.
    assert rows(db, "PRAGMA journal_mode")[0][0] == "wal"
    conn = exporter._conn
    assert conn is not None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "spans.db"
    exporter = SqliteExporter(str(path))
    try:
        exporter.export([make_record(1)])
    finally:
        exporter.shutdown()
    assert count(path) == 1


def test_empty_batch_opens_nothing(db: Path, exporter: SqliteExporter) -> None:
    exporter.export([])
    assert not db.exists()
    assert exporter._conn is None


# -- writing ---------------------------------------------------------------------------------------


def test_batch_insert_stores_every_field(db: Path, exporter: SqliteExporter) -> None:
    batch = [make_record(n) for n in range(50)]
    batch[7] = make_record(
        7,
        parent_span_id="00000000000000aa",
        provider=None,
        user_id="user-1",
        session_id="sess-9",
        status="error",
        error_type="TimeoutError",
        error_message="Provider failed to respond",
        service_name="worker",
    )
    exporter.export(batch)
    stored = rows(db)
    assert len(stored) == 50
    by_id = {row["span_id"]: row for row in stored}
    for record in batch:
        row = by_id[record["span_id"]]
        for key in RECORD_KEYS:
            if key in ("span_id", "metadata", "events", "prompt", "completion"):
                continue  # the row is looked up by span_id; these are stored as JSON text
            assert row[key] == record[key], key
        assert row["duration_ns"] == record["end_time_unix_nano"] - record["start_time_unix_nano"]
    assert by_id[batch[7]["span_id"]]["user_id"] == "user-1"


def test_retried_batch_adds_no_duplicates(db: Path, exporter: SqliteExporter) -> None:
    batch = [make_record(n) for n in range(20)]
    exporter.export(batch)
    exporter.export(batch)  # the flusher retried after a failure it could not see had committed
    assert count(db) == 20
    # A retry that overlaps and extends the first batch stores only the new spans.
    exporter.export([make_record(n) for n in range(10, 30)])
    assert count(db) == 30
    # The first write wins: a second record with a stored span_id does not change the row.
    exporter.export([make_record(0, model="changed")])
    assert rows(db, "SELECT model FROM spans WHERE span_id = '0000000000000000'")[0][0] == "gpt-4o"


def test_metadata_json_round_trip(db: Path, exporter: SqliteExporter) -> None:
    import msgspec

    metadata = {
        "prompt_tokens": 12,
        "completion_tokens": 40,
        "token_count_method": "tiktoken",
        "token_encoding": "o200k_base",
        "actual_model": "gpt-4o-2024-08-06",
        "finish_reason": "stop",
        "retry_count": 2,
        "nested": {"list": [1, 2.5, None, True, "x"], "deep": {"é": "日本語 🎉"}},
        "empty": {},
        "ratio": 0.1,
    }
    exporter.export([make_record(1, metadata=metadata)])
    text = rows(db)[0]["metadata"]
    assert msgspec.json.decode(text) == metadata


def test_odd_metadata_values_are_stored_as_strings(db: Path, exporter: SqliteExporter) -> None:
    import msgspec

    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    exporter.export([make_record(1, metadata={"obj": Opaque(), "keys": {(1, 2): "tuple key"}})])
    assert msgspec.json.decode(rows(db)[0]["metadata"]) == {
        "obj": "opaque!",
        "keys": {"(1, 2)": "tuple key"},
    }


def test_token_columns_copied_only_from_int_values(db: Path, exporter: SqliteExporter) -> None:
    cases = {
        1: ({"prompt_tokens": 12, "completion_tokens": 40}, (12, 40)),
        2: ({"prompt_tokens": 7}, (7, None)),
        3: ({}, (None, None)),
        4: ({"prompt_tokens": True, "completion_tokens": False}, (None, None)),
        5: ({"prompt_tokens": "12", "completion_tokens": 3.0}, (None, None)),
        6: ({"prompt_tokens": 2**70, "completion_tokens": 0}, (None, 0)),
    }
    exporter.export([make_record(n, metadata=meta) for n, (meta, _) in cases.items()])
    stored = {row["span_id"]: (row["prompt_tokens"], row["completion_tokens"]) for row in rows(db)}
    for n, (_, expected) in cases.items():
        assert stored[make_record(n)["span_id"]] == expected, n
    totals = rows(db, "SELECT sum(prompt_tokens), sum(completion_tokens) FROM spans")[0]
    assert tuple(totals) == (19, 40)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"span_id": None}, "span_id must be a str"),
        ({"start_time_unix_nano": 1.5}, "start_time_unix_nano must be a 64-bit int"),
        ({"end_time_unix_nano": 2**64}, "end_time_unix_nano must be a 64-bit int"),
        ({"provider": 3}, "provider must be a str or None"),
        ({"metadata": ["not", "a", "dict"]}, "metadata must be a dict"),
    ],
)
def test_malformed_record_fails_the_whole_batch(
    db: Path, exporter: SqliteExporter, broken: dict[str, Any], message: str
) -> None:
    exporter.export([make_record(1)])
    with pytest.raises(ValueError, match=message):
        exporter.export([make_record(2), make_record(3, **broken), make_record(4)])
    assert count(db) == 1, "nothing of a failed batch is written"


def test_missing_key_names_it(exporter: SqliteExporter) -> None:
    record = make_record(1)
    del record["model"]
    with pytest.raises(ValueError, match="lacks the key 'model'"):
        exporter.export([record])
    with pytest.raises(ValueError, match="must be a dict, got list"):
        exporter.export([["not", "a", "record"]])  # type: ignore[list-item]


def test_a_broken_connection_is_replaced(db: Path, exporter: SqliteExporter) -> None:
    exporter.export([make_record(1)])
    broken = exporter._conn
    broken.close()  # as if it had failed beyond repair
    with pytest.raises(sqlite3.ProgrammingError):
        exporter.export([make_record(2)])
    assert exporter._conn is None
    exporter.export([make_record(2)])  # the flusher's retry: a fresh connection
    assert count(db) == 2


def test_failed_insert_rolls_back_and_connection_stays_usable(
    db: Path, exporter: SqliteExporter
) -> None:
    exporter.export([make_record(1)])
    # A batch that SQLite itself rejects (NOT NULL) after some rows went in: all rolled back.
    exporter._conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON spans WHEN NEW.model = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'rejected'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="rejected"):
        exporter.export([make_record(2), make_record(3, model="bad")])
    assert count(db) == 1
    exporter.export([make_record(4)])
    assert count(db) == 2


def test_shutdown_closes_and_later_exports_raise(db: Path) -> None:
    exporter = SqliteExporter(db)
    exporter.shutdown()  # before anything was opened
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])
    conn = exporter._conn
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # closed
    with pytest.raises(RuntimeError, match="shut down"):
        exporter.export([make_record(2)])
    assert count(db) == 1


def test_export_on_one_thread_shutdown_on_another(db: Path) -> None:
    exporter = SqliteExporter(db)
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            for n in range(5):
                exporter.export([make_record(n)])
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=flusher)
    thread.start()
    thread.join()
    exporter.shutdown()  # from the main thread, as an atexit hook would
    assert errors == []
    assert exporter._conn is None
    assert count(db) == 5


@pytest.mark.skipif(sys.platform == "win32", reason="Windows cannot delete a file that is open")
def test_deleted_database_is_recreated(db: Path, exporter: SqliteExporter) -> None:
    exporter.export([make_record(1)])
    old = exporter._conn
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # `rm spans.db*` while the service runs
    exporter.export([make_record(2)])
    assert [row["span_id"] for row in rows(db)] == [make_record(2)["span_id"]]
    assert user_version(db) == SCHEMA_VERSION
    assert exporter._conn is not old
    assert old in sqlite_exporter._ABANDONED, "not closed: its WAL name may be another's now"
    exporter.export([make_record(3)])
    assert count(db) == 2


# -- migrations ------------------------------------------------------------------------------------


def test_existing_v1_database_is_a_no_op(db: Path) -> None:
    first = SqliteExporter(db)
    first.export([make_record(n) for n in range(3)])
    first.shutdown()
    schema = rows(db, "SELECT type, name, sql FROM sqlite_master ORDER BY name")

    # Another process holds the write lock: opening a current database must not need it.
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        conn = sqlite3.connect(db, isolation_level=None, timeout=0)
        assert migrate(conn) == SCHEMA_VERSION
        conn.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    second = SqliteExporter(db)
    second.export([make_record(3)])
    second.shutdown()
    assert [
        tuple(r) for r in rows(db, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    ] == [tuple(r) for r in schema]
    assert user_version(db) == SCHEMA_VERSION
    assert count(db) == 4


def test_a_second_migration_is_one_list_entry(db: Path) -> None:
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])
    exporter.shutdown()
    future = [*MIGRATIONS, ("ALTER TABLE spans ADD COLUMN future_column REAL",)]
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert migrate(conn, future) == SCHEMA_VERSION + 1
        assert migrate(conn, future) == SCHEMA_VERSION + 1  # and again: a no-op
    finally:
        conn.close()
    assert user_version(db) == SCHEMA_VERSION + 1
    assert "future_column" in [row["name"] for row in rows(db, "PRAGMA table_info(spans)")]
    assert count(db) == 1


def test_a_failing_migration_changes_nothing(db: Path) -> None:
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])
    exporter.shutdown()
    broken = [*MIGRATIONS, ("ALTER TABLE spans ADD COLUMN future_column REAL", "THIS IS NOT SQL")]
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, broken)
        assert not conn.in_transaction
    finally:
        conn.close()
    assert user_version(db) == SCHEMA_VERSION
    assert "future_column" not in [row["name"] for row in rows(db, "PRAGMA table_info(spans)")]


def test_migration_rechecks_the_version_under_the_write_lock(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes open a fresh file: both read version 0, one migrates first. The other must
    re-read the version once it holds the lock, and not run migration 1 again."""
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])  # "the other process" migrated and wrote
    exporter.shutdown()
    reads: list[int] = []
    real = sqlite_exporter._user_version

    def stale_first_read(conn: sqlite3.Connection) -> int:
        value = 0 if not reads else real(conn)  # the read before BEGIN IMMEDIATE was stale
        reads.append(value)
        return value

    monkeypatch.setattr(sqlite_exporter, "_user_version", stale_first_read)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert migrate(conn) == SCHEMA_VERSION
        assert not conn.in_transaction
    finally:
        conn.close()
    assert reads == [0, SCHEMA_VERSION]
    assert count(db) == 1


def test_two_connections_migrating_a_fresh_file_at_once_both_succeed(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the worst interleaving: each connection pauses right after reading the version
    inside its transaction, waiting (up to 0.5 s) for the other to get there too. With
    ``BEGIN IMMEDIATE`` the second cannot get there (it waits for the lock), so both succeed;
    with a deferred ``BEGIN`` both would read version 0 and collide."""
    barrier = threading.Barrier(2)
    real = sqlite_exporter._user_version

    def read_then_pause(conn: sqlite3.Connection) -> int:
        value = real(conn)
        if conn.in_transaction:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=0.5)
        return value

    monkeypatch.setattr(sqlite_exporter, "_user_version", read_then_pause)
    results: list[object] = []

    def open_and_migrate() -> None:
        conn = sqlite3.connect(db, isolation_level=None, timeout=10)
        try:
            results.append(migrate(conn))
        except Exception as error:
            results.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=open_and_migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [SCHEMA_VERSION, SCHEMA_VERSION]
    assert user_version(db) == SCHEMA_VERSION


def test_newer_schema_version_raises_a_clear_error(db: Path) -> None:
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])
    exporter.shutdown()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    exporter = SqliteExporter(db)
    with pytest.raises(
        SqliteSchemaError,
        match=rf"schema version {SCHEMA_VERSION + 1}.*versions up to {SCHEMA_VERSION}.*newer",
    ):
        exporter.export([make_record(2)])
    with pytest.raises(SqliteSchemaError, match=str(db).replace("\\", "\\\\")):
        exporter.export([make_record(2)])  # raises every time, names the file
    assert exporter._conn is None
    exporter.shutdown()
    assert count(db) == 1
    assert user_version(db) == SCHEMA_VERSION + 1


def test_foreign_database_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE spans (id INTEGER PRIMARY KEY, something TEXT)")
    conn.commit()
    conn.close()
    exporter = SqliteExporter(db)
    with pytest.raises(SqliteSchemaError, match="not an instrumentation-sdk span database"):
        exporter.export([make_record(1)])
    exporter.shutdown()
    assert user_version(db) == 0


# -- several processes -----------------------------------------------------------------------------

WORKERS = 3
BATCHES = 20
BATCH_SIZE = 50


def _writer(path: str, worker: int, start: Any) -> None:
    """A separate process: wait for the others, then write BATCHES batches into one file."""
    start.wait(30)
    exporter = SqliteExporter(path)
    for batch in range(BATCHES):
        exporter.export(
            [make_record(batch * BATCH_SIZE + n, worker=worker) for n in range(BATCH_SIZE)]
        )
    exporter.shutdown()


def test_concurrent_writer_processes_lose_nothing(db: Path) -> None:
    context = multiprocessing.get_context("spawn")  # the default on macOS and Windows
    start = context.Event()
    processes = [
        context.Process(target=_writer, args=(str(db), worker, start)) for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    start.set()  # all open the fresh file, migrate and write at once
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * WORKERS
    stored = {row["span_id"] for row in rows(db, "SELECT span_id FROM spans")}
    expected = {
        make_record(n, worker=worker)["span_id"]
        for worker in range(WORKERS)
        for n in range(BATCHES * BATCH_SIZE)
    }
    assert stored == expected
    assert user_version(db) == SCHEMA_VERSION


def _export_in_child(exporter: SqliteExporter, parent_conn_id: int, result: Any) -> None:
    try:
        exporter.export([make_record(100)])
        conn = exporter._conn
        assert conn is not None
        result.put(("ok", id(conn) != parent_conn_id, exporter._pid == os.getpid()))
    except BaseException as error:
        result.put(("error", repr(error), False))
    finally:
        exporter.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() does not exist on Windows")
def test_forked_child_opens_its_own_connection(db: Path, exporter: SqliteExporter) -> None:
    exporter.export([make_record(1)])
    parent_conn = exporter._conn
    assert parent_conn is not None
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child = context.Process(target=_export_in_child, args=(exporter, id(parent_conn), result))
    child.start()
    outcome = result.get(timeout=60)
    child.join(60)
    assert outcome == ("ok", True, True)
    assert child.exitcode == 0
    # The parent closed its connection before the fork (a child must not inherit an open
    # database) and opens a new one for its next batch.
    assert exporter._conn is None
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        parent_conn.execute("SELECT 1")
    exporter.export([make_record(2)])
    assert exporter._conn is not None
    assert count(db) == 3


def _export_after_parent_shutdown(exporter: SqliteExporter) -> None:
    exporter.export([make_record(300)])
    exporter.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() does not exist on Windows")
def test_a_child_of_a_shut_down_exporter_can_export(db: Path) -> None:
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])
    exporter.shutdown()
    child = multiprocessing.get_context("fork").Process(
        target=_export_after_parent_shutdown, args=(exporter,)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert count(db) == 2
    with pytest.raises(RuntimeError, match="shut down"):
        exporter.export([make_record(2)])  # still shut down in the parent


def _export_with_inherited_lock(exporter: SqliteExporter) -> None:
    exporter.export([make_record(200)])
    exporter.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() does not exist on Windows")
def test_fork_while_the_lock_is_held_does_not_deadlock_the_child(
    db: Path, exporter: SqliteExporter
) -> None:
    exporter.export([make_record(1)])
    context = multiprocessing.get_context("fork")
    with exporter._lock:  # as if the flusher were mid-export when another thread forked
        child = context.Process(target=_export_with_inherited_lock, args=(exporter,))
        child.start()
        child.join(20)
        alive = child.is_alive()
        if alive:
            child.kill()
    assert not alive, "the child deadlocked on the lock it inherited"
    assert child.exitcode == 0
    assert count(db) == 2


def test_pid_change_without_fork_hook_reopens(
    db: Path, exporter: SqliteExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pid check also catches forks the at-fork hook did not see."""
    exporter.export([make_record(1)])
    old = exporter._conn
    monkeypatch.setattr(exporter, "_pid", -1)
    exporter.export([make_record(2)])
    assert exporter._conn is not None
    assert exporter._conn is not old
    assert old in sqlite_exporter._ABANDONED, "never closed: it belonged to the parent"
    assert count(db) == 2


# -- default path ----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("INSTRUMENTATION_SDK_DB", "XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    return home


def test_default_path_env_var_wins(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(clean_env / "custom" / "my.db"))
    assert default_db_path() == clean_env / "custom" / "my.db"


def test_default_path_env_var_expands_user(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", "~/spans.db")
    assert default_db_path() == Path("~/spans.db").expanduser()


@pytest.mark.skipif(sys.platform == "win32", reason="the XDG rule is for Linux and macOS")
def test_default_path_xdg(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))
    assert default_db_path() == clean_env / "xdg" / "instrumentation-sdk" / "spans.db"
    # Unset, empty or relative XDG_DATA_HOME: ~/.local/share (the XDG spec's rule).
    expected = clean_env / ".local" / "share" / "instrumentation-sdk" / "spans.db"
    for value in ("", "relative/dir"):
        monkeypatch.setenv("XDG_DATA_HOME", value)
        assert default_db_path() == expected
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == expected
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", "")  # empty: as if unset
    assert default_db_path() == expected


def test_default_path_windows(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))  # ignored on Windows
    monkeypatch.setenv("LOCALAPPDATA", str(clean_env / "AppData" / "Local"))
    assert default_db_path() == clean_env / "AppData" / "Local" / "instrumentation-sdk" / "spans.db"
    monkeypatch.delenv("LOCALAPPDATA")
    assert default_db_path() == clean_env / "AppData" / "Local" / "instrumentation-sdk" / "spans.db"


def test_exporter_without_path_uses_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "from-env" / "spans.db"
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(path))
    exporter = SqliteExporter()
    assert exporter.path == path
    exporter.export([make_record(1)])
    exporter.shutdown()
    assert count(path) == 1


# -- the field table -------------------------------------------------------------------------------


def test_every_record_field_has_its_column_after_migrating(db: Path) -> None:
    """The schema is written as migrations (never edited); the record's fields come from the
    core's table. A field added to the table without a migration fails here."""
    exporter = SqliteExporter(db)
    exporter.export([make_record(1)])
    exporter.shutdown()
    columns = {row["name"] for row in rows(db, "PRAGMA table_info(spans)")}
    fields = {column for _key, _type, _otlp, column in _core.record_fields()}
    assert fields <= columns, f"fields without a column: {sorted(fields - columns)}"
    assert columns - fields == {*sqlite_exporter.DERIVED_COLUMNS, "text_id"}
    assert [key for key, *_ in _core.record_fields()] == list(RECORD_KEYS)


def test_a_v1_database_gains_the_new_columns_and_keeps_its_rows(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO spans (span_id, trace_id, name, model, status, start_time_unix_nano, "
        "end_time_unix_nano, duration_ns, metadata) VALUES ('00000000000000aa', "
        "'000000000000000000000000000000bb', 'llm', 'gpt-4o', 'ok', 1, 2, 1, '{}')"
    )
    conn.close()
    exporter = SqliteExporter(db, max_age=0)  # keeps the old row (start 1 ns after 1970)
    record = make_record(
        2,
        events=[{"name": "retry", "time_unix_nano": 5, "attributes": {"attempt": 1}}],
        prompt=[{"role": "user", "content": "hi"}],
        completion="hello",
    )
    exporter.export([record])
    exporter.shutdown()
    assert user_version(db) == SCHEMA_VERSION
    stored = {row["span_id"]: row for row in rows(db)}
    assert stored["00000000000000aa"]["events"] == "[]"
    assert stored["00000000000000aa"]["prompt"] is None
    new = stored[record["span_id"]]
    assert json.loads(new["events"]) == record["events"]
    assert json.loads(new["prompt"]) == record["prompt"]
    assert json.loads(new["completion"]) == "hello"
