"""The dashboard's API at size: answer times of ``instrumentation-sdk ui`` over a store of
1,000,000 spans (30 days of 6 models, 5 services, 2% errors, a third streamed), and over a
second store of 1,000,000 spans whose errors (5%) each carry a request id in their message
(~50,000 distinct texts: what free-text filters meet in real stores).

Each case is one HTTP GET to the real server (a subprocess, uvicorn), timed from the request to
the parsed answer, so it includes HTTP and JSON. The baseline in the same run is what the CLI
does for the same question today: ``store.span_stats`` (``instrumentation-sdk stats``), exact
percentiles over every span of the window read into Python.

The store is built once (minutes for 1 M spans, through the real exporter: rollups and text
index kept per batch) and kept under ``.benchmarks/`` for the next run, keyed by its size and
schema version. Under plain ``pytest`` (``--benchmark-disable``)
the store has 20,000 spans and each case runs once: a smoke test of every query. The real run::

    python -m pytest benches/test_bench_ui.py --benchmark-enable -p no:cacheprovider -q
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from instrumentation_sdk.exporters.rollups import HOUR_NS, MINUTE_NS
from instrumentation_sdk.exporters.sqlite import SCHEMA_VERSION, SqliteExporter
from instrumentation_sdk.store import open_store, parse_since, span_stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from ui_support import UiServer, hex_id  # noqa: E402

# Building the 1 M store takes minutes on a busy 2-core machine: past the default 300 s.
pytestmark = pytest.mark.timeout(3600)

FULL_SPANS = 1_000_000
SMOKE_SPANS = 20_000
DAYS = 30
MODELS = ("gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4-5", "gemini-2.5-flash", "llama-local")
PROVIDERS = {"claude-sonnet-4-5": "anthropic", "gemini-2.5-flash": "google", "llama-local": None}
SERVICES = ("api", "worker", "search", "billing", "chat")
SEC = 1_000_000_000


#: Errors with a request id in the message: a distinct text per error span.
ID_ERRORS = (
    ("RateLimitError", "429 Too Many Requests: rate limit reached for request req_{:08x}"),
    ("APITimeoutError", "upstream timed out after 30 s (request req_{:08x})"),
    ("APIConnectionError", "connection reset by peer (request req_{:08x})"),
    ("BadRequestError", "invalid 'temperature' in request req_{:08x}"),
)


def _records(
    count: int, now: int, seconds: int = DAYS * 86400, *, id_errors: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """``count`` spans in time order over the last ``seconds`` (``DAYS`` days), in batches of
    10,000. Traces of 4 spans (a root and three children); one trace in ten belongs to a
    session. ``id_errors``: 5% errors, each message with its own request id (``ID_ERRORS``);
    else 2% errors, all "upstream timed out after 30 s"."""
    rng = random.Random(20261130)
    span_ns = seconds * SEC // count
    start0 = now - seconds * SEC
    batch: list[dict[str, Any]] = []
    for i in range(count):
        trace = i // 4
        model = MODELS[rng.randrange(len(MODELS))]
        error = rng.random() < (0.05 if id_errors else 0.02)
        error_type, message = "TimeoutError", "upstream timed out after 30 s"
        if id_errors:
            error_type, message = ID_ERRORS[rng.randrange(len(ID_ERRORS))]
            message = message.format(i)
        metadata: dict[str, Any] = {
            "prompt_tokens": rng.randrange(20, 4000),
            "completion_tokens": rng.randrange(1, 800),
            "token_count_method": "tiktoken",
        }
        if i % 3 == 0:
            metadata.update(
                time_to_first_token_ms=rng.lognormvariate(5.5, 0.4),
                stream_chunks=rng.randrange(1, 300),
                stream_status="completed",
            )
        start = start0 + i * span_ns
        batch.append(
            {
                "trace_id": hex_id(f"t{trace}", 32),
                "span_id": hex_id(f"s{i}", 16),
                "parent_span_id": hex_id(f"s{trace * 4}", 16) if i % 4 else None,
                "name": ("agent", "retrieve", "llm", "tool")[i % 4],
                "model": model,
                "provider": PROVIDERS.get(model, "openai"),
                "service_name": SERVICES[(i // 4) % len(SERVICES)],
                "user_id": f"user-{trace % 500}",
                "session_id": f"session-{trace // 10}" if trace % 10 == 0 else None,
                "status": "error" if error else "ok",
                "error_type": error_type if error else None,
                "error_message": message if error else None,
                "start_time_unix_nano": start,
                "end_time_unix_nano": start + int(rng.lognormvariate(19.5, 0.8)),
                "metadata": metadata,
                "events": [],
                "prompt": None,
                "completion": None,
            }
        )
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


def build_store(
    path: Path,
    count: int,
    *,
    id_errors: bool = False,
    seconds: int = DAYS * 86400,
    cut_hour: bool = False,
) -> None:
    """Write ``count`` spans over the last ``seconds`` through the real exporter (cost
    computed, every index kept). ``cut_hour``: the newest span at one minute past an hour
    (the last hour of the clock's but one), so a relative window anchored there starts two
    minutes past an hour: it cuts that hour at its start and holds 58 minutes of it."""
    tmp = path.with_suffix(".building")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    # Retention off: the store keeps all 30 days, the 1 GiB bound would not bite anyway.
    exporter = SqliteExporter(tmp, max_bytes=0, max_age=0)
    now = time.time_ns()
    if cut_hour:
        now = now - now % HOUR_NS - HOUR_NS + MINUTE_NS
    for batch in _records(count, now, seconds, id_errors=id_errors):
        exporter.export(batch)
    exporter.shutdown()
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    tmp.rename(path)


def _cached_store(request: pytest.FixtureRequest, kind: str) -> Path:
    # As pytest-benchmark decides: --benchmark-enable wins over the --benchmark-disable of addopts.
    config = request.config
    enabled = config.getoption("benchmark_enable") or not config.getoption("benchmark_disable")
    count = FULL_SPANS if enabled else SMOKE_SPANS
    folder = HERE.parent / ".benchmarks"
    folder.mkdir(exist_ok=True)
    path = folder / f"ui-store-{count}{kind}-v{SCHEMA_VERSION}.db"
    if not path.exists():
        build_store(
            path,
            count,
            id_errors=bool(kind),
            seconds=STORE_SECONDS.get(kind, DAYS * 86400),
            cut_hour=kind in DAY_START_SECONDS,
        )
    return path


#: A busy service's store: the million spans of the last half hour (about 560 a second).
DENSE_SECONDS = 1800
#: A busy service a few hours into its day, and a whole day: the million spans of the last
#: 6.5 hours (about 43 a second) or 24.5 hours (11 a second), written as a live writer does
#: (the hours rolled up as the batches pass them), the newest at one minute past an hour.
DAY_START_SECONDS = {"-6h": 6 * 3600 + 1800, "-24h": 24 * 3600 + 1800}
STORE_SECONDS = {"-dense": DENSE_SECONDS, **DAY_START_SECONDS}


@pytest.fixture(scope="module")
def store(request: pytest.FixtureRequest) -> Path:
    return _cached_store(request, "")


@pytest.fixture(scope="module")
def id_error_store(request: pytest.FixtureRequest) -> Path:
    return _cached_store(request, "-id-errors")


@pytest.fixture(scope="module")
def dense_store(request: pytest.FixtureRequest) -> Path:
    return _cached_store(request, "-dense")


@pytest.fixture(scope="module", params=list(DAY_START_SECONDS))
def day_start_store(request: pytest.FixtureRequest) -> Path:
    return _cached_store(request, request.param)


def _newest(store: Path) -> int:
    with open_store(store) as opened:
        (start,) = opened._conn.execute("SELECT max(start_time_unix_nano) FROM spans").fetchone()
    return int(start)


@pytest.fixture(scope="module")
def newest(store: Path) -> int:
    """The newest span's start: windows are anchored there, so a cached store of yesterday is
    measured like a fresh one ("the last hour" of it, not of the clock)."""
    return _newest(store)


def _anchored(params: dict[str, Any], newest: int) -> dict[str, Any]:
    """The window ending at the end of the newest span's minute, as the API's relative windows
    end at the end of the current minute."""
    if "since" not in params:
        return params
    end = newest - newest % MINUTE_NS + MINUTE_NS
    return {**params, "since": str(end - parse_since(params["since"])), "until": end}


@pytest.fixture(scope="module")
def ui(store: Path) -> Iterator[UiServer]:
    server = UiServer(store)
    yield server
    server.close()


@pytest.fixture(scope="module")
def id_error_ui(id_error_store: Path) -> Iterator[tuple[UiServer, int]]:
    server = UiServer(id_error_store)
    yield server, _newest(id_error_store)
    server.close()


@pytest.fixture(scope="module")
def dense_ui(dense_store: Path) -> Iterator[tuple[UiServer, int]]:
    server = UiServer(dense_store)
    yield server, _newest(dense_store)
    server.close()


@pytest.fixture(scope="module")
def day_start_ui(day_start_store: Path) -> Iterator[tuple[UiServer, int]]:
    server = UiServer(day_start_store)
    yield server, _newest(day_start_store)
    server.close()


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "spans-1h": ("/api/spans", {"since": "1h", "limit": 50}),
    "spans-30d-model": ("/api/spans", {"since": "30d", "model": "o3", "limit": 50}),
    "spans-30d-errors": ("/api/spans", {"since": "30d", "status": "error", "limit": 50}),
    "spans-30d-session": ("/api/spans", {"session_id": "session-7", "limit": 50}),
    "spans-24h-text": ("/api/spans", {"since": "24h", "q": "timed out", "limit": 50}),
    "spans-30d-text-rare": ("/api/spans", {"since": "30d", "q": "no such text", "limit": 50}),
    # Under 3 characters (no trigram): LIKE over the distinct texts, then their ids.
    "spans-30d-text-short-rare": ("/api/spans", {"since": "30d", "q": "zq", "limit": 50}),
    "stats-model-30d-text": ("/api/stats", {"since": "30d", "by": "model", "q": "timed out"}),
    "stats-model-30d-text-short": ("/api/stats", {"since": "30d", "by": "model", "q": "ou"}),
    # Text that matches most spans: every name has an "l" or an "e" ("llm", "tool"...).
    "stats-model-30d-text-l": ("/api/stats", {"since": "30d", "by": "model", "q": "l"}),
    "stats-service-7d-text-llm": ("/api/stats", {"since": "7d", "by": "service", "q": "llm"}),
    "timeseries-30d-text-e": ("/api/timeseries", {"since": "30d", "points": 60, "q": "e"}),
    "timeseries-7d-text-l": ("/api/timeseries", {"since": "7d", "points": 60, "q": "l"}),
    "timeseries-24h-text-llm": ("/api/timeseries", {"since": "24h", "points": 60, "q": "llm"}),
    "timeseries-30d-text": ("/api/timeseries", {"since": "30d", "points": 60, "q": "timed out"}),
    "stats-model-30d-filtered": (
        "/api/stats",
        {"since": "30d", "by": "service", "model": "o3", "status": "error"},
    ),
    "timeseries-7d": ("/api/timeseries", {"since": "7d", "points": 60}),
    "stats-model-1h": ("/api/stats", {"since": "1h", "by": "model"}),
    "stats-model-24h": ("/api/stats", {"since": "24h", "by": "model"}),
    "stats-service-7d": ("/api/stats", {"since": "7d", "by": "service"}),
    "stats-model-30d": ("/api/stats", {"since": "30d", "by": "model"}),
    "timeseries-1h": ("/api/timeseries", {"since": "1h", "points": 60}),
    "timeseries-24h": ("/api/timeseries", {"since": "24h", "points": 60}),
    "timeseries-30d": ("/api/timeseries", {"since": "30d", "points": 60}),
}


#: Over the store whose errors carry request ids (~50,000 distinct texts): broad short
#: filters ("e" and "err" match every error text, "l" the names llm and tool and some error
#: texts) and a selective one (one request id prefix: a few spans).
TEXT_KINDS = {"e": "e", "l": "l", "err": "err", "selective": "req_0000ab"}
ID_ERROR_CASES: dict[str, tuple[str, dict[str, Any]]] = {}
for _label, _text in TEXT_KINDS.items():
    ID_ERROR_CASES[f"spans-30d-{_label}"] = (
        "/api/spans",
        {"since": "30d", "q": _text, "limit": 50},
    )
    ID_ERROR_CASES[f"stats-model-30d-{_label}"] = (
        "/api/stats",
        {"since": "30d", "by": "model", "q": _text},
    )
    ID_ERROR_CASES[f"stats-service-24h-{_label}"] = (
        "/api/stats",
        {"since": "24h", "by": "service", "q": _text},
    )
    ID_ERROR_CASES[f"timeseries-30d-{_label}"] = (
        "/api/timeseries",
        {"since": "30d", "points": 60, "q": _text},
    )
    ID_ERROR_CASES[f"timeseries-7d-{_label}"] = (
        "/api/timeseries",
        {"since": "7d", "points": 60, "q": _text},
    )


#: Over the dense store: the overview's questions for its last hour (every span of the store).
DENSE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "spans-1h": ("/api/spans", {"since": "1h", "limit": 50}),
    "stats-model-1h": ("/api/stats", {"since": "1h", "by": "model"}),
    "stats-service-1h": ("/api/stats", {"since": "1h", "by": "service"}),
    "timeseries-1h": ("/api/timeseries", {"since": "1h", "points": 60}),
    "stats-model-1h-filtered": ("/api/stats", {"since": "1h", "by": "model", "model": "o3"}),
    "timeseries-1h-text-err": ("/api/timeseries", {"since": "1h", "points": 60, "q": "err"}),
    # Text: every error (each with its own request id), a name a quarter of the spans have,
    # one request id prefix (a few spans).
    "stats-model-1h-text-err": ("/api/stats", {"since": "1h", "by": "model", "q": "err"}),
    "stats-service-1h-text-llm": ("/api/stats", {"since": "1h", "by": "service", "q": "llm"}),
    "timeseries-1h-text-llm": ("/api/timeseries", {"since": "1h", "points": 60, "q": "llm"}),
    "timeseries-1h-text-selective": (
        "/api/timeseries",
        {"since": "1h", "points": 60, "q": "req_0000ab"},
    ),
    "spans-1h-text-err": ("/api/spans", {"since": "1h", "q": "err", "limit": 50}),
    # A session of the newest minutes (4 spans) and a user (1 trace in 500: ~2,000 spans).
    "stats-model-1h-session": (
        "/api/stats",
        {"since": "1h", "by": "model", "session_id": "session-24000"},
    ),
    "timeseries-1h-session": (
        "/api/timeseries",
        {"since": "1h", "points": 60, "session_id": "session-24000"},
    ),
    "spans-1h-session": ("/api/spans", {"since": "1h", "session_id": "session-24000"}),
    "stats-model-1h-user": ("/api/stats", {"since": "1h", "by": "model", "user_id": "user-7"}),
    "timeseries-1h-user": ("/api/timeseries", {"since": "1h", "points": 60, "user_id": "user-7"}),
    "spans-1h-user": ("/api/spans", {"since": "1h", "user_id": "user-7", "limit": 50}),
}


#: Over the stores of a busy service's first 6.5 hours and of its last 24.5: the UI's 6 h,
#: 24 h and 7 d windows. A window starts 58 minutes before a rolled hour ends (6.5 h store,
#: 6 h window: ~150,000 spans of that hour; 24.5 h store: ~40,000 for 6 h and 24 h); the 6 h
#: chart's buckets (6 minutes) are no whole hours.
DAY_START_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "stats-model-6h": ("/api/stats", {"since": "6h", "by": "model"}),
    "timeseries-6h": ("/api/timeseries", {"since": "6h", "points": 60}),
    "stats-service-6h-text-err": ("/api/stats", {"since": "6h", "by": "service", "q": "err"}),
    "timeseries-6h-text-err": ("/api/timeseries", {"since": "6h", "points": 60, "q": "err"}),
    "timeseries-6h-text-llm": ("/api/timeseries", {"since": "6h", "points": 60, "q": "llm"}),
    "spans-6h": ("/api/spans", {"since": "6h", "limit": 50}),
    "stats-model-24h": ("/api/stats", {"since": "24h", "by": "model"}),
    "timeseries-24h": ("/api/timeseries", {"since": "24h", "points": 60}),
    "stats-service-24h-text-llm": ("/api/stats", {"since": "24h", "by": "service", "q": "llm"}),
    "timeseries-7d": ("/api/timeseries", {"since": "7d", "points": 60}),
}


def _answer_time(benchmark: Any, url: str, newest: int, path: str, params: dict[str, Any]) -> None:
    params = _anchored(params, newest)
    with httpx.Client(base_url=url, timeout=120) as client:
        _get(client, path, params)  # warm the page cache once, as a user's second look would
        answer = benchmark.pedantic(
            _get, args=(client, path, params), rounds=3 if benchmark.enabled else 1, iterations=1
        )
    if path == "/api/spans":
        assert "spans" in answer
    elif path == "/api/stats":
        assert answer["total"]["count"] >= 0
    else:  # windows of a day or more are cut at whole hours (days): at most `points`
        assert 1 <= len(answer["points"]) <= params["points"]


@pytest.mark.parametrize("case", list(CASES))
def test_api_answer_time(benchmark: Any, ui: UiServer, newest: int, case: str) -> None:
    path, params = CASES[case]
    _answer_time(benchmark, ui.url, newest, path, params)


@pytest.mark.parametrize("case", list(ID_ERROR_CASES))
def test_api_answer_time_many_texts(
    benchmark: Any, id_error_ui: tuple[UiServer, int], case: str
) -> None:
    server, newest = id_error_ui
    path, params = ID_ERROR_CASES[case]
    _answer_time(benchmark, server.url, newest, path, params)


@pytest.mark.parametrize("case", list(DENSE_CASES))
def test_api_answer_time_dense(benchmark: Any, dense_ui: tuple[UiServer, int], case: str) -> None:
    """A store a busy service fills in half an hour: its spans are all in the newest hours,
    which are not rolled up yet, so aggregates read them as spans."""
    server, newest = dense_ui
    path, params = DENSE_CASES[case]
    _answer_time(benchmark, server.url, newest, path, params)


@pytest.mark.parametrize("case", list(DAY_START_CASES))
def test_api_answer_time_day_start(
    benchmark: Any, day_start_ui: tuple[UiServer, int], case: str
) -> None:
    """A busy service a few hours into its day: the hours before the newest are rolled up,
    and the UI's windows of hours cut the one they start in."""
    server, newest = day_start_ui
    path, params = DAY_START_CASES[case]
    _answer_time(benchmark, server.url, newest, path, params)


def test_api_trace_and_session(benchmark: Any, ui: UiServer, store: Path) -> None:
    with open_store(store) as opened:
        (trace_id,) = opened._conn.execute(
            "SELECT trace_id FROM spans ORDER BY start_time_unix_nano DESC LIMIT 1"
        ).fetchone()

    def both(client: httpx.Client) -> tuple[Any, Any]:
        return (
            _get(client, f"/api/traces/{trace_id}", {}),
            _get(client, "/api/sessions/session-7", {}),
        )

    with httpx.Client(base_url=ui.url, timeout=120) as client:
        trace, session = benchmark.pedantic(
            both, args=(client,), rounds=3 if benchmark.enabled else 1, iterations=1
        )
    assert 1 <= len(trace["spans"]) <= 4
    assert len(session["traces"]) >= 1


@pytest.mark.parametrize("window", ["24h", "30d"])
def test_baseline_cli_stats(benchmark: Any, store: Path, newest: int, window: str) -> None:
    """The baseline: the exact, read-everything statistics of ``instrumentation-sdk stats``."""

    def run() -> list[dict[str, Any]]:
        return span_stats(store, since_ns=newest + 1 - parse_since(window), by="model")

    groups = benchmark.pedantic(run, rounds=3 if benchmark.enabled else 1, iterations=1)
    assert sum(g["count"] for g in groups) > 0


@pytest.mark.parametrize("spread", ["live-60s", "backfill-30d"])
@pytest.mark.parametrize(
    "write_path", ["every-rollup", "without-text-rollups", "without-rollups-and-text-ids"]
)
def test_store_write_cost(
    benchmark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_path: str, spread: str
) -> None:
    """What the rollups and the text ids cost the exporter: 20 batches of 500 spans into a
    fresh store, side by side with the same exporter without the text rollups (schema 5's
    write path) and with rollups and text ids both turned off (the schema-3 path: no rollups,
    no distinct texts, no (text_id, start) index). ``live-60s``: the spans of a busy service's
    last minute (~170 a second), as a flusher exports them, so a batch touches an hour or two;
    ``backfill-30d``: the same count spread over 30 days (every span its own hour: the
    rollups' worst case)."""
    from instrumentation_sdk.exporters import rollups
    from instrumentation_sdk.exporters import sqlite as sqlite_exporter

    seconds = 60 if spread == "live-60s" else DAYS * 86400
    records = next(_records(10_000, time.time_ns(), seconds))
    batches = [records[i : i + 500] for i in range(0, len(records), 500)]
    if write_path == "without-text-rollups":
        add_inserted = rollups.add_inserted
        monkeypatch.setattr(
            rollups,
            "add_inserted",
            lambda conn, after_rowid, spans=None, text_keys=None: add_inserted(
                conn, after_rowid, spans
            ),
        )
    elif write_path != "every-rollup":
        monkeypatch.setattr(rollups, "add_inserted", lambda *args: None)
        monkeypatch.setattr(
            sqlite_exporter,
            "_with_text_ids",
            lambda conn, rows: ([(*row, None) for row in rows], {}),
        )
    paths = iter(range(1000))

    def setup() -> tuple[tuple[SqliteExporter], dict[str, Any]]:
        exporter = SqliteExporter(tmp_path / f"w{next(paths)}.db", max_bytes=0, max_age=0)
        exporter.export(batches[0][:1])  # create and migrate outside the timing
        if write_path == "without-rollups-and-text-ids":
            conn = sqlite3.connect(exporter.path)
            conn.execute("DROP INDEX spans_text_start")
            conn.close()
        return (exporter,), {}

    def write(exporter: SqliteExporter) -> None:
        for batch in batches:
            exporter.export(batch)
        exporter.shutdown()

    benchmark.pedantic(write, setup=setup, rounds=5 if benchmark.enabled else 1)
