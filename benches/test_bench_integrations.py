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
import statistics
import sys
import time
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


class _Ours:
    def __init__(self) -> None:
        from instrumentation_sdk import configure

        configure(exporter=_Discard())

    def enable(self) -> None:
        from instrumentation_sdk import instrument_openai

        instrument_openai()

    def disable(self) -> None:
        from instrumentation_sdk import uninstrument_openai

        uninstrument_openai()

    def close(self) -> None:
        from instrumentation_sdk import shutdown

        shutdown(timeout=10.0)


class _OpenTelemetry:
    def __init__(self) -> None:
        try:
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
            from opentelemetry.sdk.trace.export import SpanExportResult as Result
        except ImportError as err:
            pytest.skip(f"opentelemetry-instrumentation-openai-v2 cannot load: {err}")

        class Discard(SpanExporter):
            def export(self, spans: Any) -> Result:
                return Result.SUCCESS

        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(Discard()))
        self.instrumentor = OpenAIInstrumentor()

    def enable(self) -> None:
        self.instrumentor.instrument(tracer_provider=self.provider)

    def disable(self) -> None:
        self.instrumentor.uninstrument()

    def close(self) -> None:
        self.provider.shutdown()


class _Bare:
    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def close(self) -> None:
        pass


VARIANTS = {"bare": _Bare, "ours": _Ours, "opentelemetry": _OpenTelemetry}


@pytest.fixture
def variant(request: pytest.FixtureRequest) -> Iterator[str]:
    instrumentation = VARIANTS[request.param]()
    instrumentation.enable()
    yield request.param
    instrumentation.disable()
    instrumentation.close()


@pytest.mark.benchmark(group="integration_chat_call")
@pytest.mark.parametrize("variant", list(VARIANTS), indirect=True)
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


@pytest.mark.benchmark(group="integration_added_time")
def test_added_time_interleaved(benchmark: Any) -> None:
    """The time each instrumentation adds per call, measured interleaved: each round times a
    burst of calls under each variant in turn (switching outside the timed part), so the
    machine's load drifts over all three alike. Added = median over rounds of
    (variant's time per call - bare time per call in the same round)."""
    client = _client()
    variants = {name: make() for name, make in VARIANTS.items()}
    rounds, burst = (60, 40) if benchmark.enabled else (2, 2)
    added: dict[str, list[float]] = {"ours": [], "opentelemetry": []}

    def experiment() -> None:
        for _ in range(rounds):
            per_call = {}
            for name, instrumentation in variants.items():
                instrumentation.enable()
                client.chat.completions.create(**REQUEST)  # warm after switching
                start = time.perf_counter()
                for _ in range(burst):
                    client.chat.completions.create(**REQUEST)
                per_call[name] = (time.perf_counter() - start) / burst
                instrumentation.disable()
            for name in added:
                added[name].append(per_call[name] - per_call["bare"])

    try:
        benchmark.pedantic(experiment, rounds=1, iterations=1)
    finally:
        for instrumentation in variants.values():
            instrumentation.close()
    ours_us = statistics.median(added["ours"]) * 1e6
    otel_us = statistics.median(added["opentelemetry"]) * 1e6
    benchmark.extra_info.update(
        suite="integrations", added_us_ours=ours_us, added_us_opentelemetry=otel_us
    )
    print(f"\nadded per call: ours {ours_us:.1f} us, opentelemetry-openai-v2 {otel_us:.1f} us")
