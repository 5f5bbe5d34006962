"""The fast counting path (DFA pre-tokenizer + count-only BPE) against official tiktoken.

Deterministic and exhaustive where it can be, aimed at what the fast path rewrites: the
``\\s+(?!\\S)`` look-ahead (every short mix of whitespace kinds and neighbours), the Unicode
classes (every code point of the planes in use, in several contexts, which also checks that our
Unicode tables agree with the ones official tiktoken was built with), and the contractions' case
folding. The Rust unit tests compare the pieces themselves with fancy_regex; these compare counts
with the real oracle, for cl100k_base and o200k_base.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Official tiktoken reads its BPE files from this cache (no network here); same rule as conftest.
_SHARED_CACHE = Path(__file__).resolve().parent.parent.parent / "shared" / "tiktoken-cache"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _SHARED_CACHE.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED_CACHE)

tiktoken = pytest.importorskip("tiktoken")

from instrumentation_sdk import count_tokens  # noqa: E402

TARGETS = [("gpt-4", "cl100k_base"), ("gpt-4o", "o200k_base")]


@pytest.fixture(scope="module", params=TARGETS, ids=[name for _, name in TARGETS])
def target(request: pytest.FixtureRequest) -> tuple[str, Any]:
    model, name = request.param
    try:
        return model, tiktoken.get_encoding(name)
    except Exception as err:  # no network and nothing cached
        pytest.skip(f"official tiktoken cannot load {name}: {type(err).__name__}: {err}")


def mismatches(model: str, encoding: Any, texts: list[str]) -> list[tuple[str, int, int]]:
    expected = encoding.encode_ordinary_batch(texts, num_threads=1)
    found = []
    for text, tokens in zip(texts, expected, strict=True):
        count = count_tokens(text, model)
        if (count.tokens, count.method) != (len(tokens), "tiktoken"):
            found.append((text, count.tokens, len(tokens)))
    return found


def assert_all_match(model: str, encoding: Any, texts: list[str]) -> None:
    bad = mismatches(model, encoding, texts)
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. (text, ours, tiktoken): {bad[:5]!r}"


# --- every code point ---------------------------------------------------------------------------


def code_points() -> Iterator[str]:
    """Every scalar value of planes 0-3 and 14 (all that Unicode assigns outside private use),
    and every 97th of the rest (unassigned planes 4-13, private-use planes 15-16)."""
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # lone surrogates: test_oracle covers how they are encoded
        if cp < 0x40000 or 0xE0000 <= cp < 0xF0000 or cp % 97 == 0:
            yield chr(cp)


def in_context(c: str) -> str:
    """``c`` doubled, after a space, between a letter and a digit, before a contraction in
    upper case and a space run, and before a line break."""
    return f"{c}{c} {c}a{c}1{c}'S  {c}\n"


def test_every_code_point_in_context(target: tuple[str, Any]) -> None:
    model, encoding = target
    chars = list(code_points())
    chunk = 1024
    texts = [
        "".join(in_context(c) for c in chars[i : i + chunk]) for i in range(0, len(chars), chunk)
    ]
    expected = encoding.encode_ordinary_batch(texts, num_threads=1)
    for start, text, tokens in zip(range(0, len(chars), chunk), texts, expected, strict=True):
        count = count_tokens(text, model)
        if count.tokens != len(tokens):
            # Name the culprits: the code points whose own snippet differs.
            culprits = mismatches(
                model, encoding, [in_context(c) for c in chars[start : start + chunk]]
            )
            detail = [(f"U+{ord(t[0]):04X}", ours, theirs) for t, ours, theirs in culprits[:10]]
            pytest.fail(
                f"{model}: chunk at U+{ord(chars[start]):04X}: ours {count.tokens}, tiktoken "
                f"{len(tokens)}; code points (ours, tiktoken): {detail}"
            )


# --- whitespace runs and their neighbours, exhaustively ----------------------------------------

# Every kind of whitespace the pattern treats differently (space, tab, line breaks, \r\n, Unicode
# spaces, a space that is not \s), and the neighbours that decide whether a run gives back its
# last character: a letter, a digit, punctuation, a contraction.
WHITESPACE_MIX = [
    "a", "1", ".", "'s", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028",
    "\x0b", "\x85", "\u200b",
]  # fmt: skip


def test_every_short_whitespace_mix(target: tuple[str, Any]) -> None:
    texts = [
        "".join(items)
        for size in range(1, 5)
        for items in itertools.product(WHITESPACE_MIX, repeat=size)
    ]
    assert len(texts) == sum(len(WHITESPACE_MIX) ** k for k in range(1, 5))
    assert_all_match(*target, texts)


# --- contractions and case folding --------------------------------------------------------------

CONTRACTIONS = ["s", "t", "d", "m", "ll", "ve", "re"]
FOLDS = ["S", "T", "D", "M", "L", "V", "R", "E", "\u017f", "\u212a", "K", "k"]


def test_contractions_in_every_case(target: tuple[str, Any]) -> None:
    texts = []
    for word in CONTRACTIONS:
        for letters in itertools.product(*[(ch, ch.upper()) for ch in word]):
            suffix = "'" + "".join(letters)
            texts += [prefix + suffix for prefix in ("", "it", "IT", " ", "1")] + [suffix + "x"]
    texts += ["'" + fold for fold in FOLDS] + ["a'" + fold + "b" for fold in FOLDS]
    assert_all_match(*target, texts)


# --- generated strings --------------------------------------------------------------------------

ALPHABET = [
    *"abszZQk0 79.,!?-_/\\(){}\"#@+=*'`", "12", "12345", "'s", "'S", "'LL", "'Re", "'ve",
    "\u2019s", "\u017f", "\u212a", "  ", "\t", "\n", "\r\n", "\n\n", " \n", "\x0b", "\x0c",
    "\x85", "\u00a0", "\u1680", *map(chr, range(0x2000, 0x200B)), "\u2028", "\u2029", "\u202f",
    "\u205f", "\u3000", "\u200b", "\u200d", "\ufeff", "\u0660", "\uff10", "\u2167", "\u00bd",
    "\u00e9", "\u00c9", "\u00df", "\u01c5", "\u02b0", "\u3005", "\u05d0", "\u4e2d", "\u3042",
    "\u0301", "e\u0301", "\u093f", "\U0001f600", "\U0001f468\u200d\U0001f469", "\u2764\ufe0f",
    "\ufe0f", "\u2014", "\u3002", "\x00", "\x1b", "\x7f", "\ufffd", "<|endoftext|>", "<|",
]  # fmt: skip


def test_generated_strings(target: tuple[str, Any]) -> None:
    rng = random.Random(20261125)
    texts = ["".join(rng.choices(ALPHABET, k=rng.randrange(1, 40))) for _ in range(20_000)]
    assert_all_match(*target, texts)
