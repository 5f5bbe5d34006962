"""The ``spans`` and ``stats`` commands: read the local span database from the command line.

``instrumentation-sdk spans [--last N] [--trace ID] [--errors] [--since 1h] [--json] [--db PATH]``
``instrumentation-sdk stats [--since 1h] [--by model|provider|service|session] [--json]
[--db PATH]``

``cli.py`` wires them in with ``add_store_commands(subparsers)`` and dispatches with
``run_store_command(args)`` when ``args.command in STORE_COMMANDS``. Until then (and for tests)
``python -m instrumentation_sdk.cli_store spans ...`` runs them on their own.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from .exporters.sqlite import DB_ENV_VAR
from .store import (
    PERCENTILES,
    STATS_GROUP_COLUMNS,
    TTFT_PERCENTILES,
    StoreError,
    count_spans,
    list_spans,
    open_store,
    parse_since,
    span_stats,
    store_size,
)

__all__ = ["STORE_COMMANDS", "add_store_commands", "main", "run_store_command"]

#: The subcommands this module adds and runs.
STORE_COMMANDS: Final = frozenset({"spans", "stats"})

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_LAST: Final = 20
_ERROR_WIDTH: Final = 60


class _UsageError(Exception):
    """Bad input: reported in one line, exit status 2."""


def add_store_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``spans`` and ``stats`` to the ``instrumentation-sdk`` subcommands (``dest="command"``).

    >>> parser = argparse.ArgumentParser(prog="instrumentation-sdk")
    >>> add_store_commands(parser.add_subparsers(dest="command", required=True))
    >>> args = parser.parse_args(["stats", "--by", "provider", "--since", "1h"])
    >>> args.command, args.by, args.since
    ('stats', 'provider', '1h')
    """
    db_help = f"the span database (default: ${DB_ENV_VAR}, else the per-user data directory)"
    since_help = "only spans that started within this window: 45s, 30m, 1h, 2d, 1w"

    spans = subparsers.add_parser(
        "spans",
        help="list recent spans, newest first",
        description=(
            "List the spans the sqlite exporter stored, newest first: time, trace and span ids "
            "(shortened), model, provider, status, duration, prompt/completion tokens, error."
        ),
    )
    # --last and --since are validated by run_store_command, so a bad value is one line.
    spans.add_argument(
        "-n",
        "--last",
        metavar="N",
        help=f"show at most N spans (default: {DEFAULT_LAST}; all spans of a trace with --trace)",
    )
    spans.add_argument(
        "--trace", metavar="ID", help="only this trace (the full id or a prefix, as shown)"
    )
    spans.add_argument("--errors", action="store_true", help="only spans that ended in an error")
    spans.add_argument("--since", metavar="WINDOW", help=since_help)
    spans.add_argument("--json", action="store_true", help="print one JSON list of records")
    spans.add_argument(
        "--tree",
        action="store_true",
        help="show each trace as a tree: children indented under their parent, in start order",
    )
    spans.add_argument("--db", metavar="PATH", help=db_help)

    stats = subparsers.add_parser(
        "stats",
        help="latency and TTFT percentiles, errors, tokens and cost per model/provider/service",
        description=(
            "Per model, provider or service: span count, errors, error rate, p50/p95/p99 "
            "latency (exact, nearest-rank), prompt/completion token totals, cost in USD (from "
            "the price table when each span was stored; '-' for unpriced models) and, for "
            "streamed spans, time to first token p50/p95."
        ),
    )
    stats.add_argument("--since", metavar="WINDOW", help=since_help)
    stats.add_argument(
        "--by",
        choices=tuple(STATS_GROUP_COLUMNS),
        default="model",
        help="group by this (default: model)",
    )
    stats.add_argument("--json", action="store_true", help="print one JSON list of groups")
    stats.add_argument("--db", metavar="PATH", help=db_help)


def run_store_command(args: argparse.Namespace) -> int:
    """Run ``spans`` or ``stats`` from parsed ``args``; returns the exit status.

    Bad input (a negative ``--last``, a bad ``--since`` or ``--trace``, a missing or foreign
    database) prints ``instrumentation-sdk <command>: error: ...`` on stderr and returns 2; a
    database failure while reading (e.g. corruption) returns 1 the same way.
    """
    command = args.command
    try:
        if command == "spans":
            return _spans(args)
        if command == "stats":
            return _stats(args)
        raise _UsageError(f"unknown command {command!r}")
    except (_UsageError, StoreError) as error:
        _error(command, str(error))
        return EXIT_USAGE
    except sqlite3.Error as error:
        _error(command, f"reading the span database failed: {error}")
        return EXIT_FAILURE
    except BrokenPipeError:
        # `... | head` closed the pipe: not an error worth a traceback. Point stdout at devnull
        # so the interpreter's final flush does not complain either.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK


def _error(command: str, message: str) -> None:
    sys.stderr.write(f"instrumentation-sdk {command}: error: {_one_line(message)}\n")


def _since_ns(text: str | None) -> int | None:
    if text is None:
        return None
    if text.strip().startswith("-"):
        window = text.strip()[1:]
        raise _UsageError(
            f"--since is a look-back window, never negative: --since {window} means spans that "
            f"started within the last {window}, got {text!r}"
        )
    try:
        return time.time_ns() - parse_since(text)
    except ValueError as error:
        raise _UsageError(f"--since: {error}") from None


def _last(text: str | None, trace: str | None) -> int | None:
    if text is None:
        return None if trace is not None else DEFAULT_LAST
    try:
        value = int(text.strip())
    except ValueError:
        raise _UsageError(f"--last expects a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise _UsageError(f"--last expects a whole number >= 0, got {text!r}")
    return value


def _spans(args: argparse.Namespace) -> int:
    if getattr(args, "tree", False) and args.json:
        raise _UsageError("--tree and --json do not go together (--json has parent_span_id)")
    last = _last(args.last, args.trace)
    since_ns = _since_ns(args.since)
    with open_store(args.db) as store:
        try:
            records = list_spans(
                store,
                last=last,
                trace_id=args.trace,
                errors_only=args.errors,
                since_ns=since_ns,
            )
        except ValueError as error:  # a --trace that is not hex
            raise _UsageError(f"--trace: {error}") from None
        total = count_spans(store) if not records else 0
    if args.json:
        _write(msgspec.json.encode(records).decode() + "\n")
        return EXIT_OK
    if not records:
        if total == 0:
            _write(f"no spans yet in {store.path}\n")
        else:
            _write(f"no spans match ({total} in {store.path})\n")
        return EXIT_OK
    if getattr(args, "tree", False):
        _write(_tree(records))
        return EXIT_OK
    headers = ["TIME", "TRACE", "SPAN", "MODEL", "PROVIDER", "STATUS", "MS", "PROMPT", "COMPL"]
    headers.append("ERROR")
    rows = [_span_row(record) for record in records]
    _write(_table(headers, rows, right={"MS", "PROMPT", "COMPL"}))
    return EXIT_OK


def _tree(records: list[dict[str, Any]]) -> str:
    """The spans of each trace (newest trace first) as a tree: a span's children are indented
    under it, oldest first. A span whose parent is not among ``records`` (cut off by ``--last``
    or ``--since``, or from another process's trace) is shown as a root of its trace."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        traces.setdefault(record["trace_id"], []).append(record)
    headers = ["TIME", "TRACE", "SPAN", "NAME", "MODEL", "SERVICE", "STATUS", "MS", "PROMPT"]
    headers += ["COMPL", "ERROR"]
    rows: list[list[str]] = []
    for spans in traces.values():
        ids = {span["span_id"] for span in spans}
        children: dict[str | None, list[dict[str, Any]]] = {}
        for span in sorted(spans, key=lambda r: (r["start_time_unix_nano"], r["span_id"])):
            parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
            children.setdefault(parent, []).append(span)
        # Depth first, iteratively: a deep (or cyclic, in a hand-edited store) chain is fine.
        stack = [(span, 0) for span in reversed(children.get(None, []))]
        seen: set[str] = set()
        while stack:
            span, depth = stack.pop()
            if span["span_id"] in seen:
                continue
            seen.add(span["span_id"])
            row = _span_row(span)
            # Single spaces only: table cells are put on one line with runs of spaces squeezed.
            indent = "· " * (depth - 1) + "└─ " if depth else ""
            rows.append(
                [*row[:3], indent + span["name"], row[3], span["service_name"] or "-", *row[5:]]
            )
            stack.extend(
                (child, depth + 1) for child in reversed(children.get(span["span_id"], []))
            )
    return _table(headers, rows, right={"MS", "PROMPT", "COMPL"})


def _span_row(record: dict[str, Any]) -> list[str]:
    metadata = record["metadata"]
    error = ""
    if record["status"] == "error" or record["error_type"]:
        error = ": ".join(part for part in (record["error_type"], record["error_message"]) if part)
    return [
        _local_time(record["start_time_unix_nano"]),
        record["trace_id"][:8],
        record["span_id"][:8],
        record["model"],
        record["provider"] or "-",
        record["status"],
        f"{record['duration_ms']:.1f}",
        _token_cell(metadata.get("prompt_tokens")),
        _token_cell(metadata.get("completion_tokens")),
        _truncate(error, _ERROR_WIDTH),
    ]


def _local_time(unix_nano: int) -> str:
    """``2025-01-31 14:05:09.123`` in the local time zone (integer arithmetic: no rounding up)."""
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    try:
        start = datetime.fromtimestamp(seconds).astimezone()
    except (OverflowError, OSError, ValueError):  # out of the platform's range
        return str(unix_nano)
    return start.strftime("%Y-%m-%d %H:%M:%S.") + f"{nanos // 1_000_000:03d}"


def _stats(args: argparse.Namespace) -> int:
    since_ns = _since_ns(args.since)
    with open_store(args.db) as store:
        groups = span_stats(store, since_ns=since_ns, by=args.by)
        total = count_spans(store) if not groups else 0
        size = store_size(store)
    if args.json:
        _write(msgspec.json.encode(groups).decode() + "\n")
        return EXIT_OK
    if not groups:
        if total == 0:
            _write(f"no spans yet in {store.path}\n")
        else:
            _write(f"no spans in this window ({total} in {store.path})\n")
        return EXIT_OK
    percentile_headers = [f"P{p} MS" for p in PERCENTILES]
    headers = [args.by.upper(), "COUNT", "ERRORS", "ERR %", *percentile_headers]
    headers += ["PROMPT TOK", "COMPL TOK", "COST USD"]
    # Time to first token only means something for streamed spans: shown when some streamed.
    ttft = [p for p in TTFT_PERCENTILES if any(g[f"ttft_p{p}_ms"] is not None for g in groups)]
    headers += [f"TTFT P{p} MS" for p in ttft]
    rows = [
        [
            "-" if group["group"] is None else str(group["group"]),
            str(group["count"]),
            str(group["errors"]),
            f"{group['error_rate'] * 100:.1f}",
            *(f"{group[f'p{p}_ms']:.1f}" for p in PERCENTILES),
            _token_cell(group["prompt_tokens"]),
            _token_cell(group["completion_tokens"]),
            _cost_cell(group["cost_usd"]),
            *(_ms_cell(group[f"ttft_p{p}_ms"]) for p in ttft),
        ]
        for group in groups
    ]
    _write(_table(headers, rows, right=set(headers[1:])))
    _write(_store_line(store.path, size))
    costs = [group["cost_usd"] for group in groups if group["cost_usd"] is not None]
    if costs:
        _write(f"total cost: ${_cost_cell(sum(costs))} (models without a price have none)\n")
    return EXIT_OK


def _store_line(path: object, size: dict[str, Any]) -> str:
    """``store: PATH, 6123 spans, 4.0 MiB in use (4.9 MiB on disk), oldest 2026-...``."""
    oldest = size["oldest_start_unix_nano"]
    return (
        f"\nstore: {path}, {size['spans']} spans, {_mib(size['used_bytes'])} in use "
        f"({_mib(size['file_bytes'])} on disk)"
        + (f", oldest {_local_time(oldest)}" if oldest is not None else "")
        + "\n"
    )


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def _cost_cell(value: float | None) -> str:
    """Dollars: 4 decimals, 6 below a cent (a short call costs millionths); ``-`` unpriced."""
    if value is None:
        return "-"
    return f"{value:.4f}" if value >= 0.01 else f"{value:.6f}"


def _ms_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _token_cell(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "-"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _truncate(text: str, width: int) -> str:
    text = _one_line(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(headers: list[str], rows: list[list[str]], right: set[str]) -> str:
    """Aligned columns separated by two spaces; ``right`` names the right-aligned ones."""
    cells = [[_one_line(cell) for cell in row] for row in rows]
    widths = [max(len(headers[i]), *(len(row[i]) for row in cells)) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        parts = [
            value.rjust(width) if header in right else value.ljust(width)
            for header, value, width in zip(headers, values, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "".join(line(row) + "\n" for row in [headers, *cells])


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        # A console or pipe whose encoding cannot show some model name or error message
        # (e.g. cp1252 on Windows): replace those characters rather than fail.
        encoding = sys.stdout.encoding or "utf-8"
        sys.stdout.write(text.encode(encoding, "replace").decode(encoding))
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``spans`` and ``stats`` on their own: ``python -m instrumentation_sdk.cli_store ...``."""
    parser = argparse.ArgumentParser(
        prog="instrumentation-sdk",
        description="Read the local span database: recent spans and statistics.",
    )
    add_store_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_store_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
