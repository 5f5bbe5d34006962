"""The token-counting HTTP service: ``POST /v1/token-counting/count`` and friends, as ASGI.

Run it with ``instrumentation-sdk serve`` (uvicorn), or under your own ASGI server::

    uvicorn instrumentation_sdk.server:app --port 8002
    uvicorn instrumentation_sdk.server:create_app --factory --port 8002

or mount it in your own app (Starlette ``Mount("/tokens", app=create_app())``, FastAPI
``app.mount("/tokens", create_app())``, Litestar ``asgi(..., is_mount=True)``).

``app`` is created on first access from the environment (``INSTRUMENTATION_SDK_AUTH_TOKEN``,
``INSTRUMENTATION_SDK_MAX_BODY_BYTES``).

>>> app = create_app(auth_token=None)
>>> app.settings.max_body_bytes
16777216
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .settings import (
    DEFAULT_MAX_BODY_BYTES,
    ENV_AUTH_TOKEN,
    ENV_MAX_BODY_BYTES,
    ServerSettings,
    parse_size,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ENV_AUTH_TOKEN",
    "ENV_MAX_BODY_BYTES",
    "ServerSettings",
    "TokenCountingApp",
    "app",
    "create_app",
    "parse_size",
]

if TYPE_CHECKING:
    from .application import TokenCountingApp

# The app's modules load on first use, so that `instrumentation-sdk count` (whose CLI imports
# the serve command and its settings) does not pay for asyncio and the routes.
_app: TokenCountingApp | None = None


def create_app(settings: ServerSettings | None = None, **overrides: Any) -> TokenCountingApp:
    """A new token-counting ASGI app.

    ``settings`` defaults to ``ServerSettings.from_env()``; keyword ``overrides`` replace single
    fields (``create_app(auth_token="s3cret", max_body_bytes=1 << 20)``). Raises ``ValueError``
    for a bad setting and ``TypeError`` for an unknown one.
    """
    from .application import TokenCountingApp

    base = ServerSettings.from_env() if settings is None else settings
    if overrides:
        base = replace(base, **overrides)
    return TokenCountingApp(base)


def __getattr__(name: str) -> Any:
    """``app``: one shared app from the environment, created on first access; and
    ``TokenCountingApp``, imported on first access."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    if name == "TokenCountingApp":
        from .application import TokenCountingApp

        return TokenCountingApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
