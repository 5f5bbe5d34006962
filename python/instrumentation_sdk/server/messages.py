"""The fields of chat messages that the counting rule reads, checked before counting.

A message is a JSON object; unknown fields are allowed (a whole OpenAI chat request can be sent
as is). The fields the rule gives a meaning to must have the right type, or the request gets a
422 naming the field (``$.messages[0].role``): ``role`` and ``name`` are strings; ``content`` is
a string, a list of content parts (objects, whose ``text`` is a string), or null (an assistant
message that only calls tools). ``schemas.MESSAGE_SCHEMA`` publishes the same rules in OpenAPI.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError

__all__ = ["check_messages"]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def check_messages(messages: list[dict[str, Any]], path: str) -> None:
    """Raise ``ApiError(422)`` naming the first field of ``messages`` (at JSONPath ``path``)
    whose type the counting rule cannot use."""
    for index, message in enumerate(messages):
        where = f"{path}[{index}]"
        for key in ("role", "name"):
            if key in message and not isinstance(message[key], str):
                raise ApiError(
                    422,
                    f"`{key}` must be a string, got {_json_type(message[key])}",
                    field=f"{where}.{key}",
                )
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ApiError(
                422,
                "`content` must be a string, an array of content parts, or null; got "
                f"{_json_type(content)}",
                field=f"{where}.content",
            )
        for number, part in enumerate(content):
            if not isinstance(part, dict):
                raise ApiError(
                    422,
                    'a content part must be an object such as {"type": "text", "text": "..."}; '
                    f"got {_json_type(part)}",
                    field=f"{where}.content[{number}]",
                )
            if "text" in part and not isinstance(part["text"], str):
                raise ApiError(
                    422,
                    f"`text` must be a string, got {_json_type(part['text'])}",
                    field=f"{where}.content[{number}].text",
                )
