"""Accuracy of the token-count heuristic that ``count_tokens`` uses for unknown models.

The corpus (``tests/data/heuristic_corpus.jsonl``) holds texts with their official ``o200k_base``
counts. ``tests/data/heuristic_errors.json`` holds the error report that
``scripts/calibrate_heuristic.py`` wrote from the Rust code. These tests recompute the report
from the installed package, so the committed figures cannot drift from the shipped code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from instrumentation_sdk import count_tokens

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "heuristic_corpus.jsonl"
REPORT = DATA / "heuristic_errors.json"
UNKNOWN_MODEL = "some-unknown-model"


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile, the same definition as scripts/calibrate_heuristic.py."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(errors: Sequence[float]) -> dict[str, float]:
    return {"median": quantile(errors, 0.5), "p90": quantile(errors, 0.9), "max": max(errors)}


@pytest.fixture(scope="module")
def samples() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def counts(samples: list[dict[str, Any]]) -> list[Any]:
    return [count_tokens(s["text"], UNKNOWN_MODEL) for s in samples]


@pytest.fixture(scope="module")
def errors(samples: list[dict[str, Any]], counts: list[Any]) -> list[float]:
    return [
        abs(c.tokens - s["o200k_tokens"]) / s["o200k_tokens"]
        for s, c in zip(samples, counts, strict=True)
    ]


@pytest.fixture(scope="module")
def baseline_errors(samples: list[dict[str, Any]]) -> list[float]:
    return [
        abs(math.ceil(len(s["text"]) / 4) - s["o200k_tokens"]) / s["o200k_tokens"] for s in samples
    ]


def by_category(samples: list[dict[str, Any]], values: list[float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for s, v in zip(samples, values, strict=True):
        out.setdefault(s["category"], []).append(v)
    return out


def test_corpus_is_varied(samples: list[dict[str, Any]]) -> None:
    assert 150 <= len(samples) <= 300
    assert len({s["name"] for s in samples}) == len(samples)
    categories = {s["category"] for s in samples}
    for needed in ("english", "code", "json", "chinese", "japanese", "korean", "cyrillic"):
        assert needed in categories
    for needed in ("arabic", "thai", "emoji", "repeated", "cjk_rare"):
        assert needed in categories
    for s in samples:
        assert s["text"]
        assert isinstance(s["o200k_tokens"], int)
        assert s["o200k_tokens"] >= 1


def test_every_sample_is_counted_by_the_heuristic(
    samples: list[dict[str, Any]], counts: list[Any]
) -> None:
    for s, c in zip(samples, counts, strict=True):
        assert c.method == "heuristic", s["name"]
        assert c.encoding is None, s["name"]
        assert type(c.tokens) is int, s["name"]
        assert c.tokens >= 1, s["name"]


def test_overall_error(errors: list[float]) -> None:
    assert quantile(errors, 0.5) < 0.15
    assert max(errors) < 0.60


def test_error_per_category(samples: list[dict[str, Any]], errors: list[float]) -> None:
    medians = {cat: quantile(errs, 0.5) for cat, errs in by_category(samples, errors).items()}
    too_high = {cat: round(m, 3) for cat, m in medians.items() if m >= 0.25}
    assert not too_high


def test_beats_chars_div_4(errors: list[float], baseline_errors: list[float]) -> None:
    assert quantile(errors, 0.5) < quantile(baseline_errors, 0.5)


def test_committed_report_matches_the_package(
    samples: list[dict[str, Any]], errors: list[float], baseline_errors: list[float]
) -> None:
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    ours = by_category(samples, errors)
    base = by_category(samples, baseline_errors)
    expected = {"overall": (errors, baseline_errors)} | {c: (ours[c], base[c]) for c in ours}
    committed = {"overall": report["overall"]} | report["categories"]
    assert set(committed) == set(expected)
    for name, (h, b) in expected.items():
        block = committed[name]
        assert block["samples"] == len(h), name
        for key, figures in (("heuristic", h), ("chars_div_4", b)):
            for stat, value in summary(figures).items():
                assert block[key][stat] == pytest.approx(value, abs=5e-4), (name, key, stat)


def test_empty_text_is_zero_tokens() -> None:
    assert count_tokens("", UNKNOWN_MODEL).tokens == 0
