"""The command line's edges (issue 10), run as real subprocesses: Ctrl-C, one-line errors with
a hint (never the whole usage), a sub-command's own usage for its errors, an empty model, a
negative --since, and the ``spans --tree`` view."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from instrumentation_sdk import configure, flush, llm_span, shutdown
from instrumentation_sdk.exporters import SqliteExporter

CLI = shutil.which("instrumentation-sdk")
COMMAND = [CLI] if CLI else [sys.executable, "-m", "instrumentation_sdk"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], prog: str, text: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert text in lines[0], lines[0]
    assert "usage:" not in result.stderr
    assert "--help" in lines[0], "a hint says where to look"


def wait_until_reading(pid: int, timeout: float = 60.0) -> None:
    """Until the process blocks reading its stdin pipe. Linux tells (``/proc/PID/wchan``); a
    fixed sleep raced a slow start on a busy machine (the signal came before the read)."""
    wchan = Path(f"/proc/{pid}/wchan")
    if not wchan.exists():
        time.sleep(2.0)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "pipe" in wchan.read_text():
            time.sleep(0.2)  # the read is the command's: nothing else it does waits on a pipe
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never blocked reading stdin")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process group is POSIX")
def test_ctrl_c_exits_130_with_one_short_line() -> None:
    proc = subprocess.Popen(
        [*COMMAND, "count", "-"],
        stdin=subprocess.PIPE,  # left open: the command waits on stdin
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    wait_until_reading(proc.pid)  # imported and blocked in the read
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err
    assert err.strip() == "instrumentation-sdk: interrupted", err
    assert out == ""


@pytest.mark.parametrize(
    ("args", "prog", "text"),
    [
        (("frobnicate",), "instrumentation-sdk", "invalid choice: 'frobnicate'"),
        (("count", "--bogus"), "instrumentation-sdk count", "unrecognized arguments: --bogus"),
        (("spans", "--last"), "instrumentation-sdk spans", "--last"),
        (("stats", "--by", "colour"), "instrumentation-sdk stats", "invalid choice: 'colour'"),
        (("serve", "--port", "x"), "instrumentation-sdk serve", "invalid int value: 'x'"),
        ((), "instrumentation-sdk", "COMMAND"),
    ],
)
def test_usage_errors_are_one_line_from_the_command_that_owns_them(
    args: tuple[str, ...], prog: str, text: str
) -> None:
    assert_one_line_error(run(*args), prog, text)


def test_an_empty_model_is_refused_as_the_service_refuses_it() -> None:
    result = run("count", "-m", "", "Hello")
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.startswith("instrumentation-sdk count: error: --model"), result.stderr
    assert "empty" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_too_long_model_is_refused_as_the_service_refuses_it() -> None:
    result = run("count", "-m", "m" * 257, "Hello")
    assert result.returncode == 2, result
    assert "--model" in result.stderr
    assert "256" in result.stderr


def test_messages_are_checked_as_the_service_checks_them() -> None:
    result = run("count", "--messages", "-", stdin='[{"role": 5, "content": "hi"}]')
    assert result.returncode == 2, result
    assert result.stderr.strip() == (
        "instrumentation-sdk count: error: <stdin>: $[0].role: `role` must be a string, "
        "got a number"
    )


@pytest.mark.parametrize("window", ["-1h", "-30m"])
def test_a_negative_since_is_explained(tmp_path: Path, window: str) -> None:
    for command in ("spans", "stats"):
        result = run(command, "--db", str(tmp_path / "none.db"), "--since", window)
        assert result.returncode == 2, result
        line = result.stderr.strip()
        assert line.startswith(f"instrumentation-sdk {command}: error: --since"), line
        assert "expected one argument" not in line
        assert "look-back" in line, line
        assert window[1:] in line, line


@pytest.fixture
def nested_store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store holding one trace: router -> (planner -> writer), (critic); and one other root."""
    path = tmp_path / "tree.db"
    configure(exporter=SqliteExporter(path), flush_interval=0.05)
    try:
        ids: dict[str, str] = {}
        with llm_span("router-v2", name="route") as router:
            ids["router"] = router.span_id
            with llm_span("gpt-4o", name="plan") as planner:
                ids["planner"] = planner.span_id
                with llm_span("gpt-4o-mini", name="write") as writer:
                    ids["writer"] = writer.span_id
            with llm_span("claude-3", name="critique") as critic:
                ids["critic"] = critic.span_id
        ids["trace"] = router.trace_id
        with llm_span("other", name="elsewhere") as other:
            ids["other_trace"] = other.trace_id
        assert flush(timeout=10.0)
    finally:
        shutdown(timeout=5.0)
    return path, ids


def test_spans_tree_shows_the_nesting_of_a_trace(nested_store: tuple[Path, dict[str, str]]) -> None:
    path, ids = nested_store
    result = run("spans", "--db", str(path), "--trace", ids["trace"][:8], "--tree")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    body = [
        line
        for line in lines
        if any(name in line for name in ("route", "plan", "write", "critique"))
    ]
    assert len(body) == 4, result.stdout
    depth = {
        name: next(line for line in body if f" {name} " in f" {line} ").index(name)
        for name in ("route", "plan", "write", "critique")
    }
    assert depth["route"] < depth["plan"] < depth["write"], result.stdout
    assert depth["plan"] == depth["critique"], result.stdout
    order = [next(n for n in ("route", "plan", "write", "critique") if n in line) for line in body]
    assert order == ["route", "plan", "write", "critique"], result.stdout
    assert "elsewhere" not in result.stdout


def test_spans_tree_without_a_trace_groups_each_trace(
    nested_store: tuple[Path, dict[str, str]],
) -> None:
    path, ids = nested_store
    result = run("spans", "--db", str(path), "--tree")
    assert result.returncode == 0, result
    assert ids["trace"][:8] in result.stdout
    assert ids["other_trace"][:8] in result.stdout
    assert "elsewhere" in result.stdout
    assert "write" in result.stdout


def test_spans_tree_json_is_refused_as_a_usage_error(
    nested_store: tuple[Path, dict[str, str]],
) -> None:
    path, _ = nested_store
    result = run("spans", "--db", str(path), "--tree", "--json")
    assert result.returncode == 2
    assert "--tree" in result.stderr
    assert "--json" in result.stderr


def test_spans_json_still_lists_parents(nested_store: tuple[Path, dict[str, str]]) -> None:
    path, ids = nested_store
    records = json.loads(run("spans", "--db", str(path), "--trace", ids["trace"], "--json").stdout)
    parents = {r["span_id"]: r["parent_span_id"] for r in records}
    assert parents[ids["writer"]] == ids["planner"]
