"""Prompt token counting: exact BPE counts for OpenAI models, a calibrated estimate for others.

The work happens in the Rust core (``_core``); this module is the documented, typed surface.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from . import _core
from ._core import TokenCount

__all__ = [
    "DEFAULT_MODEL",
    "ChatMessage",
    "Prompt",
    "TokenCount",
    "clear_token_cache",
    "configure_token_cache",
    "count_tokens",
    "count_tokens_batch",
    "encoding_for_model",
    "token_cache_stats",
    "warmup",
]

DEFAULT_MODEL = "gpt-4o"

ChatMessage: TypeAlias = Mapping[str, Any]
Prompt: TypeAlias = str | Sequence[ChatMessage]


def count_tokens(prompt: Prompt, model: str = DEFAULT_MODEL) -> TokenCount:
    """Count the tokens of ``prompt`` as ``model`` would see them.

    ``prompt`` is a ``str`` or a list of chat messages (mappings such as
    ``{"role": "user", "content": "Hi"}``; ``content`` may also be a list of parts, whose
    ``text`` parts count). Messages follow the OpenAI cookbook rule: 3 tokens per message, the
    tokens of every string value, 1 more for a ``name``, and 3 to prime the reply.

    For a model in tiktoken's table the count is exact (``method="tiktoken"``), equal to
    ``len(tiktoken.get_encoding(enc).encode_ordinary(text))``; text that looks like a special
    token counts as ordinary text. Any other model gets a calibrated estimate
    (``method="heuristic"``, ``encoding=None``).

    >>> count_tokens("Hello world!", "gpt-4o")
    TokenCount(tokens=3, method='tiktoken', encoding='o200k_base')
    >>> count_tokens([{"role": "user", "content": "Hello!"}], "gpt-4").tokens
    9

    Raises ``TypeError`` when ``prompt`` is neither a ``str`` nor a list of mappings.
    """
    return _core.count_tokens(prompt, model)


def count_tokens_batch(prompts: Iterable[Prompt], model: str = DEFAULT_MODEL) -> list[TokenCount]:
    """Count many prompts at once, in parallel threads of the Rust core for large batches.

    >>> [c.tokens for c in count_tokens_batch(["Hello world!", "Hi"], "gpt-4o")]
    [3, 1]
    """
    return _core.count_tokens_batch(prompts, model)


def encoding_for_model(model: str) -> str | None:
    """The BPE encoding official tiktoken 0.14 uses for ``model``, or ``None`` if it has none.

    Exact names first, then tiktoken's prefixes in its order (``gpt-4o-2024-05-13``,
    ``ft:gpt-4o-mini:org::id``, ``gpt-oss-120b``...).

    >>> encoding_for_model("gpt-4o-mini")
    'o200k_base'
    >>> encoding_for_model("claude-3-opus") is None
    True
    """
    return _core.encoding_for_model(model)


def warmup(models: str | Iterable[str] = ("gpt-4o", "gpt-4")) -> dict[str, float]:
    """Load the encodings that ``models`` use now, so the first request does not pay for it.

    ``models`` are model names or encoding names (``"o200k_base"``). Returns the seconds spent
    loading each encoding in this call (``0.0`` when it was already loaded; a load already
    under way on another thread, such as the pipeline's background load of the default
    encoding, is waited for). A name with no encoding to load (a model that is only ever
    estimated, or a typo) raises ``ValueError`` naming it, before anything is loaded.

    >>> sorted(warmup(["gpt-4o"]))
    ['o200k_base']
    """
    if isinstance(models, str):
        models = (models,)
    names = _core.encoding_names()
    encodings: list[str] = []
    for model in models:
        encoding = model if model in names else _core.encoding_for_model(model)
        if encoding is None:
            raise ValueError(
                f"warmup: no encoding to load for {model!r}: it is neither a model in "
                f"tiktoken's table nor an encoding name ({', '.join(names)}); other models "
                "are estimated and need nothing loaded"
            )
        if encoding not in encodings:
            encodings.append(encoding)
    return dict(_core.warmup_encodings(encodings))


def configure_token_cache(
    *, max_entries: int | None = None, min_text_bytes: int | None = None
) -> None:
    """Size the cache of exact counts for long texts (defaults: 4096 entries, texts >= 1 KiB).

    A long system prompt that every request repeats then costs one 128-bit hash instead of a
    BPE pass. ``max_entries=0`` turns the cache off. Each entry takes a few dozen bytes.
    """
    for name, value in (("max_entries", max_entries), ("min_text_bytes", min_text_bytes)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    _core.configure_token_cache(max_entries=max_entries, min_text_bytes=min_text_bytes)


def clear_token_cache() -> None:
    """Drop every cached count and zero the cache's counters."""
    _core.clear_token_cache()


def token_cache_stats() -> dict[str, int]:
    """The count cache's figures: ``hits``, ``misses``, ``entries``, ``max_entries``,
    ``min_text_bytes``, and ``tokenizer_faults`` (inputs the BPE engine failed on, which were
    estimated instead; expected to stay 0)."""
    return dict(_core.token_cache_stats())
