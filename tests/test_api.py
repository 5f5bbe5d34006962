"""The public token-counting API: TokenCount, prompt forms and their errors, the heuristic for
unknown models, warmup, the count cache's configuration and figures, offline encodings, exports."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import types
from collections import OrderedDict, UserDict
from collections.abc import Iterator, Mapping
from typing import Any

import instrumentation_sdk
import pytest
from instrumentation_sdk import (
    TokenCount,
    clear_token_cache,
    configure_token_cache,
    count_tokens,
    count_tokens_batch,
    token_cache_stats,
    warmup,
)

API = {
    "TokenCount",
    "clear_token_cache",
    "configure_token_cache",
    "count_tokens",
    "count_tokens_batch",
    "encoding_for_model",
    "token_cache_stats",
    "warmup",
}
ENCODINGS = {
    "gpt2",
    "r50k_base",
    "p50k_base",
    "p50k_edit",
    "cl100k_base",
    "o200k_base",
    "o200k_harmony",
}


@pytest.fixture
def default_cache() -> Iterator[None]:
    """Each cache test starts from an empty cache with the default sizes, and restores them."""
    before = token_cache_stats()
    configure_token_cache(max_entries=4096, min_text_bytes=1024)
    clear_token_cache()
    yield
    configure_token_cache(
        max_entries=before["max_entries"], min_text_bytes=before["min_text_bytes"]
    )
    clear_token_cache()


# --- TokenCount --------------------------------------------------------------------------------


def test_token_count_fields() -> None:
    count = count_tokens("Hello world!", "gpt-4o")
    assert type(count) is TokenCount
    assert (count.tokens, count.method, count.encoding) == (3, "tiktoken", "o200k_base")
    assert type(count.tokens) is int
    assert type(count.method) is str


def test_token_count_constructor() -> None:
    assert TokenCount(3, "tiktoken", "o200k_base") == count_tokens("Hello world!", "gpt-4o")
    assert TokenCount(tokens=7, method="heuristic") == TokenCount(7, "heuristic", None)
    assert TokenCount(7, "heuristic").encoding is None
    for encoding in sorted(ENCODINGS):
        assert TokenCount(1, "tiktoken", encoding).encoding == encoding


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "exact"), "method"),
        ((1, "Tiktoken"), "method"),
        ((1, ""), "method"),
        ((1, "tiktoken", "cl200k"), "cl200k"),
        ((1, "tiktoken", "O200K_BASE"), "O200K_BASE"),
        ((1, "heuristic", ""), "encoding"),
    ],
)
def test_token_count_constructor_rejects(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenCount(*args)


def test_token_count_is_frozen() -> None:
    count = TokenCount(3, "tiktoken", "o200k_base")
    for name, value in (("tokens", 4), ("method", "heuristic"), ("encoding", None)):
        with pytest.raises(AttributeError):
            setattr(count, name, value)
        with pytest.raises(AttributeError):
            delattr(count, name)
    with pytest.raises(AttributeError):
        count.extra = 1  # type: ignore[attr-defined]
    assert (count.tokens, count.method, count.encoding) == (3, "tiktoken", "o200k_base")


def test_token_count_equality_and_hash() -> None:
    a = TokenCount(3, "tiktoken", "o200k_base")
    b = count_tokens("Hello world!", "gpt-4o")
    assert a == b
    assert not a != b  # noqa: SIM202
    assert hash(a) == hash(b)
    assert len({a, b, TokenCount(3, "tiktoken", "o200k_base")}) == 1
    others = [
        TokenCount(4, "tiktoken", "o200k_base"),
        TokenCount(3, "tiktoken", "cl100k_base"),
        TokenCount(3, "heuristic", None),
        TokenCount(3, "tiktoken", None),
    ]
    for other in others:
        assert a != other
    assert len({a, *others}) == 5
    assert a != 3
    assert a != (3, "tiktoken", "o200k_base")
    assert {a: "x"}[b] == "x"


def test_token_count_repr() -> None:
    assert repr(TokenCount(3, "tiktoken", "o200k_base")) == (
        "TokenCount(tokens=3, method='tiktoken', encoding='o200k_base')"
    )
    assert repr(TokenCount(0, "heuristic")) == (
        "TokenCount(tokens=0, method='heuristic', encoding=None)"
    )
    for count in (TokenCount(12, "tiktoken", "gpt2"), TokenCount(5, "heuristic")):
        assert eval(repr(count), {"TokenCount": TokenCount}) == count


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_token_count_pickle(protocol: int) -> None:
    for count in (count_tokens("Hello world!", "gpt-4"), count_tokens("hi", "claude-3")):
        clone = pickle.loads(pickle.dumps(count, protocol=protocol))
        assert type(clone) is TokenCount
        assert clone == count
        assert (clone.tokens, clone.method, clone.encoding) == (
            count.tokens,
            count.method,
            count.encoding,
        )
    count = count_tokens("Hello world!")
    assert copy.copy(count) == count
    assert copy.deepcopy(count) == count


def test_token_count_match() -> None:
    assert TokenCount.__match_args__ == ("tokens", "method", "encoding")
    match count_tokens("Hello world!", "gpt-4o"):
        case TokenCount(tokens, "tiktoken", encoding):
            assert (tokens, encoding) == (3, "o200k_base")
        case _:
            pytest.fail("positional match failed")
    match count_tokens("Hello world!", "unknown-model"):
        case TokenCount(method="tiktoken"):
            pytest.fail("heuristic count matched method='tiktoken'")
        case TokenCount(tokens=tokens, method="heuristic", encoding=None):
            assert tokens >= 1
        case _:
            pytest.fail("keyword match failed")


# --- prompt forms and errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "type_name"),
    [
        (1, "int"),
        (None, "NoneType"),
        (b"hello", "bytes"),
        (bytearray(b"hello"), "bytearray"),
        (3.5, "float"),
        ({"role": "user", "content": "hi"}, "dict"),
        ({"hello"}, "set"),
        (iter(["hello"]), "list_iterator"),
        (object(), "object"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_prompt_type(prompt: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=rf"^prompt must be a str or a list .*got {type_name}$"):
        count_tokens(prompt)


@pytest.mark.parametrize(
    ("prompt", "index", "type_name"),
    [
        (["hello"], 0, "str"),
        ([{"role": "user", "content": "hi"}, 3], 1, "int"),
        (({"role": "user"}, {"role": "user"}, None), 2, "NoneType"),
        ([{"role": "user"}, [("role", "user")]], 1, "list"),
        ([{"role": "user"}, {"role": "user"}, {"role": "user"}, b"x"], 3, "bytes"),
    ],
)
def test_bad_message_names_its_index(prompt: Any, index: int, type_name: str) -> None:
    with pytest.raises(
        TypeError, match=rf"^prompt\[{index}\] must be a chat message.*got {type_name}$"
    ):
        count_tokens(prompt, "gpt-4")


def n(text: str, model: str = "gpt-4") -> int:
    return count_tokens(text, model).tokens


def test_empty_prompts() -> None:
    assert count_tokens("", "gpt-4") == TokenCount(0, "tiktoken", "cl100k_base")
    assert count_tokens([], "gpt-4") == TokenCount(3, "tiktoken", "cl100k_base")
    assert count_tokens((), "gpt-4o") == TokenCount(3, "tiktoken", "o200k_base")
    assert count_tokens([{}], "gpt-4") == TokenCount(6, "tiktoken", "cl100k_base")


def test_message_cookbook_rule() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    expected = 3 + sum(3 + n(m["role"]) + n(m["content"]) for m in messages)
    assert count_tokens(messages, "gpt-4") == TokenCount(expected, "tiktoken", "cl100k_base")
    assert count_tokens(tuple(messages), "gpt-4") == count_tokens(messages, "gpt-4")


def test_name_adds_one_only_when_a_str() -> None:
    base = {"role": "user", "content": "hi"}
    plain = count_tokens([base], "gpt-4").tokens
    assert count_tokens([{**base, "name": "alice"}], "gpt-4").tokens == plain + n("alice") + 1
    assert count_tokens([{**base, "name": ""}], "gpt-4").tokens == plain + 1
    for not_a_str in (None, 5, ["alice"], {"first": "alice"}):
        assert count_tokens([{**base, "name": not_a_str}], "gpt-4").tokens == plain


def test_every_str_value_counts_and_others_are_ignored() -> None:
    base = {"role": "tool", "content": "42"}
    plain = count_tokens([base], "gpt-4").tokens
    extra = {"tool_call_id": "call_abc123", "refusal": "no way"}
    assert count_tokens([{**base, **extra}], "gpt-4").tokens == plain + sum(
        n(v) for v in extra.values()
    )
    ignored = {"tool_calls": [{"id": "x", "function": {"name": "f"}}], "n": 3, "meta": None}
    assert count_tokens([{**base, **ignored}], "gpt-4").tokens == plain
    assert count_tokens([{"role": "user", "content": None}], "gpt-4").tokens == 3 + 3 + n("user")


def test_content_parts() -> None:
    parts = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        "and a plain str part",
        types.MappingProxyType({"type": "text", "text": "from a mapping"}),
        {"type": "text", "text": None},
        {"type": "text"},
        None,
        7,
        ["nested", "list"],
    ]
    expected = (
        3
        + 3
        + n("user")
        + n("What is in this image?")
        + n("and a plain str part")
        + n("from a mapping")
    )
    got = count_tokens([{"role": "user", "content": parts}], "gpt-4")
    assert got == TokenCount(expected, "tiktoken", "cl100k_base")
    assert count_tokens([{"role": "user", "content": []}], "gpt-4").tokens == 3 + 3 + n("user")


class ReadOnlyMessage(Mapping[str, Any]):
    def __init__(self, **items: Any) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@pytest.mark.parametrize(
    "wrap",
    [
        dict,
        OrderedDict,
        types.MappingProxyType,
        UserDict,
        lambda d: ReadOnlyMessage(**d),
    ],
    ids=["dict", "OrderedDict", "mappingproxy", "UserDict", "abc.Mapping"],
)
def test_mapping_messages(wrap: Any) -> None:
    message = {"role": "user", "content": "Hello there", "name": "bob"}
    expected = 3 + 3 + n("user") + n("Hello there") + n("bob") + 1
    assert count_tokens([wrap(message)], "gpt-4") == TokenCount(expected, "tiktoken", "cl100k_base")


def test_list_subclass_and_str_subclass() -> None:
    class Messages(list):  # type: ignore[type-arg]
        pass

    class Text(str):
        pass

    assert count_tokens(Text("Hello world!"), "gpt-4o") == count_tokens("Hello world!", "gpt-4o")
    messages = Messages([{"role": Text("user"), "content": Text("hi"), "name": Text("al")}])
    assert count_tokens(messages, "gpt-4").tokens == 3 + 3 + n("user") + n("hi") + n("al") + 1


def test_special_token_text_is_ordinary() -> None:
    for special in ("<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>"):
        for model in ("gpt-4", "gpt-4o", "gpt2", "text-davinci-003", "gpt-oss-20b"):
            assert n(special, model) > 1, (special, model)


def test_lone_surrogates_are_repaired_like_tiktoken() -> None:
    # tiktoken re-encodes via UTF-16 with errors="replace": a lone surrogate becomes U+FFFD, and
    # a surrogate pair spelled as two code points becomes its character.
    for model in ("gpt-4", "gpt-4o"):
        assert count_tokens("a\ud800b", model) == count_tokens("a\ufffdb", model)
        assert count_tokens("\ud83d\ude00!", model) == count_tokens("\U0001f600!", model)
        assert count_tokens("x\udfff\ud800", model) == count_tokens("x\ufffd\ufffd", model)
        message = [{"role": "user", "content": "hi \ud800", "name": "\udc00"}]
        fixed = [{"role": "user", "content": "hi \ufffd", "name": "\ufffd"}]
        assert count_tokens(message, model) == count_tokens(fixed, model)


def test_keyword_arguments_and_default_model() -> None:
    assert count_tokens(prompt="Hello world!", model="gpt-4") == TokenCount(
        3, "tiktoken", "cl100k_base"
    )
    assert count_tokens("Hello world!").encoding == "o200k_base"
    assert instrumentation_sdk.DEFAULT_MODEL == "gpt-4o"
    assert count_tokens_batch(["Hello world!"])[0].encoding == "o200k_base"


# --- unknown models: the heuristic -------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-3-opus", "llama-3-70b", "", "GPT-4o", "o4"])
def test_unknown_model_uses_heuristic(model: str) -> None:
    assert count_tokens("", model) == TokenCount(0, "heuristic", None)
    for text in ("a", "Hello world!", "中文", "😀", " ", "\x00", "a\ud800", "x" * 5000):
        count = count_tokens(text, model)
        assert (count.method, count.encoding) == ("heuristic", None), text
        assert type(count.tokens) is int
        assert count.tokens >= 1, text
    messages = [{"role": "user", "content": "Hello!"}]
    count = count_tokens(messages, model)
    assert (count.method, count.encoding) == ("heuristic", None)
    assert count.tokens >= 3 + 3 + 1
    assert count_tokens([], model) == TokenCount(3, "heuristic", None)


# --- every embedded encoding counts offline ----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt2", "gpt2"),
        ("gpt-2", "gpt2"),
        ("davinci", "r50k_base"),
        ("text-davinci-001", "r50k_base"),
        ("text-davinci-003", "p50k_base"),
        ("code-davinci-002", "p50k_base"),
        ("text-davinci-edit-001", "p50k_edit"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-oss-20b", "o200k_harmony"),
    ],
)
def test_every_encoding_counts_offline(model: str, encoding: str) -> None:
    text = "Offline works: 123 ÷ 4 = 30.75, naïve café, 中文, 😀\n\tdone."
    count = count_tokens(text, model)
    assert (count.method, count.encoding) == ("tiktoken", encoding)
    assert 10 < count.tokens < len(text)
    assert count_tokens("Hello world!", model) == TokenCount(3, "tiktoken", encoding)


def test_encodings_sharing_ranks_agree() -> None:
    # Same ranks and pattern in tiktoken: gpt2 == r50k_base, p50k_edit == p50k_base and
    # o200k_harmony == o200k_base for ordinary text.
    text = "def f(x):\n    return x ** 2  # square\n" * 3 + "    \n\n  Hello, world! 中文 😀"
    assert n(text, "gpt2") == n(text, "davinci")
    assert n(text, "text-davinci-edit-001") == n(text, "text-davinci-003")
    assert n(text, "gpt-oss-20b") == n(text, "gpt-4o")
    # p50k_base has whitespace-run tokens that r50k_base lacks.
    assert n("        x", "text-davinci-003") < n("        x", "davinci")


# --- warmup ------------------------------------------------------------------------------------


def test_warmup_return_value() -> None:
    first = warmup(["gpt-4o", "gpt-4", "gpt-4o-mini"])
    assert list(first) == ["o200k_base", "cl100k_base"]
    assert all(type(s) is float and 0.0 <= s < 30.0 for s in first.values())
    assert warmup(("gpt-4o", "gpt-4")) == {"o200k_base": 0.0, "cl100k_base": 0.0}
    assert warmup() == {"o200k_base": 0.0, "cl100k_base": 0.0}
    assert warmup("gpt-4") == {"cl100k_base": 0.0}
    assert warmup([]) == {}
    with pytest.raises(ValueError, match="claude-3"):
        warmup(["claude-3", "llama"])  # no encoding to load: refused, not skipped (issue 10)
    assert set(warmup(["gpt-oss-20b", "gpt2", "davinci"])) == {"o200k_harmony", "gpt2", "r50k_base"}


def test_warmup_after_counting_reports_zero() -> None:
    # "0.0 when it was already loaded": counting loads the encoding, so a later warmup has
    # nothing to load. A fresh interpreter makes this independent of other tests.
    code = (
        "from instrumentation_sdk import count_tokens, warmup\n"
        "count_tokens('hello', 'text-davinci-edit-001')\n"
        "print(repr(warmup(['text-davinci-edit-001'])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert out == "{'p50k_edit': 0.0}"


# --- the count cache ---------------------------------------------------------------------------


def test_cache_stats_shape(default_cache: None) -> None:
    stats = token_cache_stats()
    assert stats == {
        "hits": 0,
        "misses": 0,
        "entries": 0,
        "max_entries": 4096,
        "min_text_bytes": 1024,
        "tokenizer_faults": 0,
    }
    assert all(type(v) is int for v in stats.values())


def test_cache_hits_long_texts_only(default_cache: None) -> None:
    long = "The same long system prompt, repeated by every request. " * 40
    assert len(long.encode()) >= 1024
    first = count_tokens(long, "gpt-4")
    assert token_cache_stats() == {
        "hits": 0,
        "misses": 1,
        "entries": 1,
        "max_entries": 4096,
        "min_text_bytes": 1024,
        "tokenizer_faults": 0,
    }
    assert count_tokens(long, "gpt-4") == first
    assert (token_cache_stats()["hits"], token_cache_stats()["misses"]) == (1, 1)
    # another encoding is another key, with its own (different) count
    other = count_tokens(long, "gpt-4o")
    assert other.encoding == "o200k_base"
    assert (token_cache_stats()["misses"], token_cache_stats()["entries"]) == (2, 2)
    # short texts bypass the cache
    count_tokens("short", "gpt-4")
    assert (token_cache_stats()["hits"], token_cache_stats()["misses"]) == (1, 2)
    # messages' long strings go through it too
    count_tokens([{"role": "system", "content": long}], "gpt-4")
    assert token_cache_stats()["hits"] == 2


def test_cache_threshold_is_in_utf8_bytes(default_cache: None) -> None:
    count_tokens("中" * 341, "gpt-4")  # 1023 bytes: bypass
    assert token_cache_stats()["misses"] == 0
    count_tokens("中" * 342, "gpt-4")  # 1026 bytes, 342 chars: cached
    assert token_cache_stats()["misses"] == 1
    count_tokens("a" * 1023, "gpt-4")
    assert token_cache_stats()["misses"] == 1
    count_tokens("a" * 1024, "gpt-4")  # exactly min_text_bytes: cached
    assert token_cache_stats()["misses"] == 2
    configure_token_cache(min_text_bytes=10)
    assert token_cache_stats()["min_text_bytes"] == 10
    count_tokens("0123456789", "gpt-4")
    count_tokens("0123456789", "gpt-4")
    assert (token_cache_stats()["hits"], token_cache_stats()["misses"]) == (1, 3)


def test_cache_counts_are_exact(default_cache: None) -> None:
    texts = [f"{i} " + "word " * (300 + i) for i in range(20)]
    configure_token_cache(max_entries=0)
    uncached = [count_tokens(t, "gpt-4o") for t in texts]
    configure_token_cache(max_entries=4096)
    assert [count_tokens(t, "gpt-4o") for t in texts] == uncached  # misses, stored
    assert [count_tokens(t, "gpt-4o") for t in texts] == uncached  # hits
    assert token_cache_stats()["hits"] == 20


@pytest.mark.parametrize("max_entries", [1, 5, 16, 100])
def test_cache_is_bounded_by_max_entries(default_cache: None, max_entries: int) -> None:
    configure_token_cache(max_entries=max_entries)
    base = "x" * 1100
    for i in range(3 * max_entries + 50):
        count_tokens(f"{base}{i}", "gpt-4")
    stats = token_cache_stats()
    assert stats["max_entries"] == max_entries
    assert 1 <= stats["entries"] <= max_entries, stats


def test_cache_disabled_with_zero_entries(default_cache: None) -> None:
    long = "y" * 5000
    count_tokens(long, "gpt-4")
    assert token_cache_stats()["entries"] == 1
    configure_token_cache(max_entries=0)
    assert token_cache_stats()["entries"] == 0
    assert token_cache_stats()["max_entries"] == 0
    first = count_tokens(long, "gpt-4")
    assert count_tokens(long, "gpt-4") == first
    stats = token_cache_stats()
    assert (stats["hits"], stats["entries"]) == (0, 0)
    configure_token_cache(max_entries=10)
    count_tokens(long, "gpt-4")
    count_tokens(long, "gpt-4")
    assert token_cache_stats()["hits"] == 1


def test_clear_token_cache(default_cache: None) -> None:
    count_tokens("z" * 2000, "gpt-4")
    count_tokens("z" * 2000, "gpt-4")
    assert token_cache_stats()["entries"] == 1
    clear_token_cache()
    stats = token_cache_stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (0, 0, 0)
    assert (stats["max_entries"], stats["min_text_bytes"]) == (4096, 1024)


def test_configure_keeps_unspecified_settings(default_cache: None) -> None:
    configure_token_cache(max_entries=7)
    configure_token_cache(min_text_bytes=99)
    configure_token_cache()
    stats = token_cache_stats()
    assert (stats["max_entries"], stats["min_text_bytes"]) == (7, 99)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": -1},
        {"min_text_bytes": -1},
        {"max_entries": 1.5},
        {"max_entries": "10"},
        {"min_text_bytes": 2.0},
        {"max_entries": True},
        {"min_text_bytes": False},
    ],
    ids=repr,
)
def test_configure_rejects_bad_values(default_cache: None, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        configure_token_cache(**kwargs)
    stats = token_cache_stats()
    assert (stats["max_entries"], stats["min_text_bytes"]) == (4096, 1024)


def test_configure_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        configure_token_cache(10)  # type: ignore[misc]


# --- exports -----------------------------------------------------------------------------------


def test_all_lists_exactly_the_exports() -> None:
    exported = instrumentation_sdk.__all__
    assert len(exported) == len(set(exported))
    assert set(exported) >= API
    public = {
        name
        for name, value in vars(instrumentation_sdk).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(exported), f"public but not in __all__: {public - set(exported)}"
    for name in exported:
        assert hasattr(instrumentation_sdk, name), name
    namespace: dict[str, Any] = {}
    exec("from instrumentation_sdk import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(exported)
    assert instrumentation_sdk.TokenCount is TokenCount
    assert TokenCount.__module__ == "instrumentation_sdk"
    assert isinstance(instrumentation_sdk.__version__, str)
    assert instrumentation_sdk.__version__


@pytest.mark.parametrize("name", sorted(API))
def test_api_names_importable(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from instrumentation_sdk import {name}", namespace)
    assert namespace[name] is getattr(instrumentation_sdk, name)
    assert callable(namespace[name])
