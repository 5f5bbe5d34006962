"""The scanners against their quality targets on a small, seeded sample of the labelled
evaluation (``benches/scan_eval/generate.py``; the full run and Presidio's figures are in
``benches/test_bench_scan.py``): recall >= 0.98 per kind (phone >= 0.95), precision >= 0.97,
at most 1 false positive per 100 KB of benign text, no value left by ``mask_pii``; injection
recall >= 0.90 at <= 1% false positives, ROC AUC >= 0.95."""

from __future__ import annotations

import pytest
from instrumentation_sdk import mask_pii, scan_injection
from scan_eval import generate as evaluation


@pytest.fixture(scope="module")
def cases() -> list:  # type: ignore[type-arg]
    return evaluation.pii_cases(seed=7, per_kind=60) + evaluation.secret_cases(seed=7, per_rule=4)


def test_pii_recall_and_precision_per_kind(cases: list) -> None:  # type: ignore[type-arg]
    figures = evaluation.pii_metrics(cases, evaluation.ours)
    for kind, got in figures.items():
        floor = 0.95 if kind == "PHONE_NUMBER" else 0.98
        assert got["values"] >= 40, (kind, got)
        assert got["recall"] >= floor, (kind, got)
        assert got["precision"] >= 0.97, (kind, got)


def test_mask_leaves_none_of_the_values(cases: list) -> None:  # type: ignore[type-arg]
    leaked = [
        (case.text, case.text[start:end])
        for case in cases
        for kind, start, end in case.spans
        if case.text[start:end] in mask_pii(case.text)
    ]
    # A value the scanner misses is leaked: the recall test bounds those; here none may leak
    # among the ones found, and the total stays within the recall targets.
    assert len(leaked) <= 0.02 * sum(len(case.spans) for case in cases), leaked[:5]
    for case in cases:
        masked = mask_pii(case.text)
        found = {(kind, start, end) for kind, start, end in evaluation.ours(case.text)}
        for kind, start, end in found:
            assert case.text[start:end] not in masked, (case.text, kind)


def test_at_most_one_false_positive_per_100_kb_of_benign_text() -> None:
    texts = evaluation.benign_texts(seed=7, total_bytes=150_000)
    count, size, examples = evaluation.false_positives(texts, evaluation.ours)
    assert count / size * 100_000 <= 1.0, examples


def test_injection_recall_false_positives_and_auc() -> None:
    rows = evaluation.injection_cases(seed=7, limit=60)
    verdicts = [scan_injection(text) for text, _, _ in rows]
    labels = [label for _, label, _ in rows]
    attacks = [v.flagged for v, label in zip(verdicts, labels, strict=True) if label]
    benign = [v.flagged for v, label in zip(verdicts, labels, strict=True) if not label]
    assert len(attacks) >= 200
    assert len(benign) >= 200
    recall = sum(attacks) / len(attacks)
    false_positive_rate = sum(benign) / len(benign)
    auc = evaluation.roc_auc([v.score for v in verdicts], labels)
    assert recall >= 0.90, recall
    assert false_positive_rate <= 0.01, [
        text for (text, label, _), v in zip(rows, verdicts, strict=True) if not label and v.flagged
    ]
    assert auc >= 0.95, auc
