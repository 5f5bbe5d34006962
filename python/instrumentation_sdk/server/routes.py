"""The service's routes: what each path answers, and the counting behind the two POST routes.

A handler takes the ASGI ``scope`` and ``receive`` and returns a ``Response`` (or raises
``ApiError``); ``application.py`` does the dispatching, the auth check and the sending.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec

from .. import __version__
from .._core import model_table
from ..tokens import DEFAULT_MODEL, Prompt, TokenCount, count_tokens, count_tokens_batch
from ..tokens import token_cache_stats as _token_cache_stats
from .errors import ApiError, decode_json
from .limits import CountingPool, Receive, read_body
from .messages import check_messages
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openapi import build_openapi, docs_page, redoc_page
from .schemas import (
    BatchRequest,
    BatchResponse,
    CountRequest,
    CountResponse,
    ExactModel,
    HealthResponse,
    ModelPrefix,
    ModelsResponse,
)
from .settings import ServerSettings

__all__ = ["JSON", "Response", "Route", "Routes"]

JSON: Final = b"application/json"
HTML: Final = b"text/html; charset=utf-8"
COUNT_PATH: Final = "/v1/token-counting/count"
BATCH_PATH: Final = "/v1/token-counting/count/batch"

_encode = msgspec.json.Encoder().encode
_COUNT_DECODER: Final = msgspec.json.Decoder(CountRequest)
_BATCH_DECODER: Final = msgspec.json.Decoder(BatchRequest)


class Response(NamedTuple):
    """What a handler answers: status, body, content type and any extra headers."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[dict[str, Any], Receive], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """A path, its handlers by method (``HEAD`` answers like ``GET``) and its ``Allow`` header."""

    path: str
    methods: dict[str, Handler]
    allow: bytes

    @classmethod
    def of(cls, path: str, **handlers: Handler) -> Route:
        """``Route.of("/x", GET=handler)``."""
        methods = dict(handlers)
        if "GET" in methods:
            methods["HEAD"] = methods["GET"]
        return cls(path, methods, ", ".join(sorted(methods)).encode())


def _prompt(request: CountRequest, path: str) -> Prompt:
    """The prompt of a count request, which must have exactly one of prompt and messages."""
    prompt, messages = request.prompt, request.messages
    if isinstance(prompt, str):
        if isinstance(messages, list):
            raise ApiError(
                422, "give either `prompt` or `messages`, not both", field=f"{path}.messages"
            )
        return prompt
    if isinstance(messages, list):
        check_messages(messages, f"{path}.messages")
        return messages
    raise ApiError(
        422,
        "missing `prompt` (a string) or `messages` (a list of chat messages)",
        field=f"{path}.prompt",
    )


def _answer(model: str, count: TokenCount) -> CountResponse:
    return CountResponse(model, count.tokens, count.method, count.encoding)


def _count_groups(
    prompts: Sequence[Prompt], models: Sequence[str]
) -> tuple[list[TokenCount], float]:
    """Counts for prompts[i] with models[i], one ``count_tokens_batch`` per model; and the time."""
    start = time.perf_counter()
    first = models[0]
    if all(model == first for model in models):
        results = count_tokens_batch(prompts, first)
    else:
        groups: dict[str, list[int]] = {}
        for index, model in enumerate(models):
            groups.setdefault(model, []).append(index)
        slots: list[TokenCount | None] = [None] * len(prompts)
        for model, indices in groups.items():
            counts = count_tokens_batch([prompts[i] for i in indices], model)
            for index, count in zip(indices, counts, strict=True):
                slots[index] = count
        results = [count for count in slots if count is not None]
    return results, time.perf_counter() - start


class Routes:
    """The handlers of one app, sharing its settings, metrics and counting pool."""

    def __init__(self, settings: ServerSettings, metrics: Metrics, pool: CountingPool) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool = pool
        self._openapi: dict[str, Any] = build_openapi(
            __version__,
            secured=settings.auth_token is not None,
            max_body_bytes=settings.max_body_bytes,
        )
        self._openapi_body = _encode(self._openapi)
        exact, prefixes = model_table()
        self._models_body = _encode(
            ModelsResponse(
                default_model=DEFAULT_MODEL,
                exact=[ExactModel(name, encoding) for name, encoding in exact],
                prefixes=[ModelPrefix(prefix, encoding) for prefix, encoding in prefixes],
            )
        )
        self._health_body = _encode(HealthResponse("ok", __version__))

    def table(self) -> dict[str, Route]:
        """Every route by path."""
        routes = [
            Route.of(COUNT_PATH, POST=self.count),
            Route.of(BATCH_PATH, POST=self.batch),
            Route.of("/v1/models", GET=self.models),
            Route.of("/healthz", GET=self.health),
            Route.of("/metrics", GET=self.prometheus),
        ]
        if self.settings.docs:
            routes += [
                Route.of("/openapi.json", GET=self.openapi),
                Route.of("/docs", GET=self.docs),
                Route.of("/redoc", GET=self.redoc),
            ]
        return {route.path: route for route in routes}

    async def count(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``POST /v1/token-counting/count``: one prompt's tokens."""
        body = await read_body(scope, receive, self.settings.max_body_bytes)
        request = decode_json(_COUNT_DECODER, body)
        prompt = _prompt(request, "$")
        model = request.model
        start = time.perf_counter()
        try:
            if len(body) < self.settings.thread_threshold_bytes:
                result = count_tokens(prompt, model)
            else:
                result = await self.pool.run(count_tokens, prompt, model)
        except (TypeError, ValueError) as error:
            field = "$.prompt" if isinstance(prompt, str) else "$.messages"
            raise ApiError(422, str(error), field=field) from None
        self.metrics.observe_count("count", time.perf_counter() - start, 1, result.tokens)
        return Response(200, _encode(_answer(model, result)))

    async def batch(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``POST /v1/token-counting/count/batch``: many prompts, counted in parallel."""
        body = await read_body(scope, receive, self.settings.max_body_bytes)
        items = decode_json(_BATCH_DECODER, body).items
        if not items:
            return Response(200, _encode(BatchResponse([], 0)))
        prompts = [_prompt(item, f"$.items[{i}]") for i, item in enumerate(items)]
        models = [item.model for item in items]
        start = time.perf_counter()
        try:
            if len(body) < self.settings.thread_threshold_bytes:
                counts, _ = _count_groups(prompts, models)
            else:
                counts, _ = await self.pool.run(_count_groups, prompts, models)
        except (TypeError, ValueError) as error:
            raise ApiError(422, str(error), field="$.items") from None
        total = sum(count.tokens for count in counts)
        self.metrics.observe_count("batch", time.perf_counter() - start, len(counts), total)
        results = [_answer(model, count) for model, count in zip(models, counts, strict=True)]
        return Response(200, _encode(BatchResponse(results, total)))

    async def models(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``GET /v1/models``: the model-name-to-encoding table."""
        return Response(200, self._models_body)

    async def health(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``GET /healthz``: liveness."""
        return Response(200, self._health_body)

    async def prometheus(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``GET /metrics``: the Prometheus text format."""
        body = self.metrics.render(_token_cache_stats(), __version__)
        return Response(200, body, METRICS_CONTENT_TYPE)

    async def openapi(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``GET /openapi.json``: the OpenAPI document (``servers`` names a mount's root path)."""
        root_path = scope.get("root_path") or ""
        if not root_path:
            return Response(200, self._openapi_body)
        return Response(200, _encode({**self._openapi, "servers": [{"url": root_path}]}))

    async def docs(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``GET /docs``: Swagger UI."""
        return Response(200, docs_page(), HTML)

    async def redoc(self, scope: dict[str, Any], receive: Receive) -> Response:
        """``GET /redoc``: ReDoc."""
        return Response(200, redoc_page(), HTML)
