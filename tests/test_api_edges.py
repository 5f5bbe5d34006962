"""Small API points of issue 10: an out-of-range token count says so, ``warmup`` refuses a name it
cannot load, ``configure`` names an unknown keyword and sets the store path, the quickstart
says where the store is, and the default encoding loads off the request path."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from instrumentation_sdk import configure, flush, get_settings, llm_span, warmup

REPO = Path(__file__).resolve().parent.parent


def sdk_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "instrumentation_sdk" and record.levelno >= logging.WARNING
    ]


@pytest.mark.usefixtures("exporter")
@pytest.mark.parametrize("value", [2**70, -(2**63) - 1])
def test_an_int_token_count_out_of_range_says_out_of_range(
    caplog: pytest.LogCaptureFixture, fresh_faults: None, value: int
) -> None:
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"), llm_span("m") as span:
        span.set_metadata("prompt_tokens", value)
    assert span.metadata["prompt_tokens"] == value  # kept as given, exported as JSON
    warnings = sdk_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "out of range" in warnings[0], warnings
    assert "expects an int" not in warnings[0], warnings


@pytest.mark.usefixtures("exporter")
def test_a_wrong_type_still_says_expects_an_int(
    caplog: pytest.LogCaptureFixture, fresh_faults: None
) -> None:
    with caplog.at_level(logging.WARNING, logger="instrumentation_sdk"), llm_span("m") as span:
        span.set_metadata("prompt_tokens", "many")
    assert any("expects an int" in w for w in sdk_warnings(caplog))


@pytest.mark.parametrize("names", [["nope"], ["gpt-4o", "nope"], "claude-3-opus"])
def test_warmup_refuses_a_name_it_cannot_load(names: list[str] | str) -> None:
    with pytest.raises(ValueError, match=r"nope|claude-3-opus") as raised:
        warmup(names)
    assert "warmup" in str(raised.value)


def test_warmup_takes_encoding_names_too() -> None:
    assert set(warmup(["cl100k_base", "gpt-4"])) == {"cl100k_base"}


def test_configure_names_an_unknown_keyword_in_a_type_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        configure(bogus=1)  # type: ignore[call-arg]


@pytest.mark.usefixtures("exporter")
def test_configure_sets_the_store_path(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "store.db"
    configure(exporter="sqlite", sqlite_path=path)
    assert get_settings().sqlite_path == str(path)
    with llm_span("gpt-4o"):
        pass
    assert flush(timeout=10.0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 1


@pytest.mark.usefixtures("exporter")
@pytest.mark.parametrize("bad", ["", 5])
def test_configure_refuses_a_bad_store_path(bad: object) -> None:
    with pytest.raises(ValueError, match="sqlite_path"):
        configure(sqlite_path=bad)  # type: ignore[arg-type]


def test_the_quickstart_prints_where_the_store_is(tmp_path: Path) -> None:
    db = tmp_path / "quick.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INSTRUMENTATION_SDK_")},
        "INSTRUMENTATION_SDK_DB": str(db),
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(db) in result.stdout, result.stdout
    assert db.exists()


_BACKGROUND_LOAD = """
import sys
from instrumentation_sdk import _core, configure, warmup
configure(exporter="none")  # the pipeline starts: the default encoding starts loading
assert _core.wait_for_preload(30.0)  # nothing else loads it meanwhile
print(warmup(["gpt-4o"])["o200k_base"])
"""


def test_the_default_encoding_loads_in_the_background_when_the_pipeline_starts() -> None:
    """``warmup`` reports 0.0 seconds for an encoding already loaded: here nothing but the
    pipeline's start could have loaded it."""
    result = subprocess.run(
        [sys.executable, "-c", _BACKGROUND_LOAD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 0.0, result.stdout


_FORK_DURING_PRELOAD = """
import ctypes, os, sys
from instrumentation_sdk import _core, count_tokens
libc = ctypes.CDLL(None, use_errno=True)
_core.preload_encodings(["o200k_base"])
pid = libc.fork()  # from C, as uWSGI forks: no Python at-fork hook runs
if pid == 0:
    os._exit(0 if count_tokens("Hello world!", "gpt-4o").tokens == 3 else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_fork_from_c_during_the_background_load_leaves_the_child_able_to_count() -> None:
    """Without the core's fork guard, the child would inherit the load-once cell mid-load,
    locked by a thread it does not have, and hang on its first count."""
    result = subprocess.run(
        [sys.executable, "-c", _FORK_DURING_PRELOAD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
