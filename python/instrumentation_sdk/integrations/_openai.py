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
from ._calls import Call, Library
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


def _parameters(kwargs: Mapping[str, Any], attributes: dict[str, Any]) -> None:
    for argument, key in _PARAMETERS.items():
        if argument in kwargs:
            value = kwargs[argument]
            if type(value) in _NUMBER:  # not bool, not None, not NOT_GIVEN
                attributes[key] = value
    count = 0
    for name in ("tools", "functions"):
        given = kwargs.get(name)
        if type(given) is list or type(given) is tuple:
            count += len(given)
    if count:
        attributes["tool_count"] = count


def _estimate(attributes: dict[str, Any], estimate: tuple[int, str, str | None] | None) -> None:
    if estimate is not None:
        tokens, method, encoding = estimate
        attributes["prompt_tokens_estimate"] = tokens
        attributes["token_count_method"] = method
        if encoding is not None:
            attributes["token_encoding"] = encoding


def describe_chat(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes: dict[str, Any] = {}
    _parameters(kwargs, attributes)
    _estimate(attributes, chat_prompt_estimate(model, kwargs))
    return Call(model=model, name="chat", attributes=attributes, prompt=kwargs.get("messages"))


def describe_responses(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes: dict[str, Any] = {}
    _parameters(kwargs, attributes)
    prompt = kwargs.get("input")
    _estimate(attributes, text_estimate(model, prompt, kwargs.get("instructions")))
    return Call(model=model, name="chat", attributes=attributes, prompt=prompt)


def describe_embeddings(kwargs: Mapping[str, Any]) -> Call:
    model = str(kwargs.get("model"))
    attributes: dict[str, Any] = {}
    _estimate(attributes, embeddings_estimate(model, kwargs.get("input")))
    return Call(model=model, name="embeddings", attributes=attributes, prompt=kwargs.get("input"))


def finish_chat(span: Any, result: Any) -> None:
    span.set_metadata("actual_model", result.model)
    span.set_metadata("response_id", result.id)
    choices = result.choices
    if choices:
        if choices[0].finish_reason is not None:
            span.set_metadata("finish_reason", choices[0].finish_reason)
        if _core.capture_content():
            message = choices[0].message
            span.set_completion(
                message.content
                if message.content is not None or not message.tool_calls
                else [message.model_dump(exclude_none=True)]
            )
    usage = result.usage
    if usage is not None:
        span.set_metadata("prompt_tokens", usage.prompt_tokens)
        span.set_metadata("completion_tokens", usage.completion_tokens)
        details = usage.prompt_tokens_details
        if details is not None and details.cached_tokens is not None:
            span.set_metadata("cache_read_tokens", details.cached_tokens)
        details = usage.completion_tokens_details
        if details is not None and details.reasoning_tokens is not None:
            span.set_metadata("reasoning_tokens", details.reasoning_tokens)


def finish_responses(span: Any, result: Any) -> None:
    span.set_metadata("actual_model", result.model)
    span.set_metadata("response_id", result.id)
    incomplete = result.incomplete_details
    reason = incomplete.reason if incomplete is not None else None
    span.set_metadata("finish_reason", reason or result.status)
    if _core.capture_content():
        span.set_completion(result.output_text)
    usage = result.usage
    if usage is not None:
        span.set_metadata("prompt_tokens", usage.input_tokens)
        span.set_metadata("completion_tokens", usage.output_tokens)
        if usage.input_tokens_details is not None:
            span.set_metadata("cache_read_tokens", usage.input_tokens_details.cached_tokens)
        if usage.output_tokens_details is not None:
            span.set_metadata("reasoning_tokens", usage.output_tokens_details.reasoning_tokens)


def finish_embeddings(span: Any, result: Any) -> None:
    span.set_metadata("actual_model", result.model)
    if result.usage is not None:
        span.set_metadata("prompt_tokens", result.usage.prompt_tokens)


def _sync(original: Any, describe: Any, finish: Any) -> Any:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not LIBRARY.observes(self._client):
            return original(self, *args, **kwargs)
        return _calls.run_sync(LIBRARY, original, self, args, kwargs, describe, finish)

    return create


def _async(original: Any, describe: Any, finish: Any) -> Any:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not LIBRARY.observes(self._client):
            return await original(self, *args, **kwargs)
        return await _calls.run_async(LIBRARY, original, self, args, kwargs, describe, finish)

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
