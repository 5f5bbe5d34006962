"""Streaming observability (``Span.wrap_stream``): every way a stream can end, sync and async,
ends its span exactly once with the right ``stream_status``; time to first token, chunk counts,
finish reason, model and completion tokens from each chunk shape the SDK understands; the
wrapper is transparent (same chunks, attributes, ``with``, ``close``); completion counts equal
official tiktoken; threads and many concurrent asyncio streams."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from instrumentation_sdk import AsyncStream, Stream, configure, flush, llm_span, stats
from instrumentation_sdk.exporters import InMemoryExporter

DELAY = 0.01
WORDS = ["Hello", " there", ",", " how", " are", " you", " today", "?"]


def produce(words: list[str] = WORDS, *, fail_after: int | None = None) -> Iterator[str]:
    """A producer that first yields a role-like empty chunk, then text after a delay."""
    yield ""
    for index, word in enumerate(words):
        if fail_after is not None and index == fail_after:
            raise ConnectionError("stream dropped by the server")
        time.sleep(DELAY)
        yield word


async def aproduce(
    words: list[str] = WORDS, *, fail_after: int | None = None
) -> AsyncIterator[str]:
    yield ""
    for index, word in enumerate(words):
        if fail_after is not None and index == fail_after:
            raise ConnectionError("stream dropped by the server")
        await asyncio.sleep(DELAY)
        yield word


def exported(exporter: InMemoryExporter) -> list[dict[str, Any]]:
    flush()
    return list(exporter.spans)


def only(exporter: InMemoryExporter) -> dict[str, Any]:
    spans = exported(exporter)
    assert len(spans) == 1, [s["metadata"].get("stream_status") for s in spans]
    return spans[0]


def assert_stream(span: dict[str, Any], status: str, chunks: int, *, ok: bool = True) -> None:
    metadata = span["metadata"]
    assert metadata["stream_status"] == status
    assert metadata["stream_chunks"] == chunks
    assert span["status"] == ("ok" if ok else "error")


# Sync exit paths ---------------------------------------------------------------------------


def test_exhausted_records_ttft_chunks_and_exact_completion(
    exporter: InMemoryExporter, oracle: Callable[[str], Any]
) -> None:
    started = time.monotonic_ns()
    with llm_span("gpt-4o", "openai") as span:
        chunks = list(span.wrap_stream(produce()))
    elapsed_ms = (time.monotonic_ns() - started) / 1e6
    assert chunks == ["", *WORDS]
    record = only(exporter)
    assert_stream(record, "completed", len(WORDS) + 1)
    metadata = record["metadata"]
    # The first token is the first non-empty chunk, one delay after the start, not the "".
    assert DELAY * 1e3 * 0.9 <= metadata["time_to_first_token_ms"] < elapsed_ms
    expected = len(oracle("o200k_base").encode("".join(WORDS)))
    assert metadata["completion_tokens"] == expected
    assert metadata["completion_token_count_method"] == "tiktoken"
    assert metadata["time_per_output_token_ms"] > 0
    (event,) = record["events"]
    assert event["name"] == "first_token"
    assert record["start_time_unix_nano"] < event["time_unix_nano"] <= record["end_time_unix_nano"]


def test_break_out_of_an_inline_loop_closes_early(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span:
        for chunk in span.wrap_stream(produce()):
            if chunk:
                break
    record = only(exporter)
    assert_stream(record, "closed_early", 2)
    assert "time_to_first_token_ms" in record["metadata"]


def test_close_closes_the_producer_and_ends_early(exporter: InMemoryExporter) -> None:
    producer = produce()
    with llm_span("gpt-4o") as span:
        stream = span.wrap_stream(producer)
        next(stream)
        stream.close()
        with pytest.raises(StopIteration):
            next(producer)  # the generator itself was closed
        assert list(stream) == []
    assert_stream(only(exporter), "closed_early", 1)


def test_wrappers_with_block_enters_the_stream_and_ends_it(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span, span.wrap_stream(produce()) as stream:
        assert isinstance(stream, Stream)
        next(stream)
        next(stream)
    assert_stream(only(exporter), "closed_early", 2)


def test_error_from_the_producer_marks_the_span_and_propagates(
    exporter: InMemoryExporter,
) -> None:
    def call() -> list[str]:
        with llm_span("gpt-4o") as span:
            return list(span.wrap_stream(produce(fail_after=3)))

    with pytest.raises(ConnectionError, match="dropped"):
        call()
    record = only(exporter)
    assert_stream(record, "error", 4, ok=False)
    assert record["error_type"] == "ConnectionError"
    assert record["metadata"]["completion_tokens"] > 0  # what arrived before the failure


def test_error_from_the_producer_is_recorded_even_when_caught(
    exporter: InMemoryExporter,
) -> None:
    with llm_span("gpt-4o") as span:
        try:
            for _ in span.wrap_stream(produce(fail_after=1)):
                pass
        except ConnectionError:
            pass  # the caller recovers; the call still failed
    record = only(exporter)
    assert_stream(record, "error", 2, ok=False)
    assert record["error_message"] == "stream dropped by the server"


@pytest.mark.parametrize("held", [False, True], ids=["inline", "held-in-a-variable"])
def test_error_raised_by_the_consumers_loop_body(exporter: InMemoryExporter, held: bool) -> None:
    def call() -> None:
        with llm_span("gpt-4o") as span:
            if held:
                stream = span.wrap_stream(produce())
                for chunk in stream:
                    if chunk:
                        raise ValueError("consumer failed")
            else:
                for chunk in span.wrap_stream(produce()):
                    if chunk:
                        raise ValueError("consumer failed")

    with pytest.raises(ValueError, match="consumer"):
        call()
    record = only(exporter)
    assert record["status"] == "error"
    assert record["error_type"] == "ValueError"
    assert_stream(record, "closed_early", 2, ok=False)


def test_abandoned_after_the_block_and_collected(exporter: InMemoryExporter) -> None:
    def handler() -> Any:
        with llm_span("gpt-4o") as span:
            return span.wrap_stream(produce())

    stream = handler()
    next(stream)
    next(stream)
    assert exported(exporter) == []  # still open: the stream has not ended
    del stream
    gc.collect()
    record = only(exporter)
    assert_stream(record, "abandoned", 2)


def test_abandoned_in_a_reference_cycle_is_found_by_the_collector(
    exporter: InMemoryExporter,
) -> None:
    class Holder:
        stream: Any = None

    def handler() -> Holder:
        holder = Holder()
        with llm_span("gpt-4o") as span:
            holder.stream = span.wrap_stream(iter([holder, "x"]))
        return holder

    holder = handler()
    del holder
    assert exported(exporter) == []
    gc.collect()
    assert_stream(only(exporter), "abandoned", 0)


def test_stream_returned_out_of_the_block_keeps_the_span_open(
    exporter: InMemoryExporter,
) -> None:
    def handler() -> Any:
        with llm_span("gpt-4o") as span:
            return span.wrap_stream(produce())

    from instrumentation_sdk import current_span

    open_before = stats()["streams_open"]
    stream = handler()
    assert current_span() is None  # the block's exit restored the context at once
    time.sleep(0.05)
    assert exported(exporter) == []
    assert stats()["streams_open"] == open_before + 1  # visible while its span waits
    consumed_at = time.time_ns()
    assert "".join(stream) == "".join(WORDS)
    record = only(exporter)
    assert_stream(record, "completed", len(WORDS) + 1)
    assert record["end_time_unix_nano"] >= consumed_at  # ends when the stream does
    assert stats()["streams_open"] == open_before


def test_a_stream_never_iterated(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span:
        span.wrap_stream(produce())  # made and dropped
    record = only(exporter)
    assert_stream(record, "closed_early", 0)
    assert "time_to_first_token_ms" not in record["metadata"]
    assert "completion_tokens" not in record["metadata"]


def test_a_kept_stream_never_iterated_ends_when_dropped(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span:
        stream = span.wrap_stream(produce())
    assert exported(exporter) == []
    del stream
    assert_stream(only(exporter), "abandoned", 0)


# Async exit paths --------------------------------------------------------------------------


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_async_exhausted(exporter: InMemoryExporter, oracle: Callable[[str], Any]) -> None:
    async def main() -> list[str]:
        async with llm_span("gpt-4o") as span:
            stream = span.wrap_stream(aproduce())
            assert isinstance(stream, AsyncStream)
            return [chunk async for chunk in stream]

    assert run(main()) == ["", *WORDS]
    record = only(exporter)
    assert_stream(record, "completed", len(WORDS) + 1)
    assert record["metadata"]["time_to_first_token_ms"] >= DELAY * 1e3 * 0.9
    assert record["metadata"]["completion_tokens"] == len(
        oracle("o200k_base").encode("".join(WORDS))
    )


def test_async_break_then_aclose(exporter: InMemoryExporter) -> None:
    async def main() -> None:
        async with llm_span("gpt-4o") as span:
            stream = span.wrap_stream(aproduce())
            async for chunk in stream:
                if chunk:
                    break
            await stream.aclose()

    run(main())
    assert_stream(only(exporter), "closed_early", 2)


def test_async_with_block_of_the_wrapper(exporter: InMemoryExporter) -> None:
    class Managed:
        def __init__(self) -> None:
            self.entered = self.exited = False

        async def __aenter__(self) -> AsyncIterator[str]:
            self.entered = True
            return aproduce()

        async def __aexit__(self, *exc: object) -> None:
            self.exited = True

    managed = Managed()

    async def main() -> list[str]:
        async with llm_span("claude-sonnet-4-5") as span, span.wrap_stream(managed) as stream:
            assert isinstance(stream, AsyncStream)
            return [chunk async for chunk in stream]

    assert run(main()) == ["", *WORDS]
    assert managed.entered
    assert managed.exited
    assert_stream(only(exporter), "completed", len(WORDS) + 1)


def test_async_producer_error(exporter: InMemoryExporter) -> None:
    async def main() -> None:
        async with llm_span("gpt-4o") as span:
            async for _ in span.wrap_stream(aproduce(fail_after=2)):
                pass

    with pytest.raises(ConnectionError):
        run(main())
    record = only(exporter)
    assert_stream(record, "error", 3, ok=False)
    assert record["error_type"] == "ConnectionError"


def test_async_consumer_error(exporter: InMemoryExporter) -> None:
    async def main() -> None:
        async with llm_span("gpt-4o") as span:
            stream = span.wrap_stream(aproduce())
            async for chunk in stream:
                if chunk:
                    raise KeyError("consumer")

    with pytest.raises(KeyError):
        run(main())
    record = only(exporter)
    assert record["status"] == "error"
    assert record["error_type"] == "KeyError"
    assert record["metadata"]["stream_status"] == "closed_early"
    assert record["metadata"]["stream_chunks"] == 2


def test_async_cancellation_from_another_task(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture
) -> None:
    async def consume(stream: Any) -> None:
        async for _ in stream:
            pass

    async def main() -> None:
        async with llm_span("gpt-4o") as span:
            task = asyncio.ensure_future(consume(span.wrap_stream(aproduce(WORDS * 10))))
            await asyncio.sleep(DELAY * 3.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())
    record = only(exporter)
    assert record["status"] == "error"
    assert record["error_type"] == "CancelledError"
    assert record["metadata"]["stream_status"] == "error"
    assert 2 <= record["metadata"]["stream_chunks"] < len(WORDS) * 10
    assert "detach" not in caplog.text.lower()


def test_async_stream_closed_from_another_task(exporter: InMemoryExporter) -> None:
    async def main() -> int:
        async with llm_span("gpt-4o") as span:
            stream = span.wrap_stream(aproduce(WORDS * 10))
            got = 0

            async def consume() -> None:
                nonlocal got
                async for _ in stream:
                    got += 1

            task = asyncio.ensure_future(consume())
            await asyncio.sleep(DELAY * 3.5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await stream.aclose()  # from this task, after the other one stopped
            return got

    run(main())
    spans = exported(exporter)
    assert len(spans) == 1
    assert spans[0]["metadata"]["stream_status"] in {"error", "closed_early"}


def test_async_stream_returned_and_consumed_in_another_task(
    exporter: InMemoryExporter,
) -> None:
    async def handler() -> Any:
        async with llm_span("gpt-4o") as span:
            return span.wrap_stream(aproduce())

    async def main() -> str:
        stream = await handler()
        await asyncio.sleep(0.02)
        assert exported(exporter) == []
        return "".join(await asyncio.create_task(collect(stream)))

    async def collect(stream: Any) -> list[str]:
        return [chunk async for chunk in stream]

    assert run(main()) == "".join(WORDS)
    assert_stream(only(exporter), "completed", len(WORDS) + 1)


def test_async_abandoned_and_never_iterated(exporter: InMemoryExporter) -> None:
    async def handler() -> Any:
        async with llm_span("gpt-4o") as span:
            return span.wrap_stream(aproduce())

    async def main() -> None:
        stream = await handler()
        await stream.__anext__()
        del stream
        gc.collect()
        async with llm_span("gpt-4o") as span:
            span.wrap_stream(aproduce())

    run(main())
    spans = sorted(exported(exporter), key=lambda s: s["start_time_unix_nano"])
    assert [s["metadata"]["stream_status"] for s in spans] == ["abandoned", "closed_early"]
    assert [s["metadata"]["stream_chunks"] for s in spans] == [1, 0]


# Chunk shapes ------------------------------------------------------------------------------


def ns(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**fields)


def openai_chunks(as_dict: bool) -> list[Any]:
    def chunk(choices: list[Any], usage: Any = None) -> Any:
        fields = {"id": "c1", "model": "gpt-4o-2024-08-06", "choices": choices, "usage": usage}
        return fields if as_dict else ns(**fields)

    def choice(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> Any:
        fields = {
            "index": index,
            "delta": delta if as_dict else ns(**delta),
            "finish_reason": finish,
        }
        return fields if as_dict else ns(**fields)

    usage: dict[str, Any] = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    details = {
        "prompt_tokens_details": {"cached_tokens": 6, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
    }
    usage.update(details if as_dict else {k: ns(**v) for k, v in details.items()})
    return [
        chunk([choice({"role": "assistant", "content": ""})]),
        chunk([choice({"content": "Hi"})]),
        chunk([choice({"content": " there"})]),
        chunk([choice({}, finish="stop")]),
        chunk([], usage=usage if as_dict else ns(**usage)),
    ]


@pytest.mark.parametrize("as_dict", [False, True], ids=["objects", "dicts"])
def test_openai_chat_chunks(exporter: InMemoryExporter, as_dict: bool) -> None:
    configure(exporter=exporter, capture_content=True, flush_interval=0.05)
    chunks = openai_chunks(as_dict)
    with llm_span("gpt-4o", "openai") as span:
        assert list(span.wrap_stream(iter(chunks))) == chunks  # the very same objects
    record = only(exporter)
    metadata = record["metadata"]
    assert metadata["stream_chunks"] == 5
    assert metadata["finish_reason"] == "stop"
    assert metadata["actual_model"] == "gpt-4o-2024-08-06"
    assert metadata["completion_tokens"] == 4
    assert metadata["completion_token_count_method"] == "usage"
    assert metadata["prompt_tokens"] == 9  # nothing was pre-counted: the provider's count
    assert (metadata["cache_read_tokens"], metadata["reasoning_tokens"]) == (6, 2)
    assert record["completion"] == "Hi there"


def test_openai_tool_call_deltas_are_first_tokens_and_counted(
    exporter: InMemoryExporter, oracle: Callable[[str], Any]
) -> None:
    def call(arguments: str, name: str | None = None) -> Any:
        return ns(index=0, id="call_1", function=ns(name=name, arguments=arguments))

    chunks = [
        ns(
            model="gpt-4o",
            usage=None,
            choices=[
                ns(
                    index=0,
                    delta=ns(role="assistant", content=None, tool_calls=None),
                    finish_reason=None,
                )
            ],
        ),
        ns(
            model="gpt-4o",
            usage=None,
            choices=[
                ns(
                    index=0,
                    delta=ns(content=None, tool_calls=[call("", "get_weather")]),
                    finish_reason=None,
                )
            ],
        ),
        ns(
            model="gpt-4o",
            usage=None,
            choices=[
                ns(
                    index=0,
                    delta=ns(content=None, tool_calls=[call('{"city": "Paris"}')]),
                    finish_reason=None,
                )
            ],
        ),
        ns(
            model="gpt-4o",
            usage=None,
            choices=[
                ns(index=0, delta=ns(content=None, tool_calls=None), finish_reason="tool_calls")
            ],
        ),
    ]
    with llm_span("gpt-4o") as span:
        stream = span.wrap_stream(chunks)
        next(stream)
        time.sleep(DELAY)
        list(stream)
    metadata = only(exporter)["metadata"]
    assert metadata["finish_reason"] == "tool_calls"
    assert metadata["time_to_first_token_ms"] >= DELAY * 1e3 * 0.9
    text = 'get_weather{"city": "Paris"}'
    assert metadata["completion_tokens"] == len(oracle("o200k_base").encode(text))


def test_several_choices_are_all_counted(
    exporter: InMemoryExporter, oracle: Callable[[str], Any]
) -> None:
    configure(exporter=exporter, capture_content=True, flush_interval=0.05)
    chunks = [
        {
            "model": "gpt-4o",
            "choices": [
                {"index": 0, "delta": {"content": "Yes"}},
                {"index": 1, "delta": {"content": "No"}},
            ],
        },
        {
            "model": "gpt-4o",
            "choices": [{"index": 1, "delta": {"content": " way"}, "finish_reason": "stop"}],
        },
    ]
    with llm_span("gpt-4o") as span:
        list(span.wrap_stream(chunks))
    record = only(exporter)
    encoding = oracle("o200k_base")
    assert record["metadata"]["completion_tokens"] == len(encoding.encode("Yes")) + len(
        encoding.encode("No way")
    )
    assert record["completion"] == ["Yes", "No way"]


def test_openai_responses_api_events(exporter: InMemoryExporter) -> None:
    configure(exporter=exporter, capture_content=True, flush_interval=0.05)
    usage = ns(
        input_tokens=12,
        input_tokens_details=ns(cached_tokens=8),
        output_tokens=3,
        output_tokens_details=ns(reasoning_tokens=1),
        total_tokens=15,
    )
    events = [
        ns(
            type="response.created",
            response=ns(model="gpt-4.1-2025-04-14", usage=None, incomplete_details=None),
        ),
        ns(type="response.output_item.added", item=ns(type="message")),
        ns(type="response.output_text.delta", delta="Bonjour"),
        ns(type="response.output_text.delta", delta=" !"),
        ns(type="response.output_text.done", text="Bonjour !"),
        ns(
            type="response.completed",
            response=ns(model="gpt-4.1-2025-04-14", usage=usage, incomplete_details=None),
        ),
    ]
    with llm_span("gpt-4.1") as span:
        list(span.wrap_stream(events))
    record = only(exporter)
    metadata = record["metadata"]
    assert metadata["actual_model"] == "gpt-4.1-2025-04-14"
    assert metadata["completion_tokens"] == 3
    assert (metadata["cache_read_tokens"], metadata["reasoning_tokens"]) == (8, 1)
    assert metadata["completion_token_count_method"] == "usage"
    assert metadata["stream_chunks"] == 6
    assert record["completion"] == "Bonjour !"


def anthropic_events(as_dict: bool) -> list[Any]:
    def event(**fields: Any) -> Any:
        return (
            fields
            if as_dict
            else ns(**{k: (ns(**v) if isinstance(v, dict) else v) for k, v in fields.items()})
        )

    message = {
        "id": "msg_1",
        "model": "claude-sonnet-4-5-20250929",
        "role": "assistant",
        "usage": {
            "input_tokens": 21,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    return [
        event(
            type="message_start",
            message=message if as_dict else ns(**{**message, "usage": ns(**message["usage"])}),
        ),
        event(type="content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event(type="ping"),
        event(type="content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
        event(type="content_block_delta", index=0, delta={"type": "text_delta", "text": " world"}),
        event(type="content_block_stop", index=0),
        event(
            type="message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": 5},
        ),
        event(type="message_stop"),
    ]


@pytest.mark.parametrize("as_dict", [False, True], ids=["objects", "dicts"])
def test_anthropic_message_events(exporter: InMemoryExporter, as_dict: bool) -> None:
    configure(exporter=exporter, capture_content=True, flush_interval=0.05)
    with llm_span("claude-sonnet-4-5", "anthropic") as span:
        list(span.wrap_stream(anthropic_events(as_dict)))
    record = only(exporter)
    metadata = record["metadata"]
    assert metadata["actual_model"] == "claude-sonnet-4-5-20250929"
    assert metadata["finish_reason"] == "end_turn"  # as is
    assert metadata["completion_tokens"] == 5  # cumulative: the last message_delta's count
    assert metadata["prompt_tokens"] == 121  # input plus cache reads and writes
    assert metadata["uncached_prompt_tokens"] == 21  # and each part
    assert (metadata["cache_read_tokens"], metadata["cache_creation_tokens"]) == (100, 0)
    assert metadata["stream_chunks"] == 8
    assert record["completion"] == "Hello world"


def test_bytes_chunks_and_a_text_function(
    exporter: InMemoryExporter, oracle: Callable[[str], Any]
) -> None:
    with llm_span("gpt-4o") as span:
        list(span.wrap_stream([b"", "caf\u00e9 ".encode(), b"au lait"]))
    with llm_span("gpt-4o") as span:
        events = [
            {"kind": "token", "value": "a"},
            {"kind": "token", "value": " cat"},
            {"kind": "end"},
        ]
        list(span.wrap_stream(events, text=lambda e: e.get("value")))
    first, second = sorted(exported(exporter), key=lambda s: s["start_time_unix_nano"])
    encoding = oracle("o200k_base")
    assert first["metadata"]["completion_tokens"] == len(encoding.encode("caf\u00e9 au lait"))
    assert second["metadata"]["completion_tokens"] == len(encoding.encode("a cat"))
    assert second["metadata"]["stream_chunks"] == 3


def test_a_failing_text_function_is_a_counted_fault_not_an_error(
    exporter: InMemoryExporter, fresh_faults: None
) -> None:
    def broken(chunk: Any) -> str:
        raise RuntimeError("bad extractor")

    before = stats()["span_faults"]
    with llm_span("gpt-4o") as span:
        assert list(span.wrap_stream(["a", "b"], text=broken)) == ["a", "b"]
    record = only(exporter)
    assert record["status"] == "ok"
    assert record["metadata"]["stream_chunks"] == 2
    assert stats()["span_faults"] > before


def test_unknown_models_are_estimated(exporter: InMemoryExporter) -> None:
    with llm_span("my-local-model") as span:
        list(span.wrap_stream(["some ", "streamed ", "text"]))
    metadata = only(exporter)["metadata"]
    assert metadata["completion_token_count_method"] == "heuristic"
    assert metadata["completion_tokens"] > 0


def test_content_capture_off_keeps_no_text(exporter: InMemoryExporter) -> None:
    with llm_span("gpt-4o") as span:
        list(span.wrap_stream(["secret ", "answer"]))
    record = only(exporter)
    assert record.get("completion") is None
    assert "secret" not in repr(record)


def test_a_long_stream_holds_bounded_chunks_and_counts_them_all(
    exporter: InMemoryExporter, oracle: Callable[[str], Any]
) -> None:
    configure(
        exporter=exporter, capture_content=True, flush_interval=0.05, max_content_bytes=1 << 20
    )
    words = [f" w{i}" for i in range(10_000)]
    with llm_span("gpt-4o") as span:
        list(span.wrap_stream(words))
    record = only(exporter)
    assert record["metadata"]["stream_chunks"] == 10_000
    assert record["metadata"]["completion_tokens"] == len(
        oracle("o200k_base").encode("".join(words))
    )
    assert record["completion"] == "".join(words)


# Transparency ------------------------------------------------------------------------------


class ProviderStream:
    """Stands in for a provider SDK's stream: an HTTP response, a context manager, close()."""

    def __init__(self, chunks: list[str]) -> None:
        self.response = SimpleNamespace(status_code=200, headers={"x-request-id": "req_1"})
        self._chunks = chunks
        self.closed = False
        self.entered = 0

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            if self.closed:
                return
            yield chunk

    def __enter__(self) -> ProviderStream:
        self.entered += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    def get_final_text(self) -> str:
        return "".join(self._chunks)


def test_the_wrapper_is_transparent(exporter: InMemoryExporter) -> None:
    provider = ProviderStream(["a", "b", "c"])
    with llm_span("gpt-4o") as span:
        stream = span.wrap_stream(provider)
        assert stream.response.headers["x-request-id"] == "req_1"
        assert stream.get_final_text() == "abc"
        with pytest.raises(AttributeError):
            stream.not_an_attribute  # noqa: B018
        with stream as entered:
            assert entered is stream
            assert provider.entered == 1
            assert next(entered) == "a"
        assert provider.closed
    assert "ProviderStream" in repr(stream)
    assert_stream(only(exporter), "closed_early", 1)


def test_close_reaches_the_provider_stream(exporter: InMemoryExporter) -> None:
    provider = ProviderStream(["a", "b"])
    with llm_span("gpt-4o") as span:
        stream = span.wrap_stream(provider)
        next(stream)
        stream.close()
    assert provider.closed
    assert_stream(only(exporter), "closed_early", 1)


def test_non_streams_are_returned_unwrapped(exporter: InMemoryExporter, fresh_faults: None) -> None:
    value = object()
    with llm_span("gpt-4o") as span:
        assert span.wrap_stream(value) is value
    with llm_span("gpt-4o") as ended:
        pass
    chunks = ["a"]
    assert ended.wrap_stream(chunks) is chunks  # after the span ended: nothing to record into
    assert stats()["span_faults"] >= 2
    assert all("stream_status" not in s["metadata"] for s in exported(exporter))


# Concurrency -------------------------------------------------------------------------------


def test_threads_each_with_their_stream(exporter: InMemoryExporter) -> None:
    def worker(index: int) -> None:
        with llm_span("gpt-4o", user_id=f"user-{index}") as span:
            for _ in span.wrap_stream([f"t{index}-{i} " for i in range(200)]):
                pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = exported(exporter)
    assert len(spans) == 8
    assert {s["metadata"]["stream_chunks"] for s in spans} == {200}
    assert {s["metadata"]["stream_status"] for s in spans} == {"completed"}


def test_many_concurrent_asyncio_streams(exporter: InMemoryExporter) -> None:
    async def one(index: int) -> int:
        async with llm_span("gpt-4o", session_id=f"s{index}") as span:
            count = 0
            async for chunk in span.wrap_stream(aproduce(WORDS[: 1 + index % len(WORDS)])):
                count += bool(chunk)
                if index % 5 == 0 and count == 1:
                    break
            return count

    async def main() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    run(main())
    spans = exported(exporter)
    assert len(spans) == 200
    by_session = {s["session_id"]: s["metadata"] for s in spans}
    for index in range(200):
        metadata = by_session[f"s{index}"]
        if index % 5 == 0:
            assert metadata["stream_status"] == "closed_early"
        else:
            assert metadata["stream_status"] == "completed"
            assert metadata["stream_chunks"] == 2 + index % len(WORDS)


# Where stream fields go ----------------------------------------------------------------------


def test_otlp_carries_the_conventions_streaming_attributes(exporter: InMemoryExporter) -> None:
    import msgspec
    from instrumentation_sdk import _core
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    with llm_span("gpt-4o", "openai") as span:
        list(span.wrap_stream(iter(openai_chunks(as_dict=False))))
    record = only(exporter)
    plan = _core.ExportPlan("svc", 4096, 4096)
    (body,), _ = _core.encode_otlp_records(
        [record], msgspec.json.encode, plan, "http/protobuf", 4 << 20
    )
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    (otlp_span,) = request.resource_spans[0].scope_spans[0].spans
    attributes = {a.key: a.value for a in otlp_span.attributes}
    ttft_seconds = record["metadata"]["time_to_first_token_ms"] / 1e3
    assert attributes["gen_ai.response.time_to_first_chunk"].double_value == pytest.approx(
        ttft_seconds
    )
    assert attributes["gen_ai.request.stream"].bool_value is True
    assert [
        v.string_value for v in attributes["gen_ai.response.finish_reasons"].array_value.values
    ] == ["stop"]
    assert attributes["gen_ai.usage.output_tokens"].int_value == 4
    assert attributes["instrumentation_sdk.stream_chunks"].int_value == 5
    assert attributes["instrumentation_sdk.stream_status"].string_value == "completed"
    assert [event.name for event in otlp_span.events] == ["first_token"]


def test_sqlite_store_and_cli_stats_show_ttft_by_model(tmp_path: Any) -> None:
    import json
    import os
    import subprocess
    import sys

    from instrumentation_sdk import shutdown
    from instrumentation_sdk.exporters import SqliteExporter

    db = tmp_path / "spans.db"
    configure(exporter=SqliteExporter(db), flush_interval=0.05)
    try:
        for index in range(4):
            with llm_span("gpt-4o", "openai") as span:
                stream = span.wrap_stream(["", "a", "b"])
                next(stream)
                time.sleep(DELAY * (index + 1))
                list(stream)
        with llm_span("gpt-4o", "openai"):
            pass  # not streamed: no TTFT
        flush()
    finally:
        shutdown(timeout=5.0)
    result = subprocess.run(
        [sys.executable, "-m", "instrumentation_sdk.cli_store", "stats", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ},
    )
    (group,) = json.loads(result.stdout)
    assert group["count"] == 5
    assert DELAY * 2e3 * 0.9 <= group["ttft_p50_ms"] < group["ttft_p95_ms"]
    assert group["ttft_p95_ms"] >= DELAY * 4e3 * 0.9
    table = subprocess.run(
        [sys.executable, "-m", "instrumentation_sdk.cli_store", "stats", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "TTFT P50 MS" in table
    assert "TTFT P95 MS" in table
