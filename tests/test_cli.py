"""The ``instrumentation-sdk`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from instrumentation_sdk import count_tokens

CLI = shutil.which("instrumentation-sdk")


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    command = [CLI] if CLI else [sys.executable, "-m", "instrumentation_sdk"]
    return subprocess.run(
        [*command, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )


def test_console_script_is_installed() -> None:
    assert CLI is not None, "the instrumentation-sdk console script is not on PATH"


def test_count_text_human() -> None:
    result = run("count", "Hello world!", "--model", "gpt-4o")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3 tokens (tiktoken, o200k_base, model gpt-4o)\n"


def test_count_text_json() -> None:
    result = run("count", "Hello world!", "--model", "gpt-4", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "source": "<text>",
        "model": "gpt-4",
        "tokens": 3,
        "method": "tiktoken",
        "encoding": "cl100k_base",
    }


def test_default_model_is_gpt_4o() -> None:
    result = run("count", "Hello world!", "--json")
    assert json.loads(result.stdout)["encoding"] == "o200k_base"


def test_count_stdin_dash_and_implicit() -> None:
    text = "Привет, как дела? 你好 <|endoftext|>"
    expected = count_tokens(text, "gpt-4o").tokens
    for args in (("count", "-", "--json"), ("count", "--json")):
        result = run(*args, stdin=text.encode())
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["source"] == "<stdin>"
        assert record["tokens"] == expected


def test_count_files_and_total(tmp_path: Path) -> None:
    first = tmp_path / "a.txt"
    second = tmp_path / "b.py"
    first.write_text("The quick brown fox jumps over the lazy dog.", encoding="utf-8")
    second.write_text("def f(x):\n    return x * 2\n", encoding="utf-8")
    result = run("count", "-f", str(first), "--file", str(second), "-m", "gpt-4")
    assert result.returncode == 0, result.stderr
    a = count_tokens(first.read_text(), "gpt-4").tokens
    b = count_tokens(second.read_text(), "gpt-4").tokens
    assert result.stdout.splitlines() == [
        f"{first}: {a} tokens (tiktoken, cl100k_base, model gpt-4)",
        f"{second}: {b} tokens (tiktoken, cl100k_base, model gpt-4)",
        f"total: {a + b} tokens",
    ]


def test_invalid_utf8_file_is_counted_with_replacement(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff\xfe bytes")
    result = run("count", "--file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    expected = count_tokens("ok \ufffd\ufffd bytes", "gpt-4o").tokens
    assert json.loads(result.stdout)["tokens"] == expected


def test_unknown_model_uses_heuristic() -> None:
    result = run("count", "some words for a local model", "--model", "llama-3-8b", "--json")
    record = json.loads(result.stdout)
    assert record["method"] == "heuristic"
    assert record["encoding"] is None
    assert record["tokens"] > 0


def test_messages_from_stdin() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    result = run("count", "--messages", "--json", stdin=json.dumps(messages).encode())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tokens"] == 19  # shared/token-golden, gpt-4o


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("count", "--file", "/nonexistent/prompt.txt"), None, "cannot read /nonexistent"),
        (("count", "--messages", "-"), b"not json", "expects a JSON list of messages"),
        (("count", "--messages", "-"), b'{"role": "user"}', "expects a JSON list, got dict"),
        (("count", "--messages", "-"), b'["hi"]', "prompt[0] must be a chat message"),
    ],
)
def test_bad_input_is_one_clear_line(
    args: tuple[str, ...], stdin: bytes | None, message: str
) -> None:
    result = run(*args, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_version() -> None:
    from instrumentation_sdk import __version__

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"instrumentation-sdk {__version__}"
