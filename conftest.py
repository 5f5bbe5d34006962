"""Settings for every pytest run (tests and benches).

Spans ended anywhere in a test session must never land in the developer's real store
(``~/.local/share/instrumentation-sdk/spans.db``): point the default SQLite exporter at a
throw-away database unless the caller chose one.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest

if not os.environ.get("INSTRUMENTATION_SDK_DB"):
    _scratch = tempfile.mkdtemp(prefix="instrumentation-sdk-tests-")
    os.environ["INSTRUMENTATION_SDK_DB"] = os.path.join(_scratch, "spans.db")


#: Set by CI (`.ci/run`): "green" must mean "checked against official tiktoken", so a test that
#: would skip because tiktoken (or a peer counter) cannot load fails instead.
REQUIRE_ORACLE = os.environ.get("INSTRUMENTATION_SDK_REQUIRE_ORACLE") == "1"
#: Set by CI too: the dashboard's browser tests must run, so a skip for want of Playwright or
#: Chromium fails instead.
REQUIRE_BROWSER = os.environ.get("INSTRUMENTATION_SDK_REQUIRE_BROWSER") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        if REQUIRE_ORACLE and ("tiktoken" in reason or "bpe" in reason):
            report.outcome = "failed"
            report.longrepr = f"oracle required (INSTRUMENTATION_SDK_REQUIRE_ORACLE=1): {reason}"
        elif REQUIRE_BROWSER and ("playwright" in reason or "chromium" in reason):
            report.outcome = "failed"
            report.longrepr = f"browser required (INSTRUMENTATION_SDK_REQUIRE_BROWSER=1): {reason}"
