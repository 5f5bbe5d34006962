"""``encoding_for_model`` answers exactly what official tiktoken 0.14's
``tiktoken.model.encoding_name_for_model`` answers, and ``None`` where tiktoken raises KeyError.

The 0.14 table is pinned here so the table tests run without tiktoken; one test checks the pin
against the installed tiktoken, and the hypothesis tests compare with tiktoken's function itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from instrumentation_sdk import count_tokens, encoding_for_model

# tiktoken 0.14 tiktoken/model.py MODEL_TO_ENCODING
MODEL_TO_ENCODING = {
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    "gpt-5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",
    "davinci-002": "cl100k_base",
    "babbage-002": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
    "text-davinci-003": "p50k_base",
    "text-davinci-002": "p50k_base",
    "text-davinci-001": "r50k_base",
    "text-curie-001": "r50k_base",
    "text-babbage-001": "r50k_base",
    "text-ada-001": "r50k_base",
    "davinci": "r50k_base",
    "curie": "r50k_base",
    "babbage": "r50k_base",
    "ada": "r50k_base",
    "code-davinci-002": "p50k_base",
    "code-davinci-001": "p50k_base",
    "code-cushman-002": "p50k_base",
    "code-cushman-001": "p50k_base",
    "davinci-codex": "p50k_base",
    "cushman-codex": "p50k_base",
    "text-davinci-edit-001": "p50k_edit",
    "code-davinci-edit-001": "p50k_edit",
    "text-similarity-davinci-001": "r50k_base",
    "text-similarity-curie-001": "r50k_base",
    "text-similarity-babbage-001": "r50k_base",
    "text-similarity-ada-001": "r50k_base",
    "text-search-davinci-doc-001": "r50k_base",
    "text-search-curie-doc-001": "r50k_base",
    "text-search-babbage-doc-001": "r50k_base",
    "text-search-ada-doc-001": "r50k_base",
    "code-search-babbage-code-001": "r50k_base",
    "code-search-ada-code-001": "r50k_base",
    "gpt2": "gpt2",
    "gpt-2": "gpt2",
}

# tiktoken 0.14 MODEL_PREFIX_TO_ENCODING, in its (significant) order
MODEL_PREFIX_TO_ENCODING = {
    "o1-": "o200k_base",
    "o3-": "o200k_base",
    "o4-mini-": "o200k_base",
    "gpt-5": "o200k_base",
    "gpt-4.5-": "o200k_base",
    "gpt-4.1-": "o200k_base",
    "chatgpt-4o-": "o200k_base",
    "gpt-4o-": "o200k_base",
    "gpt-4-": "cl100k_base",
    "gpt-3.5-turbo-": "cl100k_base",
    "gpt-35-turbo-": "cl100k_base",
    "gpt-oss-": "o200k_harmony",
    "ft:gpt-4o": "o200k_base",
    "ft:gpt-4": "cl100k_base",
    "ft:gpt-3.5-turbo": "cl100k_base",
    "ft:davinci-002": "cl100k_base",
    "ft:babbage-002": "cl100k_base",
}


def pinned_encoding_name(model: str) -> str | None:
    """tiktoken 0.14's ``encoding_name_for_model``, with ``None`` for its KeyError."""
    if model in MODEL_TO_ENCODING:
        return MODEL_TO_ENCODING[model]
    for prefix, encoding in MODEL_PREFIX_TO_ENCODING.items():
        if model.startswith(prefix):
            return encoding
    return None


@pytest.fixture(scope="session")
def tiktoken_model() -> Any:
    try:
        import tiktoken.model
    except Exception as err:
        pytest.skip(f"official tiktoken cannot load its model table: {err}")
    return tiktoken.model


def official(tiktoken_model: Any, model: str) -> str | None:
    try:
        return tiktoken_model.encoding_name_for_model(model)
    except KeyError:
        return None


def test_pinned_table_is_tiktokens(tiktoken_model: Any) -> None:
    assert tiktoken_model.MODEL_TO_ENCODING == MODEL_TO_ENCODING
    assert list(tiktoken_model.MODEL_PREFIX_TO_ENCODING.items()) == list(
        MODEL_PREFIX_TO_ENCODING.items()
    )


@pytest.mark.parametrize(("model", "encoding"), MODEL_TO_ENCODING.items())
def test_exact_name(model: str, encoding: str) -> None:
    assert encoding_for_model(model) == encoding


SUFFIXES = [
    "",
    "2024-08-06",
    "-2024-08-06",
    "mini",
    "-mini",
    "0613",
    "-32k",
    "x",
    ":org:custom:id",
    "-preview",
    ".1",
    " ",
    "\u00e9",
    "\x00",
]


@pytest.mark.parametrize("suffix", SUFFIXES, ids=repr)
@pytest.mark.parametrize("prefix", MODEL_PREFIX_TO_ENCODING)
def test_prefix_with_suffix(prefix: str, suffix: str) -> None:
    model = prefix + suffix
    assert encoding_for_model(model) == pinned_encoding_name(model)
    assert encoding_for_model(model) is not None


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("ft:gpt-4o-mini:org:custom:id", "o200k_base"),
        ("ft:gpt-4o-2024-08-06:my-org::9abcDEF", "o200k_base"),
        ("ft:gpt-4-0613:org::id", "cl100k_base"),
        ("ft:gpt-4.1-mini:org::id", "cl100k_base"),  # "ft:gpt-4" is tiktoken's match here
        ("ft:gpt-3.5-turbo-0125:org::id", "cl100k_base"),
        ("ft:davinci-002:org::id", "cl100k_base"),
        ("ft:babbage-002:org::id", "cl100k_base"),
        ("gpt-4o-2024-05-13", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("gpt-5.1", "o200k_base"),
        ("gpt-5o", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-pro", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-3.5-turbo-16k", "cl100k_base"),
        ("gpt-35-turbo-instruct", "cl100k_base"),
        ("gpt-oss-20b", "o200k_harmony"),
        ("gpt-oss-120b", "o200k_harmony"),
    ],
)
def test_known_derived_names(model: str, encoding: str) -> None:
    assert pinned_encoding_name(model) == encoding
    assert encoding_for_model(model) == encoding


UNKNOWN = [
    "",
    "o4",
    "o2",
    "o1mini",
    "codex-mini",
    "codex-mini-latest",
    "claude-3",
    "claude-3-opus",
    "GPT-4o",
    "GPT-4",
    "Gpt-4o-mini",
    "gpt",
    "gpt-3",
    "gpt4o",
    "gpt-4.5",
    "chatgpt-4o",
    "gpt-oss",
    " gpt-4o",
    "gpt-4o ",
    "gpt-4o\n",
    "ft:",
    "ft:gpt-3",
    "ft:o1",
    "o1_mini",
    "text-davinci",
    "davinci-003",
    "llama-3-70b",
    "mistral-large",
    "gemini-1.5-pro",
    "O1-MINI",
    "g\u0440t-4o",  # Cyrillic er, not Latin p
]


@pytest.mark.parametrize("model", UNKNOWN, ids=repr)
def test_unknown_names(model: str) -> None:
    assert pinned_encoding_name(model) is None
    assert encoding_for_model(model) is None
    count = count_tokens("some text", model)
    assert (count.method, count.encoding) == ("heuristic", None)


def test_unknown_names_are_unknown_to_tiktoken(tiktoken_model: Any) -> None:
    for model in UNKNOWN:
        with pytest.raises(KeyError):
            tiktoken_model.encoding_name_for_model(model)


# --- hypothesis: names built from the table plus random edits, against tiktoken itself ----------

TABLE_WORDS = [*MODEL_TO_ENCODING, *MODEL_PREFIX_TO_ENCODING, "ft:", "gpt-", "o", "chatgpt-"]
SUFFIX = st.text(
    st.one_of(
        st.sampled_from("-.:_0123456789abcdefgikmnoprstuvxyzABCFGT "),
        st.characters(codec="utf-8"),
    ),
    max_size=12,
)


@st.composite
def model_names(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(TABLE_WORDS))
    kind = draw(st.sampled_from(["suffix", "truncate", "edit", "join", "case"]))
    if kind == "suffix":
        return word + draw(SUFFIX)
    if kind == "truncate":
        return word[: draw(st.integers(0, len(word)))] + draw(SUFFIX)
    if kind == "edit":
        at = draw(st.integers(0, len(word)))
        return word[:at] + draw(SUFFIX) + word[at:]
    if kind == "join":
        return word + draw(st.sampled_from(TABLE_WORDS)) + draw(SUFFIX)
    return word.upper() if draw(st.booleans()) else word.title()


@settings(max_examples=1500, deadline=None, derandomize=False, print_blob=True)
@given(model=model_names())
def test_generated_names_match_tiktoken(tiktoken_model: Any, model: str) -> None:
    assert encoding_for_model(model) == official(tiktoken_model, model)


@settings(max_examples=300, deadline=None, derandomize=False, print_blob=True)
@given(model=st.text(max_size=20))
def test_arbitrary_names_match_tiktoken(tiktoken_model: Any, model: str) -> None:
    assert encoding_for_model(model) == official(tiktoken_model, model)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-\ud800", "o200k_base"),
        ("ft:gpt-4:org::\udfff", "cl100k_base"),
        ("gpt-5\ud83d\ude00", "o200k_base"),
        ("\ud800", None),
    ],
    ids=["gpt-4o-lone-high", "ft-gpt-4-lone-low", "gpt-5-split-pair", "lone-only"],
)
def test_lone_surrogate_in_model_name(model: str, encoding: str | None) -> None:
    # tiktoken's str.startswith() handles any str; lone surrogates must not raise here either.
    assert pinned_encoding_name(model) == encoding
    assert encoding_for_model(model) == encoding
