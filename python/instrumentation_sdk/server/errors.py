"""Errors as the service reports them: a status, a JSON body, never a stack trace.

Every error body is an ``ErrorResponse``: ``{"error": code, "status": N, "detail": text}`` plus
``"field"`` (a JSONPath such as ``$.items[2].prompt``) when one field is at fault.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, TypeVar

import msgspec
from msgspec import UNSET

from .schemas import ErrorResponse

__all__ = ["ApiError", "ClientDisconnected", "decode_json"]

T = TypeVar("T")

_ENCODE = msgspec.json.Encoder().encode
_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    500: "internal_error",
}
_AT_PATH = re.compile(r"^(.*) - at `(\$[^`]*)`$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`")


class ClientDisconnected(Exception):
    """The client went away before its request was read: there is no one to answer."""


class ApiError(Exception):
    """An error response: ``status``, ``detail``, optionally the ``field`` and extra headers."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = tuple(headers)

    def body(self) -> bytes:
        """The JSON body: an ``ErrorResponse``."""
        return _ENCODE(
            ErrorResponse(
                error=_CODES.get(self.status, "error"),
                status=self.status,
                detail=self.detail,
                field=UNSET if self.field is None else self.field,
            )
        )


def decode_json(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode and validate ``body``, or raise ``ApiError``.

    Not JSON (malformed, truncated, empty, invalid UTF-8, nested too deeply): 400. JSON of the
    wrong shape (a missing or mistyped field, a body that is not an object): 422 naming the
    field.
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        # msgspec stops at the first wrong field; the rest may not even be JSON (trailing
        # garbage, bad UTF-8 in a skipped value). Only well-formed JSON gets a 422.
        _require_json(body)
        raise validation_error(str(error)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise _not_json(body, error) from None


def _require_json(body: bytes) -> None:
    try:
        msgspec.json.decode(body)
    except msgspec.ValidationError:  # well-formed but unrepresentable, e.g. 1e999
        pass
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise _not_json(body, error) from None


def _not_json(body: bytes, error: Exception) -> ApiError:
    if isinstance(error, UnicodeDecodeError):
        return ApiError(400, f"the request body is not valid UTF-8: {error.reason}")
    if isinstance(error, RecursionError):
        return ApiError(400, "the request body's JSON is nested too deeply")
    if not body.strip():
        return ApiError(400, "the request body is empty: send a JSON object")
    return ApiError(400, f"the request body is not valid JSON: {error}")


def validation_error(message: str) -> ApiError:
    """A 422 from a msgspec validation message, with the field's JSONPath split out."""
    path = "$"
    match = _AT_PATH.match(message)
    if match is not None:
        message, path = match.group(1), match.group(2)
    missing = _MISSING_FIELD.match(message)
    if missing is not None:
        path = f"{path}.{missing.group(1)}"
    if path == "$" and message.startswith("Expected `object`"):
        message = f"the request body must be a JSON object: {message}"
    return ApiError(422, message, field=path)
