"""The dashboard's JSON API and pages over HTTP: ``instrumentation-sdk ui`` run for real in a
subprocess over a store with known contents (``ui_support.known_spans``)."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from instrumentation_sdk.exporters.sqlite import MIGRATIONS, SqliteExporter, migrate
from instrumentation_sdk.ui.app import CSP
from instrumentation_sdk.ui.queries import PERCENTILE_ERROR
from ui_support import (
    MS,
    SEC,
    XSS_MODEL,
    UiServer,
    hex_id,
    known_spans,
    span,
    ui_command,
    write_store,
)

#: When the module's store was written (set by ``db``: the spans' ages are relative to it, and
#: the module may run minutes after collection).
NOW = time.time_ns()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    global NOW
    NOW = time.time_ns()
    path = tmp_path_factory.mktemp("ui") / "spans.db"
    write_store(path, known_spans(NOW))
    return path


@pytest.fixture(scope="module")
def ui(db: Path) -> Iterator[UiServer]:
    server = UiServer(db)
    yield server
    server.close()


def get(ui: UiServer, path: str, /, **params: Any) -> Any:
    response = httpx.get(ui.url + path, params=params, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def error(ui: UiServer, path: str, code: int, /, **params: Any) -> str:
    response = httpx.get(ui.url + path, params=params, timeout=30)
    assert response.status_code == code, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    return str(body["detail"])


def names(page: dict[str, Any]) -> list[str]:
    return [s["name"] for s in page["spans"]]


# -- /api/spans --------------------------------------------------------------------------------


def test_spans_newest_first_with_cost_and_ttft(ui: UiServer) -> None:
    page = get(ui, "/api/spans", since="1h", limit=500)
    assert len(page["spans"]) == 36  # all but the 3-day-old one
    starts = [s["start_time_unix_nano"] for s in page["spans"]]
    assert starts == sorted(starts, reverse=True)
    assert page["next_cursor"] is None
    answer = next(s for s in page["spans"] if s["name"] == "answer")
    # gpt-4o-mini (priced by actual_model gpt-4o-mini-2024-07-18): 2000 in, 400 out.
    assert answer["cost_usd"] == pytest.approx((2000 * 0.15 + 400 * 0.6) / 1e6)
    assert answer["time_to_first_token_ms"] == 120.0
    assert answer["metadata"]["stream_chunks"] == 42
    assert answer["events"][0]["name"] == "first_token"
    embedding = next(s for s in page["spans"] if s["name"] == "retrieve")
    assert embedding["cost_usd"] is None  # not in the price table: no cost, not zero


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model": "o3"}, ["tool"]),
        ({"service": "search"}, ["retrieve"]),
        ({"provider": "anthropic"}, ["chat"]),
        ({"status": "error"}, ["<script>window.__xss=2</script>", "chat"]),
        ({"session_id": "sess-1"}, ["chat", "agent"]),
        ({"user_id": "ada"}, ["agent"]),
        ({"q": "slow down"}, ["chat"]),
        ({"q": "RATELIMIT"}, ["chat"]),  # case-insensitive, over error types too
        ({"q": "retr"}, ["retrieve"]),
        ({"q": "100%"}, []),  # % is literal, not a wildcard
        ({"model": "gpt-4o-mini", "service": "worker"}, ["answer"]),
        ({"model": "no-such-model"}, []),
    ],
)
def test_spans_filters(ui: UiServer, params: dict[str, str], expected: list[str]) -> None:
    assert names(get(ui, "/api/spans", **params)) == expected


def test_spans_time_window(ui: UiServer) -> None:
    assert names(get(ui, "/api/spans", service="legacy")) == ["llm"]  # no window: all
    assert names(get(ui, "/api/spans", service="legacy", since="1d")) == []
    assert names(get(ui, "/api/spans", service="legacy", since="4d")) == ["llm"]
    until = NOW - 2 * 86400 * SEC
    assert names(get(ui, "/api/spans", until=str(until))) == ["llm"]
    # A window reaching before 1970 means since 1970 (found by schemathesis: was a 500).
    assert len(get(ui, "/api/spans", since="4020987602523w", limit=100)["spans"]) == 37
    huge = get(ui, "/api/timeseries", since="4020987602523w", points=3)
    assert huge["since_unix_nano"] == 0
    assert sum(p["count"] for p in huge["points"]) == 37
    four_minutes = get(ui, "/api/spans", since="4m")
    assert names(four_minutes) == ["<script>window.__xss=2</script>"]


def test_spans_cursor_pages_cover_everything_once(ui: UiServer) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = get(ui, "/api/spans", **params)
        seen += [s["span_id"] for s in page["spans"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 6  # 37 spans, 7 a page
    assert len(seen) == len(set(seen)) == 37


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": "0"}, "limit must be from 1 to 500"),
        ({"limit": "501"}, "limit must be from 1 to 500"),
        ({"limit": "ten"}, "limit must be a whole number"),
        ({"status": "failed"}, "status must be one of"),
        ({"since": "yesterday"}, "since is Unix nanoseconds or a window"),
        ({"since": "-1h"}, "since is Unix nanoseconds or a window"),
        ({"cursor": "nope"}, "cursor"),
        ({"modle": "o3"}, "unknown query parameter 'modle'"),
        ({"since": "1h", "until": "2h"}, "until must be later than since"),
        # SQLite's LIKE and FTS5 stop at NUL: "\x00" alone would match every span, and FTS5
        # refused "\x00abc" with a 500 (found by schemathesis in .ci/run).
        ({"q": "\x00"}, "q must not contain a NUL character"),
        ({"q": "\x00\U000f9871\u00c5"}, "q must not contain a NUL character"),
        ({"q": "timed\x00out"}, "q must not contain a NUL character"),
    ],
)
def test_spans_bad_parameters_are_400_with_json(
    ui: UiServer, params: dict[str, str], fragment: str
) -> None:
    assert fragment in error(ui, "/api/spans", 400, **params)


def test_repeated_parameter_is_400(ui: UiServer) -> None:
    response = httpx.get(ui.url + "/api/spans?model=a&model=b", timeout=30)
    assert response.status_code == 400
    assert "twice" in response.json()["detail"]


# -- /api/traces, /api/sessions ----------------------------------------------------------------


def test_trace_has_every_span_oldest_first(ui: UiServer) -> None:
    trace = get(ui, f"/api/traces/{hex_id('agent', 32)}")
    assert trace["trace_id"] == hex_id("agent", 32)
    assert names(trace) == ["agent", "retrieve", "answer", "tool"]
    parents = {s["name"]: s["parent_span_id"] for s in trace["spans"]}
    assert parents["tool"] == hex_id("answer", 16)
    assert {s["service_name"] for s in trace["spans"]} == {"gateway", "search", "worker", "tools"}
    answer = trace["spans"][2]
    assert answer["prompt"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert answer["completion"] == "Paris."


def test_trace_errors(ui: UiServer) -> None:
    assert "no spans of trace" in error(ui, f"/api/traces/{'0' * 32}", 404)
    assert "hex digits" in error(ui, "/api/traces/not-hex", 400)
    assert "unknown query parameter" in error(ui, f"/api/traces/{'0' * 32}", 400, x="1")


def test_session_lists_its_traces_in_order(ui: UiServer) -> None:
    session = get(ui, "/api/sessions/sess-1")
    assert session["session_id"] == "sess-1"
    traces = session["traces"]
    assert [t["trace_id"] for t in traces] == [hex_id("agent", 32), hex_id("limited", 32)]
    agent, limited = traces
    assert (agent["spans"], agent["errors"], agent["name"], agent["model"]) == (
        4,
        0,
        "agent",
        "gpt-4o",
    )
    assert agent["prompt_tokens"] == 1000 + 50 + 2000 + 10
    assert agent["duration_ms"] == 900.0
    assert (limited["errors"], limited["cost_usd"]) == (1, None)
    # The session's totals: every trace's spans, errors, tokens; cost of what was priced.
    assert session["total"] == {
        "traces": 2,
        "spans": 5,
        "errors": 1,
        "prompt_tokens": agent["prompt_tokens"],
        "completion_tokens": agent["completion_tokens"],
        "cost_usd": agent["cost_usd"],
    }
    assert agent["cost_usd"] > 0
    assert "no spans of session" in error(ui, "/api/sessions/nobody", 404)


#: A session id with every character a path reserves: "/" must not split it, "?" and "#" must
#: not end it, "%" must not decode twice, and non-ASCII goes as UTF-8.
ODD_SESSION = "team/a b?c=d&e#f%2F+g;h\u00e9"


def test_session_ids_with_reserved_characters(tmp_path: Path) -> None:
    from urllib.parse import quote

    path = tmp_path / "spans.db"
    now = time.time_ns()
    write_store(
        path,
        [
            span("odd-1", trace="odd-1", start=now - 60 * SEC, duration_ms=5, session=ODD_SESSION),
            span("odd-2", trace="odd-2", start=now - 30 * SEC, duration_ms=5, session=ODD_SESSION),
            span("plain", trace="plain", start=now - 10 * SEC, duration_ms=5, session="team"),
        ],
    )
    server = UiServer(path)
    try:
        encoded = quote(ODD_SESSION, safe="")
        response = httpx.get(f"{server.url}/api/sessions/{encoded}", timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["session_id"] == ODD_SESSION
        assert [t["trace_id"] for t in body["traces"]] == [hex_id("odd-1", 32), hex_id("odd-2", 32)]
        # The page's path: the shell, whose script reads the id from the encoded path.
        page = httpx.get(f"{server.url}/sessions/{encoded}", timeout=30)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        # Unencoded, the "/" is a separator: no such API path or page, never another session.
        assert httpx.get(f"{server.url}/api/sessions/team/a", timeout=30).status_code == 404
        assert httpx.get(f"{server.url}/sessions/team/a", timeout=30).status_code == 404
        plain = httpx.get(f"{server.url}/api/sessions/team", timeout=30).json()
        assert [t["trace_id"] for t in plain["traces"]] == [hex_id("plain", 32)]
        bad = httpx.get(f"{server.url}/api/sessions/%FF", timeout=30)
        assert bad.status_code == 400
        assert "UTF-8" in bad.json()["detail"]
    finally:
        server.close()


# -- /api/stats, /api/timeseries ------------------------------------------------------------


def test_stats_by_model_every_group_with_totals(ui: UiServer) -> None:
    stats = get(ui, "/api/stats", by="model", since="1h")
    groups = {g["group"]: g for g in stats["groups"]}
    assert set(groups) == {
        "gpt-4o",
        "gpt-4o-mini",
        "o3",
        "text-embedding-3-small",
        "claude-sonnet-4-5",
        XSS_MODEL,
    }
    gpt4o = groups["gpt-4o"]
    assert (gpt4o["count"], gpt4o["errors"], gpt4o["prompt_tokens"]) == (16, 0, 1000 + 1500)
    assert gpt4o["cost_usd"] == pytest.approx((2500 * 2.5 + (200 + 150) * 10) / 1e6)
    assert gpt4o["p99_ms"] == 900.0  # the maximum: exact
    # Bulk gpt-4o spans last 11, 13, ..., 39 ms; with the agent's 900 ms the nearest-rank
    # median of the 16 is the 8th: 25 ms, within the stated error.
    assert gpt4o["p50_ms"] == pytest.approx(25.0, rel=PERCENTILE_ERROR)
    mini = groups["gpt-4o-mini"]
    assert (mini["ttft_p50_ms"], mini["ttft_p95_ms"]) == (120.0, 120.0)
    assert groups["claude-sonnet-4-5"]["error_rate"] == 1.0
    assert groups["text-embedding-3-small"]["cost_usd"] is None
    total = stats["total"]
    assert total["count"] == 36
    assert total["errors"] == 2
    priced = [g["cost_usd"] for g in stats["groups"] if g["cost_usd"] is not None]
    assert total["cost_usd"] == pytest.approx(sum(priced))


def test_stats_by_service_and_provider_with_filters(ui: UiServer) -> None:
    services = get(ui, "/api/stats", by="service", since="1h")
    assert next(g["group"] for g in services["groups"]) == "batch"
    assert {g["group"] for g in services["groups"]} == {
        "batch",
        "gateway",
        "search",
        "worker",
        "tools",
        "public",
    }
    providers = get(ui, "/api/stats", by="provider", status="error")
    assert {(g["group"], g["count"]) for g in providers["groups"]} == {
        ("anthropic", 1),
        (None, 1),
    }
    nothing = get(ui, "/api/stats", model="no-such-model")
    assert nothing["groups"] == []
    assert nothing["total"]["count"] == 0
    assert "by must be one of" in error(ui, "/api/stats", 400, by="user")
    assert "NUL" in error(ui, "/api/stats", 400, q="ab\x00cd")
    assert "NUL" in error(ui, "/api/timeseries", 400, q="\x00abc")


def test_timeseries_buckets(ui: UiServer) -> None:
    series = get(ui, "/api/timeseries", since="1h", points=12)
    points = series["points"]
    assert len(points) == 12
    assert series["bucket_ns"] == 300 * SEC
    assert sum(p["count"] for p in points) == 36
    assert sum(p["errors"] for p in points) == 2
    assert all(p["start_unix_nano"] < q["start_unix_nano"] for p, q in itertools.pairwise(points))
    streamed = [p for p in points if p["ttft_p50_ms"] is not None]
    assert len(streamed) == 1
    assert streamed[0]["ttft_p50_ms"] == 120.0
    empty = [p for p in points if p["count"] == 0]
    assert empty
    assert all(p["p50_ms"] is None and p["cost_usd"] is None for p in empty)
    assert "points must be from 1 to 500" in error(ui, "/api/timeseries", 400, points="0")


# -- pages, headers, OpenAPI ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", f"/traces/{'a' * 32}", "/sessions/sess-1"])
def test_pages_are_the_static_shell_with_a_strict_csp(ui: UiServer, path: str) -> None:
    response = httpx.get(ui.url + path, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP
    assert "unsafe-inline" not in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    assert '<script src="/static/app.js" defer></script>' in html
    assert "<script>" not in html  # nothing inline


def test_assets_ship_in_the_package(ui: UiServer) -> None:
    script = httpx.get(ui.url + "/static/app.js", timeout=30)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text
    assert "eval(" not in script.text
    assert httpx.get(ui.url + "/static/style.css", timeout=30).status_code == 200
    assert httpx.get(ui.url + "/static/../app.py", timeout=30).status_code == 404
    assert httpx.get(ui.url + "/nope", timeout=30).status_code == 404


def test_openapi_documents_every_endpoint(ui: UiServer) -> None:
    document = get(ui, "/openapi.json")
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/spans",
        "/api/traces/{trace_id}",
        "/api/sessions/{session_id}",
        "/api/stats",
        "/api/timeseries",
    }
    spans_params = {p["name"] for p in document["paths"]["/api/spans"]["get"]["parameters"]}
    assert spans_params >= {"model", "provider", "service", "status", "session_id", "user_id"}
    assert spans_params >= {"q", "since", "until", "limit", "cursor"}


def test_only_get(ui: UiServer) -> None:
    response = httpx.post(ui.url + "/api/spans", timeout=30)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


# -- a missing, old and growing store ----------------------------------------------------------


def test_missing_store_is_503_then_read_once_it_exists(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    server = UiServer(path)
    try:
        assert "no span database" in server.output()
        response = httpx.get(server.url + "/api/spans", timeout=30)
        assert response.status_code == 503
        assert "no span database" in response.json()["detail"]
        write_store(path, known_spans(NOW)[:1])
        assert names(get(server, "/api/spans")) == ["agent"]
    finally:
        server.close()


def test_store_of_schema_2_is_read_without_cost(tmp_path: Path) -> None:
    """A store written before cost existed: read as is (read-only), cost and TTFT unknown."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:2])
    conn.execute(
        "INSERT INTO spans (span_id, trace_id, name, model, status, start_time_unix_nano, "
        "end_time_unix_nano, duration_ns, prompt_tokens, metadata) "
        "VALUES (?, ?, 'llm', 'gpt-4o', 'ok', ?, ?, ?, 10, '{\"prompt_tokens\": 10}')",
        (hex_id("v2", 16), hex_id("v2", 32), NOW - SEC, NOW - SEC + 5 * MS, 5 * MS),
    )
    conn.close()
    server = UiServer(path)
    try:
        page = get(server, "/api/spans")
        assert [(s["model"], s["cost_usd"]) for s in page["spans"]] == [("gpt-4o", None)]
        stats = get(server, "/api/stats")
        assert stats["groups"][0]["prompt_tokens"] == 10
        assert stats["groups"][0]["cost_usd"] is None
        # A writer migrates it; the dashboard reads the new columns on its next request.
        exporter = SqliteExporter(path)
        exporter.export(
            [span("v3", trace="v3", start=NOW, duration_ms=1, metadata={"prompt_tokens": 1000})]
        )
        exporter.shutdown()
        costs = {s["span_id"]: s["cost_usd"] for s in get(server, "/api/spans")["spans"]}
        assert costs == {hex_id("v2", 16): None, hex_id("v3", 16): 1000 * 2.5 / 1e6}
    finally:
        server.close()


# -- auth and binding ------------------------------------------------------------------------


def test_token_protects_everything_but_health(db: Path) -> None:
    server = UiServer(db, "--auth-token", "s3cret&x")
    try:
        assert server.printed_url.endswith("/?token=s3cret%26x")
        assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200
        for path in ("/", "/api/spans", "/static/app.js", "/openapi.json"):
            response = httpx.get(server.url + path, timeout=30)
            assert response.status_code == 401, path
            assert response.json()["error"] == "unauthorized"
        bearer = {"Authorization": "Bearer s3cret&x"}
        assert httpx.get(server.url + "/api/spans", headers=bearer, timeout=30).status_code == 200
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(server.url + "/api/spans", headers=wrong, timeout=30).status_code == 401
        # The printed URL: a redirect that sets the cookie and drops the token from the URL.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = client.get("/?token=s3cret%26x&range=24h")
            assert first.status_code == 303
            assert first.headers["location"] == "/?range=24h"
            assert "HttpOnly" in first.headers["set-cookie"]
            assert "SameSite=Strict" in first.headers["set-cookie"]
            assert client.get("/api/spans").status_code == 200  # the cookie now
            assert client.get("/?token=wrong").status_code == 200  # the cookie still
        assert httpx.get(server.url + "/?token=wrong", timeout=30).status_code == 401
    finally:
        server.close()


def run_ui(*args: str) -> subprocess.CompletedProcess[str]:
    """``instrumentation-sdk ui ARGS`` run to its end (for the arguments it refuses)."""
    return subprocess.run(
        [*ui_command(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_beyond_loopback_needs_a_token(db: Path) -> None:
    result = run_ui("--db", str(db), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "--auth-token" in result.stderr
    bad_port = run_ui("--db", str(db), "--port", "70000")
    assert bad_port.returncode == 2
    assert "--port must be 0-65535" in bad_port.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "is a directory"),
        (b"not a database at all, just text" * 200, "is not a span database"),
        ("other-sqlite", "not an instrumentation-sdk one"),
    ],
    ids=["directory", "not-sqlite", "foreign-sqlite"],
)
def test_a_db_that_is_no_span_store_exits_2(
    tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    """A ``--db`` that exists but cannot be read as a span store is refused at start, not
    served as pages that only ever answer 503."""
    path = tmp_path / "spans.db"
    if content is None:
        path.mkdir()
    elif content == "other-sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
        conn.close()
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    result = run_ui("--db", str(path), "--port", "0")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_port_taken_exits_1(db: Path, ui: UiServer) -> None:
    port = ui.url.rsplit(":", 1)[1]
    result = run_ui("--db", str(db), "--port", port)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
