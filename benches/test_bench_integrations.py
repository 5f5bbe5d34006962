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


@pytest.fixture
def answered_in_place() -> Iterator[Any]:
    """``Completions.create`` answered without the client's HTTP and parsing work: it returns
    the recorded completion, parsed once. Instrumentation installed afterwards wraps it as it
    wraps the real method, so a call's time is the instrumentation's own plus a constant."""
    from openai.resources.chat.completions import Completions

    completion = openai.types.chat.ChatCompletion.model_validate_json(BODY)
    original = Completions.__dict__["create"]

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        return completion

    Completions.create = create
    yield completion
    Completions.create = original


PLAIN_REQUEST = {k: v for k, v in RECORDINGS["openai_chat"]["request"].items() if k != "stream"}


@pytest.mark.benchmark(group="integration_added_time")
@pytest.mark.parametrize("impl", list(VARIANTS))
@pytest.mark.parametrize("shape", ["tools", "plain"])
def test_added_time_per_call(benchmark: Any, impl: str, shape: str, answered_in_place: Any) -> None:
    """What each instrumentation adds to one non-streamed call on the request thread, with
    the call itself taken out (``answered_in_place``): added = this time - the bare one. The
    full calls above show the same ordering, but their ~2-8 ms of client work and the shared
    machine's noise swamp differences of tens of microseconds."""
    instrumentation = VARIANTS[impl]()
    instrumentation.enable()
    try:
        client = _client()
        request = REQUEST if shape == "tools" else PLAIN_REQUEST

        def call() -> Any:
            return client.chat.completions.create(**request)

        assert call() is answered_in_place
        benchmark.extra_info.update(suite="integrations", impl=impl, shape=shape)
        rounds = 2000 if benchmark.enabled else 1
        benchmark.pedantic(call, rounds=rounds, iterations=10, warmup_rounds=100)
    finally:
        instrumentation.disable()
        instrumentation.close()
