"""Every line of ``tests/data/token_golden.jsonl`` (counts made by official tiktoken 0.14).

Each line has ``model``, ``encoding``, ``text`` or ``messages``, and ``tokens``; the tests are
parametrized by line number so a failure names the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import count_tokens, count_tokens_batch, encoding_for_model

GOLDEN = Path(__file__).parent / "data" / "token_golden.jsonl"


def _load() -> list[tuple[int, dict[str, Any]]]:
    cases = []
    with GOLDEN.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                cases.append((number, json.loads(line)))
    return cases


CASES = _load()


def _prompt(case: dict[str, Any]) -> Any:
    return case["messages"] if "messages" in case else case["text"]


def test_golden_file_is_complete() -> None:
    assert len(CASES) >= 100
    for number, case in CASES:
        assert {"model", "encoding", "tokens"} <= case.keys(), number
        assert ("text" in case) != ("messages" in case), number
    assert any("messages" in case for _, case in CASES)
    assert {case["encoding"] for _, case in CASES} >= {"cl100k_base", "o200k_base"}


@pytest.mark.parametrize(("number", "case"), CASES, ids=[f"line{n}" for n, _ in CASES])
def test_golden_line(number: int, case: dict[str, Any]) -> None:
    count = count_tokens(_prompt(case), case["model"])
    assert (count.tokens, count.method, count.encoding) == (
        case["tokens"],
        "tiktoken",
        case["encoding"],
    ), f"line {number}: {case['model']} {_prompt(case)!r:.80}"
    assert encoding_for_model(case["model"]) == case["encoding"], f"line {number}"


@pytest.mark.parametrize("model", sorted({case["model"] for _, case in CASES}))
def test_golden_batch(model: str) -> None:
    cases = [case for _, case in CASES if case["model"] == model]
    counts = count_tokens_batch([_prompt(case) for case in cases], model)
    assert [c.tokens for c in counts] == [case["tokens"] for case in cases]
    assert {(c.method, c.encoding) for c in counts} == {("tiktoken", cases[0]["encoding"])}
