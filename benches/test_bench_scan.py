"""Scanner benchmarks and the full evaluation, ours against Presidio in the same run.

Group ``scan_pii_mixed``: one pass over the same 256 KB of mixed text (the evaluation's PII
cases, secrets and benign traps, shuffled together):

* ``ours``     -- ``scan_pii(text)``;
* ``presidio`` -- Presidio's own pattern recognizers for the same kinds (email, phone, credit
  card, IBAN, US SSN, IP, crypto), each ``analyze(text, entities, nlp_artifacts=None)``: its
  regex tier, without spaCy (no model can be downloaded here, and the NER tier is slower still).

Group ``scan_pii_by_text_type``: ``scan_pii`` over 128 KB of one kind of text each: prose,
PII-dense sentences, benign traps, source code (MB/s = bytes / time).

Group ``scan_injection``: ``scan_injection`` over the evaluation's prompts joined (MB/s).
Group ``injection_block``: entering and leaving ``llm_span_with_tokens(prompt=<2 KB>)`` with
``injection="block"`` and with ``"off"``: the difference is what blocking adds.

``test_quality_side_by_side`` prints the full evaluation: recall and precision per kind for
ours and Presidio on the same PII set, false positives per 100 KB of benign text, and the
injection figures. Under plain ``pytest`` (``--benchmark-disable``) each runs once (smoke).

    python -m pytest benches/test_bench_scan.py --benchmark-enable -p no:cacheprovider -q -s
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from instrumentation_sdk import (
    configure,
    llm_span_with_tokens,
    mask_pii,
    scan_injection,
    shutdown,
)
from scan_eval import generate as evaluation

#: Presidio's pattern recognizers and the entity each reports (its names are ours).
PRESIDIO_RECOGNIZERS = (
    ("EmailRecognizer", "EMAIL_ADDRESS"),
    ("PhoneRecognizer", "PHONE_NUMBER"),
    ("CreditCardRecognizer", "CREDIT_CARD"),
    ("IbanRecognizer", "IBAN_CODE"),
    ("UsSsnRecognizer", "US_SSN"),
    ("IpRecognizer", "IP_ADDRESS"),
    ("CryptoRecognizer", "CRYPTO"),
)
MIXED_BYTES = 256 * 1024


def presidio() -> Callable[[str], list[tuple[str, int, int]]]:
    """Presidio's pattern tier as a scanner, or a skip with the reason."""
    try:
        from presidio_analyzer import predefined_recognizers
    except ImportError as error:  # pragma: no cover - the peer is in the test extra
        pytest.skip(f"presidio-analyzer is not installed: {error}")
    recognizers = [
        (getattr(predefined_recognizers, name)(), entity) for name, entity in PRESIDIO_RECOGNIZERS
    ]

    def find(text: str) -> list[tuple[str, int, int]]:
        return [
            (result.entity_type, result.start, result.end)
            for recognizer, entity in recognizers
            for result in recognizer.analyze(text, entities=[entity], nlp_artifacts=None)
        ]

    return find


@pytest.fixture(scope="module")
def mixed_text() -> str:
    rng = random.Random(11)
    pieces = [case.text for case in evaluation.pii_cases(seed=11, per_kind=40)]
    pieces += [case.text for case in evaluation.secret_cases(seed=11, per_rule=2)]
    pieces += evaluation.benign_texts(seed=11, total_bytes=MIXED_BYTES)
    rng.shuffle(pieces)
    text = "\n\n".join(pieces)
    return text.encode()[:MIXED_BYTES].decode(errors="ignore")


@pytest.mark.benchmark(group="scan_pii_mixed")
@pytest.mark.parametrize("impl", ["ours", "presidio"])
def test_scan_pii_throughput(benchmark: Any, impl: str, mixed_text: str) -> None:
    find = evaluation.ours if impl == "ours" else presidio()
    # Ours: enough rounds for a stable minimum on a shared box (the first call builds the
    # automata's caches: warm-up). Presidio: ~9 s a round, 5 rounds.
    rounds, warmup = (50, 2) if impl == "ours" else (5, 0)
    found = benchmark.pedantic(find, args=(mixed_text,), rounds=rounds, warmup_rounds=warmup)
    assert found
    benchmark.extra_info["bytes"] = len(mixed_text.encode())


TEXT_TYPES = ("prose", "pii_dense", "traps", "code")
TYPE_BYTES = 128 * 1024


def text_of_type(kind: str) -> str:
    """About 128 KB of one kind of text: Faker paragraphs, the evaluation's PII sentences,
    benign traps (ids, hashes, versions, timestamps, base64 images), source code."""
    from faker import Faker

    rng = random.Random(5)
    fakers = [Faker(locale) for locale in evaluation.LOCALES]
    for fake in fakers:
        fake.seed_instance(5)
    if kind == "pii_dense":
        pieces = [case.text for case in evaluation.pii_cases(seed=5, per_kind=300)]
        return "\n\n".join(pieces).encode()[:TYPE_BYTES].decode(errors="ignore")
    make: Callable[[], str] = {
        "prose": lambda: rng.choice(fakers).paragraph(nb_sentences=rng.randrange(2, 6)),
        "traps": lambda: evaluation._trap(rng, rng.choice(fakers)),
        "code": lambda: evaluation._code_snippet(rng),
    }[kind]
    pieces, size = [], 0
    while size < TYPE_BYTES:
        piece = make()
        pieces.append(piece)
        size += len(piece.encode()) + 2
    return "\n\n".join(pieces)


@pytest.mark.benchmark(group="scan_pii_by_text_type")
@pytest.mark.parametrize("kind", TEXT_TYPES)
def test_scan_pii_by_text_type(benchmark: Any, kind: str) -> None:
    text = text_of_type(kind)
    found = benchmark.pedantic(evaluation.ours, args=(text,), rounds=50, warmup_rounds=2)
    # PII where there is some; benign text within the 1 false positive per 100 KB target.
    assert len(found) > 500 if kind == "pii_dense" else len(found) <= 1
    benchmark.extra_info["bytes"] = len(text.encode())


@pytest.mark.benchmark(group="scan_injection")
def test_scan_injection_throughput(benchmark: Any) -> None:
    rows = evaluation.injection_cases(seed=11)
    text = "\n\n".join(text for text, _label, _source in rows)
    verdict = benchmark.pedantic(scan_injection, args=(text,), rounds=20, warmup_rounds=1)
    assert verdict.flagged
    benchmark.extra_info["bytes"] = len(text.encode())


@pytest.fixture
def pipeline(request: pytest.FixtureRequest) -> Iterator[None]:
    configure(exporter="none", injection=request.param)
    yield
    shutdown(timeout=5.0)


PROMPT_2KB = (
    "You are a helpful assistant for a travel agency. Please answer the customer's question "
    "about the itinerary below, keeping the tone friendly and the answer short. "
) * 13


@pytest.mark.benchmark(group="injection_block")
@pytest.mark.parametrize("pipeline", ["block", "off"], indirect=True)
def test_block_cost_per_span(benchmark: Any, pipeline: None) -> None:
    prompt = PROMPT_2KB[:2048]

    def one_span() -> None:
        with llm_span_with_tokens("gpt-4o", prompt=prompt):
            pass

    benchmark.pedantic(one_span, rounds=50, iterations=200, warmup_rounds=2)


def test_quality_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    cases = evaluation.pii_cases(seed=0, per_kind=300)
    secrets = evaluation.secret_cases(seed=0, per_rule=30)
    structured = evaluation.KINDS[:-1]
    lines = ["kind            ours recall/precision    presidio recall/precision"]
    ours = evaluation.pii_metrics(cases + secrets, evaluation.ours)
    theirs = evaluation.pii_metrics(cases, presidio(), structured)
    for kind in evaluation.KINDS:
        mine = ours[kind]
        peer = theirs.get(kind)
        peer_text = f"{peer['recall']:.3f} / {peer['precision']:.3f}" if peer else "-"
        lines.append(
            f"{kind:15} {mine['recall']:.3f} / {mine['precision']:.3f} ({mine['values']:.0f})"
            f"        {peer_text}"
        )
    benign = evaluation.benign_texts(seed=0, total_bytes=1_000_000)
    count, size, _ = evaluation.false_positives(benign, evaluation.ours)
    peer_count, _, _ = evaluation.false_positives(benign, presidio())
    lines.append(
        f"benign {size / 1000:.0f} KB: ours {count / size * 100_000:.2f} FP/100KB, "
        f"presidio {peer_count / size * 100_000:.2f} FP/100KB"
    )
    leaks = sum(
        1
        for case in cases + secrets
        for _kind, start, end in case.spans
        if case.text[start:end] in mask_pii(case.text)
    )
    lines.append(f"mask_pii: {leaks} of {sum(len(c.spans) for c in cases + secrets)} values left")
    rows = evaluation.injection_cases(seed=0)
    verdicts = [scan_injection(text) for text, _, _ in rows]
    labels = [label for _, label, _ in rows]
    attacks = [v.flagged for v, label in zip(verdicts, labels, strict=True) if label]
    benign_flags = [v.flagged for v, label in zip(verdicts, labels, strict=True) if not label]
    lines.append(
        f"injection: recall {sum(attacks) / len(attacks):.3f} ({len(attacks)} attacks), "
        f"FPR {sum(benign_flags) / len(benign_flags):.4f} ({len(benign_flags)} benign), "
        f"AUC {evaluation.roc_auc([v.score for v in verdicts], labels):.4f}"
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(ours[kind]["values"] for kind in evaluation.KINDS)
