"""Counting from many threads at once: same answers as one thread, a consistent count cache, and
batches that keep their order and name a bad item's index."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from instrumentation_sdk import (
    TokenCount,
    clear_token_cache,
    configure_token_cache,
    count_tokens,
    count_tokens_batch,
    token_cache_stats,
)

THREADS = 8
MODELS = ["gpt-4o", "gpt-4", "gpt2", "gpt-oss-20b", "claude-3-opus"]
WORDS = [
    "token", "count", "hello", "world", "  ", "\n", "中文", "日本語", "😀", "👨\u200d👩\u200d👧",
    "123", "4567", "'s", "'LL", "<|endoftext|>", "naïve", "e\u0301", "\t", "\r\n", "!?", "\ud800",
]  # fmt: skip


@pytest.fixture
def cache_settings() -> Iterator[Callable[..., None]]:
    """Configure the count cache for one test; the previous settings come back afterwards."""
    before = token_cache_stats()
    clear_token_cache()
    yield configure_token_cache
    configure_token_cache(
        max_entries=before["max_entries"], min_text_bytes=before["min_text_bytes"]
    )
    clear_token_cache()


def make_text(rng: random.Random, words: int, tag: str) -> str:
    return tag + " " + "".join(rng.choice(WORDS) + rng.choice([" ", "", "."]) for _ in range(words))


def make_prompt(rng: random.Random, tag: str) -> Any:
    kind = rng.randrange(5)
    if kind == 0:
        return make_text(rng, rng.randrange(1, 30), tag)  # short: counted attached
    if kind == 1:
        return make_text(rng, rng.randrange(300, 3000), tag)  # > 1 KiB: detached
    if kind == 2:
        return make_text(rng, rng.randrange(3_000, 8_000), tag)  # long
    if kind == 3:
        return [
            {"role": "system", "content": make_text(rng, 400, tag)},
            {"role": "user", "content": make_text(rng, 10, tag), "name": "u" + tag},
        ]
    return [{"role": "user", "content": [{"type": "text", "text": make_text(rng, 50, tag)}]}]


def run_threads(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Runs ``work(i)`` on ``threads`` threads released together; re-raises the first error."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as err:
            errors.append(err)

    pool = [threading.Thread(target=target, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in pool), "a counting thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("cache", ["cache-off", "cache-on"])
def test_threads_match_single_threaded(cache_settings: Callable[..., None], cache: str) -> None:
    rng = random.Random(1234)
    jobs = [
        [(make_prompt(rng, f"t{t}i{i}"), MODELS[(t + i) % len(MODELS)]) for i in range(40)]
        for t in range(THREADS)
    ]
    cache_settings(max_entries=0)
    expected = [[count_tokens(prompt, model) for prompt, model in job] for job in jobs]
    cache_settings(max_entries=0 if cache == "cache-off" else 4096)

    def work(t: int) -> list[TokenCount]:
        return [count_tokens(prompt, model) for prompt, model in jobs[t]]

    for _ in range(2):  # the second round hits the cache when it is on
        assert run_threads(work) == expected
    assert token_cache_stats()["tokenizer_faults"] == 0


def test_threads_share_one_cached_count(cache_settings: Callable[..., None]) -> None:
    rng = random.Random(7)
    texts = {model: make_text(rng, 40_000, model) for model in ("gpt-4o", "gpt-4")}
    cache_settings(max_entries=0)
    expected = {model: count_tokens(text, model) for model, text in texts.items()}
    cache_settings(max_entries=4096, min_text_bytes=1024)
    clear_token_cache()
    rounds = 25

    def work(t: int) -> list[TokenCount]:
        model = "gpt-4o" if t % 2 else "gpt-4"
        return [count_tokens(texts[model], model) for _ in range(rounds)]

    results = run_threads(work)
    for t, counts in enumerate(results):
        assert set(counts) == {expected["gpt-4o" if t % 2 else "gpt-4"]}
    stats = token_cache_stats()
    lookups = THREADS * rounds
    assert stats["hits"] + stats["misses"] == lookups, stats
    # A thread can miss only on its first lookup (it stores before returning).
    assert 2 <= stats["misses"] <= THREADS, stats
    assert stats["entries"] == 2, stats
    assert stats["tokenizer_faults"] == 0


def test_threads_with_distinct_cached_texts(cache_settings: Callable[..., None]) -> None:
    cache_settings(max_entries=4096, min_text_bytes=64)
    rng = random.Random(99)
    texts = [make_text(rng, 200, f"text{i}") for i in range(64)]
    expected = [count_tokens(text, "gpt-4o") for text in texts]
    clear_token_cache()

    def work(t: int) -> list[TokenCount]:
        order = list(range(len(texts)))
        random.Random(t).shuffle(order)
        return [(i, count_tokens(texts[i], "gpt-4o")) for i in order for _ in range(3)]

    for pairs in run_threads(work):
        assert all(count == expected[i] for i, count in pairs)
    stats = token_cache_stats()
    assert stats["hits"] + stats["misses"] == THREADS * len(texts) * 3
    assert len(texts) <= stats["misses"] <= THREADS * len(texts)
    assert stats["entries"] == len(texts)


def test_long_count_releases_the_gil() -> None:
    text = make_text(random.Random(3), 300_000, "gil")  # a few MB: a long BPE pass
    count_tokens("warm", "gpt-4o")
    ticks = 0
    stop = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.01)
        before = ticks
        started = time.perf_counter()
        count = count_tokens(text, "gpt-4")
        elapsed = time.perf_counter() - started
        during = ticks - before
    finally:
        stop.set()
        thread.join()
    assert count.method == "tiktoken"
    # While one C call holds the GIL no other Python thread runs at all.
    assert elapsed > 0.01, elapsed
    assert during >= 20, f"{during} ticks in {elapsed:.3f}s: the count kept the GIL"


# --- count_tokens_batch ------------------------------------------------------------------------


@functools.cache
def _batch_prompts(seed: int, size: int) -> tuple[Any, ...]:
    rng = random.Random(seed)
    prompts = [make_prompt(rng, f"b{i}") for i in range(size)]
    for i in range(0, size, 25):  # some 100 KB prompts
        prompts[i] = make_text(rng, 15_000, f"big{i}")[:100_000]
    edge_cases = ["", [], "x\ud800y", "<|endoftext|>", [{"role": "user", "content": None}]]
    prompts[1 : 1 + len(edge_cases)] = edge_cases
    return tuple(prompts[:size])


def batch_prompts(seed: int, size: int = 200) -> list[Any]:
    """``size`` mixed prompts (str and chat messages, a few of 100 KB), fresh list each call."""
    return list(_batch_prompts(seed, size))


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt2", "claude-3-opus"])
def test_batch_equals_per_item_and_keeps_order(model: str) -> None:
    prompts = batch_prompts(seed=len(model))
    assert sum(len(p) for p in prompts if isinstance(p, str)) > 64 * 1024
    expected = [count_tokens(p, model) for p in prompts]
    got = count_tokens_batch(prompts, model)
    assert type(got) is list
    assert got == expected
    assert count_tokens_batch(tuple(prompts), model) == expected
    assert count_tokens_batch(iter(prompts), model) == expected
    assert count_tokens_batch(p for p in reversed(prompts)) == [
        count_tokens(p) for p in reversed(prompts)
    ]


def test_batch_edge_sizes() -> None:
    assert count_tokens_batch([], "gpt-4o") == []
    assert count_tokens_batch(["Hello world!"], "gpt-4o") == [
        TokenCount(3, "tiktoken", "o200k_base")
    ]
    big = ["a " * 40_000]
    assert count_tokens_batch(big, "gpt-4") == [count_tokens(big[0], "gpt-4")]


def test_batches_from_many_threads() -> None:
    prompts = batch_prompts(seed=5, size=120)
    expected = [count_tokens(p, "gpt-4o") for p in prompts]
    results = run_threads(lambda t: count_tokens_batch(prompts[t:] + prompts[:t], "gpt-4o"), 4)
    for t, got in enumerate(results):
        assert got == expected[t:] + expected[:t]


@pytest.mark.parametrize("size", [3, 200], ids=["small", "large"])
@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (7, r"^prompts\[{i}\] must be a str or a list of chat messages.*got int$"),
        (None, r"^prompts\[{i}\] must be a str or a list of chat messages.*got NoneType$"),
        (b"bytes", r"^prompts\[{i}\] must be a str or a list of chat messages.*got bytes$"),
        ({"role": "user"}, r"^prompts\[{i}\] must be a str or a list of chat messages.*got dict$"),
        ([{"role": "user"}, "oops"], r"^prompts\[{i}\]\[1\] must be a chat message.*got str$"),
    ],
    ids=["int", "None", "bytes", "dict", "bad-message"],
)
def test_batch_bad_item_names_its_index(size: int, bad: Any, pattern: str) -> None:
    prompts = batch_prompts(seed=11, size=size)
    index = size - 2
    prompts[index] = bad
    with pytest.raises(TypeError, match=pattern.format(i=index)):
        count_tokens_batch(prompts, "gpt-4o")


def test_batch_rejects_a_non_iterable() -> None:
    with pytest.raises(TypeError):
        count_tokens_batch(42, "gpt-4o")  # type: ignore[arg-type]
