"""``scripts/record_openai_prompt_shapes.py``, the recorder of the shapes the pre-count estimates,
run as a subprocess against the local stand-in of the OpenAI API (a real server on a real port)
through the real ``openai`` client: what it sends is what it writes, and rows recorded anywhere
but api.openai.com are never counted as billed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_providers import FakeProviders
from test_openai_precount import _billed_by_openai

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "record_openai_prompt_shapes.py"


def _run(*args: str, key: str | None = "sk-fake") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    if key is not None:
        env["OPENAI_API_KEY"] = key
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120
    )


def _cases(*groups: str) -> list[tuple[str, str, dict[str, Any]]]:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import record_openai_prompt_shapes as script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return [case for case in script.cases() if case[0] in groups]


def test_records_what_it_sends_with_the_billed_count(tmp_path: Path) -> None:
    out = tmp_path / "shapes.json"
    with FakeProviders() as server:
        done = _run("--out", str(out), "--base-url", server.url + "/v1", "--only", "calls")
        sent = [r["json"] for r in server.requests if r["path"] == "/v1/chat/completions"]
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["chat"]
    expected = _cases("calls")
    assert len(rows) == len(expected) == len(sent) == 16
    usage = json.loads(__import__("fake_providers").RECORDINGS["openai_chat_tools"]["body"])
    for row, (_group, name, request), body in zip(rows, expected, sent, strict=True):
        assert row["source"].endswith("#" + name)
        assert row["request"] == request == body  # what was sent, as sent
        assert row["prompt_tokens"] == usage["usage"]["prompt_tokens"]
        assert row["response_id"] == usage["id"]
        assert row["uri"] == server.url + "/v1/chat/completions"
        assert not _billed_by_openai(row)  # a stand-in's answer is never counted
        # Two calls in the assistant message, each answered by a tool message.
        calls = [m for m in request["messages"] if m.get("tool_calls")]
        assert len(calls) == 1
        assert len(calls[0]["tool_calls"]) == 2
        assert sum(m["role"] == "tool" for m in request["messages"]) == 2
    # The table names each case with the billed count and ours.
    assert all(name in done.stdout for _group, name, _request in expected)
    assert "16 recorded, 0 failed" in done.stdout


def test_each_group_varies_one_thing() -> None:
    schema = _cases("schema")
    models = {request["model"] for _g, _n, request in schema}
    assert models == {"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini"}
    # One schema everywhere; with no system message, a system one, a developer one.
    assert len({json.dumps(r["response_format"]["json_schema"]["schema"]) for *_, r in schema}) == 1
    roles = {r["messages"][0]["role"] for *_, r in schema}
    assert roles == {"user", "system", "developer"}
    keywords = _cases("keywords")
    assert len(keywords) == 12
    for *_, request in _cases("models"):
        assert "max_completion_tokens" in request
        assert "max_tokens" not in request


def test_append_adds_new_rows_once(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"about": "x", "chat": [], "embeddings": []}))
    out = tmp_path / "shapes.json"
    with FakeProviders() as server:
        base = ("--out", str(out), "--base-url", server.url + "/v1", "--only", "models")
        first = _run(*base, "--append", str(data))
        second = _run(*base, "--append", str(data))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "8 added" in first.stdout
    assert "0 added" in second.stdout
    stored = json.loads(data.read_text())
    assert len(stored["chat"]) == 8
    assert stored["about"] == "x"


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (("--out", "x.json"), None, "set OPENAI_API_KEY"),
        (("--out", "x.json", "--append", "no-such.json"), "sk-fake", "no data file at"),
        (("--out", "x.json", "--only", "nothing"), "sk-fake", "invalid choice"),
    ],
)
def test_bad_invocations_say_why(args: tuple[str, ...], key: str | None, message: str) -> None:
    done = _run(*args, key=key)
    assert done.returncode == 2
    assert message in done.stderr


def test_failed_requests_are_reported(tmp_path: Path) -> None:
    """A request the API refuses (here every one: the stand-in has no such route) is reported
    on stderr with its error, the rest goes on, and nothing recorded is an exit status of 1."""
    out = tmp_path / "shapes.json"
    with FakeProviders() as server:
        done = _run("--out", str(out), "--base-url", server.url + "/nowhere", "--only", "models")
    assert done.returncode == 1
    assert done.stderr.count("failed: NotFoundError") == 8
    assert json.loads(out.read_text())["chat"] == []
    assert "0 recorded, 8 failed" in done.stdout
