"""Process lifetime, in real subprocesses: exiting without flush() loses nothing, a hung exporter
cannot hold up interpreter exit beyond ``exit_timeout``, forked children (``os.fork``,
multiprocessing's fork start method, and a fork made from C that skips Python's at-fork hooks)
get their own empty pipeline and never export the parent's spans again, and several processes
can append to one JSONL file.

Every script writes spans with a ``JsonlExporter``; the test reads the file afterwards and checks
that each span id appears exactly once."""

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
from instrumentation_sdk import configure, shutdown
from instrumentation_sdk.exporters import InMemoryExporter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX processes")

PREAMBLE = """\
import json, os, sys, threading, time
import instrumentation_sdk as sdk
from instrumentation_sdk import llm_span, flush
from instrumentation_sdk.exporters import JsonlExporter

PATH = sys.argv[1]


def spans(tag, count, **kwargs):
    ids = []
    for i in range(count):
        with llm_span("gpt-4o", "openai", name=tag, **kwargs) as span:
            span.set_metadata("i", i)
        ids.append(span.span_id)
    return ids


def report(**values):
    # One line on stdout, written with os.write so it works in any child.
    os.write(1, (json.dumps(values) + "\\n").encode())
"""


@pytest.fixture(autouse=True)
def pipeline_in_this_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The test process itself gets a fresh in-memory pipeline, like the other test files."""
    for name in list(os.environ):
        if name.startswith("INSTRUMENTATION_SDK_") or name == "OTEL_SERVICE_NAME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(tmp_path / "default.db"))
    configure(exporter=InMemoryExporter(), flush_interval=0.05, exit_timeout=2.0)
    yield
    shutdown(timeout=5.0)


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("INSTRUMENTATION_SDK_") and name != "OTEL_SERVICE_NAME"
    }
    env["INSTRUMENTATION_SDK_DB"] = str(tmp_path / "default.db")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def write_script(tmp_path: Path, body: str, name: str = "script.py") -> Path:
    script = tmp_path / name
    script.write_text(PREAMBLE + "\n" + textwrap.dedent(body), "utf-8")
    return script


def run(
    tmp_path: Path,
    body: str,
    path: Path,
    timeout: float = 60.0,
    args: tuple[str, ...] = (),
    **env: str,
) -> subprocess.CompletedProcess[str]:
    script = write_script(tmp_path, body)
    return subprocess.run(
        [sys.executable, str(script), str(path), *args],
        env=child_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def reports(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "the file ends in a partial line"
    # JSON Lines are separated by b"\n" only (str.splitlines would also split at U+2028).
    return [json.loads(line.decode("utf-8")) for line in raw.split(b"\n") if line]


def assert_exactly_once(records: list[dict[str, Any]], expected_ids: list[str]) -> None:
    counts = Counter(record["span_id"] for record in records)
    duplicates = {span_id: n for span_id, n in counts.items() if n > 1}
    assert duplicates == {}, f"exported more than once: {duplicates}"
    missing = set(expected_ids) - set(counts)
    assert missing == set(), f"{len(missing)} of {len(expected_ids)} spans never exported"
    unexpected = set(counts) - set(expected_ids)
    assert unexpected == set(), f"unexpected spans: {unexpected}"


# -- exit --------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", ["environment", "configure"])
def test_exiting_without_flush_loses_nothing(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "spans.jsonl"
    body = """
    if sys.argv[2] == "configure":
        sdk.configure(exporter=JsonlExporter(PATH), batch_size=100, flush_interval=60)
    ids = spans("main", 2000)
    worker_ids = []
    thread = threading.Thread(target=lambda: worker_ids.extend(spans("thread", 50)))
    thread.start()
    thread.join()
    report(ids=ids + worker_ids)
    # no flush(): the interpreter's exit must export what is buffered
    """
    script = write_script(tmp_path, body)
    result = subprocess.run(
        [sys.executable, str(script), str(path), setup],
        env=child_env(
            tmp_path,
            INSTRUMENTATION_SDK_EXPORTER="jsonl",
            INSTRUMENTATION_SDK_JSONL_PATH=str(path),
            INSTRUMENTATION_SDK_FLUSH_INTERVAL="60",
            INSTRUMENTATION_SDK_BATCH_SIZE="100",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (made,) = reports(result)
    assert len(made["ids"]) == 2050
    assert_exactly_once(read_records(path), made["ids"])


def test_a_bad_environment_never_raises_at_span_time(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    body = """
    ids = spans("main", 20)
    report(ids=ids, settings=[sdk.get_settings().batch_size, sdk.get_settings().flush_interval])
    """
    result = run(
        tmp_path,
        body,
        path,
        INSTRUMENTATION_SDK_EXPORTER="jsonl",
        INSTRUMENTATION_SDK_JSONL_PATH=str(path),
        INSTRUMENTATION_SDK_BATCH_SIZE="lots",
        INSTRUMENTATION_SDK_FLUSH_INTERVAL="-1",
        INSTRUMENTATION_SDK_BUFFER_CAPACITY="0",
        INSTRUMENTATION_SDK_EXIT_TIMEOUT="nan",
    )
    assert result.returncode == 0, result.stderr
    (made,) = reports(result)
    assert made["settings"] == [512, 1.0]
    assert "INSTRUMENTATION_SDK_BATCH_SIZE" in result.stderr
    assert "INSTRUMENTATION_SDK_FLUSH_INTERVAL" in result.stderr
    assert "Traceback" not in result.stderr
    assert_exactly_once(read_records(path), made["ids"])


@pytest.mark.parametrize("capacity", [10**12, 2**62, 2**64], ids=["1e12", "2**62", "2**64"])
def test_an_impossible_buffer_capacity_is_a_value_error(tmp_path: Path, capacity: int) -> None:
    """configure() must answer a capacity it cannot allocate with ValueError, not abort the
    process (a 40 TB allocation), raise a Rust panic, or an OverflowError."""
    body = """
    try:
        sdk.configure(exporter="none", buffer_capacity=int(sys.argv[2]), batch_size=1)
        outcome = "accepted"
    except BaseException as error:
        outcome = type(error).__name__
    with llm_span("m"):
        pass
    report(outcome=outcome)
    """
    result = run(tmp_path, body, tmp_path / "unused.jsonl", args=(str(capacity),))
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[:400]}"
    assert reports(result) == [{"outcome": "ValueError"}], result.stderr[:400]


@pytest.mark.parametrize("capacity", [10**12, 2**62], ids=["1e12", "2**62"])
def test_an_impossible_buffer_capacity_in_the_environment_never_breaks_a_span(
    tmp_path: Path, capacity: int
) -> None:
    path = tmp_path / "spans.jsonl"
    body = """
    outcome = "ok"
    try:
        ids = spans("main", 3)
    except BaseException as error:
        outcome = type(error).__name__
        ids = []
    report(outcome=outcome, ids=ids)
    """
    result = run(
        tmp_path,
        body,
        path,
        INSTRUMENTATION_SDK_EXPORTER="jsonl",
        INSTRUMENTATION_SDK_JSONL_PATH=str(path),
        INSTRUMENTATION_SDK_BUFFER_CAPACITY=str(capacity),
    )
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[:400]}"
    (made,) = reports(result)
    assert made["outcome"] == "ok"
    assert_exactly_once(read_records(path), made["ids"])


@pytest.mark.parametrize("hang", ["event", "busy", "sleep"])
def test_a_hung_exporter_cannot_hold_up_exit_beyond_exit_timeout(tmp_path: Path, hang: str) -> None:
    path = tmp_path / "unused.jsonl"
    body = """
    class Hung:
        def export(self, batch):
            kind = sys.argv[2]
            if kind == "event":
                threading.Event().wait()
            elif kind == "busy":
                while True:
                    pass
            else:
                while True:
                    time.sleep(0.01)

    sdk.configure(exporter=Hung(), flush_interval=0.01, exit_timeout=0.5)
    spans("main", 50)
    time.sleep(0.1)  # the flusher is now stuck in export()
    report(ready=True)
    """
    script = write_script(tmp_path, body)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(path), hang],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert reports(result) == [{"ready": True}]
    # Start-up takes a fraction of a second; the default exit_timeout (5 s) must not apply.
    assert elapsed < 4.0, f"exit took {elapsed:.1f}s with exit_timeout=0.5"


def test_an_exporter_whose_shutdown_hangs_cannot_hold_up_exit(tmp_path: Path) -> None:
    """The exit hook calls the exporter's shutdown(); a hung one (a network close that never
    returns) must not keep the interpreter from exiting beyond about exit_timeout."""
    body = """
    class HangsOnClose:
        def export(self, batch):
            pass

        def shutdown(self):
            threading.Event().wait()

    sdk.configure(exporter=HangsOnClose(), flush_interval=0.01, exit_timeout=0.5)
    spans("main", 5)
    report(ready=True)
    """
    script = write_script(tmp_path, body)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "unused.jsonl")],
            env=child_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the interpreter was still exiting after 10 s (exit_timeout=0.5)")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert reports(result) == [{"ready": True}]
    assert elapsed < 4.0, f"exit took {elapsed:.1f}s with exit_timeout=0.5"


def test_exit_waits_for_a_slow_exporter_within_exit_timeout(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    body = """
    class Slow(JsonlExporter):
        def export_jsonl(self, lines):
            time.sleep(0.1)
            super().export_jsonl(lines)

    sdk.configure(exporter=Slow(PATH), batch_size=50, flush_interval=60, exit_timeout=10)
    report(ids=spans("main", 500))
    """
    result = run(tmp_path, body, path)
    assert result.returncode == 0, result.stderr
    (made,) = reports(result)
    assert_exactly_once(read_records(path), made["ids"])


# -- fork --------------------------------------------------------------------------------------


@pytest.mark.parametrize("child_exit", ["sys.exit", "os._exit after flush"])
def test_os_fork_child_starts_empty_and_parent_spans_are_exported_once(
    tmp_path: Path, child_exit: str
) -> None:
    path = tmp_path / "spans.jsonl"
    body = """
    sdk.configure(exporter=JsonlExporter(PATH), flush_interval=60, batch_size=500)
    parent_ids = spans("parent", 50)  # buffered, not flushed, when the process forks
    pid = os.fork()
    if pid == 0:
        child_ids = spans("child", 30)
        report(who="child", ids=child_ids, buffered=sdk.stats()["buffered"])
        if sys.argv[2] == "sys.exit":
            sys.exit(0)
        ok = flush(10)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    later_ids = spans("parent-after", 5)
    report(who="parent", ids=parent_ids + later_ids, child_status=os.waitstatus_to_exitcode(status))
    """
    script = write_script(tmp_path, body)
    result = subprocess.run(
        [sys.executable, str(script), str(path), child_exit],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    made = {r["who"]: r for r in reports(result)}
    assert made["parent"]["child_status"] == 0, result.stderr
    assert made["child"]["buffered"] == 30  # its own 30; the parent's 50 stayed behind
    records = read_records(path)
    assert_exactly_once(records, made["parent"]["ids"] + made["child"]["ids"])
    names = Counter(r["name"] for r in records)
    assert names == {"parent": 50, "child": 30, "parent-after": 5}


def test_os_fork_while_the_parent_is_exporting(tmp_path: Path) -> None:
    """The parent's flusher is inside JsonlExporter.export_jsonl (waiting for the file lock that
    another writer holds) when the process forks. The child inherits the exporter object; its own
    flusher must still be able to export the child's spans."""
    path = tmp_path / "spans.jsonl"
    body = """
    import fcntl
    holder = os.open(PATH, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's writer, mid-write
    sdk.configure(exporter=JsonlExporter(PATH), flush_interval=0.01)
    parent_ids = spans("parent", 3)
    assert not flush(0.3)  # the flusher is now blocked inside export_jsonl
    pid = os.fork()
    if pid == 0:
        os.close(holder)
        child_ids = spans("child", 2)
        ok = flush(3)
        report(who="child", ids=child_ids, flushed=ok)
        os._exit(0)
    time.sleep(0.2)
    fcntl.flock(holder, fcntl.LOCK_UN)  # the other writer finishes
    _, status = os.waitpid(pid, 0)
    report(who="parent", ids=parent_ids, flushed=flush(10))
    """
    result = run(tmp_path, body, path)
    assert result.returncode == 0, result.stderr
    made = {r["who"]: r for r in reports(result)}
    assert made["parent"]["flushed"]
    assert made["child"]["flushed"], "the child's flush() timed out: its exporter is stuck"
    assert_exactly_once(read_records(path), made["parent"]["ids"] + made["child"]["ids"])


def test_multiprocessing_fork_children_export_their_spans(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    body = """
    import multiprocessing

    def work(tag):
        return spans(tag, 20)

    if __name__ == "__main__":
        sdk.configure(exporter=JsonlExporter(PATH), flush_interval=60, batch_size=500)
        parent_ids = spans("parent", 10)  # still buffered at fork time
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()

        def process_work(tag):
            queue.put(work(tag))

        processes = [ctx.Process(target=process_work, args=(f"proc{i}",)) for i in range(2)]
        for process in processes:
            process.start()
        process_ids = [queue.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(30)
        pool = ctx.Pool(2)
        pool_ids = pool.map(work, [f"pool{i}" for i in range(4)])
        pool.close()
        pool.join()
        report(
            ids=parent_ids + [i for ids in process_ids + pool_ids for i in ids],
            exitcodes=[p.exitcode for p in processes],
        )
    """
    result = run(tmp_path, body, path)
    assert result.returncode == 0, result.stderr
    (made,) = reports(result)
    assert made["exitcodes"] == [0, 0]
    records = read_records(path)
    assert_exactly_once(records, made["ids"])
    assert len(records) == 10 + 2 * 20 + 4 * 20


def test_multiprocessing_children_export_when_the_parent_made_no_spans(tmp_path: Path) -> None:
    """A common shape: the parent only starts workers (the SDK configured by the environment,
    started lazily on the first span) and each fork child makes spans and returns.
    multiprocessing ends its children with os._exit(), so the child needs the SDK's exit hook
    even though its parent never started a pipeline."""
    path = tmp_path / "spans.jsonl"
    body = """
    import multiprocessing

    def work(tag):
        return spans(tag, 20)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()

        def process_work(tag):
            queue.put(work(tag))

        processes = [ctx.Process(target=process_work, args=(f"proc{i}",)) for i in range(2)]
        for process in processes:
            process.start()
        ids = [i for _ in processes for i in queue.get(timeout=30)]
        for process in processes:
            process.join(30)
        report(ids=ids, exitcodes=[p.exitcode for p in processes])
    """
    result = run(
        tmp_path,
        body,
        path,
        INSTRUMENTATION_SDK_EXPORTER="jsonl",
        INSTRUMENTATION_SDK_JSONL_PATH=str(path),
        INSTRUMENTATION_SDK_FLUSH_INTERVAL="60",
    )
    assert result.returncode == 0, result.stderr
    (made,) = reports(result)
    assert made["exitcodes"] == [0, 0]
    assert len(made["ids"]) == 40
    assert_exactly_once(read_records(path), made["ids"])


C_FORK = """
import ctypes
# PyDLL keeps the GIL across the call, so no other Python thread runs at the fork instant.
libc = ctypes.PyDLL(None, use_errno=True)
libc.fork.restype = ctypes.c_int


def c_fork():
    # fork(2) straight from C: os.register_at_fork hooks do not run (as under uWSGI).
    return libc.fork()


def settle():
    # Let the flusher finish the drain that flush() started and go back to waiting (detached),
    # so it holds no lock when the process forks. Only the child's minimal work follows.
    time.sleep(0.2)


def wait_child(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "killed"
"""


def test_c_level_fork_child_gets_its_own_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    body = C_FORK + textwrap.dedent(
        """
    sdk.configure(exporter=JsonlExporter(PATH), flush_interval=60, batch_size=500)
    exported_ids = spans("parent-flushed", 2)
    assert flush(10)
    settle()
    buffered_ids = spans("parent", 3)  # still in the parent's buffer at fork time
    assert sdk.stats()["buffered"] == 3
    pid = c_fork()
    if pid == 0:
        child_ids = spans("child", 3)
        ok = flush(5)
        report(who="child", ids=child_ids, flushed=ok)
        os._exit(0)
    code = wait_child(pid)
    report(who="parent", ids=exported_ids + buffered_ids, child=code)
    """
    )
    result = run(tmp_path, body, path)
    assert result.returncode == 0, result.stderr
    made = {r["who"]: r for r in reports(result)}
    assert made["parent"]["child"] == 0, result.stderr
    assert made["child"]["flushed"]
    records = read_records(path)
    names = Counter(r["name"] for r in records)
    assert names["child"] == 3, f"the child exported {names['child']} of its 3 spans: {names}"
    assert_exactly_once(records, made["parent"]["ids"] + made["child"]["ids"])


def test_flush_in_a_c_level_forked_child_does_not_wait_for_the_parents_spans(
    tmp_path: Path,
) -> None:
    """Nothing ended in the child yet; the parent's buffered spans are not the child's to wait
    for (its flusher thread does not exist in the child), so flush() has nothing to do."""
    path = tmp_path / "spans.jsonl"
    body = C_FORK + textwrap.dedent(
        """
    sdk.configure(exporter=JsonlExporter(PATH), flush_interval=60, batch_size=500)
    assert flush(10)
    settle()
    parent_ids = spans("parent", 3)  # buffered at fork time
    assert sdk.stats()["buffered"] == 3
    pid = c_fork()
    if pid == 0:
        started = time.monotonic()
        ok = flush(2.0)
        report(who="child", flushed=ok, seconds=time.monotonic() - started)
        os._exit(0)
    code = wait_child(pid)
    report(who="parent", ids=parent_ids, child=code)
    """
    )
    result = run(tmp_path, body, path)
    assert result.returncode == 0, result.stderr
    made = {r["who"]: r for r in reports(result)}
    assert made["parent"]["child"] == 0
    assert made["child"]["flushed"], made["child"]
    assert made["child"]["seconds"] < 1.0, made["child"]
    assert_exactly_once(read_records(path), made["parent"]["ids"])


# -- several processes, one file ---------------------------------------------------------------


def test_several_processes_append_to_one_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    path.write_text('{"span_id": "pre-existing"}\n', "utf-8")
    body = """
    tag = sys.argv[2]
    sdk.configure(exporter=JsonlExporter(PATH), batch_size=16, flush_interval=0.001)
    ids = []
    for i in range(300):
        with llm_span("gpt-4o", name=tag) as span:
            span.set_metadata("pad", tag * 3000)
        ids.append(span.span_id)
    report(ids=ids)
    """
    script = write_script(tmp_path, body)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), f"w{i}"],
            env=child_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    expected: list[str] = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        expected.extend(json.loads(out.strip().splitlines()[-1])["ids"])
    records = read_records(path)  # every line parses: no interleaving
    assert records[0] == {"span_id": "pre-existing"}
    records = records[1:]
    assert len(records) == 1200
    assert_exactly_once(records, expected)
    for record in records:
        assert record["metadata"]["pad"] == record["name"] * 3000
    assert Counter(r["name"] for r in records) == {f"w{i}": 300 for i in range(4)}
