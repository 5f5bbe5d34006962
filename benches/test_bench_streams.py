"""Stream benchmarks: what observing a streamed response costs the request thread, per chunk.

One stream is ``CHUNKS`` (256) chunks, iterated by the consumer with ``for chunk in stream: pass``.
Group ``stream_<kind>`` (same session, side by side), per stream of ``kind``:

* ``str``      -- plain ``str`` chunks (" tok0", " tok1", ...);
* ``objects``  -- real ``openai.types.chat.ChatCompletionChunk`` objects (pydantic models, made
  with ``model_validate``) as a Chat Completions stream with ``include_usage`` sends them: a role
  chunk (empty content), 253 content chunks, a finish chunk (``finish_reason="stop"``) and a
  usage chunk (empty ``choices``); skipped with the reason when ``openai`` is not installed.

Implementations (each wraps a fresh ``iter(chunks)``; ``openllmetry`` a holder whose ``__next__`` is
that iterator's, see ``Response``):

* ``raw``         -- the bare iterator: the baseline every other figure is taken above;
* ``ours``        -- ``span.wrap_stream(iter(chunks))`` inside ``with llm_span("gpt-4o",
  "openai")``;
* ``minimal``     -- the cheapest pure-Python generator wrapper that keeps the same facts: the
  first-token time (``perf_counter_ns()`` at the first chunk with output text), the chunk count,
  the text parts (``list.append`` of each delta's content) and the finish reason;
* ``otel_v2``     -- ``opentelemetry-instrumentation-openai-v2``'s chat stream wrapper (the one its
  patched ``create`` returns by default: ``LegacyChatStreamWrapper(stream, span, logger,
  capture_content)``) over a real OpenTelemetry SDK span (objects only);
* ``openllmetry`` -- OpenLLMetry's ``opentelemetry-instrumentation-openai`` ``ChatStream(span,
  response, ...)`` with no-op metric instruments (objects only).

Peers use a ``TracerProvider`` + ``BatchSpanProcessor`` + a span exporter that only counts; a
peer that cannot be installed or built is skipped with the reason (``-ra``), never failing the run.

What is timed, and what is not (fair to everyone): one round is one whole stream, iterated to
its end. Made before the timer (``setup``): the span (ours: ``llm_span.__enter__``; peers:
``tracer.start_span``) and the wrapper. Timed: every ``next()`` including the last one, which
ends the stream: ours then tells its span (still in its ``with`` block) the stream's facts, the
peers set their attributes and end their span there (their design: the span ends with the
stream), so their figure includes one ``span.end()`` (microseconds: about 1% of theirs).
After the timer (``teardown``): our ``with`` block exits (the span ends and is queued for the
flusher). Nothing is exported during the timed rounds (our flusher and the OpenTelemetry
processor wait an hour or a full queue); afterwards both are flushed, and we assert that every
stream was recorded in full: every chunk yielded (the very same objects), ``stream_chunks`` ==
256, ``stream_status="completed"``, TTFT, finish reason and usage; the peers' spans ended with
the usage and model of the stream; the minimal wrapper's facts.

Cost per chunk = (median time per stream of the implementation - median of ``raw``) / 256.
``python benches/test_bench_streams.py --json FILE`` prints that table from a pytest-benchmark
JSON; ``python benches/test_bench_streams.py`` runs an interleaved timeit-style harness (no
pytest-benchmark) that also reports the spread over repetitions and the per-chunk slope between
two stream lengths (which excludes every per-stream cost). Under plain ``pytest``
(``--benchmark-disable``) each case runs one stream and checks it: a smoke test.

On a loaded machine time with this thread's CPU clock (``--benchmark-timer=time.thread_time``;
the harness does by default): a stream of the peers takes milliseconds and is often preempted,
one of ours microseconds and rarely, so wall time charges the peers for other processes' work.
Ours also reports (``extra_info["note"]``) the flush's wall time per chunk held: what the
flusher spends reading the chunks it was handed, off the request thread but holding the GIL.
Keep streams under 4096 chunks here: past that our wrapper reads the held chunks on the request
thread (``FOLD_AT`` in ``rust/py/stream.rs``).

    python -m pytest benches/test_bench_streams.py --benchmark-enable \
        --benchmark-timer=time.thread_time --benchmark-json=/tmp/bench-streams.json \
        -p no:cacheprovider -q
    python benches/test_bench_streams.py --json /tmp/bench-streams.json
    python benches/test_bench_streams.py --reps 15 --lengths 256,4000
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import configure, flush, llm_span, shutdown, warmup
from instrumentation_sdk.exporters import InMemoryExporter

MODEL = "gpt-4o"
PROVIDER = "openai"
ACTUAL_MODEL = "gpt-4o-2024-08-06"
CHUNKS = 256
KINDS = ("str", "objects")
IMPLS = ("raw", "ours", "minimal", "otel_v2", "openllmetry")
PEERS = ("otel_v2", "openllmetry")
QUEUE = 1 << 16  # spans held before anything is exported: more than any run makes
HOUR = 3600.0


class Unavailable(Exception):
    """An implementation or chunk kind cannot be used here; the message is the skip reason."""


# --------------------------------------------------------------------------------------------
# The chunks
# --------------------------------------------------------------------------------------------


def str_chunks(n: int = CHUNKS) -> list[str]:
    return [f" tok{i}" for i in range(n)]


def _chat_chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_764_000_000,
            "model": ACTUAL_MODEL,
            "system_fingerprint": "fp_bench",
            "service_tier": "default",
            "choices": choices,
            "usage": usage,
        }
    )


def object_chunks(n: int = CHUNKS) -> list[Any]:
    """An OpenAI Chat Completions stream with ``include_usage``: role, n - 3 contents, finish,
    usage (``completion_tokens`` = n - 3)."""
    try:
        import openai.types.chat  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"openai is not installed: {e}") from e

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

    contents = n - 3
    return [
        _chat_chunk([choice({"role": "assistant", "content": "", "refusal": None})]),
        *(_chat_chunk([choice({"content": f" tok{i}"})]) for i in range(contents)),
        _chat_chunk([choice({}, "stop")]),
        _chat_chunk(
            [], {"prompt_tokens": 12, "completion_tokens": contents, "total_tokens": 12 + contents}
        ),
    ]


def expected_text(kind: str, chunks: Sequence[Any]) -> str:
    if kind == "str":
        return "".join(chunks)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


_CHUNKS: dict[tuple[str, int], list[Any] | str] = {}


def chunks_of(kind: str, n: int = CHUNKS) -> list[Any]:
    """The chunks of ``kind`` (made once per session), or skip with the reason."""
    key = (kind, n)
    if key not in _CHUNKS:
        try:
            _CHUNKS[key] = str_chunks(n) if kind == "str" else object_chunks(n)
        except Unavailable as e:
            _CHUNKS[key] = str(e)
    found = _CHUNKS[key]
    if isinstance(found, str):
        raise Unavailable(found)
    return found


def drain(stream: Iterable[Any]) -> None:
    """The consumer: what every implementation is timed under (raw included)."""
    for _ in stream:
        pass


# --------------------------------------------------------------------------------------------
# Drivers: each makes one observed stream (untimed), ends what is left open (untimed), checks
# --------------------------------------------------------------------------------------------


@dataclass
class Driver:
    """``open()`` -> the stream to drain; ``close()`` ends what ``open`` began that is still open
    (after the timer); ``check()`` asserts every stream drained since was recorded in full."""

    impl: str
    kind: str
    chunks: list[Any]
    opened: int = 0
    note: str = ""

    def open(self) -> Iterable[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def check(self) -> None:
        pass

    def verify_yield(self) -> None:
        """One more stream, collected: the wrapper yields every chunk, the same objects."""
        out = list(self.open())
        self.close()
        assert len(out) == len(self.chunks), (self.impl, len(out))
        assert all(a is b for a, b in zip(out, self.chunks, strict=True)), self.impl


class Raw(Driver):
    def open(self) -> Iterable[Any]:
        self.opened += 1
        return iter(self.chunks)


class Ours(Driver):
    """Our span and wrapper; every span exported to memory, checked after the timing."""

    def __init__(self, impl: str, kind: str, chunks: list[Any], exporter: InMemoryExporter):
        super().__init__(impl, kind, chunks)
        self.exporter = exporter
        self.blocks: list[Any] = []
        self.before = len(exporter.spans)
        self.flush_ns_per_chunk = 0.0

    def open(self) -> Iterable[Any]:
        self.opened += 1
        block = llm_span(MODEL, PROVIDER)
        span = block.__enter__()
        self.blocks.append(block)
        return span.wrap_stream(iter(self.chunks))

    def close(self) -> None:
        while self.blocks:
            self.blocks.pop().__exit__(None, None, None)

    def check(self) -> None:
        self.close()
        started = time.perf_counter_ns()
        assert flush(300.0), "flush() timed out"
        # Informational: the flusher reads the held chunks (absorb) and exports the spans;
        # off the request thread, but it holds the GIL while it reads them.
        self.flush_ns_per_chunk = (time.perf_counter_ns() - started) / max(
            1, self.opened * len(self.chunks)
        )
        records = self.exporter.spans[self.before :]
        assert len(records) == self.opened, (len(records), self.opened)
        for record in records:
            metadata = record["metadata"]
            assert record["status"] == "ok", record
            assert metadata["stream_chunks"] == len(self.chunks), metadata
            assert metadata["stream_status"] == "completed", metadata
            assert metadata["time_to_first_token_ms"] > 0, metadata
            if self.kind == "objects":
                assert metadata["finish_reason"] == "stop", metadata
                assert metadata["actual_model"] == ACTUAL_MODEL, metadata
                assert metadata["completion_tokens"] == len(self.chunks) - 3, metadata
                assert metadata["completion_token_count_method"] == "usage", metadata
            else:
                assert metadata["completion_token_count_method"] in ("tiktoken", "heuristic")
                assert metadata["completion_tokens"] > 0, metadata
        self.exporter.clear()  # a heap that grew with our records would slow later GC passes
        self.before = 0
        self.opened = 0
        self.note = (
            f"{len(records)} spans exported, each stream_chunks={len(self.chunks)}; flush wall "
            f"time {self.flush_ns_per_chunk:.0f} ns per chunk held"
        )


def minimal_str(stream: Iterable[str], facts: dict[str, Any]) -> Iterator[str]:
    """The cheapest generator that keeps the facts of a ``str`` stream: every chunk is a text
    part, so the count is the number of parts; a first loop until the first non-empty chunk,
    then one without the first-token test (~10% cheaper than one loop testing ``not first``)."""
    parts: list[str] = []
    append = parts.append
    first = 0
    chunks = iter(stream)
    for chunk in chunks:
        if chunk:
            first = time.perf_counter_ns()
            append(chunk)
            yield chunk
            break
        append(chunk)
        yield chunk
    for chunk in chunks:
        append(chunk)
        yield chunk
    facts.update(first_token_ns=first, chunks=len(parts), parts=parts, finish_reason=None)


def minimal_objects(stream: Iterable[Any], facts: dict[str, Any]) -> Iterator[Any]:
    """The cheapest generator that keeps the facts of a Chat Completions stream (first choice;
    the two-loop form of ``minimal_str`` measured no cheaper here: attribute reads dominate)."""
    parts: list[str] = []
    append = parts.append
    first = 0
    chunks = 0
    finish = None
    for chunk in stream:
        chunks += 1
        choices = chunk.choices
        if choices:
            choice = choices[0]
            content = choice.delta.content
            if content:
                if not first:
                    first = time.perf_counter_ns()
                append(content)
            if choice.finish_reason:
                finish = choice.finish_reason
        yield chunk
    facts.update(first_token_ns=first, chunks=chunks, parts=parts, finish_reason=finish)


class Minimal(Driver):
    def __init__(self, impl: str, kind: str, chunks: list[Any]):
        super().__init__(impl, kind, chunks)
        self.wrap = minimal_str if kind == "str" else minimal_objects
        self.facts: list[dict[str, Any]] = []

    def open(self) -> Iterable[Any]:
        self.opened += 1
        facts: dict[str, Any] = {}
        self.facts.append(facts)
        return self.wrap(iter(self.chunks), facts)

    def check(self) -> None:
        assert len(self.facts) == self.opened
        expected = expected_text(self.kind, self.chunks)
        for facts in self.facts:
            assert facts["chunks"] == len(self.chunks), facts
            assert facts["first_token_ns"] > 0
            assert "".join(facts["parts"]) == expected
            assert facts["finish_reason"] == (None if self.kind == "str" else "stop")
        self.facts.clear()
        self.opened = 0


# --------------------------------------------------------------------------------------------
# OpenTelemetry peers
# --------------------------------------------------------------------------------------------


@dataclass
class OtelSdk:
    """A TracerProvider whose BatchSpanProcessor waits an hour (or a full queue) to export to a
    span exporter that only counts and keeps the last span."""

    provider: Any
    tracer: Any
    counted: list[Any] = field(default_factory=list)  # [count, last span]

    def ended(self) -> tuple[int, Any]:
        assert self.provider.force_flush(60_000), "OpenTelemetry force_flush timed out"
        return self.counted[0], self.counted[1]


def start_otel() -> OtelSdk:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError as e:
        raise Unavailable(f"opentelemetry-sdk is not installed: {e}") from e
    counted: list[Any] = [0, None]

    class CountingExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            counted[0] += len(spans)
            if spans:
                counted[1] = spans[-1]
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            CountingExporter(),
            max_queue_size=QUEUE,
            max_export_batch_size=QUEUE,
            schedule_delay_millis=HOUR * 1000,
        )
    )
    return OtelSdk(provider, provider.get_tracer("instrumentation-sdk-bench"), counted)


def _request_attributes() -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MODEL,
        "server.address": "api.openai.com",
    }


def _params(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor's parameters (``__init__``'s: a wrapt ``ObjectProxy`` subclass has no
    class signature)."""
    try:
        return dict(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError) as e:
        raise Unavailable(f"{cls.__qualname__}: no constructor signature: {e}") from e


class PeerDriver(Driver):
    """A peer's wrapper over a span of ``otel`` (started untimed, ended by the wrapper)."""

    def __init__(self, impl: str, kind: str, chunks: list[Any], otel: OtelSdk):
        super().__init__(impl, kind, chunks)
        self.otel = otel
        self.before = otel.ended()[0]
        self.last: Any = None

    def start_span(self) -> Any:
        from opentelemetry.trace import SpanKind

        return self.otel.tracer.start_span(
            f"chat {MODEL}", kind=SpanKind.CLIENT, attributes=_request_attributes()
        )

    def check(self) -> None:
        count, last = self.otel.ended()
        assert count - self.before == self.opened, (self.impl, count - self.before, self.opened)
        attributes = dict(last.attributes)
        assert attributes.get("gen_ai.response.model") == ACTUAL_MODEL, attributes
        assert attributes.get("gen_ai.usage.output_tokens") == len(self.chunks) - 3, attributes
        self.before = count
        self.opened = 0
        self.note = f"{count} spans ended and exported"


class OtelV2(PeerDriver):
    """``opentelemetry-instrumentation-openai-v2``: the stream wrapper its ``create`` returns."""

    def __init__(self, impl: str, kind: str, chunks: list[Any], otel: OtelSdk):
        super().__init__(impl, kind, chunks, otel)
        try:
            from opentelemetry.instrumentation.openai_v2 import patch
        except Exception as e:
            raise Unavailable(f"opentelemetry-instrumentation-openai-v2: {e}") from e
        # The default (non-experimental semconv) path: LegacyChatStreamWrapper in 2.x; releases
        # before the util-genai split named the same span-taking class ChatStreamWrapper.
        for name in ("LegacyChatStreamWrapper", "ChatStreamWrapper"):
            cls = getattr(patch, name, None)
            if cls is not None and "span" in _params(cls):
                break
        else:
            raise Unavailable(
                "opentelemetry-instrumentation-openai-v2: no stream wrapper taking a span"
            )
        from opentelemetry._logs import NoOpLoggerProvider

        params = _params(cls)
        self.cls = cls
        self.logger = NoOpLoggerProvider().get_logger("instrumentation-sdk-bench")
        self.extra = {k: v for k, v in (("logger", self.logger),) if k in params}
        self.capture = "capture_content" in params
        self.note = f"{cls.__module__}.{cls.__qualname__}"

    def open(self) -> Iterable[Any]:
        self.opened += 1
        span = self.start_span()
        if self.capture:
            self.last = self.cls(iter(self.chunks), span, capture_content=False, **self.extra)
        else:
            self.last = self.cls(iter(self.chunks), span, **self.extra)
        return self.last

    def check(self) -> None:
        buffers = self.last.choice_buffers
        assert "".join(buffers[0].text_content) == expected_text(self.kind, self.chunks)
        assert buffers[0].finish_reason == "stop"
        super().check()


class Response:
    """What ``ChatStream`` (a wrapt ``ObjectProxy``) can wrap: it keeps its state as attributes of
    the wrapped object (as on an ``openai.Stream``), which a ``list_iterator`` has no room for,
    and steps it with ``self.__wrapped__.__next__()``: the iterator's own bound ``__next__``."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self.__next__ = iterator.__next__

    def close(self) -> None:
        pass


class OpenLLMetry(PeerDriver):
    """OpenLLMetry's ``opentelemetry-instrumentation-openai``: ``ChatStream``."""

    def __init__(self, impl: str, kind: str, chunks: list[Any], otel: OtelSdk):
        super().__init__(impl, kind, chunks, otel)
        try:
            from opentelemetry.instrumentation.openai.shared.chat_wrappers import ChatStream
        except Exception as e:
            raise Unavailable(f"opentelemetry-instrumentation-openai: {e}") from e
        from opentelemetry.metrics import NoOpMeterProvider

        meter = NoOpMeterProvider().get_meter("instrumentation-sdk-bench")
        # What its instrumentor passes when no MeterProvider is set up (the global no-op one).
        instruments = {
            "token_counter": meter.create_histogram("gen_ai.client.token.usage"),
            "choice_counter": meter.create_counter("gen_ai.client.generation.choices"),
            "duration_histogram": meter.create_histogram("gen_ai.client.operation.duration"),
            "streaming_time_to_first_token": meter.create_histogram(
                "gen_ai.server.time_to_first_token"
            ),
            "streaming_time_to_generate": meter.create_histogram(
                "llm.chat_completions.streaming_time_to_generate"
            ),
        }
        params = _params(ChatStream)
        if not {"span", "response", "start_time", "request_kwargs"} <= set(params):
            raise Unavailable(f"opentelemetry-instrumentation-openai: ChatStream{tuple(params)}")
        self.kwargs = {k: v for k, v in instruments.items() if k in params}
        self.request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        self.request["stream"] = True
        self.cls = ChatStream
        self.note = f"{ChatStream.__module__}.ChatStream"

    def open(self) -> Iterable[Any]:
        self.opened += 1
        span = self.start_span()
        kwargs = dict(self.kwargs, start_time=time.time(), request_kwargs=self.request)
        response = Response(iter(self.chunks))
        self.last = self.cls(span=span, response=response, instance=None, **kwargs)
        return self.last

    def check(self) -> None:
        complete = self.last._complete_response
        assert complete["choices"][0]["message"]["content"] == expected_text(self.kind, self.chunks)
        assert complete["choices"][0]["finish_reason"] == "stop"
        assert self.last._cleanup_completed, "ChatStream did not end its span"
        super().check()


# --------------------------------------------------------------------------------------------
# Loading (once per session per kind), skipping with the reason
# --------------------------------------------------------------------------------------------


@dataclass
class Environment:
    """Our pipeline (exporting to memory, flushed only when asked) and one OpenTelemetry SDK."""

    exporter: InMemoryExporter
    otels: list[OtelSdk] = field(default_factory=list)

    def otel_sdk(self) -> OtelSdk:
        """A TracerProvider of its own for each peer (so each counts only its own spans)."""
        otel = start_otel()
        self.otels.append(otel)
        return otel

    def close(self) -> None:
        for otel in self.otels:
            otel.provider.shutdown()
        shutdown(60.0)


def start_environment() -> Environment:
    warmup([MODEL])  # the flusher counts str completions: load the ranks before any timing
    exporter = InMemoryExporter()
    configure(
        exporter=exporter,
        batch_size=QUEUE,
        buffer_capacity=QUEUE,
        flush_interval=HOUR,
        capture_content=False,
    )
    return Environment(exporter)


def make_driver(env: Environment, impl: str, kind: str, n: int = CHUNKS) -> Driver:
    """The driver of ``impl`` over ``kind`` chunks, or raise ``Unavailable`` with the reason."""
    chunks = chunks_of(kind, n)
    if impl in PEERS and kind != "objects":
        raise Unavailable(f"{impl} reads ChatCompletionChunk attributes: objects only")
    if impl == "raw":
        return Raw(impl, kind, chunks)
    if impl == "ours":
        return Ours(impl, kind, chunks, env.exporter)
    if impl == "minimal":
        return Minimal(impl, kind, chunks)
    otel = env.otel_sdk()
    if impl == "otel_v2":
        return OtelV2(impl, kind, chunks, otel)
    return OpenLLMetry(impl, kind, chunks, otel)


@pytest.fixture(scope="module")
def environment() -> Iterator[Environment]:
    env = start_environment()
    yield env
    env.close()


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rounds: int
    warmup_rounds: int


# One round = one 256-chunk stream: ~3-120 us for raw/ours/minimal, ~0.5-1.5 ms for otel_v2,
# ~8-25 ms for openllmetry (2 busy cores). The whole file takes 20-40 s, a third of it our
# flusher reading the 3100 held object streams when the check flushes.
PLANS = {
    "raw": Plan(rounds=3000, warmup_rounds=100),
    "ours": Plan(rounds=3000, warmup_rounds=100),
    "minimal": Plan(rounds=3000, warmup_rounds=100),
    "otel_v2": Plan(rounds=600, warmup_rounds=20),
    "openllmetry": Plan(rounds=300, warmup_rounds=10),
}


# The peers wrap OpenAI's stream: they read ChatCompletionChunk attributes, so objects only.
CASES = [
    (impl, kind)
    for kind in KINDS
    for impl in IMPLS
    if kind == "objects" or impl in ("raw", "ours", "minimal")
]


@pytest.mark.parametrize(("impl", "kind"), CASES)
def test_stream_request_cost(benchmark, environment, impl, kind):
    """One 256-chunk stream iterated through ``impl``, as the request thread pays it."""
    try:
        driver = make_driver(environment, impl, kind)
    except Unavailable as e:
        pytest.skip(str(e))
    benchmark.group = f"stream_{kind}"
    plan = PLANS[impl]

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (driver.open(),), {}

    def teardown(_stream: Any) -> None:
        driver.close()

    benchmark.pedantic(
        drain,
        setup=setup,
        teardown=teardown,
        rounds=plan.rounds,
        warmup_rounds=plan.warmup_rounds,
    )
    streams = driver.opened
    driver.check()  # every stream the benchmark drained (disabled: the one) was recorded in full
    driver.verify_yield()
    driver.check()
    benchmark.extra_info.update(
        suite="streams", impl=impl, kind=kind, chunks=CHUNKS, streams=streams, note=driver.note
    )


# --------------------------------------------------------------------------------------------
# Reports: from a pytest-benchmark JSON, or an interleaved timeit-style harness
# --------------------------------------------------------------------------------------------


def _per_chunk_table(medians: dict[str, dict[str, float]], n: int) -> list[str]:
    """Markdown rows: ns per stream, ns per chunk above raw, and the ratios."""
    rows = [
        "| kind | impl | ns/stream | ns/chunk above raw | x ours |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, by_impl in medians.items():
        raw = by_impl.get("raw")
        ours = by_impl.get("ours")
        for impl in IMPLS:
            if impl not in by_impl or raw is None:
                continue
            per = (by_impl[impl] - raw) / n
            ours_per = (ours - raw) / n if ours is not None else None
            ratio = f"{per / ours_per:.1f}x" if ours_per and impl not in ("raw", "ours") else ""
            rows.append(f"| {kind} | {impl} | {by_impl[impl]:.0f} | {per:.1f} | {ratio} |")
    return rows


def report_json(path: str) -> None:
    data = json.loads(Path(path).read_text())
    medians: dict[str, dict[str, float]] = {}
    n = CHUNKS
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if info.get("suite") != "streams":
            continue
        n = info["chunks"]
        medians.setdefault(info["kind"], {})[info["impl"]] = bench["stats"]["median"] * 1e9
    print("\n".join(_per_chunk_table(medians, n)))


def _time_streams(
    driver: Driver, streams: int, timer: Callable[[], int] = time.perf_counter_ns
) -> float:
    """Median ns to drain one stream, over ``streams`` streams (each made untimed)."""
    times = []
    for _ in range(streams):
        stream = driver.open()
        start = timer()
        drain(stream)
        times.append(timer() - start)
        driver.close()
    return statistics.median(times)


def harness(
    reps: int,
    streams: int,
    lengths: Sequence[int],
    impls: Sequence[str],
    timer: Callable[[], int] = time.thread_time_ns,
) -> None:
    """Every implementation in turn (rotated each repetition), ``streams`` streams each; per
    repetition: ns per chunk above raw of that same repetition. Reports median [min-max].

    The default clock is this thread's CPU time: on a loaded machine a stream that takes
    milliseconds (the peers') is often preempted, one of microseconds (ours) rarely, and wall
    time would charge the peers for other processes' work."""
    env = start_environment()
    try:
        for kind in KINDS:
            per_chunk: dict[int, dict[str, list[float]]] = {}
            for n in lengths:
                drivers: dict[str, Driver] = {}
                for impl in impls:
                    try:
                        drivers[impl] = make_driver(env, impl, kind, n)
                    except Unavailable as e:
                        print(f"[{kind} n={n}] skipping {impl}: {e}")
                names = list(drivers)
                figures: dict[str, list[float]] = {impl: [] for impl in names}
                for rep in range(reps + 1):  # the first repetition warms up
                    shift = rep % len(names)
                    medians: dict[str, float] = {}
                    for impl in names[shift:] + names[:shift]:
                        count = streams if impl not in PEERS else max(5, streams // 10)
                        medians[impl] = _time_streams(drivers[impl], count, timer)
                    if rep:
                        for impl in names:
                            figures[impl].append((medians[impl] - medians["raw"]) / n)
                for driver in drivers.values():
                    driver.check()
                    if isinstance(driver, Ours):
                        print(f"[{kind} n={n}] ours: {driver.note}")
                per_chunk[n] = figures
                print(f"\n## {kind}, {n} chunks/stream, {reps} reps: ns/chunk above raw")
                print("| impl | median | min | max | x ours (median [min-max]) |")
                print("|---|---:|---:|---:|---|")
                for impl in names:
                    values = figures[impl]
                    ratio = ""
                    if impl not in ("raw", "ours") and "ours" in figures:
                        ratios = [
                            v / o for v, o in zip(values, figures["ours"], strict=True) if o > 0
                        ]
                        if ratios:
                            ratio = (
                                f"{statistics.median(ratios):.1f}x "
                                f"[{min(ratios):.1f}-{max(ratios):.1f}]"
                            )
                    print(
                        f"| {impl} | {statistics.median(values):.1f} | {min(values):.1f} "
                        f"| {max(values):.1f} | {ratio} |"
                    )
            if len(lengths) == 2:
                short, long = lengths
                print(
                    f"\n## {kind}: marginal ns/chunk (slope {short}->{long}, per-stream costs out)"
                )
                for impl in per_chunk[long]:
                    if impl == "raw" or impl not in per_chunk[short]:
                        continue
                    # figure(n) = (T_impl(n) - T_raw(n)) / n  =>  slope of T_impl - T_raw
                    slopes = [
                        (lo * long - sh * short) / (long - short)
                        for sh, lo in zip(
                            per_chunk[short][impl], per_chunk[long][impl], strict=True
                        )
                    ]
                    print(
                        f"- {impl}: {statistics.median(slopes):.1f} "
                        f"[{min(slopes):.1f}-{max(slopes):.1f}]"
                    )
    finally:
        env.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="summarize this pytest-benchmark JSON instead")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--streams", type=int, default=400, help="streams per rep (peers: /10)")
    parser.add_argument("--lengths", default=f"{CHUNKS},{CHUNKS * 4}")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: time.thread_time_ns (default); wall: time.perf_counter_ns",
    )
    args = parser.parse_args(argv)
    if args.json:
        report_json(args.json)
        return
    lengths = [int(n) for n in args.lengths.split(",")]
    timer = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    print(f"clock: {timer.__name__}")
    harness(args.reps, args.streams, lengths, args.impls.split(","), timer)


if __name__ == "__main__":
    sys.exit(main())
