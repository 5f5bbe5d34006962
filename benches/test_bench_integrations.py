"""What ``instrument_openai()`` adds to a non-streamed ``chat.completions.create`` call, on the
request thread, side by side with the same call uninstrumented and with OpenTelemetry's
``opentelemetry-instrumentation-openai-v2`` (spans to an SDK ``TracerProvider`` with a batch
processor, as ours go to a pipeline; both exporters discard).

The real ``openai`` client makes the call; its HTTP transport answers in process with a
response recorded from the real API (``httpx``'s ``MockTransport``), so the call itself is
cheap and what instrumentation adds shows. Added time = median(instrumented) - median(bare)::

    python -m pytest benches/test_bench_integrations.py --benchmark-enable -p no:cacheprovider

The three variants patch the same method one after the other in one process: each test
instruments, measures and uninstruments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_providers import RECORDINGS

openai = pytest.importorskip("openai")
try:  # the HTTP library the installed openai client is built on
    import httpx2 as http
except ImportError:  # pragma: no cover - openai releases before httpx2
    import httpx as http

RECORDING = RECORDINGS["openai_chat_tools"]
REQUEST = {k: v for k, v in RECORDING["request"].items() if k != "stream"}
BODY = RECORDING["body"].encode()
HEADERS = {"content-type": "application/json", **RECORDING["headers"]}


def _client() -> Any:
    def answer(request: Any) -> Any:
        return http.Response(200, headers=HEADERS, content=BODY)

    http_client = http.Client(transport=http.MockTransport(answer))
    return openai.OpenAI(api_key="sk-bench", base_url="http://bench/v1", http_client=http_client)


class _Discard:
    """Our exporter for the bench: takes batches and keeps nothing."""

    def export(self, batch: list[dict[str, Any]]) -> None:
        pass


@pytest.fixture
def variant(request: pytest.FixtureRequest) -> Iterator[str]:
    impl = request.param
    if impl == "ours":
        from instrumentation_sdk import (
            configure,
            instrument_openai,
            shutdown,
            uninstrument_openai,
        )

        configure(exporter=_Discard())
        instrument_openai()
        yield impl
        uninstrument_openai()
        shutdown(timeout=10.0)
    elif impl == "opentelemetry":
        try:
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
            from opentelemetry.sdk.trace.export import SpanExportResult as Result
        except ImportError as err:
            pytest.skip(f"opentelemetry-instrumentation-openai-v2 is not installed: {err}")

        class Discard(SpanExporter):
            def export(self, spans: Any) -> Result:
                return Result.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        yield impl
        instrumentor.uninstrument()
        provider.shutdown()
    else:
        yield impl


@pytest.mark.benchmark(group="integration_chat_call")
@pytest.mark.parametrize("variant", ["bare", "ours", "opentelemetry"], indirect=True)
def test_chat_completion_call(benchmark: Any, variant: str) -> None:
    """One non-streamed chat completion with a tool definition, as the caller waits for it."""
    client = _client()

    def call() -> Any:
        return client.chat.completions.create(**REQUEST)

    result = call()  # warm: first call builds the client's resources
    assert result.usage.prompt_tokens == json.loads(BODY)["usage"]["prompt_tokens"]
    benchmark.extra_info.update(suite="integrations", impl=variant)
    rounds = 300 if benchmark.enabled else 1
    benchmark.pedantic(call, rounds=rounds, iterations=5, warmup_rounds=20)
