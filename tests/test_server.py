"""The token-counting HTTP service, run for real: ``instrumentation-sdk serve`` in a subprocess.

Each server binds a free port on 127.0.0.1 and the tests talk HTTP to it (httpx, or raw sockets
where the test needs control over what is sent when: oversized bodies, a request in flight
during SIGTERM). The command is the console script when it has ``serve``, else
``python -m instrumentation_sdk.cli_serve serve`` (the same code).
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from instrumentation_sdk import count_tokens, token_cache_stats
from instrumentation_sdk._core import model_table
from instrumentation_sdk.cli_serve import is_loopback
from instrumentation_sdk.cli_serve import main as serve_main
from instrumentation_sdk.server import TokenCountingApp, create_app, parse_size
from instrumentation_sdk.server.settings import ServerSettings

COUNT = "/v1/token-counting/count"
BATCH = "/v1/token-counting/count/batch"
TOKEN = "t0ken-for-tests"
MIB = 1024 * 1024
STARTUP_SECONDS = 30.0


# --------------------------------------------------------------------------------------------
# Running the server
# --------------------------------------------------------------------------------------------


@functools.cache
def serve_command() -> tuple[str, ...]:
    """``instrumentation-sdk serve`` when the console script has it, else the module's main."""
    candidates = [Path(sys.executable).with_name("instrumentation-sdk")]
    found = shutil.which("instrumentation-sdk")
    if found:
        candidates.append(Path(found))
    for script in candidates:
        if script.is_file():
            probe = subprocess.run(
                [str(script), "serve", "--help"], capture_output=True, timeout=60, check=False
            )
            if probe.returncode == 0:
                return (str(script), "serve")
    return (sys.executable, "-m", "instrumentation_sdk.cli_serve", "serve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A ``serve`` subprocess: its URL, its combined stdout/stderr, and how it ended."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in close())
            prefix="serve-", suffix=".log", delete=False
        )
        self.command = [*serve_command(), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"server not ready in {STARTUP_SECONDS}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit status (killing the process if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit {timeout}s after SIGTERM:\n{self.output()}") from None

    def wait(self, timeout: float = 20.0) -> int:
        """The exit status of a server already told to stop."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit within {timeout}s:\n{self.output()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        os.unlink(self._log.name)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The default server: no token, the default 16 MiB body limit, no access log."""
    srv = Server()
    yield srv
    assert srv.terminate() == 0
    srv.close()


@pytest.fixture(scope="module")
def secured() -> Iterator[Server]:
    """A server with ``--auth-token`` and a 64 KiB body limit."""
    srv = Server("--auth-token", TOKEN, "--max-body-bytes", "64KiB")
    yield srv
    assert srv.terminate() == 0
    srv.close()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def expected(prompt: Any, model: str = "gpt-4o") -> dict[str, Any]:
    """What the service must answer: the library's own count."""
    count = count_tokens(prompt, model)
    return {
        "model": model,
        "prompt_tokens": count.tokens,
        "token_count_method": count.method,
        "encoding": count.encoding,
    }


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """A JSON error of this status and code, and no stack trace anywhere."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    body = response.json()
    assert body["status"] == status
    assert body["error"] == error
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert set(body) <= {"error", "status", "detail", "field"}
    return dict(body)


def raw_http(port: int, head: bytes, body_parts: list[bytes], *, timeout: float = 10) -> bytes:
    """Send ``head`` then each body part over one socket; return everything the server sent
    until it closed the connection or went quiet (``Connection: close`` is in ``head``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response (headers and Content-Length body) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def status_and_json(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head[9:12]), msgspec.json.decode(body)


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def test_the_spec_curl_example(server: Server) -> None:
    """``curl -X POST .../v1/token-counting/count -H "Content-Type: application/json"
    -d '{"prompt": "Hello world!", "model": "gpt-4o"}'``, byte for byte."""
    response = httpx.post(
        server.url + COUNT,
        content=b'{"prompt": "Hello world!", "model": "gpt-4o"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "model": "gpt-4o",
        "prompt_tokens": 3,
        "token_count_method": "tiktoken",
        "encoding": "o200k_base",
    }


def test_curl_without_content_type_is_still_json(server: Server) -> None:
    """``curl -d`` alone sends ``application/x-www-form-urlencoded``; the body is JSON anyway."""
    response = httpx.post(
        server.url + COUNT,
        content=b'{"prompt": "Hello world!"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.json() == expected("Hello world!")


def test_model_defaults_to_gpt_4o(client: httpx.Client) -> None:
    assert client.post(COUNT, json={"prompt": "Hello world!"}).json() == expected("Hello world!")


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-3.5-turbo", "o1-mini", "gpt-4o-2024"])
def test_same_numbers_as_count_tokens(client: httpx.Client, model: str) -> None:
    prompts = [
        "Hello world!",
        "",
        "naïve café — 東京タワー 🗼 ",
        "<|endoftext|> is ordinary text here",
        "def f(x):\n    return x ** 2\n" * 200,  # > 1 KiB: the cache path
        "  \n\n\t  spaces  ",
    ]
    for prompt in prompts:
        response = client.post(COUNT, json={"prompt": prompt, "model": model})
        assert response.status_code == 200, response.text
        assert response.json() == expected(prompt, model)


def test_messages(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "name": "ada", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url"}]},
    ]
    for model in ("gpt-4o", "gpt-4", "claude-3-opus"):
        response = client.post(COUNT, json={"messages": messages, "model": model})
        assert response.status_code == 200, response.text
        assert response.json() == expected(messages, model)
    assert client.post(COUNT, json={"messages": []}).json() == expected([])


def test_messages_of_a_whole_openai_request_are_accepted(client: httpx.Client) -> None:
    """Validation refuses wrong types, not OpenAI's own shapes: a tool call's null content,
    non-text parts, extra fields."""
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    response = client.post(COUNT, json={"messages": messages})
    assert response.status_code == 200, response.text
    assert response.json() == expected(messages)


def test_unknown_model_gets_the_heuristic(client: httpx.Client) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 10
    body = client.post(COUNT, json={"prompt": prompt, "model": "claude-3-opus"}).json()
    assert body == expected(prompt, "claude-3-opus")
    assert body["token_count_method"] == "heuristic"
    assert body["encoding"] is None
    assert body["prompt_tokens"] > 0


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    """An OpenAI chat request as a gateway forwards it: extra fields do not matter."""
    request = {
        "model": "gpt-4",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "stream": True,
    }
    messages = request["messages"]
    assert client.post(COUNT, json=request).json() == expected(messages, "gpt-4")


def test_batch(client: httpx.Client) -> None:
    items: list[dict[str, Any]] = [
        {"prompt": "Hello world!"},
        {"prompt": "Hello world!", "model": "gpt-4"},
        {"messages": [{"role": "user", "content": "Hello!"}], "model": "gpt-4"},
        {"prompt": "Bonjour le monde", "model": "mistral-large"},
        {"prompt": "x" * 5000, "model": "gpt-4o"},
    ]
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    want = [expected(i.get("prompt", i.get("messages")), i.get("model", "gpt-4o")) for i in items]
    assert body["results"] == want
    assert body["total_prompt_tokens"] == sum(r["prompt_tokens"] for r in want)


def test_large_batch_one_model_counts_on_threads(client: httpx.Client) -> None:
    """Big enough (by body size) to count on the pool, in parallel in the core."""
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "δέλτα", "数据", "🙂", "\n", "  ", "x1", "END"]
    prompts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(2000)]
    body = client.post(BATCH, json={"items": [{"prompt": p} for p in prompts]}).json()
    assert body["results"] == [expected(p) for p in prompts]


def test_empty_batch(client: httpx.Client) -> None:
    assert client.post(BATCH, json={"items": []}).json() == {
        "results": [],
        "total_prompt_tokens": 0,
    }


def test_models_table(client: httpx.Client) -> None:
    exact, prefixes = model_table()
    body = client.get("/v1/models").json()
    assert body["default_model"] == "gpt-4o"
    assert body["fallback_method"] == "heuristic"
    assert [(m["name"], m["encoding"]) for m in body["exact"]] == exact
    assert [(p["prefix"], p["encoding"]) for p in body["prefixes"]] == prefixes
    assert ("gpt-4o", "o200k_base") in exact


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert client.head("/healthz").status_code == 200


def test_openapi_and_docs(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {COUNT, BATCH, "/v1/models", "/healthz", "/metrics"}
    schemas = document["components"]["schemas"]
    assert schemas["CountRequest"]["properties"]["model"]["default"] == "gpt-4o"
    assert "securitySchemes" not in document["components"]  # no token, no security
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "openapi.json" in response.text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics(client: httpx.Client) -> None:
    before = client.get("/metrics").text
    long_prompt = f"{time.time_ns()} " + "a repeated system prompt, " * 100  # > 1 KiB
    for _ in range(3):
        assert client.post(COUNT, json={"prompt": long_prompt}).status_code == 200
    assert client.post(COUNT, content=b"{oops").status_code == 400
    assert client.post(COUNT, json={"prompt": 1}).status_code == 422
    assert client.get("/no/such/path").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = response.text

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    p = "instrumentation_sdk_"
    assert delta(p + "http_requests_total", route=COUNT, status="200") == 3
    assert delta(p + "http_requests_total", route="unmatched", status="404") == 1
    assert delta(p + "http_errors_total", status="400") == 1
    assert delta(p + "http_errors_total", status="422") == 1
    assert delta(p + "count_duration_seconds_count", endpoint="count") == 3
    assert delta(p + "count_duration_seconds_bucket", endpoint="count", le="+Inf") == 3
    assert delta(p + "token_cache_hits_total") >= 2  # the same long prompt, counted again
    assert delta(p + "prompt_tokens_total") == 3 * count_tokens(long_prompt, "gpt-4o").tokens
    assert "# TYPE instrumentation_sdk_count_duration_seconds histogram" in after


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

BAD_JSON = [
    pytest.param(b"{bad", id="malformed"),
    pytest.param(b'{"prompt": "x"', id="truncated"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"prompt": "\xff"}', id="invalid-utf8"),
    pytest.param(b'{"prompt": "x"} trailing', id="trailing-garbage"),
    pytest.param(b'{"messages": [{"content": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", id="deep"),
]


@pytest.mark.parametrize("body", BAD_JSON)
@pytest.mark.parametrize("path", [COUNT, BATCH])
def test_not_json_is_400(client: httpx.Client, path: str, body: bytes) -> None:
    assert_error(client.post(path, content=body), 400, "bad_request")


BAD_SHAPE = [
    pytest.param(COUNT, [], "$", id="array-body"),
    pytest.param(COUNT, "Hello", "$", id="string-body"),
    pytest.param(COUNT, 42, "$", id="number-body"),
    pytest.param(COUNT, None, "$", id="null-body"),
    pytest.param(COUNT, {}, "$.prompt", id="no-prompt-no-messages"),
    pytest.param(COUNT, {"model": "gpt-4o"}, "$.prompt", id="only-model"),
    pytest.param(COUNT, {"prompt": 5}, "$.prompt", id="prompt-int"),
    pytest.param(COUNT, {"prompt": None}, "$.prompt", id="prompt-null"),
    pytest.param(COUNT, {"prompt": ["a"]}, "$.prompt", id="prompt-list"),
    pytest.param(COUNT, {"messages": "Hello"}, "$.messages", id="messages-str"),
    pytest.param(COUNT, {"messages": [5]}, "$.messages[0]", id="message-int"),
    pytest.param(COUNT, {"prompt": "a", "messages": []}, "$.messages", id="both"),
    pytest.param(
        COUNT, {"messages": [{"role": 5, "content": "hi"}]}, "$.messages[0].role", id="role-int"
    ),
    pytest.param(
        COUNT,
        {"messages": [{"role": "user", "content": "hi"}, {"role": None, "content": "x"}]},
        "$.messages[1].role",
        id="role-null",
    ),
    pytest.param(
        COUNT,
        {"messages": [{"role": "user", "name": ["bob"], "content": "hi"}]},
        "$.messages[0].name",
        id="name-list",
    ),
    pytest.param(
        COUNT,
        {"messages": [{"role": "user", "content": 42}]},
        "$.messages[0].content",
        id="content-int",
    ),
    pytest.param(
        COUNT,
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]},
        "$.messages[0].content[0].text",
        id="part-text-int",
    ),
    pytest.param(
        COUNT,
        {"messages": [{"role": "user", "content": ["hi"]}]},
        "$.messages[0].content[0]",
        id="part-str",
    ),
    pytest.param(
        BATCH,
        {"items": [{"prompt": "a"}, {"messages": [{"role": 5, "content": "hi"}]}]},
        "$.items[1].messages[0].role",
        id="batch-role-int",
    ),
    pytest.param(COUNT, {"prompt": "a", "model": 4}, "$.model", id="model-int"),
    pytest.param(COUNT, {"prompt": "a", "model": ""}, "$.model", id="model-empty"),
    pytest.param(COUNT, {"prompt": "a", "model": "m" * 257}, "$.model", id="model-long"),
    pytest.param(BATCH, {}, "$.items", id="batch-no-items"),
    pytest.param(BATCH, {"items": {"prompt": "a"}}, "$.items", id="batch-items-object"),
    pytest.param(BATCH, [{"prompt": "a"}], "$", id="batch-array-body"),
    pytest.param(BATCH, {"items": [{"prompt": "a"}, {}]}, "$.items[1].prompt", id="batch-empty"),
    pytest.param(
        BATCH, {"items": [{"prompt": "a"}, {"prompt": 1}]}, "$.items[1].prompt", id="batch-int"
    ),
    pytest.param(
        BATCH, {"items": [{"prompt": "a", "model": None}]}, "$.items[0].model", id="batch-model"
    ),
    pytest.param(BATCH, {"items": [{"prompt": "a"}] * 10_001}, "$.items", id="batch-too-many"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_SHAPE)
def test_wrong_shape_is_422_naming_the_field(
    client: httpx.Client, path: str, body: Any, field: str
) -> None:
    error = assert_error(
        client.post(path, content=msgspec.json.encode(body)), 422, "validation_error"
    )
    assert error["field"] == field


def test_wrong_method_is_405(client: httpx.Client) -> None:
    for method, path, allow in [
        ("GET", COUNT, "POST"),
        ("PUT", BATCH, "POST"),
        ("DELETE", "/v1/models", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("OPTIONS", "/metrics", "GET, HEAD"),
    ]:
        response = client.request(method, path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allow


def test_unknown_path_is_404(client: httpx.Client) -> None:
    for path in ("/", "/v1", "/v1/token-counting", f"{COUNT}/", "/v2/token-counting/count"):
        assert_error(client.post(path, json={"prompt": "x"}), 404, "not_found")


def test_oversized_body_is_413_before_it_is_sent(server: Server) -> None:
    """Content-Length over the limit: the answer comes after 1 KiB of a 17 MiB body."""
    head = (
        f"POST {COUNT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {17 * MIB}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, body = status_and_json(raw_http(server.port, head, [b'{"prompt": "' + b"a" * 1024]))
    assert status == 413
    assert body["error"] == "payload_too_large"
    assert str(16 * MIB) in body["detail"]


def test_oversized_chunked_body_is_413(server: Server) -> None:
    """No Content-Length: refused once the streamed bytes pass the limit."""
    head = (
        f"POST {COUNT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    chunk = b"a" * MIB
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)]
    status, body = status_and_json(raw_http(server.port, head, parts))
    assert status == 413
    assert body["error"] == "payload_too_large"


def test_oversized_body_is_413_for_an_ordinary_client(server: Server) -> None:
    """httpx writes the whole body before it reads: it still gets the JSON 413."""
    prompt = "a" * (16 * MIB)
    response = httpx.post(server.url + COUNT, json={"prompt": prompt}, timeout=60)
    assert_error(response, 413, "payload_too_large")


def test_body_limit_is_exact(secured: Server) -> None:
    """``--max-body-bytes 64KiB``: 65536 bytes are counted, 65537 are refused."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    frame = len(b'{"prompt":""}')
    for size, status in ((64 * 1024, 200), (64 * 1024 + 1, 413)):
        body = b'{"prompt":"' + b"b" * (size - frame) + b'"}'
        assert len(body) == size
        response = httpx.post(secured.url + COUNT, content=body, headers=headers)
        assert response.status_code == status, response.text
    chunks = [b'{"prompt":"', b"c" * 70_000, b'"}']  # chunked: no Content-Length
    response = httpx.post(secured.url + COUNT, content=iter(chunks), headers=headers)
    assert_error(response, 413, "payload_too_large")


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer", ""],
    ids=["missing", "wrong", "longer", "basic", "no-scheme", "no-token", "empty"],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", COUNT), ("POST", BATCH), ("GET", "/v1/models")]
)
def test_auth_refuses(secured: Server, method: str, path: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.request(
        method, secured.url + path, json={"prompt": "x", "items": []}, headers=headers
    )
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_auth_accepts_the_token(secured: Server) -> None:
    for authorization in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN}"):
        headers = {"Authorization": authorization}
        response = httpx.post(secured.url + COUNT, json={"prompt": "Hi"}, headers=headers)
        assert response.json() == expected("Hi")
    models = httpx.get(secured.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert models.status_code == 200


def test_auth_leaves_health_metrics_and_docs_open(secured: Server) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        assert httpx.get(secured.url + path).status_code == 200, path
    document = httpx.get(secured.url + "/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["paths"][COUNT]["post"]["security"] == [{"bearerAuth": []}]


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------


def test_many_clients_at_once_get_their_own_answers(server: Server) -> None:
    rng = random.Random(11)
    models = ["gpt-4o", "gpt-4", "gpt-3.5-turbo", "llama-3-70b"]
    jobs = []
    for i in range(400):
        size = rng.choice([10, 200, 3000, 40_000])
        text = f"request {i}: " + " ".join(f"w{rng.randint(0, 99999)}" for _ in range(size // 6))
        jobs.append((text, rng.choice(models)))

    def run(chunk: list[tuple[str, str]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            out = []
            for text, model in chunk:
                got = http.post(COUNT, json={"prompt": text, "model": model}).json()
                out.append((got, expected(text, model)))
            return out

    with ThreadPoolExecutor(32) as pool:
        results = [r for part in pool.map(run, [jobs[i::32] for i in range(32)]) for r in part]
    assert len(results) == len(jobs)
    for got, want in results:
        assert got == want


def big_prompt(seed: int, size: int = 10 * MIB) -> str:
    """``size`` bytes of distinct lowercase 'words' (slow to count: many rare merges)."""
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghij", k=rng.randint(2, 9))) for _ in range(5000)]
    text = " ".join(rng.choices(words, k=size // 5))
    return f"{seed} {text}"[:size]


def test_a_10mb_prompt_does_not_stall_small_requests(server: Server) -> None:
    small = msgspec.json.encode({"prompt": "Hello world!"})
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.post(COUNT, content=small).status_code == 200
        start = time.perf_counter()
        alone = http.post(COUNT, json={"prompt": big_prompt(1)})
        alone_seconds = time.perf_counter() - start
        assert alone.status_code == 200
    assert alone_seconds > 0.1, "too fast to tell anything: make the prompt slower to count"

    prompt = big_prompt(2)  # a new text: not in the count cache
    done = threading.Event()
    answer: dict[str, Any] = {}

    def count_big() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            answer.update(http.post(COUNT, json={"prompt": prompt}).json())
        done.set()

    latencies = []
    thread = threading.Thread(target=count_big)
    with httpx.Client(base_url=server.url, timeout=120) as http:
        http.post(COUNT, content=small)  # connected before the big one starts
        thread.start()
        while not done.is_set():
            start = time.perf_counter()
            assert http.post(COUNT, content=small).json()["prompt_tokens"] == 3
            latencies.append(time.perf_counter() - start)
    thread.join()
    assert answer == expected(prompt)
    assert len(latencies) >= 10, f"only {len(latencies)} small requests while the big one counted"
    # Counting on the event loop would hold a small request for most of the big count.
    assert max(latencies) < alone_seconds / 3, (max(latencies), alone_seconds)


# --------------------------------------------------------------------------------------------
# Lifecycle: SIGTERM, logs, options
# --------------------------------------------------------------------------------------------


def test_sigterm_lets_the_request_in_flight_finish() -> None:
    """SIGTERM while a request's body is half sent: the server stops accepting connections,
    still answers that request in full, and then exits 0. The token comes from the
    environment and the access log is on."""
    srv = Server("--access-log", env={"INSTRUMENTATION_SDK_AUTH_TOKEN": TOKEN})
    try:
        assert httpx.post(srv.url + COUNT, json={"prompt": "x"}).status_code == 401
        prompt = "In flight. " * 20_000
        body = msgspec.json.encode({"prompt": prompt, "model": "gpt-4"})
        head = (
            f"POST {COUNT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            sock.sendall(head + body[: len(body) // 2])
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert srv.proc.poll() is None, "exited with a request in flight"
            with pytest.raises(ConnectionRefusedError):  # no longer accepting connections
                socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
            sock.sendall(body[len(body) // 2 :])
            status, answer = status_and_json(read_response(sock))
        assert status == 200
        assert answer == expected(prompt, "gpt-4")
        assert srv.wait() == 0  # no second signal: the first one is enough
        log = srv.output()
        assert f'"POST {COUNT} HTTP/1.1" 200' in log  # --access-log
        assert "warning" not in log.lower()  # loopback: no warning
    finally:
        srv.close()


def test_access_log_is_off_by_default(server: Server, client: httpx.Client) -> None:
    assert client.post(COUNT, json={"prompt": "logged?"}).status_code == 200
    time.sleep(0.1)
    log = server.output()
    assert "Uvicorn running" in log
    assert COUNT not in log


def test_workers_on_all_interfaces_warn_without_a_token() -> None:
    srv = Server("--host", "0.0.0.0", "--workers", "2", "--max-body-bytes", "1000")
    try:
        log = srv.output()
        assert "warning: listening on 0.0.0.0 without an auth token" in log
        with httpx.Client(base_url=srv.url) as http:
            for _ in range(10):
                assert http.post(COUNT, json={"prompt": "Hello world!"}).json() == expected(
                    "Hello world!"
                )
            big = http.post(COUNT, json={"prompt": "z" * 1000})  # the workers got the limit
            assert_error(big, 413, "payload_too_large")
        assert srv.terminate() == 0
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be 0-65535"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--max-body-bytes", "12XB"], "--max-body-bytes: expected a size"),
        (["--max-body-bytes", "0"], "max_body_bytes must be a positive int"),
        (["--auth-token", "has space"], "--auth-token: auth_token must be"),
        (["--graceful-timeout", "-1"], "--graceful-timeout must be >= 0"),
    ],
)
def test_bad_options_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instrumentation-sdk serve: error: ")
    assert message in err


def test_port_in_use_exits_1(server: Server) -> None:
    result = subprocess.run(
        [*serve_command(), "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr


# --------------------------------------------------------------------------------------------
# The app on its own (ASGI, in process)
# --------------------------------------------------------------------------------------------


async def call_asgi(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, bytes]:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def http_scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
    }


def test_mounted_under_a_root_path() -> None:
    """Mounted at ``/tokens`` (the ASGI ``root_path``), the routes live under it."""
    app = create_app(ServerSettings())
    body = b'{"prompt": "Hello world!"}'
    scope = http_scope("POST", "/tokens" + COUNT, root_path="/tokens")
    status, answer = asyncio.run(call_asgi(app, scope, body))
    assert (status, msgspec.json.decode(answer)) == (200, expected("Hello world!"))
    status, answer = asyncio.run(
        call_asgi(app, http_scope("GET", "/tokens/openapi.json", "/tokens"))
    )
    assert msgspec.json.decode(answer)["servers"] == [{"url": "/tokens"}]


def test_module_level_app_and_factory_options() -> None:
    from instrumentation_sdk import server as server_module

    shared = server_module.app  # what `uvicorn instrumentation_sdk.server:app` serves
    assert isinstance(shared, TokenCountingApp)
    assert server_module.app is shared  # one shared instance, built lazily
    app = create_app(auth_token="abc", max_body_bytes=10)
    assert app.settings.auth_token == "abc"
    assert app.settings.max_body_bytes == 10
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_app(max_body_bytes=0)
    with pytest.raises(TypeError):
        create_app(no_such_setting=1)


def test_websocket_is_refused() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(create_app(ServerSettings())({"type": "websocket"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1003}]


def test_parse_size_and_loopback() -> None:
    assert parse_size("16MiB") == 16 * MIB
    assert parse_size("10MB") == 10_000_000
    assert parse_size("512k") == 512_000
    assert parse_size("2 GiB") == 2 * 1024**3
    assert parse_size("123") == 123
    for bad in ("", "1.5MB", "-1", "12XB", "MB"):
        with pytest.raises(ValueError, match="expected a size"):
            parse_size(bad)
    for host in ("127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com"):
        assert not is_loopback(host), host


def test_settings_from_env() -> None:
    settings = ServerSettings.from_env(
        {"INSTRUMENTATION_SDK_AUTH_TOKEN": "tok", "INSTRUMENTATION_SDK_MAX_BODY_BYTES": "1KiB"}
    )
    assert (settings.auth_token, settings.max_body_bytes) == ("tok", 1024)
    assert ServerSettings.from_env({"INSTRUMENTATION_SDK_AUTH_TOKEN": ""}).auth_token is None
    with pytest.raises(ValueError, match="INSTRUMENTATION_SDK_MAX_BODY_BYTES"):
        ServerSettings.from_env({"INSTRUMENTATION_SDK_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ValueError, match="INSTRUMENTATION_SDK_AUTH_TOKEN"):
        ServerSettings.from_env({"INSTRUMENTATION_SDK_AUTH_TOKEN": "two words"})


def test_cache_stats_are_the_cores() -> None:
    """``/metrics`` reports ``token_cache_stats()``: the keys it relies on exist."""
    assert {"hits", "misses", "entries", "max_entries"} <= set(token_cache_stats())
