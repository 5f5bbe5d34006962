"""Markdown summary of a pytest-benchmark JSON from ``benches/test_bench_counting.py``.

    python -m pytest benches/test_bench_counting.py --benchmark-enable \
        --benchmark-json=/tmp/bench.json -p no:cacheprovider -q
    python benches/report.py /tmp/bench.json

One row per shape: the median time per round (``--stat min|mean`` for another statistic) of
ours / tiktoken / bpe-openai, the speed ratios ``tiktoken_time / ours_time`` and
``bpe_time / ours_time`` (> 1 means ours is faster), and our throughput in MB/s (10^6 bytes of
input counted per second, repeats included).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IMPLS = ("ours", "tiktoken", "bpe_openai")
SHAPE_ORDER = (
    "short_chat",
    "code_60k",
    "code_60k_cl100k",
    "cjk",
    "repeated_char_100k",
    "cache_60k_x50",
)


def _impl_of(bench: dict) -> str | None:
    impl = bench.get("extra_info", {}).get("impl") or bench.get("param")
    if impl is None and "[" in bench.get("name", ""):
        impl = bench["name"].rsplit("[", 1)[1].rstrip("]")
    return impl if impl in IMPLS else None


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_bytes(n: int) -> str:
    if n >= 1000:
        return f"{n / 1000:.3g} KB"
    return f"{n} B"


def _ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or not ours:
        return "—"
    r = peer / ours
    return f"**{r:.2f}x**" if r < 1 else f"{r:.2f}x"


def _work(info: dict) -> str:
    calls = info.get("calls_per_round")
    size = info.get("text_bytes")
    if not calls or size is None:
        return "?"
    return f"{calls} x {_fmt_bytes(size)}"


def build_rows(data: dict, stat: str = "median") -> list[dict]:
    shapes: dict[str, dict] = {}
    for bench in data.get("benchmarks", []):
        impl = _impl_of(bench)
        if impl is None:
            continue
        group = bench.get("group") or bench.get("extra_info", {}).get("shape") or bench["name"]
        row = shapes.setdefault(group, {"shape": group, "info": {}, "median": {}})
        row["median"][impl] = bench["stats"][stat]
        if impl == "ours" or not row["info"]:
            row["info"] = bench.get("extra_info", {})
    order = {name: i for i, name in enumerate(SHAPE_ORDER)}
    return sorted(shapes.values(), key=lambda r: (order.get(r["shape"], len(order)), r["shape"]))


def render(data: dict, stat: str = "median") -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    lines = []
    brand = cpu.get("brand_raw") or machine.get("processor") or "?"
    lines.append(
        f"Machine: {brand}, {cpu.get('count', '?')} logical CPUs, "
        f"{machine.get('python_implementation', 'Python')} {machine.get('python_version', '?')}; "
        f"run {data.get('datetime', '?')}"
    )
    lines.append("")
    lines.append(
        "| shape | encoding | work / round | ours | tiktoken | bpe-openai "
        "| tiktoken / ours | bpe-openai / ours | ours MB/s |"
    )
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for row in build_rows(data, stat):
        med = row["median"]
        info = row["info"]
        ours = med.get("ours")
        nbytes = info.get("bytes_per_round")
        mbps = f"{nbytes / ours / 1e6:,.1f}" if ours and nbytes else "—"
        lines.append(
            f"| {row['shape']} | {info.get('encoding', '?')} | {_work(info)} "
            f"| {_fmt_time(ours)} | {_fmt_time(med.get('tiktoken'))} "
            f"| {_fmt_time(med.get('bpe_openai'))} "
            f"| {_ratio(med.get('tiktoken'), ours)} | {_ratio(med.get('bpe_openai'), ours)} "
            f"| {mbps} |"
        )
    lines.append("")
    lines.append(
        f"{stat.capitalize()} time per round. Ratios are peer time / our time: "
        "> 1 means ours is faster, **bold** < 1 means ours is slower. "
        "MB/s = input bytes counted per round / our time."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="file written by --benchmark-json")
    parser.add_argument(
        "--stat",
        choices=("median", "min", "mean"),
        default="median",
        help="which per-round statistic to compare (min is steadier on a busy machine)",
    )
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text(encoding="utf-8"))
    if not data.get("benchmarks"):
        print(f"{args.json}: no benchmarks (was the run made with --benchmark-enable?)")
        return 1
    print(render(data, args.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
