"""Shared test setup: official tiktoken as the oracle, working offline.

Official tiktoken downloads its BPE files on first use. The workspace keeps the cl100k_base and
o200k_base files in ``<repo>/../shared/tiktoken-cache`` under the names tiktoken gives its cache,
so pointing ``TIKTOKEN_CACHE_DIR`` there makes the oracle work without a network. This has to
happen before tiktoken is imported anywhere, hence at the top of this conftest. A value the
caller already set (even an empty one, which tiktoken reads as "no cache") is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
