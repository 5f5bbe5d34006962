"""Property tests against official tiktoken (the oracle) for cl100k_base and o200k_base.

For a known model ``count_tokens(text).tokens`` must equal
``len(tiktoken.get_encoding(enc).encode_ordinary(text))`` for every text, and chat messages must
follow the OpenAI cookbook rule with the oracle's counts. Hypothesis picks a fresh seed every run
(``derandomize=False``) and prints how to reproduce a failure.
"""

from __future__ import annotations

import json
import sysconfig
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instrumentation_sdk import count_tokens, count_tokens_batch

PROPERTY = settings(
    max_examples=400,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

TARGETS = [("gpt-4", "cl100k_base"), ("gpt-4o", "o200k_base")]


@pytest.fixture(scope="module", params=TARGETS, ids=[name for _, name in TARGETS])
def target(request: pytest.FixtureRequest, oracle: Callable[[str], Any]) -> tuple[str, Any]:
    """(model, official tiktoken Encoding) for each encoding under test."""
    model, name = request.param
    return model, oracle(name)


def assert_matches(model: str, encoding: Any, text: str) -> None:
    expected = len(encoding.encode_ordinary(text))
    count = count_tokens(text, model)
    assert (count.tokens, count.method, count.encoding) == (expected, "tiktoken", encoding.name), (
        f"{model}: {text!r:.300}"
    )


# --- text strategies ---------------------------------------------------------------------------

# Every code point hypothesis can produce, including lone surrogates (category Cs).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)

# Pieces that exercise the pre-tokenizer's regex branches and BPE edge cases.
TRICKY_PIECES = [
    # whitespace runs and line breaks
    " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\r\n\r\n",
    "\x0b", "\x0c", "\u00a0", "\u3000", "\u2028", "\u2029", "\u200b", "\u2003",
    # digits (ASCII runs of 1-4 and other scripts)
    "0", "1", "12", "123", "1234", "9999999", "\u0663", "\u00b2", "\u216b", "3.14", "-42",
    # contractions, both cases, straight and curly
    "'s", "'S", "'t", "'T", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'Ll", "'d", "'D", "'",
    "\u2019s", "''",
    # letters and casing
    "a", "A", "hello", "World", "HTTPServer", "camelCase", "snake_case", "\u01c5", "\u00df",
    "\u00e9", "e\u0301", "\ufb01", "I", "\u0130", "\u03a3\u03bf\u03c6\u03af\u03b1",
    # punctuation and symbols
    ".", ",", "!", "?", "...", "--", "/", "//", "(", ")", "{", "}", '"', "`", "#", "@", "_",
    "-", "+=", "<", ">", "|", "$", "\\", "\u00bf", "\u2014",
    # CJK and other scripts
    "\u4e2d", "\u6587\u5b57", "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4", "\u3072\u3089",
    "\u30ab\u30bf", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947", "\u0e44\u0e17\u0e22",
    # emoji, modifiers, ZWJ sequences, flags, variation selectors
    "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f1eb\U0001f1f7", "\u200d", "\ufe0f", "\u2764\ufe0f", "\U0001f3fd",
    # combining marks on their own and stacked
    "\u0301", "\u0308", "\u20dd", "a\u0300\u0316", "\u0915\u094d",
    # special-token lookalikes: ordinary text here
    "<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>",
    "<|im_start|>", "<|", "|>",
    # controls, BOM, noncharacters, lone surrogates and split surrogate pairs
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\ufeff", "\ufffd", "\uffff", "\U0010ffff",
    "\ud800", "\udfff", "\ud83d", "\ude00",
]  # fmt: skip

TRICKY_TEXT = st.lists(
    st.one_of(st.sampled_from(TRICKY_PIECES), st.text(max_size=3)), max_size=80
).map("".join)


@PROPERTY
@given(text=ANY_TEXT)
def test_any_text(target: tuple[str, Any], text: str) -> None:
    assert_matches(*target, text)


@PROPERTY
@given(text=TRICKY_TEXT)
def test_tricky_text(target: tuple[str, Any], text: str) -> None:
    assert_matches(*target, text)


@settings(PROPERTY, max_examples=100)
@given(
    pieces=st.lists(st.sampled_from(TRICKY_PIECES), min_size=1, max_size=8),
    reps=st.integers(1, 400),
)
def test_long_repeated_tricky_text(target: tuple[str, Any], pieces: list[str], reps: int) -> None:
    # Long enough (often > 1 KiB) to take the detached path and the count cache.
    assert_matches(*target, "".join(pieces) * reps)


# --- chat messages -----------------------------------------------------------------------------


class FrozenMessage(Mapping[str, Any]):
    """A read-only Mapping that is not a dict."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def cookbook_tokens(encoding: Any, messages: Any) -> int:
    """The OpenAI cookbook count, computed with the oracle."""

    def n(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += n(value)
                if key == "name":
                    total += 1
            elif key == "content" and isinstance(value, list):
                for part in value:
                    if isinstance(part, str):
                        total += n(part)
                    elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        total += n(part["text"])
    return total


NON_STR = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.just({"url": "https://example.com/cat.png"}),
    st.just([{"id": "call_1", "type": "function"}]),
)
PART = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, TRICKY_TEXT),
    st.builds(lambda t: FrozenMessage({"type": "text", "text": t}), TRICKY_TEXT),
    TRICKY_TEXT,
    st.just({"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}),
    st.builds(lambda v: {"type": "text", "text": v}, NON_STR),
    NON_STR,
)
CONTENT = st.one_of(TRICKY_TEXT, ANY_TEXT, st.none(), st.lists(PART, max_size=5), NON_STR)


@st.composite
def chat_message(draw: st.DrawFn) -> Mapping[str, Any]:
    message: dict[str, Any] = {
        "role": draw(st.sampled_from(["system", "user", "assistant", "tool", "developer"]))
    }
    message["content"] = draw(CONTENT)
    if draw(st.booleans()):
        message["name"] = draw(st.one_of(st.text(max_size=12), NON_STR))
    extra = draw(
        st.dictionaries(
            st.sampled_from(["tool_call_id", "refusal", "audio", "tool_calls", "x-meta"]),
            st.one_of(TRICKY_TEXT, NON_STR),
            max_size=2,
        )
    )
    message.update(extra)
    wrap = draw(st.sampled_from(["dict", "mappingproxy", "mapping"]))
    if wrap == "mappingproxy":
        return types.MappingProxyType(message)
    if wrap == "mapping":
        return FrozenMessage(message)
    return message


CONVERSATION = st.one_of(
    st.lists(chat_message(), max_size=6), st.lists(chat_message(), max_size=6).map(tuple)
)


@PROPERTY
@given(messages=CONVERSATION)
def test_chat_messages(target: tuple[str, Any], messages: Any) -> None:
    model, encoding = target
    count = count_tokens(messages, model)
    expected = cookbook_tokens(encoding, messages)
    assert (count.tokens, count.method, count.encoding) == (expected, "tiktoken", encoding.name)


@settings(PROPERTY, max_examples=60)
@given(prompts=st.lists(st.one_of(TRICKY_TEXT, ANY_TEXT, CONVERSATION), max_size=30))
def test_batch_matches_oracle(target: tuple[str, Any], prompts: list[Any]) -> None:
    model, encoding = target
    expected = [
        len(encoding.encode_ordinary(p)) if isinstance(p, str) else cookbook_tokens(encoding, p)
        for p in prompts
    ]
    assert [c.tokens for c in count_tokens_batch(prompts, model)] == expected


# --- fixed corpus --------------------------------------------------------------------------------

STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_FILES = [
    "json/decoder.py",
    "asyncio/tasks.py",
    "difflib.py",
    "locale.py",
    "email/_header_value_parser.py",
    "encodings/cp1252.py",
]
PRESENT_STDLIB_FILES = [name for name in STDLIB_FILES if (STDLIB / name).is_file()]


def test_stdlib_sources_found() -> None:
    assert len(PRESENT_STDLIB_FILES) >= 4, f"stdlib at {STDLIB}: {PRESENT_STDLIB_FILES}"


@pytest.mark.parametrize("name", PRESENT_STDLIB_FILES)
def test_stdlib_source(target: tuple[str, Any], name: str) -> None:
    text = (STDLIB / name).read_text(encoding="utf-8")
    assert len(text) > 1000
    assert_matches(*target, text)
    # The same text again comes from the count cache and must not change.
    assert_matches(*target, text)


def test_golden_texts_concatenated(target: tuple[str, Any]) -> None:
    golden = Path(__file__).parent / "data" / "token_golden.jsonl"
    texts = [
        json.loads(line).get("text", "")
        for line in golden.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(texts) >= 100
    for separator in ("", "\n", " ", "\r\n\r\n"):
        assert_matches(*target, separator.join(texts))


def test_stdlib_concatenated_with_surrogates(target: tuple[str, Any]) -> None:
    text = "\ud800".join(
        (STDLIB / name).read_text(encoding="utf-8") for name in PRESENT_STDLIB_FILES
    )
    assert_matches(*target, text)
