"""Fixtures for the token-counting benchmarks: our core and the two peers we measure against.

* ``ours``        -- ``instrumentation_sdk.count_tokens(text, model).tokens``
* ``tiktoken``    -- official tiktoken, ``len(enc.encode_ordinary(text))``
* ``bpe_openai``  -- the ``bpe-openai`` wheel (GitHub's ``bpe``/``bpe-openai`` crates),
  ``tokenizer.count(text)``

Official tiktoken reads its rank files from ``TIKTOKEN_CACHE_DIR``; we point it at the shared
offline cache next to the repository (``<repo>/../shared/tiktoken-cache``) unless the variable is
already set. A peer that cannot load is skipped with the reason (shown by ``-ra``), it never fails
the run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(REPO.parent / "shared" / "tiktoken-cache"))

# Model names our API takes for each encoding (official tiktoken's table).
MODEL_FOR_ENCODING = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}
IMPLEMENTATIONS = ("ours", "tiktoken", "bpe_openai")
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


@dataclass(frozen=True)
class Counter:
    """One implementation bound to one encoding: ``count(text) -> int``."""

    impl: str
    encoding: str
    count: Callable[[str], int]


class Unavailable(Exception):
    """A peer cannot be loaded here; the message is the skip reason."""


def _load_ours(encoding: str) -> Callable[[str], int]:
    from instrumentation_sdk import count_tokens, warmup

    model = MODEL_FOR_ENCODING[encoding]
    warmup([model])  # load the ranks now, not in the first timed round

    def count(text: str) -> int:
        return count_tokens(text, model).tokens

    return count


def _load_tiktoken(encoding: str) -> Callable[[str], int]:
    try:
        import tiktoken
    except ImportError as e:
        raise Unavailable(f"tiktoken is not installed: {e}") from e
    cache_dir = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    # tiktoken names cached files by the sha1 of their URL. Without the file it would try the
    # network (no timeout), so refuse up front instead of hanging an offline run.
    cached = cache_dir / hashlib.sha1(_TIKTOKEN_URL.format(encoding).encode()).hexdigest()
    if not cached.is_file():
        raise Unavailable(f"tiktoken: {encoding} is not in TIKTOKEN_CACHE_DIR={cache_dir}")
    try:
        enc = tiktoken.get_encoding(encoding)
    except Exception as e:
        raise Unavailable(f"tiktoken cannot load {encoding}: {type(e).__name__}: {e}") from e
    encode_ordinary = enc.encode_ordinary

    def count(text: str) -> int:
        return len(encode_ordinary(text))

    return count


def _load_bpe_openai(encoding: str) -> Callable[[str], int]:
    try:
        with warnings.catch_warnings():  # 0.1.4 uses importlib.resources.open_binary at import
            warnings.simplefilter("ignore", DeprecationWarning)
            import bpe_openai
    except ImportError as e:
        raise Unavailable(f"bpe-openai is not installed: {e}") from e
    tok = None
    # Some releases export `bpe_openai.cl100k_base()` returning a tokenizer with `count`; 0.1.4's
    # module-level names are the tiktoken-style `get_encoding` (whose `Encoding` has no `count`),
    # and the Rust tokenizer with `count` is `_bindings.tokenizer_for_encoding(name)`.
    factory = getattr(bpe_openai, encoding, None)
    if callable(factory):
        candidate = factory()
        if hasattr(candidate, "count"):
            tok = candidate
    if tok is None:
        try:
            from bpe_openai import _bindings

            tok = _bindings.tokenizer_for_encoding(encoding)
        except Exception as e:
            raise Unavailable(f"bpe-openai has no {encoding} tokenizer: {e}") from e
    tok_count = tok.count

    def count(text: str) -> int:  # one wrapper frame, like the other two
        return tok_count(text)

    return count


_LOADERS = {"ours": _load_ours, "tiktoken": _load_tiktoken, "bpe_openai": _load_bpe_openai}
_LOADED: dict[tuple[str, str], Counter | str] = {}


def load_counter(impl: str, encoding: str) -> Counter | str:
    """The counter, or the reason it is unavailable (loaded once per session)."""
    key = (impl, encoding)
    if key not in _LOADED:
        try:
            _LOADED[key] = Counter(impl, encoding, _LOADERS[impl](encoding))
        except Unavailable as e:
            print(f"\n[benches] skipping {impl} ({encoding}): {e}")
            _LOADED[key] = str(e)
    return _LOADED[key]


def available_counters(encoding: str) -> list[Counter]:
    """Every implementation that loads for ``encoding`` (ours always must)."""
    found = [
        c for impl in IMPLEMENTATIONS if isinstance(c := load_counter(impl, encoding), Counter)
    ]
    assert found, f"nothing loads {encoding}"
    assert found[0].impl == "ours", "our own core must load"
    return found


@pytest.fixture(scope="session")
def all_counters() -> Callable[[str], list[Counter]]:
    """``all_counters(encoding)`` -> every implementation that loads (for agreement checks)."""
    return available_counters


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> str:
    """The implementation under test: ``ours``, ``tiktoken`` or ``bpe_openai``."""
    return request.param


@pytest.fixture
def counter_for(impl: str) -> Callable[[str], Counter]:
    """``counter_for(encoding)`` -> the implementation under test, or skip with the reason."""

    def get(encoding: str) -> Counter:
        loaded = load_counter(impl, encoding)
        if isinstance(loaded, str):
            pytest.skip(loaded)
        return loaded

    return get
