"""The ``serve`` command: run the token-counting HTTP service under uvicorn.

``instrumentation-sdk serve [--host 127.0.0.1] [--port 8002] [--workers N]
[--max-body-bytes 16MiB] [--auth-token TOKEN] [--access-log] [--graceful-timeout 30]``

``cli.py`` wires it in with ``add_serve_command(subparsers)`` and dispatches with
``run_serve_command(args)`` when ``args.command in SERVE_COMMANDS``. Until then (and for tests)
``python -m instrumentation_sdk.cli_serve serve ...`` runs it on its own.

SIGTERM (or Ctrl-C) shuts down gracefully: the server stops accepting connections, lets the
requests in flight finish (for at most ``--graceful-timeout`` seconds), then exits with status 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType
from typing import Any, Final

from .server.settings import (
    DEFAULT_MAX_BODY_BYTES,
    ENV_AUTH_TOKEN,
    ENV_MAX_BODY_BYTES,
    ServerSettings,
    parse_size,
)

__all__ = ["SERVE_COMMANDS", "add_serve_command", "main", "run_serve_command"]

#: The subcommands this module adds and runs.
SERVE_COMMANDS: Final = frozenset({"serve"})

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8002
DEFAULT_GRACEFUL_TIMEOUT: Final = 30
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
_LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")


class _UsageError(Exception):
    """Bad input: reported in one line, exit status 2."""


def add_serve_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``instrumentation-sdk`` subcommands (``dest="command"``).

    >>> parser = argparse.ArgumentParser(prog="instrumentation-sdk")
    >>> add_serve_command(parser.add_subparsers(dest="command", required=True))
    >>> args = parser.parse_args(["serve", "--port", "9000"])
    >>> args.command, args.host, args.port
    ('serve', '127.0.0.1', 9000)
    """
    serve = subparsers.add_parser(
        "serve",
        help="run the token-counting HTTP service",
        description=(
            "Serve POST /v1/token-counting/count (and /count/batch, GET /v1/models, /healthz, "
            "/metrics, /openapi.json, /docs) with uvicorn. Binds 127.0.0.1 unless told otherwise."
        ),
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default: {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes (default: 1; each counts on all cores for large prompts)",
    )
    serve.add_argument(
        "--max-body-bytes",
        metavar="SIZE",
        help=(
            "refuse larger request bodies with 413: 1048576, 10MB, 16MiB... "
            f"(default: ${ENV_MAX_BODY_BYTES}, else {DEFAULT_MAX_BODY_BYTES >> 20}MiB)"
        ),
    )
    serve.add_argument(
        "--auth-token",
        metavar="TOKEN",
        help=(
            "require 'Authorization: Bearer TOKEN' on every /v1/ route "
            f"(default: ${ENV_AUTH_TOKEN}; the variable keeps the token out of `ps`)"
        ),
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    serve.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info", help="server log level (default: info)"
    )
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help=(
            "on SIGTERM, wait this long for requests in flight before cancelling them "
            f"(default: {DEFAULT_GRACEFUL_TIMEOUT})"
        ),
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("example.com")
    (False, False)
    """
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _settings(args: argparse.Namespace) -> ServerSettings:
    try:
        settings = ServerSettings.from_env()
    except ValueError as error:
        raise _UsageError(str(error)) from None
    if args.max_body_bytes is not None:
        try:
            settings = replace(settings, max_body_bytes=parse_size(args.max_body_bytes))
        except ValueError as error:
            raise _UsageError(f"--max-body-bytes: {error}") from None
    if args.auth_token is not None:
        settings = replace(settings, auth_token=args.auth_token)
    try:
        return settings.validated()
    except ValueError as error:
        option = "--auth-token" if "auth_token" in str(error) else "--max-body-bytes"
        raise _UsageError(f"{option}: {error}") from None


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise _UsageError(f"--port must be 0-65535, got {args.port}")
    if args.workers < 1:
        raise _UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.graceful_timeout < 0:
        raise _UsageError(f"--graceful-timeout must be >= 0, got {args.graceful_timeout}")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Stands in for the default handlers while uvicorn runs: see ``_clean_exit_on_signals``."""


@contextmanager
def _clean_exit_on_signals() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal against the
    handlers it found, which would kill the process with the signal (or raise
    KeyboardInterrupt). With these no-op handlers in place, a graceful shutdown exits 0."""
    names = ("SIGTERM", "SIGINT")
    previous = {}
    for name in names:
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, _ignore)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_serve_command(args: argparse.Namespace) -> int:
    """Run ``serve`` from parsed ``args`` until SIGTERM or Ctrl-C; returns the exit status.

    Bad input prints ``instrumentation-sdk serve: error: ...`` on stderr and returns 2; a server
    that cannot start (the port is taken, the ``server`` extra is missing) returns 1.
    """
    try:
        _check(args)
        settings = _settings(args)
    except _UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    try:
        import uvicorn
    except ImportError:
        _error("the server needs uvicorn: pip install 'instrumentation-sdk[server]'")
        return EXIT_FAILURE
    if not is_loopback(args.host) and settings.auth_token is None:
        sys.stderr.write(
            f"instrumentation-sdk serve: warning: listening on {args.host} without an auth "
            f"token: anyone who can reach port {args.port} can use the service; set "
            f"--auth-token or ${ENV_AUTH_TOKEN}\n"
        )

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "access_log": args.access_log,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": args.graceful_timeout,
        "lifespan": "on",
        "server_header": False,
    }
    try:
        with _clean_exit_on_signals():
            if args.workers == 1:
                from .server import create_app

                config = uvicorn.Config(create_app(settings), **options)
                server = uvicorn.Server(config)
                server.run()
                return EXIT_OK if server.started else EXIT_FAILURE
            # Worker processes build their own app from the environment.
            os.environ[ENV_MAX_BODY_BYTES] = str(settings.max_body_bytes)
            if settings.auth_token is not None:
                os.environ[ENV_AUTH_TOKEN] = settings.auth_token
            uvicorn.run(
                "instrumentation_sdk.server:create_app",
                factory=True,
                workers=args.workers,
                **options,
            )
            return EXIT_OK
    except SystemExit as exit_:  # uvicorn exits 3 when it cannot start (e.g. port taken)
        return EXIT_OK if exit_.code in (None, 0) else EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _error(message: str) -> None:
    sys.stderr.write(f"instrumentation-sdk serve: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``serve`` on its own: ``python -m instrumentation_sdk.cli_serve serve ...``."""
    parser = argparse.ArgumentParser(
        prog="instrumentation-sdk",
        description="Run the token-counting HTTP service.",
    )
    add_serve_command(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_serve_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
