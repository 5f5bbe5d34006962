"""Span benchmarks: what one LLM span costs the request thread, ours against OpenTelemetry.

Group ``span_request_cost`` (same session, side by side), per span:

* ``ours``    -- ``with llm_span("gpt-4o", "openai", user_id=...) as span`` + three
  ``span.set_metadata`` (prompt_tokens, completion_tokens, actual_model) + exit, while our flusher
  exports to a JSONL file at the same time (the buffer is sized so nothing is dropped; afterwards
  we flush and assert exported == produced and dropped == 0);
* ``otel``    -- the OpenTelemetry Python SDK: ``TracerProvider`` + ``BatchSpanProcessor`` + a
  no-op ``SpanExporter``, ``tracer.start_as_current_span("chat gpt-4o")`` + three
  ``span.set_attribute`` + exit (its queue is sized so it drops nothing either);
* ``bare_cm`` -- a bare Python context manager storing three items in a dict: the floor.

Group ``span_with_tokens``: ``llm_span_with_tokens("gpt-4o", "openai", prompt=<2 KB>)`` + exit.
2 KB is above the count cache's threshold (1 KiB), so ``ours_distinct`` feeds every span its own
pre-generated prompt (the cache is cleared first and must serve no hit), ``ours_cached`` repeats
one prompt (every count is a cache hit), and ``otel_tiktoken`` is the OpenTelemetry span with
official tiktoken counting the same distinct prompts (``len(enc.encode_ordinary(p))`` +
``set_attribute``), skipped with the reason when tiktoken cannot load offline.

Times are per span (``benchmark.pedantic`` with many iterations per round; pytest-benchmark
divides). Under plain ``pytest`` (``--benchmark-disable``) each case runs once: a smoke test.

    python -m pytest benches/test_bench_spans.py --benchmark-enable \
        --benchmark-json=/tmp/bench-spans.json -p no:cacheprovider -q
    python benches/report.py /tmp/bench-spans.json
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import (
    clear_token_cache,
    configure,
    flush,
    llm_span,
    llm_span_with_tokens,
    shutdown,
    stats,
    token_cache_stats,
    warmup,
)
from instrumentation_sdk.exporters import JsonlExporter

MODEL = "gpt-4o"
PROVIDER = "openai"
USER_ID = "user-42"
ACTUAL_MODEL = "gpt-4o-2024-08-06"
BATCH_SIZE = 512
FLUSH_INTERVAL = 1.0
PROMPT_BYTES = 2048
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


@dataclass(frozen=True)
class Plan:
    """How a case is timed: ``rounds`` timed rounds of ``iterations`` calls each."""

    iterations: int
    rounds: int
    warmup_rounds: int

    def calls(self, enabled: bool) -> int:
        """How many times pedantic calls the target (with iterations > 1 it makes one extra call
        for the result); disabled, it calls it once."""
        if not enabled:
            return 1
        extra = 1 if self.iterations > 1 else 0
        return (self.rounds + self.warmup_rounds) * self.iterations + extra


# Each case takes about 0.2-1.5 s when enabled (2 cores); the whole file about 10 s.
REQUEST_COST_PLANS = {
    "ours": Plan(iterations=500, rounds=1000, warmup_rounds=20),
    "otel": Plan(iterations=100, rounds=500, warmup_rounds=10),
    "bare_cm": Plan(iterations=500, rounds=1000, warmup_rounds=20),
}
WITH_TOKENS_PLANS = {
    "ours_distinct": Plan(iterations=10, rounds=500, warmup_rounds=5),
    "ours_cached": Plan(iterations=200, rounds=500, warmup_rounds=10),
    "otel_tiktoken": Plan(iterations=10, rounds=300, warmup_rounds=3),
}


# --------------------------------------------------------------------------------------------
# Our pipeline: the flusher exports to JSONL while we time the request thread
# --------------------------------------------------------------------------------------------


def _accounting() -> dict[str, int]:
    figures = stats()
    return {k: figures[k] for k in ("produced", "exported", "dropped", "buffered")}


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


@dataclass
class OurPipeline:
    jsonl: Path
    capacity: int
    before: dict[str, int]

    def start(self, spans: int) -> None:
        """A fresh pipeline with room for ``spans`` (so nothing can be dropped)."""
        self.capacity = max(spans + BATCH_SIZE, 16384)
        configure(
            exporter=JsonlExporter(self.jsonl),
            batch_size=BATCH_SIZE,
            flush_interval=FLUSH_INTERVAL,
            buffer_capacity=self.capacity,
        )
        self.before = _accounting()

    def check(self, expected: int) -> dict[str, int]:
        """Flush, then assert every span made since ``start`` was exported (and written)."""
        assert flush(60.0), "flush() timed out"
        after = _accounting()
        delta = {k: after[k] - self.before[k] for k in after}
        assert delta["produced"] == expected, delta
        assert delta["dropped"] == 0, delta
        assert delta["exported"] == delta["produced"], delta
        assert _count_lines(self.jsonl) == expected
        return delta


@pytest.fixture
def our_pipeline(tmp_path: Path) -> Iterator[OurPipeline]:
    pipeline = OurPipeline(tmp_path / "spans.jsonl", 0, {})
    yield pipeline
    shutdown(10.0)
    pipeline.jsonl.unlink(missing_ok=True)  # up to ~100 MB of lines


# --------------------------------------------------------------------------------------------
# OpenTelemetry: TracerProvider + BatchSpanProcessor + a no-op exporter
# --------------------------------------------------------------------------------------------


@dataclass
class Otel:
    tracer: Any
    provider: Any
    exporter: Any


def _start_otel(capacity: int) -> Otel:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError as e:
        pytest.skip(f"opentelemetry-sdk is not installed: {e}")

    class NoopExporter(SpanExporter):
        """Accepts every batch and only counts it (so we can check nothing was dropped)."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exporter = NoopExporter()
    provider = TracerProvider()
    # Same shape as ours: batches of 512, every second at the latest, a queue that never fills.
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=capacity,
            max_export_batch_size=BATCH_SIZE,
            schedule_delay_millis=FLUSH_INTERVAL * 1000,
        )
    )
    return Otel(provider.get_tracer("instrumentation-sdk-bench"), provider, exporter)


@pytest.fixture
def otel_factory() -> Iterator[Callable[[int], Otel]]:
    started: list[Otel] = []

    def make(capacity: int) -> Otel:
        otel = _start_otel(capacity)
        started.append(otel)
        return otel

    yield make
    for otel in started:
        otel.provider.shutdown()


def _check_otel(otel: Otel, expected: int) -> None:
    assert otel.provider.force_flush(60_000), "OpenTelemetry force_flush timed out"
    assert otel.exporter.exported == expected, (otel.exporter.exported, expected)


# --------------------------------------------------------------------------------------------
# The floor: a bare context manager
# --------------------------------------------------------------------------------------------


class BareSpan:
    __slots__ = ("metadata",)

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}

    def __enter__(self) -> BareSpan:
        return self

    def __exit__(self, *exc_info: object) -> bool:
        return False


# --------------------------------------------------------------------------------------------
# span_request_cost
# --------------------------------------------------------------------------------------------


def _record(benchmark, impl: str, plan: Plan, calls: int, **extra: Any) -> None:
    benchmark.extra_info.update(
        suite="spans",
        impl=impl,
        iterations=plan.iterations,
        rounds=plan.rounds,
        spans=calls,
        **extra,
    )


@pytest.mark.benchmark(group="span_request_cost")
@pytest.mark.parametrize("impl", ["ours", "otel", "bare_cm"])
def test_span_request_cost(benchmark, impl, our_pipeline, otel_factory):
    """One span around an LLM call with three metadata entries, as the request thread pays it."""
    plan = REQUEST_COST_PLANS[impl]
    calls = plan.calls(benchmark.enabled)
    otel: Otel | None = None

    if impl == "ours":
        our_pipeline.start(calls)

        def op() -> None:
            with llm_span(MODEL, PROVIDER, user_id=USER_ID) as span:
                span.set_metadata("prompt_tokens", 12)
                span.set_metadata("completion_tokens", 40)
                span.set_metadata("actual_model", ACTUAL_MODEL)

    elif impl == "otel":
        otel = otel_factory(calls + BATCH_SIZE)
        tracer = otel.tracer

        def op() -> None:
            with tracer.start_as_current_span("chat gpt-4o") as span:
                span.set_attribute("prompt_tokens", 12)
                span.set_attribute("completion_tokens", 40)
                span.set_attribute("actual_model", ACTUAL_MODEL)

    else:

        def op() -> None:
            with BareSpan() as span:
                span.metadata["prompt_tokens"] = 12
                span.metadata["completion_tokens"] = 40
                span.metadata["actual_model"] = ACTUAL_MODEL

    benchmark.pedantic(
        op, rounds=plan.rounds, warmup_rounds=plan.warmup_rounds, iterations=plan.iterations
    )

    extra: dict[str, Any] = {}
    if impl == "ours":
        extra.update(
            exporter="jsonl",
            buffer_capacity=our_pipeline.capacity,
            accounting=our_pipeline.check(calls),
        )
    elif otel is not None:
        _check_otel(otel, calls)
        extra.update(exporter="no-op SpanExporter via BatchSpanProcessor")
    _record(benchmark, impl, plan, calls, **extra)


# --------------------------------------------------------------------------------------------
# span_with_tokens
# --------------------------------------------------------------------------------------------

_SENTENCES = (
    "You are a helpful support assistant for an online bookshop.",
    "Answer in the customer's language and keep replies under 150 words.",
    "Never reveal internal order notes, staff names or discount codes.",
    "If the customer asks for a refund, check the order date against the 30-day policy.",
    "Summaries must list the order number, the items and the shipping status.",
    "The customer wrote: my parcel arrived damaged and two pages are missing.",
    "Please translate the attached note into French and German.",
    "Explain the difference between a paperback and a mass-market edition.",
    "Shipping to Canada takes 5-8 business days; express takes 2-3.",
    "When unsure, ask one clarifying question instead of guessing.",
    "Format prices as EUR 12.90, with two decimals and a space.",
    "Escalate to a human agent after two failed attempts to resolve an issue.",
    "Customer history: 14 orders since 2019, last one on March 3rd.",
    "Be polite, concise and avoid marketing language.",
    "The warehouse in Leipzig handles returns from Germany, Austria and Poland.",
    "def refund(order_id: int, amount: float) -> bool: return amount <= 250.0",
    'Tool result: {"status": "shipped", "carrier": "DHL", "eta_days": 3}',
    "Gift cards cannot be refunded, but they can be transferred once.",
)


def _fit_bytes(text: str, size: int) -> str:
    """``text`` cut (or padded with spaces) to exactly ``size`` UTF-8 bytes."""
    data = text.encode("utf-8")[:size].decode("utf-8", errors="ignore")
    return data + " " * (size - len(data.encode("utf-8")))


def prompt_pool(n: int, size: int = PROMPT_BYTES) -> list[str]:
    """``n`` distinct ``size``-byte chat prompts: the sentences above in a seeded order per
    prompt, after a header with the prompt's own ticket number."""
    prompts = []
    for i in range(n):
        rng = random.Random(i)
        parts = [f"Ticket #{i:06d} (customer {rng.randrange(10**6):06d})."]
        used = len(parts[0])
        while used < size:
            sentence = rng.choice(_SENTENCES)
            parts.append(sentence)
            used += len(sentence) + 1
        prompts.append(_fit_bytes(" ".join(parts), size))
    assert len(set(prompts)) == n
    return prompts


_TIKTOKEN: dict[str, Callable[[str], list[int]] | str] = {}


def tiktoken_encode(encoding: str = "o200k_base") -> Callable[[str], list[int]] | str:
    """Official tiktoken's ``encode_ordinary``, or why it cannot load (loaded once)."""
    if encoding not in _TIKTOKEN:
        _TIKTOKEN[encoding] = _load_tiktoken(encoding)
        if isinstance(_TIKTOKEN[encoding], str):
            print(f"\n[benches] skipping otel_tiktoken: {_TIKTOKEN[encoding]}")
    return _TIKTOKEN[encoding]


def _load_tiktoken(encoding: str) -> Callable[[str], list[int]] | str:
    try:
        import tiktoken
    except ImportError as e:
        return f"tiktoken is not installed: {e}"
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", "")
    # Without the cached rank file tiktoken would download it (no timeout): refuse up front.
    name = hashlib.sha1(_TIKTOKEN_URL.format(encoding).encode()).hexdigest()
    if not cache_dir or not (Path(cache_dir) / name).is_file():
        return f"tiktoken: {encoding} is not in TIKTOKEN_CACHE_DIR={cache_dir!r}"
    try:
        return tiktoken.get_encoding(encoding).encode_ordinary
    except Exception as e:
        return f"tiktoken cannot load {encoding}: {type(e).__name__}: {e}"


@pytest.mark.benchmark(group="span_with_tokens")
@pytest.mark.parametrize("impl", ["ours_distinct", "ours_cached", "otel_tiktoken"])
def test_span_with_tokens(benchmark, impl, our_pipeline, otel_factory):
    """A span that counts a 2 KB prompt: ours in the Rust core (distinct prompts, then one
    repeated prompt served by the count cache), OpenTelemetry + official tiktoken."""
    plan = WITH_TOKENS_PLANS[impl]
    calls = plan.calls(benchmark.enabled)
    # Every call gets its own prompt, except the cached case's one; running out is an error.
    pool = prompt_pool(1 if impl == "ours_cached" else calls)
    prompts = itertools.repeat(pool[0]) if impl == "ours_cached" else iter(pool)
    next_prompt = prompts.__next__
    otel: Otel | None = None

    if impl == "otel_tiktoken":
        encode = tiktoken_encode()
        if isinstance(encode, str):
            pytest.skip(encode)
        otel = otel_factory(calls + BATCH_SIZE)
        tracer = otel.tracer

        def op() -> None:
            prompt = next_prompt()
            with tracer.start_as_current_span("chat gpt-4o") as span:
                span.set_attribute("prompt_tokens", len(encode(prompt)))

    else:
        warmup([MODEL])  # load the ranks now, not in the first timed round
        our_pipeline.start(calls)

        def op() -> None:
            with llm_span_with_tokens(MODEL, PROVIDER, prompt=next_prompt()):
                pass

    clear_token_cache()
    benchmark.pedantic(
        op, rounds=plan.rounds, warmup_rounds=plan.warmup_rounds, iterations=plan.iterations
    )
    cache = token_cache_stats()

    extra: dict[str, Any] = {"prompt_bytes": PROMPT_BYTES}
    if otel is not None:
        _check_otel(otel, calls)
        extra["distinct_prompts"] = calls
    else:
        if impl == "ours_distinct":
            # Every count was real BPE work, never a cached answer.
            assert cache["hits"] == 0, cache
            assert cache["misses"] == calls, cache
            extra["distinct_prompts"] = calls
        else:
            assert cache["misses"] == 1, cache
            assert cache["hits"] == calls - 1, cache
            extra["distinct_prompts"] = 1
        extra["cache"] = {k: cache[k] for k in ("hits", "misses")}
        extra["accounting"] = our_pipeline.check(calls)
        # The span recorded the right count (outside the timing; official tiktoken if it loads).
        with llm_span_with_tokens(MODEL, PROVIDER, prompt=pool[-1]) as span:
            pass
        extra["prompt_tokens"] = span.metadata["prompt_tokens"]
        assert span.metadata["token_count_method"] == "tiktoken"
        encode = tiktoken_encode()
        if not isinstance(encode, str):
            assert extra["prompt_tokens"] == len(encode(pool[-1]))
    _record(benchmark, impl, plan, calls, **extra)
