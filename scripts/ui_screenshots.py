"""Take the README's two dashboard screenshots (overview and trace) from a demo store.

    python scripts/ui_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Needs the ``browser`` extra (Playwright) and Chromium. The store is synthetic: an hour of traffic
over four models and three services, some of it streamed, a few errors, and one agent trace
nested three deep across four services.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from ui_support import MS, SEC, UiServer, hex_id, span, write_store  # noqa: E402


def demo_spans(now: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    models = [
        ("gpt-4o", "openai", 900.0),
        ("gpt-4o-mini", "openai", 400.0),
        ("claude-sonnet-4-5", "anthropic", 1200.0),
        ("o3", "openai", 3000.0),
    ]
    spans = []
    for i in range(600):
        model, provider, typical = models[rng.randrange(len(models))]
        start = now - 3600 * SEC + i * 6 * SEC + rng.randrange(6 * SEC)
        streamed = rng.random() < 0.5
        metadata: dict[str, Any] = {
            "prompt_tokens": rng.randrange(200, 3000),
            "completion_tokens": rng.randrange(20, 600),
        }
        if streamed:
            metadata["time_to_first_token_ms"] = rng.lognormvariate(5.3, 0.3)
            metadata["stream_chunks"] = rng.randrange(5, 200)
        failed = rng.random() < 0.03
        spans.append(
            span(
                f"demo-{i}",
                trace=f"demo-{i}",
                start=start,
                duration_ms=rng.lognormvariate(0, 0.5) * typical,
                model=model,
                provider=provider,
                service=("chat-api", "summarizer", "support-bot")[i % 3],
                name="chat.completions" if provider == "openai" else "messages",
                status="error" if failed else "ok",
                error=("RateLimitError", "429: rate limit reached for requests")
                if failed
                else None,
                metadata=metadata,
            )
        )
    base = now - 4 * 60 * SEC
    spans += [
        span(
            "agent",
            trace="agent",
            start=base,
            duration_ms=2400,
            name="support-agent",
            service="support-bot",
            model="gpt-4o",
            session="conversation-42",
            user="ada",
            metadata={"prompt_tokens": 1800, "completion_tokens": 240},
        ),
        span(
            "search",
            trace="agent",
            parent="agent",
            start=base + 40 * MS,
            duration_ms=310,
            name="search-docs",
            service="retrieval",
            model="text-embedding-3-small",
            metadata={"prompt_tokens": 64},
        ),
        span(
            "draft",
            trace="agent",
            parent="agent",
            start=base + 400 * MS,
            duration_ms=1500,
            name="draft-answer",
            service="summarizer",
            model="claude-sonnet-4-5",
            provider="anthropic",
            metadata={
                "prompt_tokens": 3200,
                "completion_tokens": 410,
                "time_to_first_token_ms": 380.0,
                "stream_chunks": 96,
                "stream_status": "completed",
                "finish_reason": "end_turn",
            },
            events=[{"name": "first_token", "time_unix_nano": base + 780 * MS, "attributes": {}}],
            prompt=[{"role": "user", "content": "How do I rotate my API key?"}],
            completion="Open Settings > API keys, create a new key, then revoke the old one.",
        ),
        span(
            "check",
            trace="agent",
            parent="draft",
            start=base + 1200 * MS,
            duration_ms=450,
            name="policy-check",
            service="guardrails",
            model="gpt-4o-mini",
            metadata={"prompt_tokens": 600, "completion_tokens": 8},
        ),
        span(
            "polish",
            trace="agent",
            parent="agent",
            start=base + 1950 * MS,
            duration_ms=420,
            name="polish",
            service="support-bot",
            model="gpt-4o-mini",
            metadata={"prompt_tokens": 700, "completion_tokens": 120},
        ),
    ]
    return spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = Path(tempfile.mkdtemp()) / "spans.db"
    write_store(db, demo_spans(time.time_ns()))
    server = UiServer(db)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, args=["--no-sandbox"]
            )
            # Wide enough for the tables by model and service to show every column (cost last).
            page = browser.new_page(viewport={"width": 1760, "height": 1000})
            page.goto(server.url + "/")
            page.wait_for_selector("#spans-table tbody tr")
            page.screenshot(path=str(out / "ui-overview.png"))
            page.goto(f"{server.url}/traces/{hex_id('agent', 32)}")
            page.wait_for_selector("#trace-table tbody tr")
            page.click("#trace-table tbody tr:nth-child(3)")
            page.screenshot(path=str(out / "ui-trace.png"))
            browser.close()
    finally:
        server.close()
    print(f"wrote {out / 'ui-overview.png'} and {out / 'ui-trace.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
