"""The token-counting service's settings: defaults, environment variables, validation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_THREAD_THRESHOLD_BYTES",
    "ENV_AUTH_TOKEN",
    "ENV_MAX_BODY_BYTES",
    "ServerSettings",
    "parse_size",
]

#: The bearer token every ``/v1/`` route requires when set (``serve --auth-token`` sets it too).
ENV_AUTH_TOKEN: Final = "INSTRUMENTATION_SDK_AUTH_TOKEN"
#: The request body limit, e.g. ``16MiB`` or ``1000000`` (``serve --max-body-bytes``).
ENV_MAX_BODY_BYTES: Final = "INSTRUMENTATION_SDK_MAX_BODY_BYTES"

DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: Bodies at least this long are counted on a worker thread, off the event loop (the core
#: releases the GIL while it counts). Below it a count takes well under a millisecond (about
#: 40 µs per KiB of source code) and runs inline, cheaper than the hop to a thread and back.
DEFAULT_THREAD_THRESHOLD_BYTES: Final = 16 * 1024

_SIZE = re.compile(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE)
_UNITS: Final = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_TOKEN = re.compile(r"[\x21-\x7e]+")


def parse_size(text: str) -> int:
    """A byte count from ``1048576``, ``512k``, ``10MB``, ``16MiB`` or ``1GiB``.

    ``k``/``KB``/``M``/``MB``/``G``/``GB`` are powers of 1000, ``KiB``/``MiB``/``GiB`` powers of
    1024. Raises ``ValueError`` for anything else.

    >>> parse_size("16MiB"), parse_size("10MB"), parse_size("4096")
    (16777216, 10000000, 4096)
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a size such as 16MiB, 10MB or 1048576, got {text!r}")
    number, unit = int(match.group(1)), str(match.group(2) or "").lower()
    if "i" in unit:
        return number << (10 * " kmg".index(unit[0]))
    return number * _UNITS[unit[:1]]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """One service's settings.

    * ``auth_token``: when set, every ``/v1/`` route needs ``Authorization: Bearer <token>``.
    * ``max_body_bytes``: larger request bodies get 413, refused before they are read whole.
    * ``thread_threshold_bytes``: bodies at least this long are counted on a worker thread.
    * ``counting_threads``: the size of that thread pool.
    * ``warmup_models``: their encodings are loaded at startup, not on the first request.
    * ``docs``: serve ``/openapi.json``, ``/docs`` and ``/redoc``.
    """

    auth_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    thread_threshold_bytes: int = DEFAULT_THREAD_THRESHOLD_BYTES
    counting_threads: int = max(2, min(32, os.cpu_count() or 2))
    warmup_models: tuple[str, ...] = ("gpt-4o", "gpt-4")
    docs: bool = True

    def validated(self) -> ServerSettings:
        """Return self, or raise ``ValueError`` naming the first bad field."""
        if self.auth_token is not None and not _TOKEN.fullmatch(self.auth_token):
            raise ValueError(
                "auth_token must be non-empty printable ASCII without spaces "
                "(it travels in an HTTP header)"
            )
        for name in ("max_body_bytes", "counting_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        threshold = self.thread_threshold_bytes
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"thread_threshold_bytes must be an int >= 0, got {threshold!r}")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Defaults, overridden by ``INSTRUMENTATION_SDK_AUTH_TOKEN`` and
        ``INSTRUMENTATION_SDK_MAX_BODY_BYTES`` when they are set and not empty.

        Raises ``ValueError`` for a bad value, naming the variable.
        """
        env = os.environ if environ is None else environ
        settings = cls()
        token = env.get(ENV_AUTH_TOKEN, "")
        if token:
            settings = replace(settings, auth_token=token)
        size = env.get(ENV_MAX_BODY_BYTES, "")
        if size:
            try:
                settings = replace(settings, max_body_bytes=parse_size(size))
            except ValueError as error:
                raise ValueError(f"{ENV_MAX_BODY_BYTES}: {error}") from None
        try:
            return settings.validated()
        except ValueError as error:
            variable = ENV_AUTH_TOKEN if "auth_token" in str(error) else ENV_MAX_BODY_BYTES
            raise ValueError(f"{variable}: {error}") from None
