"""Shared test setup: official tiktoken as the oracle, working offline.

Official tiktoken downloads its BPE files on first use. The workspace keeps the cl100k_base and
o200k_base files in ``<repo>/../shared/tiktoken-cache`` under the names tiktoken gives its cache,
so pointing ``TIKTOKEN_CACHE_DIR`` there makes the oracle work without a network. This has to
happen before tiktoken is imported anywhere, hence at the top of this conftest. A value the
caller already set (even an empty one, which tiktoken reads as "no cache") is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import configure, shutdown
from instrumentation_sdk import pipeline as sdk_pipeline
from instrumentation_sdk.exporters import InMemoryExporter

SHARED_TIKTOKEN_CACHE = Path(__file__).resolve().parent.parent.parent / "shared" / "tiktoken-cache"

if "TIKTOKEN_CACHE_DIR" not in os.environ and SHARED_TIKTOKEN_CACHE.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED_TIKTOKEN_CACHE)


@pytest.fixture(scope="session")
def oracle() -> Callable[[str], Any]:
    """``oracle(encoding_name)``: official tiktoken's ``Encoding``, loaded once per session.

    Skips the calling test, with the reason, when tiktoken is not installed or cannot load the
    encoding's files (no network and nothing cached).
    """
    loaded: dict[str, Any] = {}
    failed: dict[str, str] = {}

    def get(name: str) -> Any:
        if name in loaded:
            return loaded[name]
        if name not in failed:
            try:
                import tiktoken

                loaded[name] = tiktoken.get_encoding(name)
                return loaded[name]
            except Exception as err:
                failed[name] = f"{type(err).__name__}: {err}"
        pytest.skip(f"official tiktoken cannot load {name}: {failed[name]}")

    return get


def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("INSTRUMENTATION_SDK_") or name == "OTEL_SERVICE_NAME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(tmp_path / "default.db"))
    monkeypatch.setenv("INSTRUMENTATION_SDK_JSONL_PATH", str(tmp_path / "default.jsonl"))
    # Not a configure() argument: keeps retries fast in every test unless one sets its own.
    monkeypatch.setenv("INSTRUMENTATION_SDK_RETRY_BACKOFF", "0.01")


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[InMemoryExporter]:
    """A fresh span pipeline exporting to memory, in a clean environment; shut down afterwards."""
    _clean_environment(monkeypatch, tmp_path)
    memory = InMemoryExporter()
    configure(exporter=memory, flush_interval=0.05, exit_timeout=2.0)
    yield memory
    shutdown(timeout=5.0)


@pytest.fixture
def fresh_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kind of fault is logged once per process: start this test with none logged yet."""
    monkeypatch.setattr(sdk_pipeline, "_faults", sdk_pipeline._Faults())
