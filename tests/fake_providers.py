"""A local stand-in for the OpenAI and Anthropic HTTP APIs: a real HTTP server on a real port.

The real ``openai`` and ``anthropic`` clients talk to it over HTTP (``base_url=server.url``), so
the instrumentation is exercised through the clients' own request, retry, parsing and SSE code.

Answers are **real recorded responses** (``tests/data/provider_recordings.json``: status, headers
and body as recorded from the providers' APIs by OpenTelemetry's and OpenLLMetry's test suites;
each entry names its source), replayed as recorded; streams are sent event by event, each in its
own HTTP chunk, with a small delay between them. The rest is generated in the providers' formats:

* errors (``x-fake-status: 400|401|404|429|500|529``): OpenAI's ``{"error": {...}}`` or
  Anthropic's ``{"type": "error", "error": {...}}`` body, the request id header
  (``x-request-id`` / ``request-id``) and, for 429, ``retry-after``. With
  ``x-fake-fail-times: N`` only the first N attempts of a call fail (attempts are told apart by
  the clients' ``x-stainless-retry-count`` header), so the client's own retries succeed.
* a stream that fails part way (``x-fake-stream-error-after: N``): N events, then the
  provider's SSE ``error`` event.
* a Chat Completions stream leaves out its usage chunk unless the request asks for it
  (``stream_options.include_usage``), as the API does.

``x-fake-recording: NAME`` picks a recording; otherwise the path, ``stream`` and ``tools`` of the
request pick the default one. ``x-fake-chunk-delay`` sets the delay between events (seconds).
Every request is kept in ``server.requests`` (headers and JSON body) for tests to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDINGS_PATH = Path(__file__).resolve().parent / "data" / "provider_recordings.json"
RECORDINGS: dict[str, dict[str, Any]] = json.loads(RECORDINGS_PATH.read_text())

#: The recording each route answers with by default: (path, stream, tools) -> name.
DEFAULTS = {
    ("/v1/chat/completions", False, False): "openai_chat",
    ("/v1/chat/completions", False, True): "openai_chat_tools",
    ("/v1/chat/completions", True, False): "openai_chat_stream",
    ("/v1/chat/completions", True, True): "openai_chat_stream_tools",
    ("/v1/responses", False, False): "openai_responses",
    ("/v1/responses", True, False): "openai_responses_stream",
    ("/v1/embeddings", False, False): "openai_embeddings",
    ("/v1/messages", False, False): "anthropic_message",
    ("/v1/messages", False, True): "anthropic_tools",
    ("/v1/messages", True, False): "anthropic_stream",
    ("/v1/messages", True, True): "anthropic_stream_tools",
}

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid value for 'temperature': must be <= 2."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake."),
    404: ("invalid_request_error", "model_not_found", "The model `no-such-model` does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
}
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "max_tokens: Field required"),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "model: no-such-model"),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def sse_events(body: str) -> list[str]:
    """A recorded SSE body as its events (each ends with a blank line)."""
    return [event.strip("\n") + "\n\n" for event in body.split("\n\n") if event.strip()]


def _drop_usage_chunk(events: list[str]) -> list[str]:
    kept = []
    for event in events:
        data = event.removeprefix("data: ").strip()
        if data.startswith("{"):
            chunk = json.loads(data)
            if not chunk.get("choices") and chunk.get("usage"):
                continue
        kept.append(event)
    return kept


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes a stream early resets the connection: expected, not an error.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeProviders:
    """The server: ``with FakeProviders() as server: OpenAI(base_url=server.url + "/v1")``."""

    def __init__(self, chunk_delay: float = 0.002) -> None:
        self.chunk_delay = chunk_delay
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sequence = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                owner._handle(self)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeProviders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _request_id(self, path: str) -> str:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        return f"req_fake{sequence:06d}" if path != "/v1/messages" else f"req_01fake{sequence:06d}"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        headers = {key.lower(): value for key, value in handler.headers.items()}
        path = handler.path.split("?")[0]
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "json": body})
        anthropic = path == "/v1/messages"
        id_header = "request-id" if anthropic else "x-request-id"

        status = int(headers.get("x-fake-status", "200"))
        fail_times = headers.get("x-fake-fail-times")
        attempt = int(headers.get("x-stainless-retry-count", "0"))
        if status != 200 and (fail_times is None or attempt < int(fail_times)):
            self._send_error(handler, path, status, id_header)
            return

        stream = bool(body.get("stream"))
        name = headers.get("x-fake-recording") or DEFAULTS.get(
            (path, stream, bool(body.get("tools")) and path != "/v1/responses")
        )
        if name is None or name not in RECORDINGS:
            self._send_json(handler, 404, {"error": {"message": f"no route {path}"}}, {})
            return
        recording = RECORDINGS[name]
        reply_headers = {
            key: value for key, value in recording["headers"].items() if key != "content-type"
        }
        reply_headers[id_header] = reply_headers.get(id_header) or self._request_id(path)
        if not recording["body"].lstrip().startswith(("data:", "event:")):
            handler.send_response(recording["status"])
            payload = recording["body"].encode()
            handler.send_header("content-type", recording["headers"].get("content-type", "json"))
            handler.send_header("content-length", str(len(payload)))
            for key, value in reply_headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(payload)
            return

        events = sse_events(recording["body"])
        if path == "/v1/chat/completions" and not (body.get("stream_options") or {}).get(
            "include_usage"
        ):
            events = _drop_usage_chunk(events)
        error_after = headers.get("x-fake-stream-error-after")
        if error_after is not None:
            events = events[: int(error_after)]
            error = (
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                if anthropic
                else {"error": {"message": "The server had an error", "type": "server_error"}}
            )
            events.append(f"event: error\ndata: {json.dumps(error)}\n\n")
        delay = float(headers.get("x-fake-chunk-delay", self.chunk_delay))
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream; charset=utf-8")
        handler.send_header("transfer-encoding", "chunked")
        handler.send_header("cache-control", "no-cache")
        for key, value in reply_headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        try:
            for event in _delayed(events, delay):
                data = event.encode()
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client closed the stream early

    def _send_error(
        self, handler: BaseHTTPRequestHandler, path: str, status: int, id_header: str
    ) -> None:
        extra = {id_header: self._request_id(path)}
        if status == 429:
            extra["retry-after"] = "0"
        if path == "/v1/messages":
            kind, message = _ANTHROPIC_ERRORS.get(status, ("api_error", "error"))
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": kind, "message": message},
                "request_id": extra[id_header],
            }
        elif status == 404 and path in ("/v1/chat/completions", "/v1/embeddings"):
            name = "openai_chat_404" if path == "/v1/chat/completions" else "openai_embeddings_404"
            payload = json.loads(RECORDINGS[name]["body"])
        else:
            kind, code, message = _OPENAI_ERRORS.get(status, ("server_error", None, "error"))
            payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._send_json(handler, status, payload, extra)

    @staticmethod
    def _send_json(
        handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]
    ) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


def _delayed(events: list[str], delay: float) -> Iterator[str]:
    for index, event in enumerate(events):
        if index and delay:
            time.sleep(delay)
        yield event
