"""Limits on what one request may cost: its body's size, and where its counting runs.

* ``read_body`` refuses a body over the limit with 413: at once when ``Content-Length`` says so
  (nothing is read), else as soon as the streamed bytes pass the limit (what was read so far is
  dropped), so an oversized body is never held in memory.
* ``CountingPool`` runs large counts on a bounded pool of threads. The Rust core releases the GIL
  while it counts, so the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError, ClientDisconnected

__all__ = ["CountingPool", "read_body"]

R = TypeVar("R")

Receive = Callable[[], Any]


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -1
            if length < 0:
                raise ApiError(400, f"invalid Content-Length header: {value[:40]!r}")
            return length
    return None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than the limit of {limit} bytes")


async def read_body(scope: dict[str, Any], receive: Receive, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; ``ApiError(413)`` for a larger one.

    Raises ``ClientDisconnected`` when the client goes away first.
    """
    announced = _content_length(scope["headers"])
    if announced is not None and announced > limit:
        raise _too_large(limit)
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one chunk
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    total = len(body)
    while True:
        if total > limit:
            raise _too_large(limit)
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        total += len(chunk)
        if not message.get("more_body", False):
            break
    if total > limit:
        raise _too_large(limit)
    return b"".join(chunks)


class CountingPool:
    """A bounded thread pool for counting off the event loop, created on first use.

    ``threads`` caps how many counts run at once; more wait in the pool's queue. The
    context is carried over, as ``asyncio.to_thread`` does.
    """

    __slots__ = ("_executor", "_threads")

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on a pool thread; the awaiting coroutine resumes with its result."""
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix="instrumentation-sdk-count"
            )
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def shutdown(self) -> None:
        """Let running counts finish and stop the threads (a later ``run`` starts new ones)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
