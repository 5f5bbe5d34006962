"""The Anthropic client's calls as spans: ``messages.create`` (streamed or not, and its
``with_raw_response`` / ``with_streaming_response`` forms) and ``messages.stream``, sync and
async."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from .. import _core
from . import _calls
from ._calls import Call, Library

LIBRARY = Library(name="anthropic", provider="anthropic", request_id_header="request-id")

_PARAMETERS = ("temperature", "top_p", "max_tokens")


def describe(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes: dict[str, Any] = {}
    for key in _PARAMETERS:
        value = kwargs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[key] = value
    tools = kwargs.get("tools")
    if isinstance(tools, list | tuple) and tools:
        attributes["tool_count"] = len(tools)
    messages = kwargs.get("messages")
    if isinstance(messages, list | tuple):
        # Claude's tokenizer is not public: the core's calibrated estimate of the text.
        system = kwargs.get("system")
        counted = list(messages)
        if isinstance(system, str):
            counted = [{"role": "system", "content": system}, *counted]
        count = _core.count_tokens([m for m in counted if isinstance(m, Mapping)], model)
        attributes["prompt_tokens_estimate"] = count.tokens
        attributes["token_count_method"] = count.method
    return model, "chat", attributes, messages


def finish(span: Any, message: Any) -> tuple[Any, ...]:
    """What a message tells, as ``key, value, ...`` pairs (``None``: not recorded)."""
    if _core.capture_content():
        texts = [block.text for block in message.content if getattr(block, "type", "") == "text"]
        span.set_completion(
            "".join(texts)
            if len(texts) == len(message.content)
            else [message.model_dump(exclude_none=True)]
        )
    answer = (
        "actual_model",
        message.model,
        "response_id",
        message.id,
        "finish_reason",
        message.stop_reason,
    )
    usage = message.usage
    if usage is None:
        return answer
    uncached = usage.input_tokens or 0
    cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
    cache_creation = getattr(usage, "cache_creation_input_tokens", None) or 0
    # Input usage as the GenAI conventions count it: input plus cache reads and cache writes,
    # each part also recorded.
    return (
        *answer,
        "prompt_tokens",
        uncached + cache_read + cache_creation,
        "uncached_prompt_tokens",
        uncached,
        "cache_read_tokens",
        cache_read,
        "cache_creation_tokens",
        cache_creation,
        "completion_tokens",
        usage.output_tokens,
    )


def _sync_create(original: Any) -> Any:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if LIBRARY.everywhere or LIBRARY.observes(self._client):
            return _calls.run_sync(LIBRARY, original, self, args, kwargs, describe, finish)
        return original(self, *args, **kwargs)

    return create


def _async_create(original: Any) -> Any:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if LIBRARY.everywhere or LIBRARY.observes(self._client):
            return await _calls.run_async(LIBRARY, original, self, args, kwargs, describe, finish)
        return await original(self, *args, **kwargs)

    return create


_REQUEST_ATTRIBUTE = "_{}__api_request"


def _stream(original: Any) -> Any:
    """``messages.stream(...)`` returns a manager whose ``__enter__`` sends the request; the
    span starts there, and the raw stream the helper reads is observed in place, so the helper's
    ``text_stream``, ``get_final_message()`` and ``until_done()`` keep working."""

    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        if not LIBRARY.observes(self._client):
            return manager
        try:
            attribute = _REQUEST_ATTRIBUTE.format(type(manager).__name__)
            request = getattr(manager, attribute)
            if inspect.isawaitable(request):
                setattr(manager, attribute, _observed_async_request(request, kwargs))
            else:
                setattr(manager, attribute, functools.partial(_observed_request, request, kwargs))
        except Exception as err:
            _calls.fault(f"observing messages.stream failed: {type(err).__name__}: {err}")
        return manager

    return stream


def _observed_request(request: Any, kwargs: Mapping[str, Any]) -> Any:
    span = _calls.begin(LIBRARY, describe, kwargs)
    if span is None:
        return request()
    try:
        raw_stream = request()
    except BaseException as err:
        _calls.record_error(LIBRARY, span, err)
        _calls.exit_span(span, err)
        raise
    _calls._settle(LIBRARY, span, raw_stream, finish)
    return raw_stream


async def _observed_async_request(request: Any, kwargs: Mapping[str, Any]) -> Any:
    try:
        span = _calls.begin(LIBRARY, describe, kwargs)
    except BaseException:
        close = getattr(request, "close", None)  # a coroutine: never sent, nor awaited
        if callable(close):
            close()
        raise
    if span is None:
        return await request
    try:
        raw_stream = await request
    except BaseException as err:
        _calls.record_error(LIBRARY, span, err)
        _calls.exit_span(span, err)
        raise
    _calls._settle(LIBRARY, span, raw_stream, finish)
    return raw_stream


def install() -> None:
    """Patch the resource classes (once)."""
    import anthropic
    from anthropic.resources.messages import AsyncMessages, Messages

    LIBRARY.stream_types = (anthropic.Stream, anthropic.AsyncStream)
    _calls.patch_retry_sleep(LIBRARY, anthropic._base_client)
    LIBRARY.patch(Messages, "create", _sync_create)
    LIBRARY.patch(AsyncMessages, "create", _async_create)
    LIBRARY.patch(Messages, "stream", _stream)
    LIBRARY.patch(AsyncMessages, "stream", _stream)


def client_types() -> tuple[type, ...]:
    import anthropic

    return (anthropic.Anthropic, anthropic.AsyncAnthropic)
