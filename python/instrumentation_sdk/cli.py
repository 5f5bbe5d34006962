"""The ``instrumentation-sdk`` command line.

``instrumentation-sdk count [TEXT | -] [--file PATH ...] [--model M] [--messages] [--json]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, cast

import msgspec

from . import __version__
from .cli_serve import SERVE_COMMANDS, add_serve_command, run_serve_command
from .cli_store import STORE_COMMANDS, add_store_commands, run_store_command
from .cli_ui import UI_COMMANDS, add_ui_command, run_ui_command
from .server.errors import ApiError
from .server.messages import check_messages
from .server.schemas import MAX_MODEL_NAME_CHARS
from .tokens import DEFAULT_MODEL, Prompt, TokenCount, count_tokens

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C

#: Options whose value may start with "-" (argparse would take ``-1h`` for an option and answer
#: "expected one argument"; given to the command, it gets a message that explains).
_DASH_VALUE_OPTIONS = frozenset({"--since"})


class CliError(Exception):
    """A problem with the command's input, reported in one line with exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr, from the (sub-)command
    that owns them, with a hint instead of the whole usage; exit status 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see '{self.prog} --help')\n")


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--since -1h`` as ``--since=-1h``, so the command sees the value (and explains it)."""
    joined: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if (
            arg in _DASH_VALUE_OPTIONS
            and following
            and following.startswith("-")
            and following != "-"
        ):
            joined.append(f"{arg}={following}")
            index += 2
            continue
        joined.append(arg)
        index += 1
    return joined


def parse_command_line(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``argv``; an argument the sub-command does not know is reported by that
    sub-command (its usage), not by the top-level parser."""
    args, extras = parser.parse_known_args(
        _join_dash_values(sys.argv[1:] if argv is None else argv)
    )
    if extras:
        owner = parser
        command = getattr(args, "command", None)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                owner = action.choices[command]
        owner.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="instrumentation-sdk",
        description="Observe LLM calls: count prompt tokens locally, exactly.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Sub-commands are OneLineParsers too (argparse makes them of the parent's class).
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )

    count = commands.add_parser(
        "count",
        help="count the tokens of a text, stdin or files",
        description=(
            "Count prompt tokens as MODEL sees them: exact (tiktoken's BPE) for OpenAI models, "
            "a calibrated estimate for others. Reads TEXT, stdin ('-' or no TEXT), or --file."
        ),
    )
    count.add_argument("text", nargs="?", metavar="TEXT", help="the text; '-' reads stdin")
    count.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="count this file (UTF-8; repeat for several files)",
    )
    count.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})"
    )
    count.add_argument(
        "--messages",
        action="store_true",
        help="the input is a JSON list of chat messages, counted by the OpenAI cookbook rule",
    )
    count.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_store_commands(commands)
    add_serve_command(commands)
    add_ui_command(commands)
    return parser


def _read_sources(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, text) for each input, in the order given."""
    sources: list[tuple[str, str]] = []
    if args.text is not None and args.text != "-":
        sources.append(("<text>", args.text))
    for name in args.file:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CliError(f"cannot read {name}: {error.strerror or error}") from None
        # Invalid UTF-8 becomes U+FFFD rather than an error: counting must not refuse a file.
        sources.append((name, data.decode("utf-8", errors="replace")))
    if args.text == "-" or (args.text is None and not args.file):
        if args.text is None and sys.stdin.isatty():
            raise CliError("give TEXT, '-' to read stdin, or --file PATH")
        data = sys.stdin.buffer.read()
        sources.append(("<stdin>", data.decode("utf-8", errors="replace")))
    return sources


def _prompt(label: str, text: str, messages: bool) -> Prompt:
    if not messages:
        return text
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as error:
        raise CliError(f"{label}: --messages expects a JSON list of messages: {error}") from None
    if not isinstance(value, list):
        raise CliError(f"{label}: --messages expects a JSON list, got {type(value).__name__}")
    if all(isinstance(message, dict) for message in value):  # else count_tokens names it
        try:
            check_messages(value, "$")  # the service's rule for the fields, and its wording
        except ApiError as error:
            raise CliError(f"{label}: {error.field}: {error.detail}") from None
    return value


def _check_model(model: str) -> None:
    """The service's rule for a model name (it answers 422 otherwise)."""
    if not model:
        raise CliError("--model must not be empty: give a model name such as gpt-4o")
    if len(model) > MAX_MODEL_NAME_CHARS:
        raise CliError(f"--model is longer than {MAX_MODEL_NAME_CHARS} characters")


def _count(args: argparse.Namespace) -> int:
    _check_model(args.model)
    results: list[tuple[str, TokenCount]] = []
    for label, text in _read_sources(args):
        try:
            results.append((label, count_tokens(_prompt(label, text, args.messages), args.model)))
        except TypeError as error:
            raise CliError(f"{label}: {error}") from None

    if args.json:
        records = [
            {
                "source": label,
                "model": args.model,
                "tokens": count.tokens,
                "method": count.method,
                "encoding": count.encoding,
            }
            for label, count in results
        ]
        out = records[0] if len(records) == 1 else records
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
        return EXIT_OK

    for label, count in results:
        how = f"{count.method}, {count.encoding}" if count.encoding else count.method
        prefix = f"{label}: " if len(results) > 1 else ""
        sys.stdout.write(f"{prefix}{count.tokens} tokens ({how}, model {args.model})\n")
    if len(results) > 1:
        total = sum(count.tokens for _, count in results)
        sys.stdout.write(f"total: {total} tokens\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (130 after Ctrl-C, with one line)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        try:
            sys.stderr.write("instrumentation-sdk: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = parse_command_line(_parser(), argv)
    if args.command in STORE_COMMANDS:
        return run_store_command(args)
    if args.command in SERVE_COMMANDS:
        return run_serve_command(args)
    if args.command in UI_COMMANDS:
        return run_ui_command(args)
    try:
        if args.command == "count":
            return _count(args)
    except CliError as error:
        sys.stderr.write(f"instrumentation-sdk {args.command}: error: {error}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `... | head` closed the pipe: not an error worth a traceback.
        return EXIT_OK
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects others


if __name__ == "__main__":
    raise SystemExit(main())
