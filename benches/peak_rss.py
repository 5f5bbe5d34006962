"""Peak resident memory of a fresh process that counts one text of every counting shape on o200k.

    python benches/peak_rss.py            # ours, tiktoken and bpe-openai, one process each

Each implementation runs in its own fresh interpreter: it loads, counts the first text of every
o200k shape of ``test_bench_counting.py`` once, and reports ``ru_maxrss`` (the peak, in MiB),
next to the same process's peak before it loaded anything (interpreter plus texts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPLS = ("ours", "tiktoken", "bpe_openai")

_CHILD = r"""
import json, resource, sys, types
# The text generators only: a stand-in for pytest keeps its ~10 MB out of the figure.
sys.modules["pytest"] = types.SimpleNamespace(
    mark=types.SimpleNamespace(benchmark=lambda **k: (lambda f: f)),
    fixture=lambda *a, **k: (lambda f: f),
)
sys.path.insert(0, sys.argv[2])
import test_bench_counting as bench

texts = [
    text
    for case in bench.CASES.values()
    if case.encoding == "o200k_base" and case.repeats == 1
    for text in case.pool(max(1, case.texts_per_round))[: case.texts_per_round]
]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.path.insert(0, sys.argv[3])
import conftest

count = conftest._LOADERS[sys.argv[1]]("o200k_base")
tokens = sum(count(text) for text in texts)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"texts": len(texts), "tokens": tokens, "before_mib": before, "peak_mib": peak}))
"""


def measure(impl: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, impl, str(HERE), str(HERE)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("| implementation | texts | tokens | peak RSS | before loading |")
    print("|---|---:|---:|---:|---:|")
    for impl in IMPLS:
        try:
            r = measure(impl)
        except subprocess.CalledProcessError as e:
            print(f"| {impl} | unavailable: {e.stderr.strip().splitlines()[-1:]} | | | |")
            continue
        print(
            f"| {impl} | {r['texts']} | {r['tokens']:,} | {r['peak_mib']:.1f} MiB "
            f"| {r['before_mib']:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
