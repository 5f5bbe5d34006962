"""The dashboard as an ASGI 3 application: the pages, their static assets and the JSON API.

Like the token-counting service, a plain ASGI callable on msgspec (no web framework), served by
uvicorn. Queries run in a worker thread on a fresh read-only connection per request (about a
fifth of a millisecond to open), so a store migrated, replaced or created while the dashboard
runs is simply read as it now is.

Security: every page is the same static shell (``static/index.html``) whose script renders data
with ``textContent`` only; the Content-Security-Policy allows scripts and styles from this
origin alone (no inline script, no ``eval``). With an auth token, every path but ``/healthz``
needs it: as ``Authorization: Bearer``, or the cookie a page load with ``?token=`` sets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote

import msgspec

from .. import __version__
from ..exporters.rollups import MINUTE_NS
from ..exporters.sqlite import default_db_path
from ..store import GROUP_COLUMNS, SpanStore, StoreError, open_store, parse_since
from .openapi import build_openapi
from .queries import (
    MAX_LIMIT,
    MAX_POINTS,
    SpanFilter,
    ensure_math,
    group_stats,
    search_spans,
    session_total,
    session_traces,
    time_series,
    trace_spans,
)

__all__ = ["COOKIE_NAME", "CSP", "DashboardApp"]

logger = logging.getLogger("instrumentation_sdk.ui")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: Scripts, styles, images and fetches from this origin only; nothing inline, no eval, no
#: frames, no plugins.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
COOKIE_NAME: Final = "instrumentation_sdk_ui_token"
JSON: Final = b"application/json"
_SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)
_ASSET_TYPES: Final = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".html": b"text/html; charset=utf-8",
}
_PAGE_PREFIXES: Final = ("/traces/", "/sessions/")
_FILTER_PARAMS: Final = ("model", "provider", "service", "status", "session_id", "user_id", "q")
_encode = msgspec.json.Encoder().encode
_NS_PER_MS: Final = 1_000_000


class ApiError(Exception):
    """An error answer: ``status`` and a one-line ``detail`` (as ``{"error", "detail"}``)."""

    def __init__(self, status: int, detail: str, headers: Headers | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


def _load_assets() -> dict[str, bytes]:
    folder = resources.files(__package__).joinpath("static")
    return {
        item.name: item.read_bytes()
        for item in folder.iterdir()
        if item.is_file() and Path(item.name).suffix in _ASSET_TYPES
    }


class DashboardApp:
    """``instrumentation-sdk ui`` as an ASGI app over the span database at ``db_path``
    (``None``: the exporter's default path, read on each request). ``auth_token`` protects
    every path but ``/healthz``."""

    def __init__(self, db_path: str | Path | None = None, *, auth_token: str | None = None) -> None:
        if auth_token is not None and (not isinstance(auth_token, str) or not auth_token.strip()):
            raise ValueError("auth_token must be a non-empty str or None")
        self.db_path = Path(db_path).expanduser() if db_path is not None else None
        self._digest = hashlib.sha256(auth_token.encode()).digest() if auth_token else None
        self._assets = _load_assets()
        self._openapi = _encode(build_openapi(__version__))

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        status, body, content_type, headers = await self._answer(scope)
        all_headers = [
            (b"content-type", content_type),
            (b"content-length", b"%d" % len(body)),
            *_SECURITY_HEADERS,
            *headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        body = b"" if scope["method"] == "HEAD" else body
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> tuple[int, bytes, bytes, Headers]:
        path: str = scope["path"]
        raw = _raw_path(scope)
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise ApiError(405, "the dashboard only answers GET", [(b"allow", b"GET, HEAD")])
            query = _query(scope)
            if path == "/healthz":
                return 200, b'{"status":"ok"}', JSON, []
            if self._digest is not None:
                redirect = self._check_auth(scope, raw, query)
                if redirect is not None:
                    return redirect
            if path.startswith("/api/"):
                result = await asyncio.to_thread(self._api, path, raw, query)
                return 200, _encode(result), JSON, []
            return self._static(path, raw)
        except ApiError as error:
            body = _encode({"error": _reason(error.status), "detail": error.detail})
            return error.status, body, JSON, error.headers
        except Exception:
            logger.exception("unexpected error serving %s", path[:200])
            body = _encode({"error": "internal_error", "detail": "see the server's log"})
            return 500, body, JSON, []

    # -- auth -------------------------------------------------------------------------------

    def _matches(self, token: bytes) -> bool:
        assert self._digest is not None
        return hmac.compare_digest(hashlib.sha256(token).digest(), self._digest)

    def _check_auth(
        self, scope: Scope, path: str, query: dict[str, str]
    ) -> tuple[int, bytes, bytes, Headers] | None:
        """``None`` when the request carries the token; a redirect that sets the cookie for a
        page load with a right ``?token=``; else ``ApiError(401)``. ``path`` is the raw
        (percent-encoded) path, so the redirect keeps a session id's ``%2F``."""
        assert self._digest is not None
        cookie_token = self._digest.hex().encode()
        token = query.get("token")
        if token is not None and not path.startswith("/api/") and self._matches(token.encode()):
            rest = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items() if k != "token")
            location = quote(path, safe=_PATH_SAFE) + (f"?{rest}" if rest else "")
            # The cookie holds the token's SHA-256, not the token: no quoting issues, and the
            # token itself is not stored in the browser.
            cookie = f"{COOKIE_NAME}={cookie_token.decode()}; Path=/; HttpOnly; SameSite=Strict"
            return (
                303,
                b"",
                b"text/plain",
                [
                    (b"location", location.encode()),
                    (b"set-cookie", cookie.encode()),
                ],
            )
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.strip().partition(b" ")
                if scheme.lower() == b"bearer" and self._matches(credentials.strip()):
                    return None
            elif name == b"cookie":
                for part in value.split(b";"):
                    key, _, cookie_value = part.strip().partition(b"=")
                    if key == COOKIE_NAME.encode() and hmac.compare_digest(
                        cookie_value, cookie_token
                    ):
                        return None
        raise ApiError(
            401,
            "this dashboard needs its token: open the URL it printed (with ?token=...), or send "
            "'Authorization: Bearer TOKEN'",
            [(b"www-authenticate", b'Bearer realm="instrumentation-sdk ui"')],
        )

    # -- pages and assets ---------------------------------------------------------------------

    def _static(self, path: str, raw: str) -> tuple[int, bytes, bytes, Headers]:
        if path == "/openapi.json":
            return 200, self._openapi, JSON, []
        # Page paths are matched encoded: a session id may hold "/" (sent as %2F).
        if path == "/" or (
            raw.startswith(_PAGE_PREFIXES) and raw.count("/") == 2 and not raw.endswith("/")
        ):
            return 200, self._assets["index.html"], _ASSET_TYPES[".html"], []
        if path.startswith("/static/"):
            name = path[len("/static/") :]
            asset = self._assets.get(name)
            if asset is not None and name != "index.html":
                return 200, asset, _ASSET_TYPES[Path(name).suffix], []
        raise ApiError(404, f"no such page: {path[:200]}")

    # -- the JSON API -------------------------------------------------------------------------

    def _open(self) -> SpanStore:
        try:
            store = open_store(self.db_path if self.db_path is not None else default_db_path())
        except StoreError as error:
            raise ApiError(503, str(error)) from None
        conn = store._conn
        # Map the whole store (1 GiB: the exporter's default bound): each request opens a fresh
        # connection, whose reads then come from the OS page cache without a copy. Address
        # space only; SQLite caps it where it must (32-bit).
        conn.execute(f"PRAGMA mmap_size = {1 << 30}")
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA temp_store = MEMORY")
        ensure_math(conn)
        return store

    def _api(self, path: str, raw: str, query: dict[str, str]) -> Any:
        endpoint, _, rest = path[len("/api/") :].partition("/")
        if endpoint == "spans" and not rest:
            return self._spans(query)
        if endpoint == "stats" and not rest:
            return self._stats(query)
        if endpoint == "timeseries" and not rest:
            return self._timeseries(query)
        if endpoint == "traces" and rest and "/" not in rest:
            _allow(query, ())
            with self._open() as store:
                try:
                    spans = trace_spans(store, rest)
                except ValueError as error:
                    raise ApiError(400, str(error)) from None
            if not spans:
                raise ApiError(404, f"no spans of trace {rest[:40]} in the store")
            return {"trace_id": spans[0]["trace_id"], "spans": spans}
        # The session id is taken from the encoded path: it may hold "/" (sent as %2F).
        encoded = raw[len("/api/sessions/") :] if raw.startswith("/api/sessions/") else ""
        if endpoint == "sessions" and encoded and "/" not in encoded:
            try:
                session_id = unquote(encoded, errors="strict")
            except UnicodeDecodeError:
                raise ApiError(
                    400, "a session id in the path must be UTF-8, percent-encoded"
                ) from None
            _allow(query, ())
            with self._open() as store:
                traces = session_traces(store, session_id)
            if not traces:
                raise ApiError(404, f"no spans of session {session_id[:80]!r} in the store")
            return {"session_id": session_id, "total": session_total(traces), "traces": traces}
        raise ApiError(404, f"no such API path: {path[:200]}")

    def _spans(self, query: dict[str, str]) -> Any:
        _allow(query, (*_FILTER_PARAMS, "since", "until", "limit", "cursor"))
        span_filter = _filter(query)
        limit = _int(query, "limit", 50, 1, MAX_LIMIT)
        with self._open() as store:
            try:
                return search_spans(store, span_filter, limit=limit, cursor=query.get("cursor"))
            except ValueError as error:
                raise ApiError(400, f"cursor: {error}") from None

    def _stats(self, query: dict[str, str]) -> Any:
        _allow(query, (*_FILTER_PARAMS, "since", "until", "by"))
        by = query.get("by", "model")
        if by not in GROUP_COLUMNS:
            raise ApiError(400, f"by must be one of {', '.join(GROUP_COLUMNS)}, got {by[:40]!r}")
        span_filter = _filter(query)
        with self._open() as store:
            groups, total = group_stats(store, span_filter, by)
        return {"by": by, "filter": span_filter.as_dict(), "total": total, "groups": groups}

    def _timeseries(self, query: dict[str, str]) -> Any:
        _allow(query, (*_FILTER_PARAMS, "since", "until", "points"))
        now = _now()
        since = _time(query, "since", now) if "since" in query else now - 3600 * 10**9
        until = _time(query, "until", now) if "until" in query else now
        if until <= since:
            raise ApiError(400, "until must be later than since")
        points = _int(query, "points", 60, 1, MAX_POINTS)
        span_filter = _filter({k: v for k, v in query.items() if k not in ("since", "until")})
        with self._open() as store:
            series = time_series(store, span_filter, since_ns=since, until_ns=until, points=points)
        return {"since_unix_nano": since, "until_unix_nano": until, **series}


#: Characters a path keeps unquoted in a redirect ("%" too: the path is already encoded).
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"


def _raw_path(scope: Scope) -> str:
    """The request's path as sent (percent-encoded), without the query: ``scope["path"]`` is
    decoded, which turns a ``%2F`` inside a session id into a separator."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").partition("?")[0]
    return quote(scope["path"], safe=_PATH_SAFE)


def _reason(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        503: "store_unavailable",
    }.get(status, "error")


def _query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string") or b""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "the query string is not UTF-8") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise ApiError(400, f"query parameter {key[:40]!r} is given twice")
        query[key] = value
    return query


def _allow(query: dict[str, str], known: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(known))
    if unknown:
        expected = ", ".join(known) if known else "none"
        raise ApiError(400, f"unknown query parameter {unknown[0][:40]!r} (expected: {expected})")


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, got {value}")
    return value


def _now() -> int:
    """The end of the current minute: relative windows ("1h") and the default ``until`` are
    whole minutes, so the minute rollups of the newest hours answer them without reading
    the spans of a cut minute (a busy service's minute is tens of thousands)."""
    now = time.time_ns()
    return now - now % MINUTE_NS + MINUTE_NS


def _time(query: dict[str, str], name: str, now: int) -> int:
    """A time parameter: Unix nanoseconds (digits) or a look-back window (``15m``, ``30d``).
    A window reaching before 1970 means "since 1970" (span times are never earlier)."""
    text = query[name].strip()
    if text.isdigit():
        value = int(text)
        if value >= 1 << 63:
            raise ApiError(400, f"{name} is past the year 2262, got {text[:40]!r}")
        return value
    try:
        return max(now - parse_since(text), 0)
    except ValueError as error:
        raise ApiError(
            400, f"{name} is Unix nanoseconds or a window such as 15m or 30d: {error}"
        ) from None


def _filter(query: dict[str, str]) -> SpanFilter:
    now = _now()
    values: dict[str, Any] = {}
    for name in _FILTER_PARAMS:
        value = query.get(name)
        if value is not None and value != "":
            values["text" if name == "q" else name] = value
    if "since" in query:
        values["since_ns"] = _time(query, "since", now)
    if "until" in query:
        values["until_ns"] = _time(query, "until", now)
    try:
        return SpanFilter(**values)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
