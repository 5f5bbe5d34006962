"""The local stores under real faults: a write that fails part way (a file-size limit), a JSON
Lines file deleted or its directory replaced while a service runs, a fork while the flusher is
inside a SQLite transaction. Each case checks that nothing counted as exported is missing,
nothing is duplicated, and no line is torn or fused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import configure, flush, llm_span, shutdown, stats
from instrumentation_sdk import pipeline as sdk_pipeline
from instrumentation_sdk.exporters import InMemoryExporter, JsonlExporter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX processes")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("INSTRUMENTATION_SDK_") or name == "OTEL_SERVICE_NAME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(tmp_path / "default.db"))
    monkeypatch.setenv("INSTRUMENTATION_SDK_RETRY_BACKOFF", "0.01")
    # The faults these tests cause stay out of other tests' stats().
    monkeypatch.setattr(sdk_pipeline, "_faults", sdk_pipeline._Faults())
    configure(exporter=InMemoryExporter(), flush_interval=0.05, exit_timeout=2.0)
    yield
    shutdown(timeout=5.0)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON Lines file, each one whole JSON (a fused or torn line fails)."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the file ends in a partial line"
    records = []
    for number, line in enumerate(raw.split(b"\n")[:-1], 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"line {number} is not one JSON record: {line[:200]!r}") from None
    return records


def span_ids(records: list[dict[str, Any]]) -> list[str]:
    ids = [record["span_id"] for record in records]
    duplicates = {span_id: n for span_id, n in Counter(ids).items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} spans in the file more than once"
    return ids


def run_script(tmp_path: Path, body: str, *args: str, **env: str) -> dict[str, Any]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body), "utf-8")
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("INSTRUMENTATION_SDK_") and name != "OTEL_SERVICE_NAME"
    }
    environ.update(env)
    result = subprocess.run(
        [sys.executable, str(script), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    report: dict[str, Any] = json.loads(lines[-1])
    report["stderr"] = result.stderr[-2000:]
    return report


# -- JSON Lines: a write that fails part way ----------------------------------------------------

FILE_SIZE_LIMIT = """\
import json, os, resource, signal, sys, time
import instrumentation_sdk as sdk
from instrumentation_sdk import llm_span
from instrumentation_sdk.exporters import JsonlExporter

path, fault = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
sdk.configure(exporter=JsonlExporter(path), batch_size=512, flush_interval=60.0,
              export_retries=2)


def spans(count):
    for i in range(count):
        with llm_span("gpt-4o", "openai") as span:
            span.set_metadata("padding", "x" * 200)


spans(100)
assert sdk.flush(10.0)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
# Room for a few lines of the next batch (about 100 KB): the write lands part way, then fails.
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 3000, hard))
spans(300)
sdk.flush(0)  # wakes the flusher
if fault == "clears":
    deadline = time.monotonic() + 20
    while sdk.stats()["export_errors"] == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # before the first retry
    assert sdk.flush(20.0)
else:
    assert sdk.flush(20.0)  # every retry fails: the batch is dropped
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
spans(50)
assert sdk.flush(10.0)
figures = sdk.stats()
print(json.dumps({key: figures[key] for key in ("produced", "exported", "dropped",
                                                "export_errors")}))
"""


@pytest.mark.parametrize("fault", ["clears", "outlasts"])
def test_a_write_failing_part_way_lands_whole_or_not_at_all(tmp_path: Path, fault: str) -> None:
    """RLIMIT_FSIZE lets part of a batch's write land, then fails it. Whether the limit is
    lifted before the retry or outlasts every retry, the file holds whole lines only, each span
    once, and exactly as many as stats() counts as exported."""
    path = tmp_path / "spans.jsonl"
    figures = run_script(
        tmp_path, FILE_SIZE_LIMIT, str(path), fault, INSTRUMENTATION_SDK_RETRY_BACKOFF="0.3"
    )
    ids = span_ids(read_lines(path))
    assert figures["export_errors"] >= 1, figures  # the fault happened
    assert len(ids) == figures["exported"], figures
    assert figures["produced"] == 450
    if fault == "clears":
        assert figures["exported"] == 450, figures
    else:
        assert figures["exported"] == 150, figures  # the 300 were dropped, counted
        assert figures["dropped"] == 300, figures


# -- JSON Lines: the file deleted or replaced ----------------------------------------------------


def make_spans(tag: str, count: int) -> set[str]:
    ids = set()
    for _ in range(count):
        with llm_span("gpt-4o", "openai", name=tag) as span:
            pass
        ids.add(span.span_id)
    return ids


def test_a_deleted_or_replaced_jsonl_file_is_reopened(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    path = directory / "spans.jsonl"
    before = stats()  # stats() sums every pipeline this process configured
    configure(exporter=JsonlExporter(path), flush_interval=0.05, export_retries=1)
    make_spans("before", 20)
    assert flush(5.0)
    path.unlink()  # `rm spans.jsonl` while the service runs
    after_delete = make_spans("after_delete", 30)
    assert flush(5.0)
    assert set(span_ids(read_lines(path))) == after_delete

    directory.rename(tmp_path / "logs.old")  # the directory moved away: recreated
    after_move = make_spans("after_move", 40)
    assert flush(5.0)
    assert set(span_ids(read_lines(path))) == after_move

    directory.rename(tmp_path / "logs.older")
    directory.write_text("not a directory")  # the path cannot be created: counted as failed
    lost = make_spans("lost", 10)
    assert flush(5.0)
    figures = stats()
    assert figures["dropped_export_failed"] - before["dropped_export_failed"] == len(lost)
    assert str(path) in figures["last_export_error"]["JsonlExporter"], figures
    directory.unlink()
    last = make_spans("last", 5)
    assert flush(5.0)
    assert set(span_ids(read_lines(path))) == last
    in_files = [
        *read_lines(tmp_path / "logs.old" / "spans.jsonl"),
        *read_lines(tmp_path / "logs.older" / "spans.jsonl"),
        *read_lines(path),
    ]
    # Everything counted as exported is in a file (the first 20 went with the deleted file).
    exported = stats()["exported"] - before["exported"]
    assert len(in_files) + 20 == exported == 20 + 30 + 40 + 5


# -- SQLite: a fork while the flusher is inside a transaction ------------------------------------

FORK_MID_TRANSACTION = """\
import json, os, sqlite3, sys, threading, time
import instrumentation_sdk as sdk
from instrumentation_sdk import llm_span
from instrumentation_sdk.exporters import SqliteExporter

path, children = sys.argv[1], int(sys.argv[2])
in_transaction = threading.Event()


class SlowCommitExporter(SqliteExporter):
    # Each batch holds its transaction (the write lock taken, rows inserted) a moment before
    # COMMIT, so a fork lands inside it.
    def _connection(self):
        conn = super()._connection()
        conn.set_trace_callback(self._trace)
        return conn

    def _trace(self, statement):
        if statement == "COMMIT" and os.getpid() == parent:
            in_transaction.set()
            time.sleep(0.02)
            in_transaction.clear()


parent = os.getpid()
sdk.configure(exporter=SlowCommitExporter(path), flush_interval=0.05, batch_size=64)
busy = True


def produce():
    while busy:
        with llm_span("gpt-4o", "openai", name="parent"):
            pass
        time.sleep(0.0005)


producer = threading.Thread(target=produce)
producer.start()
pids = []
for child in range(children):
    assert in_transaction.wait(10)  # the flusher is between BEGIN and COMMIT
    pid = os.fork()
    if pid == 0:
        for _ in range(50):
            with llm_span("gpt-4o", "openai", name=f"child{child}"):
                pass
        flushed = sdk.flush(10.0)
        figures = sdk.stats()
        if not flushed or figures["exported"] != 50:
            os.write(2, f"child{child}: {figures}\\n".encode())
            os._exit(3)
        os._exit(0)
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
busy = False
producer.join()
assert sdk.flush(10.0)
print(json.dumps({"codes": codes}))
"""


def test_children_forked_mid_transaction_export_their_spans(tmp_path: Path) -> None:
    """Children forked while the parent's flusher holds a SQLite write transaction each store
    all their spans within the flush timeout: none inherits the parent's lock state."""
    import sqlite3

    path = tmp_path / "spans.db"
    children = 12
    report = run_script(tmp_path, FORK_MID_TRANSACTION, str(path), str(children))
    assert report["codes"] == [0] * children, report
    with sqlite3.connect(path) as conn:
        counts = dict(conn.execute("SELECT name, count(*) FROM spans GROUP BY name").fetchall())
    assert {f"child{child}": 50 for child in range(children)}.items() <= counts.items(), counts
    assert counts["parent"] > 0


# -- the flusher: caller objects that are slow to encode ------------------------------------------


class SlowRepr:
    """msgspec cannot encode it, so the flusher falls back to its repr(), which is slow."""

    calls = 0

    def __repr__(self) -> str:
        SlowRepr.calls += 1
        time.sleep(0.6)  # over the flusher's encoding budget (0.5 s per batch) by itself
        return "slow"


@pytest.mark.parametrize("exporter_kind", ["records", "jsonl"])
def test_a_slow_repr_does_not_stall_export(tmp_path: Path, exporter_kind: str) -> None:
    """Ten spans with an object whose repr() takes 0.6 s, in one batch: the first spends the
    batch's encoding budget, the other nine are recorded by their type name without calling
    repr(), and every replacement is counted as unencodable."""
    SlowRepr.calls = 0
    before = stats()["unencodable"]  # stats() sums every pipeline this process configured
    memory = InMemoryExporter()
    path = tmp_path / "spans.jsonl"
    chosen = memory if exporter_kind == "records" else JsonlExporter(path)
    configure(exporter=chosen, flush_interval=60.0, batch_size=64)
    for _ in range(10):
        with llm_span("gpt-4o", "openai") as span:
            span.set_metadata("odd", SlowRepr())
    assert flush(20.0)
    values = [
        record["metadata"]["odd"]
        for record in (memory.spans if exporter_kind == "records" else read_lines(path))
    ]
    assert SlowRepr.calls == 1, SlowRepr.calls  # nine repr() calls never made
    assert values.count("slow") == 0  # the one that went over the budget is named too
    assert values == ["<SlowRepr: not encoded, over the flusher's time budget>"] * 10
    assert stats()["unencodable"] - before == 10


# -- SQLite: retention ---------------------------------------------------------------------------


def test_the_store_stays_at_its_byte_bound_with_the_newest_spans(tmp_path: Path) -> None:
    """200,000 spans through a store bounded to 4 MiB: its pages in use never pass the bound
    by more than a batch, the file stops growing near it, the newest spans are all there, and
    every span deleted is counted (stored + evicted == exported)."""
    import sqlite3

    path = tmp_path / "spans.db"
    bound = 4 << 20
    before = stats()
    configure(exporter="sqlite", sqlite_path=path, store_max_bytes=bound, flush_interval=0.05)
    newest: list[str] = []
    for _ in range(40):
        newest = []
        for _ in range(5000):
            with llm_span("gpt-4o", "openai") as span:
                span.set_metadata("prompt_tokens", 12)
            newest.append(span.span_id)
        assert flush(30.0)
    figures = stats()
    exported = figures["exported"] - before["exported"]
    evicted = figures["evicted"] - before["evicted"]
    assert exported == 200_000, figures
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        kept = {row[0] for row in conn.execute("SELECT span_id FROM spans")}
    assert (pages - free) * page_size <= bound
    assert pages * page_size <= bound + (1 << 20)  # the file: the bound and one batch or so
    assert stored + evicted == exported, (stored, evicted)
    assert 0 < stored < exported
    assert set(newest[-1000:]) <= kept  # the newest are kept; the oldest went first


def test_the_store_drops_spans_older_than_its_age_bound(tmp_path: Path) -> None:
    from instrumentation_sdk.exporters import SqliteExporter

    path = tmp_path / "spans.db"
    exporter = SqliteExporter(path, max_age=3600)
    now = time.time_ns()
    records = [
        {
            "trace_id": "0" * 31 + "1",
            "span_id": f"{index:016x}",
            "parent_span_id": None,
            "name": "llm",
            "model": "gpt-4o",
            "provider": None,
            "service_name": "svc",
            "user_id": None,
            "session_id": None,
            "status": "ok",
            "error_type": None,
            "error_message": None,
            "start_time_unix_nano": now - age * 1_000_000_000,
            "end_time_unix_nano": now - age * 1_000_000_000 + 1,
            "metadata": {},
        }
        for index, age in enumerate([7200, 7200, 3000, 10])
    ]
    exporter.export(records)
    assert exporter.evicted == 2
    import sqlite3

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 2
    exporter.shutdown()
    with pytest.raises(ValueError, match="max_bytes"):
        SqliteExporter(path, max_bytes=-1)
    with pytest.raises(ValueError, match="store_max_age"):
        configure(store_max_age=float("nan"))


# -- one span's size -----------------------------------------------------------------------------


@pytest.mark.parametrize("exporter_kind", ["records", "jsonl"])
def test_one_span_is_bounded_by_max_span_bytes(tmp_path: Path, exporter_kind: str) -> None:
    """Hostile spans: 5,000 metadata keys of 16 KB values, a 10 MB key, 10 MB text fields. Each
    exported span stays within max_span_bytes, every text field and key within max_value_bytes
    (plus the marker), and every cut is counted in truncated."""
    memory = InMemoryExporter()
    path = tmp_path / "spans.jsonl"
    chosen = memory if exporter_kind == "records" else JsonlExporter(path)
    bound = 64 << 10
    before = stats()["truncated"]
    configure(exporter=chosen, flush_interval=0.05, max_span_bytes=bound, max_value_bytes=1024)
    huge = "h" * (10 << 20)
    with llm_span("gpt-4o", "openai") as many_keys:
        for index in range(5000):
            many_keys.set_metadata(f"key{index}", "v" * 16_000)
    with llm_span("gpt-4o", "openai") as huge_key:
        huge_key.set_metadata(huge, 1)
    with llm_span(huge, huge, user_id=huge, session_id=huge, service_name=huge):
        pass
    assert flush(20.0)
    records = memory.spans if exporter_kind == "records" else read_lines(path)
    assert len(records) == 3
    for record in records:
        assert len(json.dumps(record)) <= bound
        for key in ("model", "provider", "user_id", "session_id", "service_name"):
            assert len(record[key] or "") <= 1024 + 64, key
        assert all(len(key) <= 1024 + 64 for key in record["metadata"])
    kept = len(records[0]["metadata"])
    assert 0 < kept < 5000
    # The values kept, each cut to 1024 bytes; the entries left out; the key; 5 text fields.
    assert stats()["truncated"] - before == kept + (5000 - kept) + 1 + 5
