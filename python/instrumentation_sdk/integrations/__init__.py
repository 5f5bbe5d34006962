"""One line to observe every call an OpenAI or Anthropic client makes.

>>> from instrumentation_sdk import instrument_openai, instrument_anthropic
>>> instrument_openai()          # every OpenAI / AsyncOpenAI client in the process
>>> instrument_anthropic(client) # or one client only

Each call (``chat.completions.create``, ``responses.create``, ``embeddings.create``;
``messages.create``, ``messages.stream``; sync and async, streamed or not, and the
``with_raw_response`` / ``with_streaming_response`` forms) becomes one span, nested under the
current span as any ``llm_span`` is. The objects the client returns stay its own (a stream is
still an ``openai.Stream``, with ``.response``, ``with``, ``close()``; the Anthropic stream
helper keeps ``text_stream`` and ``get_final_message()``).

The client libraries stay optional: nothing here imports them until ``instrument_*`` is called.
"""

from __future__ import annotations

from typing import Any

from . import _anthropic, _openai
from ._calls import Library

__all__ = [
    "instrument_anthropic",
    "instrument_openai",
    "uninstrument_anthropic",
    "uninstrument_openai",
]


def _require(library: str) -> None:
    try:
        __import__(library)
    except ImportError as err:
        raise ImportError(
            f"instrument_{library}() needs the {library!r} package: "
            f"pip install 'instrumentation-sdk[{library}]'"
        ) from err


def _instrument(library: Library, module: Any, client: Any) -> None:
    _require(library.name)
    if client is not None and not isinstance(client, module.client_types()):
        names = " or ".join(t.__qualname__ for t in module.client_types())
        raise TypeError(
            f"instrument_{library.name}(client): expected a {library.name}.{names}, "
            f"got {type(client).__qualname__}"
        )
    module.install()
    if client is None:
        library.everywhere = True
    else:
        library.clients.add(client)


def instrument_openai(client: Any = None) -> None:
    """Observe the calls of every OpenAI client (``client=None``), or of ``client`` only.

    Idempotent: instrumenting twice observes each call once. Each call is one span with the
    requested ``model``, ``provider="openai"``, ``actual_model``, ``prompt_tokens`` and
    ``completion_tokens`` (usage), ``prompt_tokens_estimate`` (counted before the request is
    sent, tools included, with ``token_count_method``), cached and reasoning tokens,
    ``finish_reason``, the request parameters, the request id, ``retry_count`` and, for an
    API error, ``status="error"`` with its HTTP status (the exception propagates unchanged).

    >>> import openai
    >>> instrument_openai()
    >>> client = openai.OpenAI()
    >>> client.chat.completions.create(model="gpt-4o", messages=[...])  # doctest: +SKIP

    Raises ``ImportError`` naming the extra when ``openai`` is not installed, and
    ``TypeError`` when ``client`` is not an ``openai.OpenAI`` or ``openai.AsyncOpenAI``.
    """
    _instrument(_openai.LIBRARY, _openai, client)


def instrument_anthropic(client: Any = None) -> None:
    """Observe the calls of every Anthropic client (``client=None``), or of ``client`` only.

    As ``instrument_openai``, for ``messages.create`` and ``messages.stream``. ``prompt_tokens``
    is the input the GenAI conventions count: Anthropic's ``input_tokens`` plus cache reads and
    cache writes, each part also recorded (``uncached_prompt_tokens``, ``cache_read_tokens``,
    ``cache_creation_tokens``). ``finish_reason`` is Anthropic's ``stop_reason`` as is.

    Raises ``ImportError`` naming the extra when ``anthropic`` is not installed, and
    ``TypeError`` when ``client`` is not an ``anthropic.Anthropic`` or ``AsyncAnthropic``.
    """
    _instrument(_anthropic.LIBRARY, _anthropic, client)


def uninstrument_openai() -> None:
    """Stop observing OpenAI clients: the original methods are restored."""
    _openai.LIBRARY.restore()


def uninstrument_anthropic() -> None:
    """Stop observing Anthropic clients: the original methods are restored."""
    _anthropic.LIBRARY.restore()
