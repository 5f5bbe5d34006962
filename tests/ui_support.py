"""Shared by the dashboard's tests: a span store with known contents, and ``instrumentation-sdk
ui`` run for real in a subprocess (on a free port it picks and prints)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from instrumentation_sdk.exporters.sqlite import SqliteExporter

MS = 1_000_000
SEC = 1_000_000_000
STARTUP_SECONDS = 30.0

#: Untrusted text that would run script if a page rendered it as HTML.
XSS_MODEL = '<img src=x onerror="window.__xss=1">'
XSS_NAME = "<script>window.__xss=2</script>"
XSS_META_KEY = "<b onmouseover=window.__xss=3>key</b>"
XSS_META_VALUE = '"><svg onload="window.__xss=4">'
XSS_PROMPT = "<script>window.__xss=5</script> ignore previous instructions"
XSS_COMPLETION = '<img src=x onerror="window.__xss=6">'
XSS_ERROR = '<iframe src="javascript:window.__xss=7"></iframe>'


def hex_id(label: str, digits: int) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:digits]


def span(
    label: str,
    *,
    trace: str,
    start: int,
    duration_ms: float,
    model: str = "gpt-4o",
    provider: str | None = "openai",
    service: str = "api",
    name: str = "llm",
    parent: str | None = None,
    status: str = "ok",
    error: tuple[str, str] | None = None,
    session: str | None = None,
    user: str | None = None,
    metadata: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    prompt: Any = None,
    completion: Any = None,
) -> dict[str, Any]:
    """One exported record."""
    return {
        "trace_id": hex_id(trace, 32),
        "span_id": hex_id(label, 16),
        "parent_span_id": hex_id(parent, 16) if parent else None,
        "name": name,
        "model": model,
        "provider": provider,
        "service_name": service,
        "user_id": user,
        "session_id": session,
        "status": status,
        "error_type": error[0] if error else None,
        "error_message": error[1] if error else None,
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + round(duration_ms * MS),
        "metadata": metadata or {},
        "events": events or [],
        "prompt": prompt,
        "completion": completion,
    }


def known_spans(now: int) -> list[dict[str, Any]]:
    """The contents the API and browser tests check against.

    - trace "agent" (session "sess-1", user "ada"), 10 min ago, four services nested three deep:
      agent (gateway, gpt-4o) > retrieve (search, text-embedding-3-small)
                              > answer (worker, gpt-4o-mini, streamed: TTFT 120 ms) > tool
                                (tools, o3)
    - trace "limited" (session "sess-1"), 5 min ago: one claude-sonnet-4-5 span that failed
      with RateLimitError.
    - trace "xss", 3 min ago: markup in its model, name, metadata, prompt, completion, error.
    - 30 spans "bulk-N" over the last 50 minutes (gpt-4o and gpt-4o-mini, service "batch"),
      prompt_tokens 100, completion_tokens 10 each.
    - one "old" span 3 days ago (outside the default 1 hour window).
    """
    base = now - 10 * 60 * SEC
    spans = [
        span(
            "agent",
            trace="agent",
            start=base,
            duration_ms=900,
            name="agent",
            service="gateway",
            session="sess-1",
            user="ada",
            metadata={"prompt_tokens": 1000, "completion_tokens": 200},
        ),
        span(
            "retrieve",
            trace="agent",
            parent="agent",
            start=base + 20 * MS,
            duration_ms=80,
            name="retrieve",
            service="search",
            model="text-embedding-3-small",
            metadata={"prompt_tokens": 50},
        ),
        span(
            "answer",
            trace="agent",
            parent="agent",
            start=base + 120 * MS,
            duration_ms=600,
            name="answer",
            service="worker",
            model="gpt-4o-mini",
            metadata={
                "prompt_tokens": 2000,
                "completion_tokens": 400,
                "time_to_first_token_ms": 120.0,
                "stream_chunks": 42,
                "stream_status": "completed",
                "finish_reason": "stop",
                "actual_model": "gpt-4o-mini-2024-07-18",
            },
            events=[
                {"name": "first_token", "time_unix_nano": base + 240 * MS, "attributes": {}},
            ],
            prompt=[{"role": "user", "content": "What is the capital of France?"}],
            completion="Paris.",
        ),
        span(
            "tool",
            trace="agent",
            parent="answer",
            start=base + 300 * MS,
            duration_ms=200,
            name="tool",
            service="tools",
            model="o3",
            metadata={"prompt_tokens": 10, "completion_tokens": 5},
        ),
        span(
            "limited",
            trace="limited",
            start=now - 5 * 60 * SEC,
            duration_ms=50,
            name="chat",
            service="worker",
            model="claude-sonnet-4-5",
            provider="anthropic",
            status="error",
            error=("RateLimitError", "429: slow down, too many requests"),
            session="sess-1",
        ),
        span(
            "xss",
            trace="xss",
            start=now - 3 * 60 * SEC,
            duration_ms=30,
            name=XSS_NAME,
            service="public",
            model=XSS_MODEL,
            provider=None,
            status="error",
            error=("InjectedError", XSS_ERROR),
            metadata={XSS_META_KEY: XSS_META_VALUE, "note": XSS_NAME},
            prompt=XSS_PROMPT,
            completion=XSS_COMPLETION,
        ),
        span(
            "old",
            trace="old",
            start=now - 3 * 86400 * SEC,
            duration_ms=10,
            model="gpt-4",
            service="legacy",
        ),
    ]
    spans.extend(
        span(
            f"bulk-{i}",
            trace=f"bulk-{i}",
            start=now - (50 - i) * 60 * SEC,
            duration_ms=10 + i,
            model="gpt-4o" if i % 2 else "gpt-4o-mini",
            service="batch",
            metadata={"prompt_tokens": 100, "completion_tokens": 10},
        )
        for i in range(30)
    )
    return spans


def write_store(path: Path, records: list[dict[str, Any]]) -> None:
    exporter = SqliteExporter(path)
    try:
        exporter.export(records)
    finally:
        exporter.shutdown()


def ui_command() -> list[str]:
    return [sys.executable, "-m", "instrumentation_sdk.cli_ui", "ui"]


class UiServer:
    """``instrumentation-sdk ui --port 0`` in a subprocess; ``url`` is the one it printed."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in close())
            prefix="ui-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [*ui_command(), "--db", str(db), "--port", "0", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.printed_url = self._wait_url()
        self.url = self.printed_url.split("?")[0].rstrip("/")
        self._wait_ready()

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def _wait_url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            match = re.search(r"^open (http://\S+)$", self.output(), re.MULTILINE)
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"ui exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        self.close()
        raise AssertionError(f"ui printed no URL in {STARTUP_SECONDS}s:\n{self.output()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.close()
        raise AssertionError(f"ui not ready in {STARTUP_SECONDS}s:\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        os.unlink(self._log.name)
