"""The local dashboard over the span store: ``instrumentation-sdk ui``.

Pages (``/``, ``/traces/{trace_id}``, ``/sessions/{session_id}``), their assets (shipped in the
package, nothing fetched from the internet) and a JSON API under ``/api/`` that the pages use and
scripts can call (described at ``/openapi.json``). Run it with the CLI, or under any ASGI server::

    uvicorn --factory instrumentation_sdk.ui:create_ui_app --port 8003

>>> app = create_ui_app("/tmp/spans.db")
>>> app.db_path.name
'spans.db'
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import DashboardApp

__all__ = ["create_ui_app"]


def create_ui_app(
    db_path: str | os.PathLike[str] | None = None, *, auth_token: str | None = None
) -> DashboardApp:
    """The dashboard as an ASGI app over the span database at ``db_path`` (default: the
    exporter's path). With ``auth_token``, every path but ``/healthz`` needs it."""
    from .app import DashboardApp

    return DashboardApp(None if db_path is None else os.fspath(db_path), auth_token=auth_token)
