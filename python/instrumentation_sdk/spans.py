"""Spans around LLM calls: ``llm_span``, ``llm_span_with_tokens``, ``current_span``.

``Span``, ``llm_span`` and ``llm_span_with_tokens`` are the Rust core's (their docstrings are
there): the request thread's whole cost (ids, clocks, metadata, token counting, the push into the
buffer, ``async with`` included) runs without a Python frame.

The active span lives in a ``ContextVar``, so nesting follows the code (and asyncio tasks never
cross-link); ``parent=`` links explicitly, and ``with_current_context`` carries the active span
into a thread pool. Span code never raises into, or blocks, the application: its own faults are
swallowed, counted in ``stats()["span_faults"]`` and logged once.

``Span.wrap_stream`` observes a streamed response: it returns a ``Stream`` (or, for an async
iterable, an ``AsyncStream``) that yields the same chunks and forwards everything else to the
stream, records time to first token and the completion, and keeps the span open until the
stream has ended.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, ParamSpec, TypeVar

from . import _core, pipeline
from ._core import AsyncStream, Span, Stream, llm_span, llm_span_with_tokens

__all__ = [
    "STANDARD_METADATA_TYPES",
    "AsyncStream",
    "Span",
    "Stream",
    "current_span",
    "llm_span",
    "llm_span_with_tokens",
    "with_current_context",
]

P = ParamSpec("P")
R = TypeVar("R")

_TYPES: Final[Mapping[str, type]] = {"int": int, "float": float, "str": str}

#: The spec's dashboard keys keep these types: a value that converts losslessly is converted
#: (``"12"`` -> ``12`` for a token count); anything else is kept as given and counted as a fault.
#: Read from the core's table of standard keys (its only declaration).
STANDARD_METADATA_TYPES: Final[Mapping[str, type]] = MappingProxyType(
    {key: _TYPES[kind] for key, kind, _otlp in _core.standard_metadata_keys() if kind in _TYPES}
)

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "instrumentation_sdk.current_span", default=None
)


def current_span() -> Span | None:
    """The span active in this context (task or thread), or ``None``."""
    return _current.get()


def with_current_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` to run in a copy of the caller's context, so spans it opens nest under the
    span active here, even on another thread (contextvars do not cross threads by themselves).

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> def work() -> str | None:
    ...     with llm_span("gpt-4o") as child:
    ...         return child.parent_span_id
    >>> with llm_span("router") as parent, ThreadPoolExecutor() as pool:
    ...     pool.submit(with_current_context(work)).result() == parent.span_id
    True
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        # A Context can be entered by one thread at a time; copy again so concurrent calls work.
        return context.copy().run(fn, *args, **kwargs)

    return run_in_context


def _install_otel_parent_hook() -> None:
    """With ``opentelemetry-api`` installed, a span that starts with no parent of ours joins
    the active OpenTelemetry span's trace as its child. Called only for such root spans."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    get_current_span = trace.get_current_span

    def otel_parent() -> tuple[int, int] | None:
        context = get_current_span().get_span_context()
        return (context.trace_id, context.span_id) if context.is_valid else None

    # OpenTelemetry keeps its context in a ContextVar (private, so found defensively): while it
    # holds an empty context no OTel span is active, and the core skips calling the hook.
    runtime = getattr(__import__("opentelemetry.context", fromlist=["_"]), "_RUNTIME_CONTEXT", None)
    context_var = getattr(runtime, "_current_context", None)
    if type(context_var) is not contextvars.ContextVar:
        context_var = None
    _core.install_otel_parent_hook(otel_parent, context_var)


_install_otel_parent_hook()
_core.install_span_hooks(
    _current,
    pipeline.start_default_pipeline,
    pipeline.after_fork_in_child,
    pipeline.note_span_fault,
)
