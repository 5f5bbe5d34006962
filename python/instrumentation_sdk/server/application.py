"""The ASGI application: routing, authentication, error handling, lifespan.

A plain ASGI callable on msgspec, without a web framework: on the hot path (a short prompt) a
framework's request machinery costs several times the count itself; see the README's
"Token counting service" section for the measurements behind that choice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..tokens import warmup
from .auth import PROTECTED_PREFIX, BearerAuth
from .errors import ApiError, ClientDisconnected
from .limits import CountingPool
from .metrics import Metrics
from .routes import JSON, Response, Routes
from .settings import ServerSettings

__all__ = ["TokenCountingApp"]

logger = logging.getLogger("instrumentation_sdk.server")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_UNMATCHED = "unmatched"
_CLIENT_CLOSED = 499  # nginx's code for "the client went away"; only ever a metric label
_INTERNAL_ERROR = ApiError(500, "internal error; the server's log has the details").body()


class TokenCountingApp:
    """The token-counting service as an ASGI 3 application.

    Mount it in another ASGI app (its routes then live under the mount's root path) or run it
    under any ASGI server. ``metrics`` and ``settings`` are this app's own.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings.validated()
        self.metrics = Metrics()
        self.pool = CountingPool(self.settings.counting_threads)
        token = self.settings.auth_token
        self._auth = BearerAuth(token) if token is not None else None
        self._routes = Routes(self.settings, self.metrics, self.pool).table()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})  # the server answers 403

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        root_path: str = scope.get("root_path") or ""
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        method: str = scope["method"]
        route = self._routes.get(path)
        label = _UNMATCHED if route is None else route.path
        try:
            if self._auth is not None and path.startswith(PROTECTED_PREFIX):
                denied = self._auth.check(scope["headers"])
                if denied is not None:
                    raise denied
            if route is None:
                raise ApiError(404, f"no such path: {path[:200]}")
            handler = route.methods.get(method)
            if handler is None:
                allowed = route.allow.decode()
                raise ApiError(
                    405,
                    f"{method[:20]} is not allowed on {route.path}; allowed: {allowed}",
                    headers=((b"allow", route.allow),),
                )
            response = await handler(scope, receive)
        except ApiError as error:
            response = Response(error.status, error.body(), JSON, error.headers)
        except ClientDisconnected:
            self.metrics.record_response(label, _CLIENT_CLOSED)
            return
        except Exception:
            logger.exception("unexpected error serving %s %s", method, path[:200])
            response = Response(500, _INTERNAL_ERROR)
        self.metrics.record_response(label, response.status)
        body = response.body
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", b"%d" % len(body)),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    warmup(self.settings.warmup_models)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
