"""The ``ui`` command: serve the local dashboard over the span store with uvicorn.

``instrumentation-sdk ui [--db PATH] [--host 127.0.0.1] [--port 8003] [--auth-token TOKEN]``

Binds the socket first, then prints the URL to open (with ``?token=`` when a token is set) and
serves until SIGTERM or Ctrl-C. Loopback by default; any other address needs a token.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import quote

from .cli_serve import _clean_exit_on_signals, is_loopback
from .exporters.sqlite import DB_ENV_VAR, default_db_path
from .store import StoreError, open_store

__all__ = ["ENV_UI_TOKEN", "UI_COMMANDS", "add_ui_command", "main", "run_ui_command"]

#: The subcommands this module adds and runs.
UI_COMMANDS: Final = frozenset({"ui"})
#: Environment variable holding the dashboard's token (keeps it out of `ps`).
ENV_UI_TOKEN: Final = "INSTRUMENTATION_SDK_UI_TOKEN"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8003
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


def add_ui_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ui`` to the ``instrumentation-sdk`` subcommands (``dest="command"``).

    >>> parser = argparse.ArgumentParser(prog="instrumentation-sdk")
    >>> add_ui_command(parser.add_subparsers(dest="command", required=True))
    >>> args = parser.parse_args(["ui", "--port", "9000"])
    >>> args.command, args.host, args.port
    ('ui', '127.0.0.1', 9000)
    """
    ui = subparsers.add_parser(
        "ui",
        help="open the local dashboard: traces, charts and cost over the span store",
        description=(
            "Serve the dashboard over the span database: overview charts and tables, traces as "
            "tree and waterfall, sessions, and a JSON API under /api/ (see /openapi.json). "
            "Binds 127.0.0.1 unless told otherwise; any other address needs --auth-token."
        ),
    )
    ui.add_argument(
        "--db",
        metavar="PATH",
        help=f"the span database (default: ${DB_ENV_VAR}, else the per-user data directory)",
    )
    ui.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})"
    )
    ui.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind (default: {DEFAULT_PORT}; 0 picks a free one)",
    )
    ui.add_argument(
        "--auth-token",
        metavar="TOKEN",
        help=(
            "require this token on every page and API call (the printed URL carries it once, "
            f"then a cookie does; default: ${ENV_UI_TOKEN})"
        ),
    )
    ui.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="warning",
        help="server log level (default: warning)",
    )


def _error(message: str) -> None:
    sys.stderr.write(f"instrumentation-sdk ui: error: {message}\n")


def run_ui_command(args: argparse.Namespace) -> int:
    """Run ``ui`` from parsed ``args`` until SIGTERM or Ctrl-C; returns the exit status.

    Bad input (a port out of range, a non-loopback address without a token, an empty token)
    prints ``instrumentation-sdk ui: error: ...`` and returns 2; a server that cannot start
    (the port is taken, uvicorn missing) returns 1.
    """
    if not 0 <= args.port <= 65535:
        _error(f"--port must be 0-65535, got {args.port}")
        return EXIT_USAGE
    token = args.auth_token if args.auth_token is not None else os.environ.get(ENV_UI_TOKEN)
    if token is not None and not token.strip():
        _error("--auth-token must not be empty")
        return EXIT_USAGE
    if not is_loopback(args.host) and token is None:
        _error(
            f"listening on {args.host} would show every stored span (prompts included) to anyone "
            f"who can reach it: set --auth-token or ${ENV_UI_TOKEN}, or bind 127.0.0.1"
        )
        return EXIT_USAGE
    try:
        import uvicorn
    except ImportError:
        _error("the dashboard needs uvicorn: pip install 'instrumentation-sdk[server]'")
        return EXIT_FAILURE
    from .ui import create_ui_app

    db = Path(args.db).expanduser() if args.db is not None else default_db_path()
    if db.exists():
        # A file that is there but unreadable as a store would only ever answer 503: say so now.
        try:
            open_store(db).close()
        except StoreError as error:
            _error(f"--db: {error}")
            return EXIT_USAGE
    try:
        family = socket.AF_INET6 if ":" in args.host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as error:
        _error(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
        return EXIT_FAILURE
    port = sock.getsockname()[1]
    host = f"[{args.host.strip('[]')}]" if family == socket.AF_INET6 else args.host
    url = f"http://{host}:{port}/" + (f"?token={quote(token)}" if token else "")
    if not db.exists():
        sys.stderr.write(
            f"instrumentation-sdk ui: no span database at {db} yet: the pages will fill in once "
            "spans are exported there\n"
        )
    sys.stdout.write(f"instrumentation-sdk ui: serving {db}\nopen {url}\n")
    sys.stdout.flush()
    config = uvicorn.Config(
        create_ui_app(db, auth_token=token),
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    try:
        with _clean_exit_on_signals():
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        sock.close()
    return EXIT_OK if server.started else EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """``ui`` on its own: ``python -m instrumentation_sdk.cli_ui ui ...``."""
    parser = argparse.ArgumentParser(prog="instrumentation-sdk", description="The local dashboard.")
    add_ui_command(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_ui_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
