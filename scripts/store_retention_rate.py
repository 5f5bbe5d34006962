"""The SQLite store's write rate as it fills past its byte bound, against the same store
unbounded: ``python scripts/store_retention_rate.py 32`` (MiB; 0 for unbounded).

Writes 12 windows of 100 batches of 512 records (~300 B each) straight to a ``SqliteExporter``
in a temporary directory and prints the spans per second of each window."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from instrumentation_sdk.exporters import SqliteExporter


def record(index: int, now: int) -> dict[str, Any]:
    return {
        "trace_id": f"{index:032x}",
        "span_id": f"{index:016x}",
        "parent_span_id": None,
        "name": "llm",
        "model": "gpt-4o",
        "provider": "openai",
        "service_name": "svc",
        "user_id": "u1",
        "session_id": None,
        "status": "ok",
        "error_type": None,
        "error_message": None,
        "start_time_unix_nano": now + index,
        "end_time_unix_nano": now + index + 5,
        "metadata": {"prompt_tokens": 12, "completion_tokens": 40, "note": "x" * 60},
    }


def main() -> None:
    bound = int(float(sys.argv[1]) * (1 << 20)) if len(sys.argv) > 1 else 32 << 20
    path = Path(tempfile.mkdtemp()) / "spans.db"
    exporter = SqliteExporter(path, max_bytes=bound)
    now = time.time_ns()
    index = 0
    rates = []
    for _window in range(12):
        started = time.perf_counter()
        for _batch in range(100):
            exporter.export([record(index + k, now) for k in range(512)])
            index += 512
        rates.append(f"{51_200 / (time.perf_counter() - started) / 1000:.0f}k")
    size = path.stat().st_size / (1 << 20)
    print(
        f"bound {bound / (1 << 20):g} MiB, spans/s per window of 51,200: {' '.join(rates)}; "
        f"file {size:.0f} MiB; evicted {exporter.evicted}"
    )
    exporter.shutdown()


if __name__ == "__main__":
    main()
