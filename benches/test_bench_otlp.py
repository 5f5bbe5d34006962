"""OTLP encoder benchmark: spans/s encoded, ours against the OpenTelemetry Python SDK's encoder.

One batch of 512 equivalent spans (same ids, times, name, kind, status, and the same 12 GenAI
attributes), encoded to an ``ExportTraceServiceRequest``:

* ``protobuf/ours`` -- ``_core.encode_otlp(batch, plan, "http/protobuf", ...)`` (bytes, as sent);
* ``protobuf/otel`` -- ``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``
  + ``SerializeToString()``, what the SDK's OTLP/HTTP exporter does per batch;
* ``json/ours``     -- ``_core.encode_otlp(batch, plan, "http/json", ...)`` (OTLP/JSON bytes);
* ``json/otel``     -- ``encode_spans`` + protobuf's ``json_format.MessageToJson`` (the SDK ships
  no OTLP/JSON encoder; this is the closest equivalent).

Spans/s = 512 / (time per batch): ``ops`` in pytest-benchmark's table times 512.

    python -m pytest benches/test_bench_otlp.py --benchmark-enable -p no:cacheprovider -q
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from instrumentation_sdk import _core, configure, llm_span, shutdown

encoder = pytest.importorskip("opentelemetry.exporter.otlp.proto.common.trace_encoder")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
json_format = pytest.importorskip("google.protobuf.json_format")
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

SPANS = 512
MAX_VALUE_BYTES = 16384
MAX_REQUEST_BYTES = 64 << 20  # one request: the batch as a whole, like the SDK


def _attributes(index: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai",
        "gen_ai.conversation.id": f"conv-{index % 17}",
        "user.id": f"user-{index % 101}",
        "gen_ai.usage.input_tokens": 120 + index,
        "instrumentation_sdk.token_count_method": "tiktoken",
        "instrumentation_sdk.token_encoding": "o200k_base",
        "gen_ai.usage.output_tokens": 40 + index,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop",),
        "instrumentation_sdk.retry_count": 0,
    }


@pytest.fixture(scope="module")
def our_batch() -> Iterator[_core.Batch]:
    """512 finished spans in a core batch, made through the public API."""
    configure(exporter="none")
    sink = _core.SpanSink(SPANS * 2, SPANS)
    sink.activate()
    try:
        for index in range(SPANS):
            with llm_span(
                "gpt-4o", "openai", user_id=f"user-{index % 101}", session_id=f"conv-{index % 17}"
            ) as span:
                span.set_metadata("prompt_tokens", 120 + index)
                span.set_metadata("token_count_method", "tiktoken")
                span.set_metadata("token_encoding", "o200k_base")
                span.set_metadata("completion_tokens", 40 + index)
                span.set_metadata("actual_model", "gpt-4o-2024-08-06")
                span.set_metadata("finish_reason", "stop")
                span.set_metadata("retry_count", 0)
    finally:
        sink.deactivate()
    batch = sink.drain(SPANS)
    assert len(batch) == SPANS
    configure(exporter="none")  # ending spans go to a pipeline again
    yield batch
    batch.clear()
    shutdown()


@pytest.fixture(scope="module")
def otel_spans() -> list[Any]:
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("instrumentation_sdk", "0.1.0")
    for index in range(SPANS):
        with tracer.start_as_current_span(
            "chat gpt-4o", kind=SpanKind.CLIENT, attributes=_attributes(index)
        ):
            pass
    spans = list(exporter.get_finished_spans())
    assert len(spans) == SPANS
    return spans


def _encoders(batch: _core.Batch, spans: list[Any]) -> dict[str, Callable[[], object]]:
    plan = _core.ExportPlan("bench", MAX_VALUE_BYTES, MAX_VALUE_BYTES)

    def ours(protocol: str) -> Callable[[], object]:
        def run() -> object:
            bodies, _ = _core.encode_otlp(batch, plan, protocol, MAX_REQUEST_BYTES)
            assert len(bodies) == 1
            return bodies

        return run

    return {
        "protobuf/ours": ours("http/protobuf"),
        "protobuf/otel": lambda: encoder.encode_spans(spans).SerializeToString(),
        "json/ours": ours("http/json"),
        "json/otel": lambda: json_format.MessageToJson(encoder.encode_spans(spans)),
    }


@pytest.mark.parametrize("case", ["protobuf/ours", "protobuf/otel", "json/ours", "json/otel"])
def test_otlp_encode(
    benchmark: Any, our_batch: _core.Batch, otel_spans: list[Any], case: str
) -> None:
    benchmark.group = f"otlp_encode_{case.split('/')[0]}"
    benchmark.extra_info.update(impl=case.split("/")[1], spans=SPANS)
    benchmark(_encoders(our_batch, otel_spans)[case])


def test_ours_is_faster_than_the_sdk_encoder(
    our_batch: _core.Batch, otel_spans: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Best of 5 for each, side by side in one run; prints spans/s."""
    encoders = _encoders(our_batch, otel_spans)
    best = {}
    for case, run in encoders.items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        best[case] = min(times)
    with capsys.disabled():
        print()
        for case, seconds in best.items():
            print(f"  otlp encode {case:14} {SPANS / seconds:>12,.0f} spans/s")
    assert best["protobuf/ours"] < best["protobuf/otel"]
    assert best["json/ours"] < best["json/otel"]
