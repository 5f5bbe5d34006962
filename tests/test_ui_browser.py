"""The dashboard's pages in a real browser: Playwright driving Debian's Chromium against
``instrumentation-sdk ui`` run in a subprocess over a store with known contents.

Playwright cannot download browsers here, so it launches the system's Chromium
(``$INSTRUMENTATION_SDK_CHROMIUM``, else ``chromium`` on the PATH). Without Playwright or
Chromium these tests skip with the reason; CI sets ``INSTRUMENTATION_SDK_REQUIRE_BROWSER=1``,
which turns such a skip into a failure (root ``conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from instrumentation_sdk import configure, flush, llm_span, shutdown
from ui_support import (
    XSS_COMPLETION,
    XSS_ERROR,
    XSS_META_KEY,
    XSS_META_VALUE,
    XSS_MODEL,
    XSS_NAME,
    XSS_PROMPT,
    UiServer,
    hex_id,
    known_spans,
    span,
    write_store,
)

WAIT_MS = 15_000
SEC = 1_000_000_000


def chromium_path() -> str | None:
    explicit = os.environ.get("INSTRUMENTATION_SDK_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def expect(locator: Any) -> Any:
    # Playwright's own waiting (selectors, not eval: the page's CSP forbids evaluating strings).
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need playwright: pip install 'instrumentation-sdk[browser]'")
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "browser tests need chromium (apt-get install chromium, or set "
            "INSTRUMENTATION_SDK_CHROMIUM)"
        )
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ui-browser") / "spans.db"
    write_store(path, known_spans(time.time_ns()))
    return path


@pytest.fixture(scope="module")
def ui(db: Path) -> Iterator[UiServer]:
    server = UiServer(db)
    yield server
    server.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records script errors and dialogs (an alert() would be XSS)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    new_page = context.new_page()
    new_page.errors = []
    new_page.dialogs = []
    new_page.on("pageerror", lambda error: new_page.errors.append(str(error)))

    def dismiss(dialog: Any) -> None:
        new_page.dialogs.append(dialog.message)
        dialog.dismiss()

    new_page.on("dialog", dismiss)
    yield new_page
    assert new_page.errors == [], "the page's script failed"
    assert new_page.dialogs == [], "a dialog opened: data ran as script"
    context.close()


def open_overview(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#spans-table tbody tr", timeout=WAIT_MS)


def spans_rows(page: Any) -> Any:
    return page.locator("#spans-table tbody tr")


def test_overview_renders_with_data(page: Any, ui: UiServer) -> None:
    open_overview(page, ui.url + "/")
    assert page.text_content("#card-requests .card-value") == "36"
    assert page.text_content("#card-errors .card-value") == "5.6%"  # 2 of 36
    assert "120 ms" in page.text_content("#card-ttft .card-value")
    assert page.text_content("#card-cost .card-value").startswith("$0.01")
    charts = page.locator("figure.chart")
    assert charts.count() == 6
    titles = [charts.nth(i).get_attribute("data-chart") for i in range(6)]
    assert titles == ["Requests", "Error rate", "Latency", "Time to first token", "Tokens", "Cost"]
    # Each chart drew marks for the data: bars for requests, a line or dots for latency.
    assert page.locator("figure[data-chart=Requests] rect").count() >= 30
    assert page.locator("figure[data-chart=Latency] circle").count() >= 3
    assert page.locator("figure[data-chart='Time to first token'] circle").count() == 2
    models = page.locator("table[data-by=model] tbody tr")
    assert models.count() == 6
    groups = {models.nth(i).get_attribute("data-group") for i in range(6)}
    assert {"gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4-5"} <= groups
    assert page.locator("table[data-by=service] tbody tr").count() == 6
    assert spans_rows(page).count() == 36
    assert "legacy" not in page.text_content("#spans-table")  # 3 days old: outside 1 hour


def test_filters_narrow_the_tables_and_live_in_the_url(page: Any, ui: UiServer) -> None:
    open_overview(page, ui.url + "/")
    page.select_option("#filter-model", "o3")
    expect(spans_rows(page)).to_have_count(1, timeout=WAIT_MS)
    assert spans_rows(page).first.locator("td.name").text_content() == "tool"
    assert page.locator("table[data-by=model] tbody tr").count() == 1
    assert page.text_content("#card-requests .card-value") == "1"
    assert parse_qs(urlparse(page.url).query) == {"model": ["o3"]}

    # A link with filters opens with them applied (fresh load): service and status.
    open_overview(page, ui.url + "/?service=worker&status=error")
    assert page.input_value("#filter-service") == "worker"
    assert page.input_value("#filter-status") == "error"
    assert spans_rows(page).count() == 1
    assert spans_rows(page).first.locator("td.name").text_content() == "chat"

    # Free text over names and errors; the range picker widens the window.
    open_overview(page, ui.url + "/")
    page.fill("#filter-q", "slow down")
    page.press("#filter-q", "Tab")  # change event
    expect(spans_rows(page)).to_have_count(1, timeout=WAIT_MS)
    assert "RateLimitError" in spans_rows(page).first.text_content()
    page.fill("#filter-q", "")
    page.press("#filter-q", "Tab")
    page.select_option("#filter-range", "7d")
    expect(spans_rows(page)).to_have_count(37, timeout=WAIT_MS)
    assert "range=7d" in page.url
    page.fill("#filter-session_id", "sess-1")
    page.press("#filter-session_id", "Tab")
    expect(spans_rows(page)).to_have_count(2, timeout=WAIT_MS)

    # The API's name for the window (`since`) opens the page with that range; a range the
    # picker does not offer is its default.
    open_overview(page, ui.url + "/?since=7d")
    assert page.input_value("#filter-range") == "7d"
    expect(spans_rows(page)).to_have_count(37, timeout=WAIT_MS)
    open_overview(page, ui.url + "/?since=5y")
    assert page.input_value("#filter-range") == "1h"
    assert spans_rows(page).count() == 36


def test_trace_deep_link_shows_tree_and_waterfall(page: Any, ui: UiServer) -> None:
    page.goto(f"{ui.url}/traces/{hex_id('agent', 32)}")  # a fresh load, not a click
    page.wait_for_selector("#trace-table tbody tr", timeout=WAIT_MS)
    rows = page.locator("#trace-table tbody tr")
    assert rows.count() == 4
    tree = [
        (
            rows.nth(i).locator("td.tree-name").text_content().strip(" \u00a0\u2514"),
            rows.nth(i).get_attribute("data-depth"),
            rows.nth(i).locator("td").nth(1).text_content(),
        )
        for i in range(4)
    ]
    assert tree == [
        ("agent", "0", "gateway"),
        ("retrieve", "1", "search"),
        ("answer", "1", "worker"),
        ("tool", "2", "tools"),
    ]
    # Waterfall: bars start at their offsets within the trace (900 ms long).
    lefts = [
        page.eval_on_selector(
            f"#trace-table tbody tr:nth-child({i + 1}) .bar", "bar => parseFloat(bar.style.left)"
        )
        for i in range(4)
    ]
    assert lefts == pytest.approx([0.0, 20 / 9, 120 / 9, 300 / 9], abs=0.01)
    widths = [
        page.eval_on_selector(
            f"#trace-table tbody tr:nth-child({i + 1}) .bar", "bar => parseFloat(bar.style.width)"
        )
        for i in range(4)
    ]
    assert widths == pytest.approx([100.0, 80 / 9, 600 / 9, 200 / 9], abs=0.01)
    # The streamed span carries its TTFT marker: 120 ms after its start at 120 ms.
    marker = page.locator("#trace-table tbody tr:nth-child(3) .ttft")
    assert marker.count() == 1
    marker_left = float(marker.evaluate("m => parseFloat(m.style.left)"))
    assert marker_left == pytest.approx(240 / 9, abs=0.01)
    # Clicking a span shows every metadata key, its events and captured content.
    rows.nth(2).click()
    detail = page.locator("#span-detail")
    assert detail.locator("h2").text_content() == "answer"
    metadata = page.text_content("#span-metadata")
    for key in ("time_to_first_token_ms", "stream_chunks", "finish_reason", "actual_model"):
        assert key in metadata
    assert "first_token" in detail.locator(".events").text_content()
    assert "What is the capital of France?" in page.text_content("#span-prompt")
    assert page.text_content("#span-completion") == "Paris."
    page.click("text=sess-1")
    page.wait_for_selector("#session-table tbody tr", timeout=WAIT_MS)
    assert page.url.endswith("/sessions/sess-1")
    assert page.locator("#session-table tbody tr").count() == 2
    assert page.text_content("#session-total").startswith("2 traces, 5 spans, 1 errors")


def test_error_span_shows_its_message(page: Any, ui: UiServer) -> None:
    page.goto(f"{ui.url}/traces/{hex_id('limited', 32)}")
    page.wait_for_selector("#span-error", timeout=WAIT_MS)
    assert page.text_content("#span-error") == "RateLimitError: 429: slow down, too many requests"
    assert "error" in page.get_attribute("#trace-table tbody tr", "class")
    page.goto(f"{ui.url}/traces/{'0' * 32}")
    page.wait_for_selector("#trace-error", timeout=WAIT_MS)
    assert "no spans of trace" in page.text_content("#trace-error")


def test_markup_in_data_renders_as_text_and_runs_nothing(page: Any, ui: UiServer) -> None:
    open_overview(page, ui.url + "/")
    row = page.locator("#spans-table tbody tr", has_text="InjectedError")
    assert row.locator("td.model").text_content() == XSS_MODEL
    assert row.locator("td.name").text_content() == XSS_NAME
    assert XSS_ERROR in row.locator("td.err").text_content()
    assert page.locator(f"table[data-by=model] tr[data-group='{XSS_MODEL}']").count() == 1
    page.goto(f"{ui.url}/traces/{hex_id('xss', 32)}")
    page.wait_for_selector("#span-detail h2", timeout=WAIT_MS)
    assert page.text_content("#span-detail h2") == XSS_NAME
    metadata = page.locator("#span-metadata tr")
    pairs = {
        metadata.nth(i).locator("th").text_content(): metadata.nth(i).locator("td").text_content()
        for i in range(metadata.count())
    }
    assert pairs == {XSS_META_KEY: XSS_META_VALUE, "note": XSS_NAME}
    assert page.text_content("#span-prompt") == XSS_PROMPT
    assert page.text_content("#span-completion") == XSS_COMPLETION
    assert page.text_content("#span-error") == f"InjectedError: {XSS_ERROR}"
    # Nothing ran and no element came from the data: no <img>, <script>, <svg onload>, ...
    assert page.evaluate("typeof window.__xss") == "undefined"
    created = page.evaluate(
        "document.querySelectorAll('main img, main script, main iframe, main b, "
        "[onerror], [onload], [onmouseover]').length"
    )
    assert created == 0
    page.hover("#span-metadata th")
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_live_update_shows_a_span_produced_after_the_page_opened(
    page: Any, ui: UiServer, db: Path
) -> None:
    open_overview(page, ui.url + "/")
    assert "live-span" not in page.text_content("#spans-table")
    # A span produced by the SDK itself, into the store the page reads.
    configure(exporter="sqlite", sqlite_path=db, flush_interval=0.05)
    try:
        with llm_span("gpt-4o", "openai", name="live-span") as span:
            span.set_metadata("prompt_tokens", 7)
        assert flush(10)
    finally:
        shutdown()
    page.wait_for_selector("#spans-table td.name:text-is('live-span')", timeout=WAIT_MS)
    assert page.text_content("#card-requests .card-value") == "37"


def test_token_from_the_printed_url(browser: Any, db: Path) -> None:
    server = UiServer(db, "--auth-token", "browser-secret")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        assert "needs its token" in page.text_content("body")
        page.goto(server.printed_url)  # ?token=... once, then the cookie
        page.wait_for_selector("#spans-table tbody tr", timeout=WAIT_MS)
        assert "token" not in page.url
        page.goto(f"{server.url}/traces/{hex_id('agent', 32)}")
        page.wait_for_selector("#trace-table tbody tr", timeout=WAIT_MS)
    finally:
        context.close()
        server.close()


def test_session_id_with_a_slash_opens(browser: Any, tmp_path: Path) -> None:
    from urllib.parse import quote

    odd = "team/a b?c#d%2F"
    path = tmp_path / "spans.db"
    now = time.time_ns()
    records = [
        span(f"odd-{i}", trace=f"odd-{i}", start=now - (60 - i) * SEC, duration_ms=5, session=odd)
        for i in range(3)
    ]
    write_store(path, records)
    server = UiServer(path)
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # From a span's detail: the session link the trace page makes.
        page.goto(f"{server.url}/traces/{hex_id('odd-1', 32)}")
        page.wait_for_selector("#trace-table tbody tr", timeout=WAIT_MS)
        page.click(f"a[href='/sessions/{quote(odd, safe='')}']")
        page.wait_for_selector("#session-table tbody tr", timeout=WAIT_MS)
        assert page.locator("#session-table tbody tr").count() == 3
        assert odd in page.text_content("h1")
        # And on a fresh load of the deep link.
        page.goto(f"{server.url}/sessions/{quote(odd, safe='')}")
        page.wait_for_selector("#session-table tbody tr", timeout=WAIT_MS)
        assert page.locator("#session-table tbody tr").count() == 3
        assert errors == []
    finally:
        context.close()
        server.close()
