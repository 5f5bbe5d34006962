"""instrumentation-sdk: observe LLM calls with spans, exact local token counts and cheap export.

>>> from instrumentation_sdk import count_tokens
>>> count_tokens("Hello world!", "gpt-4o").tokens
3
"""

from ._core import __version__
from .tokens import (
    DEFAULT_MODEL,
    TokenCount,
    clear_token_cache,
    configure_token_cache,
    count_tokens,
    count_tokens_batch,
    encoding_for_model,
    token_cache_stats,
    warmup,
)

__all__ = [
    "DEFAULT_MODEL",
    "TokenCount",
    "__version__",
    "clear_token_cache",
    "configure_token_cache",
    "count_tokens",
    "count_tokens_batch",
    "encoding_for_model",
    "token_cache_stats",
    "warmup",
]
