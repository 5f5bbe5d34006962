"""Pipeline benchmarks: sustained throughput through the flusher, and memory under a stalled
exporter.

* ``pipeline_throughput`` (``jsonl``, ``sqlite``): 4 producer threads each end ``N`` spans
  (``llm_span`` + three ``set_metadata``, as in ``test_bench_spans.py``); one round is the wall
  time from starting the producers until ``flush()`` returns, i.e. until the last span is in the
  file. The buffer holds every span of a round, so nothing may be lost: each round asserts
  exported == produced, dropped == 0, and that the file holds exactly that many lines/rows.
  ``extra_info["spans_per_s"]`` is spans per round / the median round's wall time.
* ``pipeline_memory``: 1 M spans while the exporter is stalled (its ``export`` blocks on an
  ``Event``). The buffer (16,384 spans) fills, then every further span is dropped and counted:
  resident memory may grow by the buffer's worth at most, and
  ``dropped_buffer_full == 1M - capacity - the batch the exporter holds``. The exporter is then
  released and the pipeline shut down with a short timeout, after which every span is exported
  or dropped. Linux only (reads ``/proc/self/statm``).

Under plain ``pytest`` (``--benchmark-disable``) the throughput cases run one small round (a
smoke test); the memory case always makes its 1 M spans (about 5 s).

    python -m pytest benches/test_bench_pipeline.py --benchmark-enable \
        --benchmark-json=/tmp/bench-pipeline.json -p no:cacheprovider -q
    python benches/report.py /tmp/bench-pipeline.json
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import configure, flush, llm_span, shutdown, stats
from instrumentation_sdk.exporters import JsonlExporter, SqliteExporter
from instrumentation_sdk.processors import drop_keys

PRODUCERS = 4
BATCH_SIZE = 512
ROUNDS = 3
# Spans per producer and round, enabled / smoke. SQLite is the slower sink (one transaction per
# batch of 512 into a table with four indexes); both take a few seconds per round on 2 cores.
SPANS_PER_PRODUCER = {
    "jsonl": (150_000, 2_000),
    "jsonl_drop_keys": (150_000, 2_000),
    "sqlite": (25_000, 2_000),
}

MEMORY_SPANS = 1_000_000
MEMORY_CAPACITY = 16_384
SPAN_BYTES_BOUND = 2048  # per buffered span: its record, metadata and queue slot, generously
RSS_SLACK = 50 * 1024 * 1024  # allocator arenas, the interpreter's own growth, page rounding

_ACCOUNTING = (
    "produced",
    "exported",
    "dropped",
    "buffered",
    "dropped_buffer_full",
    "dropped_export_failed",
    "dropped_after_shutdown",
)


def _accounting() -> dict[str, int]:
    figures = stats()
    return {k: figures[k] for k in _ACCOUNTING}


def _delta(before: dict[str, int]) -> dict[str, int]:
    after = _accounting()
    return {k: after[k] - before[k] for k in _ACCOUNTING}


def one_span(user_id: str) -> None:
    with llm_span("gpt-4o", "openai", user_id=user_id) as span:
        span.set_metadata("prompt_tokens", 12)
        span.set_metadata("completion_tokens", 40)
        span.set_metadata("actual_model", "gpt-4o-2024-08-06")


def produce(spans: int, user_id: str) -> None:
    for _ in range(spans):
        one_span(user_id)


@pytest.fixture
def pipeline_teardown() -> Iterator[None]:
    yield
    shutdown(10.0)


# --------------------------------------------------------------------------------------------
# Sustained throughput
# --------------------------------------------------------------------------------------------


def _jsonl_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def _sqlite_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
    finally:
        conn.close()


SINKS: dict[str, tuple[Callable[[Path], Any], Callable[[Path], int], str]] = {
    "jsonl": (JsonlExporter, _jsonl_lines, "spans-{}.jsonl"),
    # The same with one built-in (Rust) processor, a field filter that removes a key every span
    # has: the processor stage's cost on the flusher (issue: at most 10% of throughput).
    "jsonl_drop_keys": (JsonlExporter, _jsonl_lines, "spans-{}.jsonl"),
    "sqlite": (SqliteExporter, _sqlite_rows, "spans-{}.db"),
}
PROCESSORS: dict[str, list[Any]] = {"jsonl_drop_keys": [drop_keys("actual_model")]}


@pytest.mark.benchmark(group="pipeline_throughput")
@pytest.mark.parametrize("sink", ["jsonl", "jsonl_drop_keys", "sqlite"])
def test_pipeline_throughput(benchmark, sink, tmp_path, pipeline_teardown):
    """4 producer threads -> the Rust buffer -> the flusher -> a file, until flush() returns."""
    make_exporter, count_written, file_name = SINKS[sink]
    per_producer = SPANS_PER_PRODUCER[sink][0 if benchmark.enabled else 1]
    total = PRODUCERS * per_producer
    capacity = total + BATCH_SIZE  # room for the whole round: any drop is a bug
    rounds: list[dict[str, Any]] = []

    def setup() -> tuple[tuple[Path, dict[str, int]], dict[str, Any]]:
        path = tmp_path / file_name.format(len(rounds))
        configure(
            exporter=make_exporter(path),
            batch_size=BATCH_SIZE,
            flush_interval=1.0,
            buffer_capacity=capacity,
            processors=PROCESSORS.get(sink, []),
        )
        return (path, _accounting()), {}

    def one_round(path: Path, before: dict[str, int]) -> None:
        start = time.perf_counter()
        threads = [
            threading.Thread(target=produce, args=(per_producer, f"user-{i}"))
            for i in range(PRODUCERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        produced = time.perf_counter()
        backlog = _accounting()["buffered"]
        flushed = flush(300.0)
        end = time.perf_counter()
        rounds.append(
            {
                "path": path,
                "wall": end - start,
                "produce": produced - start,
                "backlog": backlog,
                "flushed": flushed,
                "delta": _delta(before),
            }
        )

    benchmark.pedantic(one_round, setup=setup, rounds=ROUNDS, iterations=1)

    for r in rounds:
        delta = r["delta"]
        assert r["flushed"], f"flush() timed out: {delta}"
        assert delta["produced"] == total, delta
        assert delta["dropped"] == 0, delta
        assert delta["exported"] == total, delta
        assert delta["buffered"] == 0, delta
    shutdown(10.0)  # close the last file before counting what it holds
    for r in rounds:
        assert count_written(r["path"]) == total, r["path"]
    for written in tmp_path.iterdir():  # up to ~250 MB per JSONL round
        written.unlink()

    walls = [r["wall"] for r in rounds]
    benchmark.extra_info.update(
        suite="pipeline",
        exporter=sink,
        producers=PRODUCERS,
        spans_per_producer=per_producer,
        spans_per_round=total,
        buffer_capacity=capacity,
        batch_size=BATCH_SIZE,
        spans_per_s=round(total / statistics.median(walls)),
        spans_per_s_best=round(total / min(walls)),
        spans_per_s_rounds=[round(total / w) for w in walls],
        # Per round: seconds until the producers were done, and the spans still to export then.
        produce_s_rounds=[round(r["produce"], 3) for r in rounds],
        backlog_rounds=[r["backlog"] for r in rounds],
        accounting=rounds[-1]["delta"],
    )


# --------------------------------------------------------------------------------------------
# Memory with a stalled exporter
# --------------------------------------------------------------------------------------------


class StalledExporter:
    """An exporter that stops: ``export`` blocks until ``release()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.exported = 0

    def export(self, batch: list[dict[str, Any]]) -> None:
        self.entered.set()
        self.released.wait()
        self.exported += len(batch)

    def release(self) -> None:
        self.released.set()


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def stalled_exporter_scenario() -> dict[str, Any]:
    """Run in a fresh interpreter (see the test): 1 M spans into a stalled pipeline."""
    exporter = StalledExporter()
    configure(
        exporter=exporter,
        batch_size=BATCH_SIZE,
        flush_interval=0.05,
        buffer_capacity=MEMORY_CAPACITY,
        exit_timeout=2.0,
    )
    before = _accounting()
    warm_up = 1000
    try:
        produce(warm_up, "warm-up")  # the first batch goes to the exporter, which stalls on it
        assert exporter.entered.wait(10.0), "the flusher never called export()"
        gc.collect()
        rss_before = _rss_bytes()
        start = time.perf_counter()
        produce(MEMORY_SPANS - warm_up, "stalled")
        seconds = time.perf_counter() - start
        gc.collect()
        rss_after = _rss_bytes()
        during = _delta(before)
    finally:
        exporter.release()
    shut_down = shutdown(5.0)
    return {
        "rss_before": rss_before,
        "rss_after": rss_after,
        "produce_seconds": seconds,
        "during": during,
        "after": _delta(before),
        "shut_down": shut_down,
        "exporter_received": exporter.exported,
    }


@pytest.mark.benchmark(group="pipeline_memory")
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/statm"),
    reason="reads resident memory from /proc/self/statm (Linux only)",
)
def test_memory_bounded_with_stalled_exporter(benchmark):
    """1 M spans into a 16,384-span buffer whose exporter never returns: memory stays bounded
    and every span is accounted for (buffered, held by the exporter, or dropped and counted).

    Runs in a fresh interpreter: in this one, earlier benchmarks have left hundreds of MB of
    freed-but-resident heap that would absorb any growth and make the check meaningless.
    """
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "import test_bench_pipeline as bench; "
        "print(json.dumps(bench.stalled_exporter_scenario()))"
    )

    def run() -> dict[str, Any]:
        child = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        return json.loads(child.stdout.strip().splitlines()[-1])

    # One round of one call: pedantic only so the figures land in the benchmark JSON.
    result = benchmark.pedantic(run, rounds=1, iterations=1)
    during, after = result["during"], result["after"]
    growth = result["rss_after"] - result["rss_before"]
    bound = MEMORY_CAPACITY * SPAN_BYTES_BOUND + RSS_SLACK
    in_flight = during["buffered"] - MEMORY_CAPACITY  # the batch the stalled exporter holds
    benchmark.extra_info.update(
        suite="pipeline",
        exporter="stalled",
        spans=MEMORY_SPANS,
        buffer_capacity=MEMORY_CAPACITY,
        batch_size=BATCH_SIZE,
        rss_before=result["rss_before"],
        rss_after=result["rss_after"],
        rss_growth=growth,
        rss_bound=bound,
        in_flight=in_flight,
        produce_seconds=result["produce_seconds"],
        accounting_stalled=during,
        accounting_after_release=after,
    )

    # While stalled: the buffer is full, the exporter holds one batch, the rest was dropped.
    assert during["produced"] == MEMORY_SPANS, during
    assert during["exported"] == 0, during
    assert 0 < in_flight <= BATCH_SIZE, during
    assert during["dropped_buffer_full"] == MEMORY_SPANS - MEMORY_CAPACITY - in_flight, during
    assert during["dropped"] == during["dropped_buffer_full"], during
    assert growth < bound, f"RSS grew by {growth / 2**20:.1f} MiB (bound {bound / 2**20:.0f} MiB)"

    # Released: what was held is exported within the short shutdown timeout, nothing else lost.
    assert result["shut_down"], f"shutdown(5.0) timed out: {after}"
    assert result["exporter_received"] == MEMORY_CAPACITY + in_flight, result
    assert after["exported"] == MEMORY_CAPACITY + in_flight, after
    assert after["buffered"] == 0, after
    assert after["produced"] == after["exported"] + after["dropped"], after
