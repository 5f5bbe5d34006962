"""A small closed-loop HTTP/1.1 load client for the token-counting endpoint.

Run it in its own process, next to the server under test::

    python benches/load_client.py --port 8002 --size 4096 --duration 5 --connections 8

Each of ``--connections`` keep-alive connections sends ``POST /v1/token-counting/count`` and waits
for the answer before sending the next one (closed loop), for ``--warmup`` seconds that are not
measured and then ``--duration`` seconds that are. Every request's prompt is distinct (a 9-digit
request number, a newline, then a fixed text: ``--size`` bytes in all) so no server can answer
from a cache; the token count is the same for every request number, so ``--expect N`` checks
every answer's ``prompt_tokens``. Prints one JSON object: requests, errors, requests/s and the
latency percentiles in milliseconds.

It speaks raw HTTP over asyncio streams (uvloop when installed) rather than through an HTTP
library, so that on a small machine the client costs little next to the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

PATH = "/v1/token-counting/count"
PREFIX_BYTES = 10  # "%09d\n"
_SHORT = "Please summarize the meeting notes now."


def base_text(size: int) -> str:
    """The fixed part of every prompt: ``size - 10`` bytes of English or of real Python source.

    Short prompts are one English sentence; 1 KB and up are the standard library's ``asyncio``
    source, cut at a character boundary, so the counts are those of real code.
    """
    want = size - PREFIX_BYTES
    if want <= 0:
        raise ValueError(f"size must be more than {PREFIX_BYTES} bytes")
    if want <= len(_SHORT):
        text = _SHORT[:want]
    else:
        stdlib = Path(sysconfig.get_paths()["stdlib"]) / "asyncio"
        source = "".join(p.read_text(encoding="utf-8") for p in sorted(stdlib.glob("*.py")))
        while len(source.encode()) < want:
            source += source
        text = "Source:\n" + source
        text = text.encode()[:want].decode("utf-8", errors="ignore")
    return text + " " * (want - len(text.encode()))


def prompt(number: int, base: str) -> str:
    """The prompt of request ``number``: the number on 9 digits, a newline, then ``base``."""
    return f"{number:09d}\n{base}"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class _Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        encoded = msgspec.json.encode(base_text(args.size))  # b'"..."', JSON-escaped
        self.body_tail = encoded[1:] + b',"model":' + msgspec.json.encode(args.model) + b"}"
        headers = [
            f"POST {PATH} HTTP/1.1",
            f"Host: {args.host}:{args.port}",
            "Content-Type: application/json",
        ]
        if args.token:
            headers.append(f"Authorization: Bearer {args.token}")
        self.head = ("\r\n".join(headers) + "\r\nContent-Length: ").encode()
        self.numbers = itertools.count(args.first)
        self.latencies: list[float] = []
        self.requests = 0
        self.errors = 0
        self.first_error: str | None = None
        self.statuses: dict[int, int] = {}

    def request(self) -> bytes:
        body = b'{"prompt":"%09d\\n' % next(self.numbers) + self.body_tail
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body

    def note_error(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message[:300]

    async def connection(self, measure_from: float, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(self.args.host, self.args.port)
        expect = self.args.expect
        try:
            while True:
                request = self.request()
                start = time.perf_counter()
                if start >= stop_at:
                    break
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line[15:])
                body = await reader.readexactly(length)
                end = time.perf_counter()
                if start < measure_from:
                    continue
                self.requests += 1
                self.latencies.append(end - start)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status != 200:
                    self.note_error(f"HTTP {status}: {body[:200]!r}")
                elif expect is not None:
                    at = body.find(b'"prompt_tokens":')
                    end_at = body.find(b",", at)
                    got = int(body[at + 16 : end_at if end_at > 0 else body.find(b"}", at)])
                    if got != expect:
                        self.note_error(f"prompt_tokens {got}, expected {expect}")
        finally:
            writer.close()

    async def run(self) -> dict[str, Any]:
        now = time.perf_counter()
        measure_from = now + self.args.warmup
        stop_at = measure_from + self.args.duration
        await asyncio.gather(
            *(self.connection(measure_from, stop_at) for _ in range(self.args.connections))
        )
        elapsed = time.perf_counter() - measure_from
        lat = sorted(self.latencies)
        ms = 1000.0
        return {
            "size": self.args.size,
            "connections": self.args.connections,
            "seconds": round(elapsed, 3),
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rps": round(self.requests / elapsed, 1) if elapsed > 0 else 0.0,
            "p50_ms": round(percentile(lat, 0.50) * ms, 3),
            "p90_ms": round(percentile(lat, 0.90) * ms, 3),
            "p99_ms": round(percentile(lat, 0.99) * ms, 3),
            "max_ms": round((lat[-1] if lat else 0.0) * ms, 3),
        }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=40, help="prompt bytes (default 40)")
    parser.add_argument("--model", default="gpt-4o")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--expect", type=int, help="every answer's prompt_tokens must be this")
    parser.add_argument("--token", help="send Authorization: Bearer TOKEN")
    parser.add_argument(
        "--first",
        type=int,
        default=0,
        help="the first request number (runs that must not repeat a prompt use distinct ranges)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load and print the JSON summary; exit status 1 when any request failed."""
    args = _parser().parse_args(argv)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(_Run(args).run())
    else:
        result = uvloop.run(_Run(args).run())
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 1 if result["errors"] or not result["requests"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
