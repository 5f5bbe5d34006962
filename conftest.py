"""Settings for every pytest run (tests and benches).

Spans ended anywhere in a test session must never land in the developer's real store
(``~/.local/share/instrumentation-sdk/spans.db``): point the default SQLite exporter at a
throw-away database unless the caller chose one.
"""

from __future__ import annotations

import os
import tempfile

if not os.environ.get("INSTRUMENTATION_SDK_DB"):
    _scratch = tempfile.mkdtemp(prefix="instrumentation-sdk-tests-")
    os.environ["INSTRUMENTATION_SDK_DB"] = os.path.join(_scratch, "spans.db")
