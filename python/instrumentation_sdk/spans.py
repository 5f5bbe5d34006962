"""Spans around LLM calls: ``llm_span``, ``llm_span_with_tokens``, ``current_span``.

A span works as both ``with`` and ``async with``. The active span lives in a ``ContextVar``, so
nesting follows the code (and asyncio tasks never cross-link); ``parent=`` links explicitly, and
``with_current_context`` carries the active span into a thread pool.

The request thread's work (ids, clocks, metadata, token counting, the push into the buffer) runs
in the Rust core. Span code never raises into, or blocks, the application: its own faults are
swallowed, counted in ``stats()["span_faults"]`` and logged once.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar

from . import _core, pipeline
from .tokens import Prompt

__all__ = [
    "STANDARD_METADATA_TYPES",
    "Span",
    "current_span",
    "llm_span",
    "llm_span_with_tokens",
    "with_current_context",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The spec's dashboard keys keep these types: a value that converts losslessly is converted
#: (``"12"`` -> ``12`` for a token count); anything else is kept as given and counted as a fault.
STANDARD_METADATA_TYPES: Final[Mapping[str, type]] = MappingProxyType(
    {
        "prompt_tokens": int,
        "completion_tokens": int,
        "actual_model": str,
        "session_id": str,
        "finish_reason": str,
        "retry_count": int,
    }
)

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "instrumentation_sdk.current_span", default=None
)


class Span(_core.SpanCore):
    """One LLM call. Create it with ``llm_span(...)`` or ``llm_span_with_tokens(...)``.

    Read-only attributes: ``trace_id`` (32 hex), ``span_id`` (16 hex), ``parent_span_id``,
    ``name``, ``model``, ``provider``, ``service_name``, ``user_id``, ``session_id``, ``status``
    (``"unset"`` until it ends, then ``"ok"`` or ``"error"``), ``error_type``, ``error_message``,
    ``start_time_unix_nano``, ``end_time_unix_nano``, ``metadata``.

    ``set_metadata(key, value)`` records anything else (any str key). The spec's standard keys
    keep their types: ``prompt_tokens``, ``completion_tokens`` and ``retry_count`` are ints;
    ``actual_model``, ``session_id`` and ``finish_reason`` are strs. It never raises; after the
    span ends it is ignored (and counted).
    """

    __slots__ = ()

    @property
    def metadata(self) -> Mapping[str, Any]:
        """A read-only snapshot of the metadata recorded so far."""
        return MappingProxyType(self._metadata())

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return (
            f"Span(name={self.name!r}, model={self.model!r}, trace_id={self.trace_id!r}, "
            f"span_id={self.span_id!r}, status={self.status!r})"
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


_LLM_SPAN_DOC = """A span around one LLM call, for ``with`` or ``async with``.

    ``llm_span(model, provider=None, *, service_name=None, user_id=None, session_id=None,
    name=None, parent=None, **attributes)``

    Extra keyword arguments become metadata. ``service_name``, ``user_id`` and ``session_id``
    default to the parent span's; a span without a service name gets the configured one. An
    exception in the block ends the span with ``status="error"``, ``error_type`` (the class name)
    and ``error_message``, then propagates unchanged.

    >>> with llm_span("gpt-4o", "openai", user_id="u1") as span:
    ...     span.set_metadata("completion_tokens", 42)
    >>> span.status, span.metadata["completion_tokens"]
    ('ok', 42)
    """

_LLM_SPAN_WITH_TOKENS_DOC = """Like ``llm_span``, and counts ``prompt`` in the Rust core before the
    block runs.

    ``llm_span_with_tokens(model, provider=None, *, prompt, service_name=None, user_id=None,
    session_id=None, name=None, parent=None, **attributes)``

    Records ``prompt_tokens``, ``token_count_method`` (``"tiktoken"`` for models in tiktoken's
    table, else ``"heuristic"``) and, for exact counts, ``token_encoding``. Never raises: a
    prompt that is neither a ``str`` nor a message list is estimated from its ``str()``.

    >>> with llm_span_with_tokens("gpt-4o", "openai", prompt="Hello world!") as span:
    ...     pass
    >>> span.metadata["prompt_tokens"], span.metadata["token_count_method"]
    (3, 'tiktoken')
    """

if TYPE_CHECKING:

    def llm_span(
        model: str,
        provider: str | None = None,
        *,
        service_name: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        name: str | None = None,
        parent: Span | None = None,
        **attributes: Any,
    ) -> Span: ...

    def llm_span_with_tokens(
        model: str,
        provider: str | None = None,
        *,
        prompt: Prompt | object,
        service_name: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        name: str | None = None,
        parent: Span | None = None,
        **attributes: Any,
    ) -> Span: ...

else:
    # At run time the keywords go straight to the Rust constructor, which validates them: a
    # wrapper that re-spells every keyword costs three times as much on the request thread.

    def llm_span(*arguments, **keywords):
        return Span(*arguments, **keywords)

    def llm_span_with_tokens(*arguments, prompt, **keywords):
        span = Span(*arguments, **keywords)
        span._set_prompt(prompt)
        return span

    llm_span.__doc__ = _LLM_SPAN_DOC
    llm_span_with_tokens.__doc__ = _LLM_SPAN_WITH_TOKENS_DOC


_core.install_span_hooks(
    _current, pipeline.start_default_pipeline, pipeline.after_fork_in_child, pipeline.note_fault
)
