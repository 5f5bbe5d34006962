"""OtlpExporter against a real OTLP/HTTP receiver started here, decoded with the official
definitions (``opentelemetry-proto``): ids, parents, times, status and every mapped attribute;
then each delivery rule of the OTLP spec (retry 429/502/503/504 and connection failures with
``Retry-After``, never other 4xx, partial success, the per-request deadline, the size cap)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import (
    __version__,
    configure,
    flush,
    get_settings,
    llm_span,
    llm_span_with_tokens,
    shutdown,
    stats,
)
from instrumentation_sdk.exporters import ExportError, InMemoryExporter, OtlpExporter

trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
json_format = pytest.importorskip("google.protobuf.json_format")

ExportTraceServiceRequest = trace_service.ExportTraceServiceRequest
ExportTraceServiceResponse = trace_service.ExportTraceServiceResponse


# -- a real OTLP/HTTP receiver


class Answer:
    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.status, self.body, self.headers, self.delay = status, body, headers or {}, delay


class Received:
    def __init__(
        self, path: str, headers: dict[str, str], body: bytes, at: float, status: int
    ) -> None:
        self.path, self.headers, self.body, self.at = path, headers, body, at
        self.status = status

    def request(self) -> Any:
        """The body decoded with the official definitions (protobuf or OTLP/JSON)."""
        if self.headers.get("content-type") == "application/json":
            return parse_otlp_json(self.body)
        assert self.headers.get("content-type") == "application/x-protobuf"
        return ExportTraceServiceRequest.FromString(self.body)


class Receiver:
    """An OTLP/HTTP endpoint: answers from a script (then 200), records every request."""

    def __init__(self) -> None:
        self.script: queue.SimpleQueue[Answer] = queue.SimpleQueue()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    answer = receiver.script.get_nowait()
                except queue.Empty:
                    answer = Answer()
                with receiver.lock:
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                            answer.status,
                        )
                    )
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (deadline)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, *answers: Answer) -> None:
        for answer in answers:
            self.script.put(answer)

    def spans(self) -> list[Any]:
        """The spans of the requests answered 200 (accepted)."""
        with self.lock:
            requests = [r.request() for r in self.received if r.status == 200]
        return [
            span
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_otlp_json(body: bytes) -> Any:
    """OTLP/JSON differs from the protobuf JSON mapping in one way: ids are hex, not base64."""
    document = json.loads(body)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.Parse(json.dumps(document), ExportTraceServiceRequest())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("INSTRUMENTATION_SDK_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INSTRUMENTATION_SDK_DB", str(tmp_path / "default.db"))
    monkeypatch.setenv("INSTRUMENTATION_SDK_RETRY_BACKOFF", "0.01")
    yield
    shutdown(timeout=5.0)


def use(exporter: OtlpExporter, **settings: Any) -> OtlpExporter:
    configure(exporter=exporter, flush_interval=0.05, exit_timeout=2.0, **settings)
    return exporter


FIGURES = (
    "exported",
    "dropped_export_failed",
    "export_errors",
    "retries",
    "export_rejected",
    "rejected_spans",
)


def figures() -> dict[str, int]:
    current = stats()
    assert current["produced"] == current["exported"] + current["dropped"] + current["buffered"]
    return {key: current[key] for key in FIGURES}


def delta(before: dict[str, int]) -> dict[str, int]:
    after = figures()
    return {key: after[key] - before[key] for key in FIGURES}


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        if kind == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        out[kv.key] = value
    return out


def a_few_spans() -> tuple[Any, Any, Any]:
    with (
        llm_span(
            "gpt-4o-mini", "internal", name="router", user_id="u-1", session_id="conv-9"
        ) as parent,
        llm_span_with_tokens("gpt-4o", "openai", prompt="Hello world!") as child,
    ):
        child.set_metadata("completion_tokens", 7)
        child.set_metadata("actual_model", "gpt-4o-2024-08-06")
        child.set_metadata("finish_reason", "stop")
        child.set_metadata("retry_count", 1)
        child.set_metadata("temperature", 0.2)
        child.set_metadata("cached", True)
        child.set_metadata("tags", ["a", "b"])
    failed = llm_span("claude-3-opus", "anthropic")
    with pytest.raises(TimeoutError), failed:
        raise TimeoutError("upstream took too long")
    return parent, child, failed


# -- mapping


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_spans_arrive_with_ids_times_status_and_genai_attributes(
    receiver: Receiver, protocol: str, compression: str
) -> None:
    use(OtlpExporter(receiver.url, protocol=protocol, compression=compression))
    parent, child, failed = a_few_spans()
    assert flush(5.0)
    request = receiver.received[0]
    assert request.path == "/v1/traces"
    assert request.headers["content-encoding" if compression == "gzip" else "content-type"]
    decoded = request.request()
    resource = {
        kv.key: kv.value.string_value for kv in decoded.resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == get_settings().service_name
    assert resource["telemetry.sdk.name"] == "instrumentation-sdk"
    assert resource["telemetry.sdk.version"] == __version__
    scope = decoded.resource_spans[0].scope_spans[0].scope
    assert (scope.name, scope.version) == ("instrumentation_sdk", __version__)

    by_id = {span.span_id.hex(): span for span in receiver.spans()}
    assert set(by_id) == {parent.span_id, child.span_id, failed.span_id}
    for ours in (parent, child, failed):
        theirs = by_id[ours.span_id]
        assert theirs.trace_id.hex() == ours.trace_id
        assert (theirs.parent_span_id.hex() or None) == ours.parent_span_id
        assert theirs.start_time_unix_nano == ours.start_time_unix_nano
        assert theirs.end_time_unix_nano == ours.end_time_unix_nano
        assert theirs.kind == 3  # SPAN_KIND_CLIENT

    top = by_id[parent.span_id]
    assert top.name == "router"  # a name of its own stays
    assert top.status.code == 0  # success is left UNSET
    assert attributes(top) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.provider.name": "internal",
        "gen_ai.conversation.id": "conv-9",
        "user.id": "u-1",
    }

    nested = by_id[child.span_id]
    assert nested.parent_span_id.hex() == parent.span_id
    assert nested.trace_id.hex() == parent.trace_id
    assert nested.name == "chat gpt-4o"
    assert attributes(nested) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai",
        "gen_ai.conversation.id": "conv-9",  # inherited from the parent
        "user.id": "u-1",
        "gen_ai.usage.input_tokens": 3,
        "instrumentation_sdk.token_count_method": "tiktoken",
        "instrumentation_sdk.token_encoding": "o200k_base",
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ["stop"],
        "instrumentation_sdk.retry_count": 1,
        "gen_ai.request.temperature": 0.2,  # a standard key (the client integrations record it)
        "cached": True,
        "tags": '["a","b"]',
    }

    error = by_id[failed.span_id]
    assert error.name == "chat claude-3-opus"
    assert error.status.code == 2  # STATUS_CODE_ERROR
    assert error.status.message == "upstream took too long"
    assert attributes(error)["error.type"] == "TimeoutError"


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_records_export_like_the_pipeline_does(receiver: Receiver, protocol: str) -> None:
    """export(records) (outside the pipeline, or fanned out from another exporter) sends what
    the pipeline's own path sends for the same spans."""
    memory = InMemoryExporter()
    configure(exporter=memory)
    parent, child, failed = a_few_spans()
    assert flush(5.0)
    records = list(memory.spans)
    assert len(records) == 3

    OtlpExporter(receiver.url, protocol=protocol).export(records)
    by_id = {span.span_id.hex(): span for span in receiver.spans()}
    assert set(by_id) == {parent.span_id, child.span_id, failed.span_id}
    for ours in (parent, child, failed):
        theirs = by_id[ours.span_id]
        assert theirs.trace_id.hex() == ours.trace_id
        assert (theirs.parent_span_id.hex() or None) == ours.parent_span_id
        assert theirs.start_time_unix_nano == ours.start_time_unix_nano
        assert theirs.end_time_unix_nano == ours.end_time_unix_nano
    nested = attributes(by_id[child.span_id])
    assert nested["gen_ai.usage.input_tokens"] == 3
    assert nested["gen_ai.response.finish_reasons"] == ["stop"]
    assert nested["gen_ai.conversation.id"] == "conv-9"
    assert nested["tags"] == '["a","b"]'  # a container travels as its JSON
    assert nested["cached"] is True
    error = by_id[failed.span_id]
    assert (error.status.code, error.status.message) == (2, "upstream took too long")
    assert attributes(error)["error.type"] == "TimeoutError"


def test_records_a_receiver_refuses_raise_export_error(receiver: Receiver) -> None:
    record = {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "start_time_unix_nano": 1,
        "end_time_unix_nano": 2,
        "metadata": {"odd": object(), "big": 2**80},
    }
    receiver.answer(Answer(503))
    with pytest.raises(ExportError):
        OtlpExporter(receiver.url).export([record])
    OtlpExporter(receiver.url).export([record])  # the next try goes through
    (span,) = receiver.spans()
    assert span.name == "chat"  # no name of its own: the GenAI convention's
    values = attributes(span)
    assert values["big"] == str(2**80)
    assert values["odd"].startswith("<object object at")


@pytest.mark.parametrize(
    ("record", "error", "words"),
    [
        ("not a dict", TypeError, "record 0: a record must be a dict"),
        ({"span_id": "b7ad6b7169203331"}, ValueError, 'record 0: record "trace_id" is missing'),
        (
            {"trace_id": "xyz", "span_id": "b7ad6b7169203331"},
            ValueError,
            'record 0: record "trace_id" must be 32 hex digits',
        ),
        (
            {
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "span_id": "b7ad6b7169203331",
                "start_time_unix_nano": 1,
                "end_time_unix_nano": 2,
                "status": "fine",
            },
            ValueError,
            "record 0: record \"status\" must be 'ok', 'error' or 'unset'",
        ),
        (
            {
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "span_id": "b7ad6b7169203331",
                "start_time_unix_nano": -1,
                "end_time_unix_nano": 2,
            },
            ValueError,
            'record 0: record "start_time_unix_nano" must be an int >= 0',
        ),
        (
            {
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "span_id": "b7ad6b7169203331",
                "model": 4,
                "start_time_unix_nano": 1,
                "end_time_unix_nano": 2,
            },
            TypeError,
            'record 0: record "model" must be a str',
        ),
    ],
)
def test_a_record_that_is_not_one_is_a_clear_error(
    receiver: Receiver, record: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        OtlpExporter(receiver.url).export([record])
    assert str(raised.value).startswith(words), str(raised.value)
    assert receiver.received == []


def test_openinference_names_for_phoenix(receiver: Receiver) -> None:
    use(OtlpExporter(receiver.url, openinference=True))
    with llm_span("gpt-4o", "openai", session_id="s") as span:
        span.set_metadata("prompt_tokens", 10)
        span.set_metadata("completion_tokens", 5)
    assert flush(5.0)
    found = attributes(receiver.spans()[0])
    assert found["openinference.span.kind"] == "LLM"
    assert found["llm.model_name"] == "gpt-4o"
    assert found["llm.provider"] == "openai"
    assert found["session.id"] == "s"
    assert found["llm.token_count.prompt"] == 10
    assert found["llm.token_count.completion"] == 5
    assert found["llm.token_count.total"] == 15
    assert found["gen_ai.usage.input_tokens"] == 10


# -- configuration


def test_two_environment_variables_select_and_aim_it(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTRUMENTATION_SDK_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url + "/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%20cret,x-team=llm")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    configure(flush_interval=0.05)
    assert isinstance(get_settings().exporter, str)
    with llm_span("gpt-4o"):
        pass
    assert flush(5.0)
    request = receiver.received[0]
    assert request.path == "/v1/traces"
    assert request.headers["api-key"] == "s cret"
    assert request.headers["x-team"] == "llm"
    resource = {
        kv.key: kv.value.string_value
        for kv in request.request().resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "checkout"
    assert resource["deployment.environment"] == "prod"


def test_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/custom/path",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=1",
        "INSTRUMENTATION_SDK_OTLP_OPENINFERENCE": "true",
    }
    exporter = OtlpExporter(environ=env)
    assert exporter.url == "https://traces.example/custom/path"  # the traces variable, as is
    assert (exporter.protocol, exporter.compression, exporter.timeout) == ("http/json", "gzip", 2.5)
    assert exporter.headers == {"a": "1"}
    assert exporter.openinference
    base = OtlpExporter(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318"})
    assert base.url == "http://base:4318/v1/traces"
    assert base.protocol == "http/protobuf"  # the spec's default
    assert OtlpExporter(environ={}).url == "http://localhost:4318/v1/traces"
    with pytest.raises(ValueError, match="protocol"):
        OtlpExporter(protocol="http/xml", environ={})
    with pytest.raises(ValueError, match="endpoint"):
        OtlpExporter("ftp://x", environ={})
    monkeypatch.setenv("INSTRUMENTATION_SDK_EXPORTER", "otlp")
    configure()
    assert get_settings().exporter == "otlp"
    configure(exporter="otlp")


# -- delivery rules


def one_span() -> None:
    with llm_span("gpt-4o"):
        pass


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried(receiver: Receiver, status: int) -> None:
    use(OtlpExporter(receiver.url))
    before = figures()
    receiver.answer(Answer(status))
    one_span()
    assert flush(5.0)
    assert len(receiver.received) == 2
    assert delta(before) == {
        **dict.fromkeys(FIGURES, 0),
        "exported": 1,
        "export_errors": 1,
        "retries": 1,
    }


def test_retry_after_is_honoured(receiver: Receiver) -> None:
    use(OtlpExporter(receiver.url))
    receiver.answer(Answer(429, headers={"Retry-After": "1"}))
    one_span()
    assert flush(10.0)
    first, second = receiver.received
    assert second.at - first.at >= 0.95  # the backoff alone would be ~0.01 s


def test_a_retry_after_past_the_budget_drops_the_batch(receiver: Receiver) -> None:
    use(OtlpExporter(receiver.url))
    before = figures()
    receiver.answer(Answer(503, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    one_span()
    assert flush(5.0)
    assert time.monotonic() - started < 3
    assert len(receiver.received) == 1
    assert delta(before)["dropped_export_failed"] == 1


@pytest.mark.parametrize("status", [400, 401, 404, 413, 415])
def test_other_client_errors_are_never_retried(receiver: Receiver, status: int) -> None:
    use(OtlpExporter(receiver.url), export_retries=3)
    before = figures()
    receiver.answer(Answer(status, b"bad request"))
    one_span()
    assert flush(5.0)
    assert len(receiver.received) == 1
    change = delta(before)
    assert change["export_rejected"] == 1
    assert change["dropped_export_failed"] == 1
    assert change["retries"] == 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_partial_success_is_logged_and_counted(
    receiver: Receiver, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    use(OtlpExporter(receiver.url, protocol=protocol))
    before = figures()
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 2
    response.partial_success.error_message = "spans too old"
    if protocol == "http/protobuf":
        body, kind = response.SerializeToString(), "application/x-protobuf"
    else:
        body, kind = json_format.MessageToJson(response).encode(), "application/json"
    receiver.answer(Answer(200, body, {"Content-Type": kind}))
    with caplog.at_level("WARNING", logger="instrumentation_sdk"):
        for _ in range(3):
            one_span()
        assert flush(5.0)
    change = delta(before)
    assert change["exported"] == 3
    assert change["rejected_spans"] == 2
    assert "rejected 2 span(s): spans too old" in caplog.text


def test_a_slow_answer_past_the_deadline_is_retried(receiver: Receiver) -> None:
    use(OtlpExporter(receiver.url, timeout=0.3))
    before = figures()
    receiver.answer(Answer(200, delay=1.5))
    started = time.monotonic()
    one_span()
    assert flush(5.0)
    assert time.monotonic() - started < 1.4  # did not wait for the slow answer
    assert len(receiver.received) == 2
    change = delta(before)
    assert (change["exported"], change["export_errors"], change["retries"]) == (1, 1, 1)


def test_connection_failures_are_retried_then_dropped() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use(OtlpExporter(f"http://127.0.0.1:{port}"), export_retries=2)
    before = figures()
    one_span()
    assert flush(5.0)
    change = delta(before)
    assert (change["export_errors"], change["retries"], change["dropped_export_failed"]) == (
        3,
        2,
        1,
    )


def test_batches_split_under_the_size_cap_and_a_retry_resends_only_the_rest(
    receiver: Receiver,
) -> None:
    use(OtlpExporter(receiver.url, max_request_bytes=4096), batch_size=100)
    receiver.answer(Answer(200), Answer(503))  # the second request fails once
    before = figures()
    ids = []
    for index in range(100):
        with llm_span("gpt-4o", user_id=f"user-{index}") as span:
            span.set_metadata("note", "x" * 200)
        ids.append(span.span_id)
    assert flush(5.0)
    assert all(len(r.body) <= 4096 for r in receiver.received)
    assert len(receiver.received) > 5
    received = [span.span_id.hex() for span in receiver.spans()]
    assert sorted(received) == sorted(ids)  # every span once: no request was resent whole
    assert delta(before)["exported"] == 100


def test_keeps_the_connection_alive(receiver: Receiver) -> None:
    use(OtlpExporter(receiver.url))
    for _ in range(3):
        one_span()
        assert flush(5.0)
    assert len(receiver.received) == 3
    assert len({r.headers.get("host") for r in receiver.received}) == 1


# -- the pipeline's side of ExportError


class Scripted:
    def __init__(self, *errors: BaseException | None) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    def export(self, batch: list[dict[str, Any]]) -> None:
        self.calls.append(time.monotonic())
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error


def test_export_error_decides_retrying() -> None:
    final = Scripted(ExportError("no", retryable=False))
    configure(exporter=final, flush_interval=0.05, export_retries=3)
    before = figures()
    one_span()
    assert flush(5.0)
    assert len(final.calls) == 1
    assert delta(before)["export_rejected"] == 1

    later = Scripted(ExportError("wait", retry_after=0.5), None)
    configure(exporter=later, flush_interval=0.05, export_retries=3)
    one_span()
    assert flush(5.0)
    assert len(later.calls) == 2
    assert later.calls[1] - later.calls[0] >= 0.45


# -- joining an active OpenTelemetry trace


def test_a_root_llm_span_joins_the_active_opentelemetry_span(receiver: Receiver) -> None:
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk_trace.TracerProvider().get_tracer("app")
    use(OtlpExporter(receiver.url))
    with (
        tracer.start_as_current_span("POST /chat") as otel_span,
        llm_span("gpt-4o") as joined,
        llm_span("gpt-4o") as nested,
    ):
        pass
    context = otel_span.get_span_context()
    assert joined.trace_id == f"{context.trace_id:032x}"
    assert joined.parent_span_id == f"{context.span_id:016x}"
    assert nested.parent_span_id == joined.span_id
    with llm_span("gpt-4o") as alone:
        pass
    assert alone.parent_span_id is None
    assert alone.trace_id != joined.trace_id
    assert flush(5.0)
    exported = {span.span_id.hex(): span for span in receiver.spans()}
    assert exported[joined.span_id].parent_span_id.hex() == f"{context.span_id:016x}"


# -- events and captured content


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_events_and_captured_content_arrive_as_genai_attributes(
    receiver: Receiver, protocol: str
) -> None:
    use(
        OtlpExporter(receiver.url, protocol=protocol, openinference=True),
        capture_content=True,
    )
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    with llm_span_with_tokens("gpt-4o", "openai", prompt=messages) as span:
        span.add_event("retry", {"attempt": 1, "reason": {"status": 503}})
        span.set_completion("4")
        span.set_metadata("finish_reason", "stop")
    assert flush(timeout=10.0)
    (exported,) = receiver.spans()
    assert [event.name for event in exported.events] == ["retry"]
    event = exported.events[0]
    assert exported.start_time_unix_nano <= event.time_unix_nano <= exported.end_time_unix_nano
    assert attributes(event) == {"attempt": 1, "reason": '{"status":503}'}
    found = attributes(exported)
    assert json.loads(found["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]},
    ]
    assert json.loads(found["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "4"}], "finish_reason": "stop"}
    ]
    assert json.loads(found["input.value"]) == messages
    assert found["input.mime_type"] == "application/json"
    assert (found["output.value"], found["output.mime_type"]) == ("4", "text/plain")


def test_no_content_attribute_when_capture_is_off(receiver: Receiver) -> None:
    use(OtlpExporter(receiver.url, openinference=True))
    with llm_span_with_tokens("gpt-4o", "openai", prompt="secret prompt text") as span:
        span.set_completion("secret completion text")
    assert flush(timeout=10.0)
    (exported,) = receiver.spans()
    found = attributes(exported)
    assert found["gen_ai.usage.input_tokens"] == 3
    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "input.value", "output.value"):
        assert key not in found
    assert b"secret" not in exported.SerializeToString()
