"""Inputs that break naive tokenizers: huge runs of one character, megabytes of mixed text,
long unbroken words, alternating patterns, controls, lone surrogates and every Unicode plane.

Each count must be exact (equal to official tiktoken, the oracle), must never raise, and must
take linear-ish time: scaling the input by 4 must not scale the time by anything near 16.

Official tiktoken 0.14 itself fails on a few of these (a whitespace run of about a million
characters overflows its regex engine's stack with o200k_base). For those the reference count
is computed the same way tiktoken defines it: split the text with the encoding's own pattern
(the ``regex`` module, which tiktoken depends on) and BPE-encode each piece with tiktoken's
``_encode_single_piece``. ``test_split_reference_agrees_with_tiktoken`` checks that this gives
the oracle's answers wherever the oracle can answer.
"""

from __future__ import annotations

import functools
import random
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import (
    configure_token_cache,
    count_tokens,
    count_tokens_batch,
    token_cache_stats,
)

TARGETS = [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")]
TARGET_IDS = ["o200k_base", "cl100k_base"]
MILLION = 1_000_000


def split_count(encoding: Any, text: str) -> int:
    """tiktoken's algorithm without its regex engine: pattern split, then BPE per piece."""
    import regex

    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return sum(
        len(encoding._encode_single_piece(piece))
        for piece in regex.findall(encoding._pat_str, text)
    )


@pytest.fixture(scope="module")
def reference(oracle: Callable[[str], Any]) -> Callable[[str, str], int]:
    """``reference(encoding_name, text)``: the oracle's count of ``text``."""

    def count(name: str, text: str) -> int:
        encoding = oracle(name)
        try:
            return len(encoding.encode_ordinary(text))
        except BaseException as err:  # pyo3_runtime.PanicException is a BaseException
            if type(err).__name__ != "PanicException":
                raise
            return split_count(encoding, text)

    return count


@pytest.fixture
def no_cache() -> Iterator[None]:
    """Timings must measure the BPE pass, not a cache hit."""
    before = token_cache_stats()
    configure_token_cache(max_entries=0)
    yield
    configure_token_cache(max_entries=before["max_entries"])


def cpu_timed(call: Callable[[], Any]) -> float:
    """The CPU time of this thread spent in ``call()``, in seconds."""
    started = time.thread_time()
    call()
    return time.thread_time() - started


def assert_exact(
    reference: Callable[[str, str], int], model: str, name: str, text: str, budget: float
) -> None:
    started = time.thread_time()  # CPU time: waiting for a core on a busy machine is not ours
    count = count_tokens(text, model)
    seconds = time.thread_time() - started
    expected = reference(name, text)
    assert (count.tokens, count.method, count.encoding) == (expected, "tiktoken", name), (
        f"{model}: {len(text)} chars starting {text[:40]!r}"
    )
    assert seconds < budget, f"{model}: {len(text)} chars took {seconds:.2f}s"


# --- one character a million times ---------------------------------------------------------------

REPEATED = ["a", " ", "\n", "中", "😀", "0"]


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("char", REPEATED, ids=["a", "space", "newline", "cjk", "emoji", "zero"])
def test_one_char_a_million_times(
    reference: Callable[[str, str], int], model: str, name: str, char: str
) -> None:
    # 1M 'a' takes ~0.4 s here; 10 s is the sanity bound for a loaded CI machine.
    assert_exact(reference, model, name, char * MILLION, budget=10.0)


# --- large and unbroken texts ------------------------------------------------------------------

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["json/decoder.py", "asyncio/tasks.py", "difflib.py", "locale.py"]
PROSE = [
    "日本語のテキスト、中文文本。한국어 텍스트입니다. ",
    "Ωμέγα καὶ ἄλφα — naïve café, Zürich, São Paulo. ",
    "مرحبا بالعالم، שלום עולם. नमस्ते दुनिया। ",
    "😀👍🏽 👨\u200d👩\u200d👧\u200d👦 🇫🇷 ❤️ ",
    "\t\t  \r\n\n    \n",
    "<|endoftext|> <|fim_prefix|> 'll 'S 1234567 3.14159 ",
]


@functools.cache
def mixed_text(size_bytes: int) -> str:
    rng = random.Random(size_bytes)
    chunks = [(STDLIB / name).read_text(encoding="utf-8") for name in SOURCES]
    pieces: list[str] = []
    total = 0
    while total < size_bytes:
        source = rng.choice(chunks)
        start = rng.randrange(len(source))
        piece = source[start : start + rng.randrange(200, 20_000)] + rng.choice(
            PROSE
        ) * rng.randrange(1, 30)
        pieces.append(piece)
        total += len(piece.encode())
    return "".join(pieces)


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
def test_ten_megabytes_of_mixed_text(
    reference: Callable[[str, str], int], model: str, name: str
) -> None:
    text = mixed_text(10_000_000)
    assert len(text.encode()) >= 10_000_000
    assert_exact(reference, model, name, text, budget=30.0)


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize(
    "alphabet",
    ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", "абвгдеёжзийклмн", "ab"],
    ids=["lower", "mixed-case", "cyrillic", "ab"],
)
def test_long_word_without_spaces(
    reference: Callable[[str, str], int], model: str, name: str, alphabet: str
) -> None:
    rng = random.Random(alphabet)
    text = "".join(rng.choices(alphabet, k=MILLION // 2))
    assert_exact(reference, model, name, text, budget=10.0)


ALTERNATING = [
    "a ", "a1", "\r\n", " \n", "'s", "1 ", ".a", "a.", "中 ", "😀a", "\t ", "A a", "aA", " 's",
    "!\n", "0.", "a\u0301", "\u200d😀", "<|", "\n\r", "x ", "_-",
]  # fmt: skip


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("pattern", ALTERNATING, ids=repr)
def test_alternating_patterns(
    reference: Callable[[str, str], int], model: str, name: str, pattern: str
) -> None:
    text = pattern * (100_000 // len(pattern))
    assert_exact(reference, model, name, text, budget=5.0)


# --- controls, surrogates, planes --------------------------------------------------------------


def controls() -> str:
    rng = random.Random(0)
    return "\x00" * 50_000 + "".join(chr(rng.randrange(0, 32)) for _ in range(100_000)) + "\x7f\x85"


def lone_surrogates() -> str:
    rng = random.Random(1)
    return "".join(chr(rng.randrange(0xD800, 0xE000)) for _ in range(50_000))


def surrogates_mixed() -> str:
    rng = random.Random(2)
    units = ["\ud83d", "\ude00", "a", " ", "\ud800", "\udfff", "中", "\ud83d\ude00", "\n"]
    return "".join(rng.choices(units, k=100_000))


def every_plane() -> str:
    # All 17 planes, assigned or not: BMP, SMP, SIP, TIP, unassigned 4-13, SSP, private use.
    rng = random.Random(3)
    return "".join(
        chr(rng.randrange(plane << 16, (plane + 1) << 16))
        for plane in range(17)
        for _ in range(3000)
    )


def plane_edges() -> str:
    edges = []
    for plane in range(17):
        base = plane << 16
        edges += [base, base + 1, base + 0xFFFD, base + 0xFFFE, base + 0xFFFF]
    edges += [0xD7FF, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xE000, 0xFEFF, 0xFFFD, 0x10FFFF]
    return " ".join(chr(c) for c in edges) * 100


STRANGE = {
    "controls": controls,
    "lone-surrogates": lone_surrogates,
    "surrogates-mixed": surrogates_mixed,
    "every-plane": every_plane,
    "plane-edges": plane_edges,
    "nul-run": lambda: "\x00" * MILLION,
    "bom-run": lambda: "\ufeff" * 100_000,
    "combining-run": lambda: "e" + "\u0301" * 100_000,
    "zwj-run": lambda: "😀\u200d" * 50_000,
}


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("make", STRANGE.values(), ids=STRANGE.keys())
def test_strange_text(
    reference: Callable[[str, str], int], model: str, name: str, make: Callable[[], str]
) -> None:
    assert_exact(reference, model, name, make(), budget=10.0)


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
def test_pathological_messages_and_batch(
    reference: Callable[[str, str], int], model: str, name: str
) -> None:
    contents = ["😀" * 200_000, "\x00" * 100_000, lone_surrogates(), "ab" * 100_000]
    messages = [{"role": "user", "content": content} for content in contents]
    expected = 3 + sum(3 + reference(name, "user") + reference(name, c) for c in contents)
    count = count_tokens(messages, model)
    assert (count.tokens, count.method) == (expected, "tiktoken")
    batch = [*contents, messages, "", "a" * 300_000]
    assert count_tokens_batch(batch, model) == [count_tokens(p, model) for p in batch]


# --- the reference itself ----------------------------------------------------------------------


@pytest.mark.parametrize(("model", "name"), TARGETS, ids=TARGET_IDS)
def test_split_reference_agrees_with_tiktoken(
    oracle: Callable[[str], Any], model: str, name: str
) -> None:
    encoding = oracle(name)
    for text in [
        " " * 300_000,
        "\t" * 100_000 + "x",
        mixed_text(300_000),
        surrogates_mixed(),
        plane_edges(),
        "Hello world!  \n\n 's 'LL 123456 <|endoftext|>",
    ]:
        assert split_count(encoding, text) == len(encoding.encode_ordinary(text))


# --- linear time -------------------------------------------------------------------------------


def scaling_ratio(small: str, large: str, model: str, runs: int = 5, attempts: int = 3) -> float:
    """time(large) / time(small), best of ``runs`` each, measured interleaved so a load spike hits
    both sizes alike. A linear algorithm stays near len(large) / len(small); a few attempts keep a
    noisy neighbour from failing it, while a quadratic one fails every attempt. The time is the
    calling thread's CPU time (counting runs on it): on a busy machine, wall time also counts
    the time the thread waited for a core, which says nothing about the algorithm."""
    ratios = []
    for _ in range(attempts):
        small_times, large_times = [], []
        for _ in range(runs):
            small_times.append(cpu_timed(lambda: count_tokens(small, model)))
            large_times.append(cpu_timed(lambda: count_tokens(large, model)))
        ratios.append(min(large_times) / min(small_times))
        if ratios[-1] < 6:
            break
    return min(ratios)


SCALED = {
    "a": ("a", 25_000),
    "space": (" ", 25_000),
    "newline": ("\n", 25_000),
    "cjk": ("中", 25_000),
    "emoji": ("😀", 25_000),
    "zero": ("0", 100_000),
    "ab": ("ab", 12_500),
    "nul": ("\x00", 100_000),
}


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
@pytest.mark.parametrize(("unit", "n"), SCALED.values(), ids=SCALED.keys())
def test_time_scales_linearly(no_cache: None, model: str, unit: str, n: int) -> None:
    count_tokens(unit, model)  # the encoding is loaded before timing
    ratio = scaling_ratio(unit * n, unit * (4 * n), model)
    # Linear is ~4-5 here (7 at worst under load); quadratic would be 16.
    assert ratio < 8, f"{model}: 4x the input took {ratio:.1f}x the time"


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_time_scales_linearly_on_mixed_text(no_cache: None, model: str) -> None:
    text = mixed_text(1_000_000)
    ratio = scaling_ratio(text[: len(text) // 16], text[: len(text) // 4], model, runs=3)
    assert ratio < 8, f"{model}: 4x the input took {ratio:.1f}x the time"
