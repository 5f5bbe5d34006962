"""instrumentation-sdk: observe LLM calls with spans, exact local token counts and cheap export.

>>> from instrumentation_sdk import llm_span_with_tokens
>>> with llm_span_with_tokens("gpt-4o", "openai", prompt="Hello world!") as span:
...     span.set_metadata("completion_tokens", 12)
>>> span.metadata["prompt_tokens"]
3
"""

from ._core import __version__
from .integrations import (
    instrument_anthropic,
    instrument_openai,
    uninstrument_anthropic,
    uninstrument_openai,
)
from .pipeline import configure, flush, get_settings, shutdown, stats
from .scan import (
    InjectionVerdict,
    PiiFinding,
    PromptInjectionError,
    add_pii_pattern,
    mask_pii,
    scan_injection,
    scan_pii,
)
from .spans import (
    AsyncStream,
    Span,
    Stream,
    current_span,
    llm_span,
    llm_span_with_tokens,
    with_current_context,
)
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
    "AsyncStream",
    "InjectionVerdict",
    "PiiFinding",
    "PromptInjectionError",
    "Span",
    "Stream",
    "TokenCount",
    "__version__",
    "add_pii_pattern",
    "clear_token_cache",
    "configure",
    "configure_token_cache",
    "count_tokens",
    "count_tokens_batch",
    "current_span",
    "encoding_for_model",
    "flush",
    "get_settings",
    "instrument_anthropic",
    "instrument_openai",
    "llm_span",
    "llm_span_with_tokens",
    "mask_pii",
    "scan_injection",
    "scan_pii",
    "shutdown",
    "stats",
    "token_cache_stats",
    "uninstrument_anthropic",
    "uninstrument_openai",
    "warmup",
    "with_current_context",
]
