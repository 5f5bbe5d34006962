"""Bearer-token authentication for the ``/v1/`` routes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Final

from .errors import ApiError

__all__ = ["PROTECTED_PREFIX", "BearerAuth"]

#: Paths under this prefix need the token when one is configured; health, metrics and the docs
#: do not.
PROTECTED_PREFIX: Final = "/v1/"

_CHALLENGE: Final = ((b"www-authenticate", b'Bearer realm="instrumentation-sdk"'),)


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` against one token, in constant time.

    Both sides are hashed with SHA-256 first, so ``hmac.compare_digest`` compares equal-length
    digests and the time taken tells nothing about the token, not even its length.

    >>> auth = BearerAuth("s3cret")
    >>> auth.check([(b"authorization", b"Bearer s3cret")]) is None
    True
    >>> auth.check([(b"authorization", b"Bearer nope")]).status
    401
    """

    __slots__ = ("_digest",)

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> ApiError | None:
        """``None`` when the headers carry the token, else the 401 to answer with."""
        value = None
        for name, raw in headers:
            if name == b"authorization":
                value = raw
                break
        if value is None:
            return _unauthorized("missing `Authorization: Bearer <token>` header")
        scheme, _, credentials = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return _unauthorized("the Authorization header must use the Bearer scheme")
        digest = hashlib.sha256(credentials.strip()).digest()
        if not hmac.compare_digest(digest, self._digest):
            return _unauthorized("invalid bearer token")
        return None


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers=_CHALLENGE)
