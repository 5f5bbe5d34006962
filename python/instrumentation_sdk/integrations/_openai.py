"""The OpenAI client's calls as spans: ``chat.completions.create``, ``responses.create`` and
``embeddings.create``, sync and async, streamed or not, and their ``with_raw_response`` /
``with_streaming_response`` forms (which go through the same methods); the ``parse()``
helpers of chat completions and responses, and their ``stream()`` helpers (which call
``create``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from .. import _core
from . import _calls
from ._calls import Call, Library, run_async, run_sync
from ._openai_prompt import chat_prompt_estimate, embeddings_estimate, text_estimate

LIBRARY = Library(name="openai", provider="openai", request_id_header="x-request-id")

#: Request parameters recorded, by argument name -> metadata key.
_PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
}


_NUMBER = (int, float)


def _parameters(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The request parameters recorded and the tool count, as span attributes."""
    attributes: dict[str, Any] = {}
    if not kwargs.keys().isdisjoint(_PARAMETERS):  # most calls set none of them
        for argument, key in _PARAMETERS.items():
            if argument in kwargs:
                value = kwargs[argument]
                if type(value) in _NUMBER:  # not bool, not None, not NOT_GIVEN
                    attributes[key] = value
    tools = kwargs.get("tools")
    functions = kwargs.get("functions")
    count = len(tools) if type(tools) is list or type(tools) is tuple else 0
    if type(functions) is list or type(functions) is tuple:
        count += len(functions)
    if count:
        attributes["tool_count"] = count
    return attributes


def _estimate(attributes: dict[str, Any], estimate: tuple[int, str, str | None] | None) -> None:
    if estimate is not None:
        tokens, method, encoding = estimate
        attributes["prompt_tokens_estimate"] = tokens
        attributes["token_count_method"] = method
        if encoding is not None:
            attributes["token_encoding"] = encoding


def describe_chat(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes = _parameters(kwargs)
    estimate = chat_prompt_estimate(model, kwargs)
    if estimate is not None:
        tokens, method, encoding = estimate
        attributes["prompt_tokens_estimate"] = tokens
        attributes["token_count_method"] = method
        if encoding is not None:
            attributes["token_encoding"] = encoding
    return model, "chat", attributes, kwargs.get("messages")


def describe_responses(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes = _parameters(kwargs)
    prompt = kwargs.get("input")
    _estimate(attributes, text_estimate(model, prompt, kwargs.get("instructions")))
    return model, "chat", attributes, prompt


def describe_embeddings(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes: dict[str, Any] = {}
    _estimate(attributes, embeddings_estimate(model, kwargs.get("input")))
    return model, "embeddings", attributes, kwargs.get("input")


def _facts(
    result: Any,
    reason: Any,
    prompt: Any = None,
    completion: Any = None,
    cached: Any = None,
    reasoning: Any = None,
) -> tuple[Any, ...]:
    """An answer's ``key, value, ...`` pairs (``None``: not recorded): its model, id and finish
    reason, and the usage's token counts (Chat Completions and the Responses API name them
    differently)."""
    return (
        "actual_model",
        result.model,
        "response_id",
        result.id,
        "finish_reason",
        reason,
        "prompt_tokens",
        prompt,
        "completion_tokens",
        completion,
        "cache_read_tokens",
        cached,
        "reasoning_tokens",
        reasoning,
    )


def finish_chat(span: Any, result: Any) -> tuple[Any, ...]:
    """What a chat completion tells, as ``key, value, ...`` pairs (``None``: not recorded)."""
    choices = result.choices
    reason = None
    if choices:
        reason = choices[0].finish_reason
        if _core.capture_content():
            message = choices[0].message
            span.set_completion(
                message.content
                if message.content is not None or not message.tool_calls
                else [message.model_dump(exclude_none=True)]
            )
    usage = result.usage
    if usage is None:
        return _facts(result, reason)
    cached = usage.prompt_tokens_details
    reasoning = usage.completion_tokens_details
    return _facts(
        result,
        reason,
        usage.prompt_tokens,
        usage.completion_tokens,
        None if cached is None else cached.cached_tokens,
        None if reasoning is None else reasoning.reasoning_tokens,
    )


def finish_responses(span: Any, result: Any) -> tuple[Any, ...]:
    """What a Responses API answer tells, as ``key, value, ...`` pairs."""
    incomplete = result.incomplete_details
    reason = incomplete.reason if incomplete is not None else None
    if _core.capture_content():
        span.set_completion(result.output_text)
    reason = reason or result.status
    usage = result.usage
    if usage is None:
        return _facts(result, reason)
    cached = usage.input_tokens_details
    reasoning = usage.output_tokens_details
    return _facts(
        result,
        reason,
        usage.input_tokens,
        usage.output_tokens,
        None if cached is None else cached.cached_tokens,
        None if reasoning is None else reasoning.reasoning_tokens,
    )


def finish_embeddings(span: Any, result: Any) -> tuple[Any, ...]:
    usage = result.usage
    return (
        "actual_model",
        result.model,
        "prompt_tokens",
        None if usage is None else usage.prompt_tokens,
    )


def _sync(original: Any, describe: Any, finish: Any) -> Any:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if LIBRARY.everywhere or LIBRARY.observes(self._client):
            return run_sync(LIBRARY, original, self, args, kwargs, describe, finish)
        return original(self, *args, **kwargs)

    return create


def _async(original: Any, describe: Any, finish: Any) -> Any:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if LIBRARY.everywhere or LIBRARY.observes(self._client):
            return await run_async(LIBRARY, original, self, args, kwargs, describe, finish)
        return await original(self, *args, **kwargs)

    return create


def install() -> None:
    """Patch the resource classes (once)."""
    import openai
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings
    from openai.resources.responses import AsyncResponses, Responses

    LIBRARY.stream_types = (openai.Stream, openai.AsyncStream)
    _calls.patch_retry_sleep(LIBRARY, openai._base_client)
    # ``parse()`` posts by itself; the ``stream()`` helpers call ``create`` (looked up on the
    # resource when the stream opens), so they are observed through it.
    for sync_cls, async_cls, describe, finish, methods in (
        (Completions, AsyncCompletions, describe_chat, finish_chat, ("create", "parse")),
        (Responses, AsyncResponses, describe_responses, finish_responses, ("create", "parse")),
        (Embeddings, AsyncEmbeddings, describe_embeddings, finish_embeddings, ("create",)),
    ):
        for method in methods:
            if method not in sync_cls.__dict__:  # a client release without the helper
                continue
            LIBRARY.patch(
                sync_cls, method, functools.partial(_sync, describe=describe, finish=finish)
            )
            LIBRARY.patch(
                async_cls, method, functools.partial(_async, describe=describe, finish=finish)
            )


def client_types() -> tuple[type, ...]:
    import openai

    return (openai.OpenAI, openai.AsyncOpenAI)
