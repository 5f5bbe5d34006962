"""Fuzz the running service from its own OpenAPI document with schemathesis.

schemathesis reads ``/openapi.json`` from a real ``serve`` process and, for every operation,
sends Hypothesis-generated requests, valid and invalid ones, checking each answer: no 5xx, a
status and content type the document declares, a body that matches the declared schema, invalid
input refused with 4xx, valid input accepted, and 405 for the methods a path does not have.
Bounded: ``MAX_EXAMPLES`` per operation, derandomized (the same few hundred requests every
run). For a wider, random run against a server you started::

    schemathesis run http://127.0.0.1:8002/openapi.json --checks all --max-examples 500
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instrumentation_sdk import __version__
from instrumentation_sdk.server import DEFAULT_MAX_BODY_BYTES
from instrumentation_sdk.server.errors import ApiError
from instrumentation_sdk.server.messages import check_messages
from instrumentation_sdk.server.openapi import build_openapi
from instrumentation_sdk.server.schemas import MESSAGE_SCHEMA
from test_server import Server

MAX_EXAMPLES = 60

# The document the default server serves (checked below), built here so that pytest can make one
# test per operation at collection time, before any server runs.
DOCUMENT = build_openapi(__version__, secured=False, max_body_bytes=DEFAULT_MAX_BODY_BYTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def fuzzed_server() -> Iterator[Server]:
    srv = Server()
    assert httpx.get(srv.url + "/openapi.json").json() == DOCUMENT
    yield srv
    # The fuzzer really ran: hundreds of requests, valid ones counted, invalid ones refused.
    metrics = httpx.get(srv.url + "/metrics").text
    answered = {
        (route, int(status)): int(n)
        for route, status, n in re.findall(
            r'^instrumentation_sdk_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\d+)$',
            metrics,
            re.MULTILINE,
        )
    }
    # How many cases Hypothesis generates varies with its state across the session (209 to
    # 300+ seen); over 150 means every operation was fuzzed, not just touched.
    assert sum(answered.values()) >= 150, answered
    for route in ("/v1/token-counting/count", "/v1/token-counting/count/batch"):
        # How many of the derandomized cases are valid varies with Hypothesis's state across
        # the session (18 to 28 seen for /count, same cases alone or after the whole suite);
        # what matters here is that valid requests were sent and accepted at all.
        assert answered.get((route, 200), 0) >= 10, answered
        assert answered.get((route, 422), 0) >= 20, answered
    assert not any(status >= 500 for _, status in answered), answered
    assert srv.terminate() == 0
    assert "Traceback" not in srv.output()  # nothing the fuzzer sent made the app raise
    srv.close()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_openapi_fuzz(case: Any, fuzzed_server: Server) -> None:
    case.call_and_validate(base_url=fuzzed_server.url)


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["text", "type", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
_messages = st.dictionaries(
    st.sampled_from(["role", "name", "content", "tool_calls", "x"]), _json_values, max_size=4
)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(_messages)
def test_the_published_message_schema_is_exactly_what_the_check_accepts(
    message: dict[str, Any],
) -> None:
    """The OpenAPI document's message schema and the handler's check agree on every message
    (the fuzzer once sent a message the document allowed and the check refused: the document
    only said "object")."""
    published = jsonschema.Draft202012Validator(MESSAGE_SCHEMA).is_valid(message)
    try:
        check_messages([message], "$.messages")
    except ApiError:
        accepted = False
    else:
        accepted = True
    assert published == accepted, message
