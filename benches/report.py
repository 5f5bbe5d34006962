"""Markdown summary of a pytest-benchmark JSON from the benchmarks in ``benches/``.

    python -m pytest benches/test_bench_counting.py --benchmark-enable \
        --benchmark-json=/tmp/bench.json -p no:cacheprovider -q
    python benches/report.py /tmp/bench.json

Token counting (``test_bench_counting.py``): one row per shape: the median time per round
(``--stat min|mean`` for another statistic) of ours / tiktoken / bpe-openai, the speed ratios
``tiktoken_time / ours_time`` and ``bpe_time / ours_time`` (> 1 means ours is faster), and our
throughput in MB/s (10^6 bytes of input counted per second, repeats included).

Spans (``test_bench_spans.py``): the request thread's time per span of ours / OpenTelemetry /
a bare context manager, and the ratio ``otel_time / ours_time`` against the 15x target; the same
for spans that count a 2 KB prompt. Pipeline (``test_bench_pipeline.py``): sustained spans/s
through the flusher to JSONL and SQLite, and resident memory under a stalled exporter.
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
    "base64_100k",
    "minified_js_100k",
    "japanese",
    "korean",
    "cache_60k_x50",
)
SPAN_GROUPS = ("span_request_cost", "span_with_tokens")
PIPELINE_GROUPS = ("pipeline_throughput", "pipeline_memory")
SPAN_TARGET_RATIO = 15.0


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


def _suite(bench: dict) -> str:
    """``counting``, ``spans`` or ``pipeline``."""
    suite = bench.get("extra_info", {}).get("suite")
    if suite in ("spans", "pipeline"):
        return suite
    group = bench.get("group")
    if group in SPAN_GROUPS:
        return "spans"
    if group in PIPELINE_GROUPS:
        return "pipeline"
    return "counting"


def build_rows(data: dict, stat: str = "median") -> list[dict]:
    shapes: dict[str, dict] = {}
    for bench in data.get("benchmarks", []):
        if _suite(bench) != "counting":
            continue
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
    rows = build_rows(data, stat)
    others = [b for b in data.get("benchmarks", []) if _suite(b) != "counting"]
    if rows or not others:
        lines.extend(render_counting(rows, stat))
    if others:
        if rows:
            lines.append("")
        lines.extend(render_spans(data, stat))
    return "\n".join(lines)


def render_counting(rows: list[dict], stat: str) -> list[str]:
    lines = []
    lines.append(
        "| shape | encoding | work / round | ours | tiktoken | bpe-openai "
        "| tiktoken / ours | bpe-openai / ours | ours MB/s |"
    )
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
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
    return lines


# -- spans and pipeline ----------------------------------------------------------------------------

SPAN_VARIANTS = {
    "span_request_cost": (
        ("ours", "`llm_span` + 3 `set_metadata`, flusher exporting to JSONL meanwhile"),
        ("otel", "OTel SDK span + 3 `set_attribute`, `BatchSpanProcessor` -> no-op exporter"),
        ("bare_cm", "bare context manager storing 3 dict items (the floor)"),
    ),
    "span_with_tokens": (
        ("ours_distinct", "`llm_span_with_tokens`, a distinct 2 KB prompt per span (cache miss)"),
        ("ours_cached", "`llm_span_with_tokens`, one repeated 2 KB prompt (cache hit)"),
        ("otel_tiktoken", "OTel SDK span + official tiktoken `encode_ordinary`, distinct prompts"),
    ),
}


def _by_impl(data: dict, group: str) -> dict[str, dict]:
    found = {}
    for bench in data.get("benchmarks", []):
        if bench.get("group") == group and _suite(bench) != "counting":
            impl = bench.get("extra_info", {}).get("impl") or _impl_of(bench)
            if impl is None and "[" in bench.get("name", ""):
                impl = bench["name"].rsplit("[", 1)[1].rstrip("]")
            found[impl] = bench
    return found


def _times_x(peer: float | None, ours: float | None) -> str:
    return f"{peer / ours:.3g}x" if peer and ours else "—"


def _span_table(benches: dict[str, dict], group: str, stat: str, base: str) -> list[str]:
    lines = [
        "| variant | what | median / span | min / span | mean / span | spans/s (median) "
        f"| rounds x iterations | {stat} vs {base} |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    base_time = benches[base]["stats"][stat] if base in benches else None
    for impl, what in SPAN_VARIANTS[group]:
        bench = benches.get(impl)
        if bench is None:
            lines.append(f"| {impl} | {what} | skipped | | | | | |")
            continue
        st, info = bench["stats"], bench.get("extra_info", {})
        shape = f"{info.get('rounds', st.get('rounds', '?'))} x {info.get('iterations', '?')}"
        lines.append(
            f"| {impl} | {what} | {_fmt_time(st['median'])} | {_fmt_time(st['min'])} "
            f"| {_fmt_time(st['mean'])} | {1 / st['median']:,.0f} | {shape} "
            f"| {_times_x(st[stat], base_time)} |"
        )
    return lines


def render_spans(data: dict, stat: str = "median") -> list[str]:
    lines: list[str] = []
    cost = _by_impl(data, "span_request_cost")
    if cost:
        lines.append("### Span cost on the request thread (`span_request_cost`)")
        lines.append("")
        lines.extend(_span_table(cost, "span_request_cost", stat, "ours"))
        lines.append("")
        ours, otel, floor = (
            cost[k]["stats"][stat] if k in cost else None for k in ("ours", "otel", "bare_cm")
        )
        if ours and otel:
            ratio = otel / ours
            verdict = "met" if ratio >= SPAN_TARGET_RATIO else "**not met**"
            text = (
                f"OTel / ours ({stat}): **{ratio:.1f}x** "
                f"(target >= {SPAN_TARGET_RATIO:.0f}x: {verdict})."
            )
            if floor is not None and ours > floor:
                text += (
                    f" Above the bare-context-manager floor: ours {_fmt_time(ours - floor)}, "
                    f"OTel {_fmt_time(otel - floor)} ({(otel - floor) / (ours - floor):.1f}x)."
                )
            lines.append(text)
            lines.append("")
    tokens = _by_impl(data, "span_with_tokens")
    if tokens:
        lines.append("### Spans that count a 2 KB prompt (`span_with_tokens`)")
        lines.append("")
        lines.extend(_span_table(tokens, "span_with_tokens", stat, "ours_distinct"))
        lines.append("")
        distinct, cached, peer = (
            tokens[k]["stats"][stat] if k in tokens else None
            for k in ("ours_distinct", "ours_cached", "otel_tiktoken")
        )
        notes = []
        if distinct and peer:
            notes.append(
                f"OTel + tiktoken / ours ({stat}, distinct prompts): **{peer / distinct:.1f}x**"
            )
        if cached and peer:
            notes.append(f"OTel + tiktoken / ours ({stat}, cache hit): **{peer / cached:.1f}x**")
        if notes:
            lines.append("; ".join(notes) + ".")
            lines.append("")
    lines.extend(render_pipeline(data, stat))
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _fmt_mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def render_pipeline(data: dict, stat: str = "median") -> list[str]:
    lines: list[str] = []
    throughput = _by_impl(data, "pipeline_throughput")
    if throughput:
        lines.append("### Sustained throughput through the flusher (`pipeline_throughput`)")
        lines.append("")
        lines.append(
            f"| exporter | producers x spans / round | rounds | {stat} wall | spans/s "
            "(median round) | spans/s (best round) | spans/s per round | producers done after "
            "| still to export then | exported / produced | dropped |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---|---|---|---:|---:|")
        for name in sorted(throughput, key=lambda n: (n != "jsonl", n)):
            bench = throughput[name]
            info, st = bench.get("extra_info", {}), bench["stats"]
            acc = info.get("accounting", {})
            per_round = ", ".join(f"{r:,}" for r in info.get("spans_per_s_rounds", []))
            lines.append(
                f"| {info.get('exporter', name)} "
                f"| {info.get('producers', '?')} x {info.get('spans_per_producer', 0):,} "
                f"| {st.get('rounds', '?')} | {_fmt_time(st[stat])} "
                f"| **{info.get('spans_per_s', 0):,}** | {info.get('spans_per_s_best', 0):,} "
                f"| {per_round} "
                f"| {', '.join(f'{t:.2f} s' for t in info.get('produce_s_rounds', []))} "
                f"| {', '.join(f'{n:,}' for n in info.get('backlog_rounds', []))} "
                f"| {acc.get('exported', '?'):,} / {acc.get('produced', '?'):,} "
                f"| {acc.get('dropped', '?')} |"
            )
        lines.append("")
        lines.append(
            "Wall time from starting the producer threads until `flush()` returned (every span "
            "written); the buffer holds a whole round, and each round asserts nothing was dropped "
            'and the file holds every span. "Still to export": spans buffered or in flight when '
            "the last producer finished (what the flusher had not caught up with)."
        )
        lines.append("")
    memory = _by_impl(data, "pipeline_memory")
    for bench in memory.values():
        info = bench.get("extra_info", {})
        during = info.get("accounting_stalled", {})
        after = info.get("accounting_after_release", {})
        lines.append("### Memory with a stalled exporter (`pipeline_memory`)")
        lines.append("")
        lines.append(
            "| spans | buffer capacity | RSS before | RSS after | growth | bound "
            "| held by exporter | dropped_buffer_full | exported after release |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        lines.append(
            f"| {info.get('spans', 0):,} | {info.get('buffer_capacity', 0):,} "
            f"| {_fmt_mib(info.get('rss_before', 0))} | {_fmt_mib(info.get('rss_after', 0))} "
            f"| **{_fmt_mib(info.get('rss_growth', 0))}** | {_fmt_mib(info.get('rss_bound', 0))} "
            f"| {info.get('in_flight', '?')} | {during.get('dropped_buffer_full', 0):,} "
            f"| {after.get('exported', 0):,} |"
        )
        lines.append("")
        spans, capacity = info.get("spans", 0), info.get("buffer_capacity", 0)
        lines.append(
            f"dropped_buffer_full = {spans:,} - {capacity:,} - {info.get('in_flight', 0)} "
            f"(held by the exporter); produced {after.get('produced', 0):,} = exported "
            f"{after.get('exported', 0):,} + dropped {after.get('dropped', 0):,}."
        )
        lines.append("")
    return lines


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
