"""HTTP load benchmark: ``instrumentation-sdk serve`` against the service a user would write.

Both servers run side by side in the same session, each one uvicorn worker with the same
settings (uvloop and httptools when installed; no access log):

* ``ours``      -- ``instrumentation-sdk serve`` (``python -m instrumentation_sdk.cli_serve serve``
  until the console script has ``serve``)
* ``reference`` -- ``benches/reference_server.py``: Starlette + uvicorn + official tiktoken

For a 40-byte, a 4 KB and a 100 KB prompt, ``load_client.py`` (another process: asyncio, raw
HTTP/1.1, 16 keep-alive connections, closed loop) measures requests/s and p50/p99 latency. Every
request's prompt is distinct (our count cache never answers: checked on ``/metrics``) and every
answer's ``prompt_tokens`` is checked. The two servers take turns, ``ROUNDS`` times per size,
so that a noisy neighbour hurts both alike; the figures add the rounds up.

Under plain ``pytest`` (``--benchmark-disable``, the default) each case is a short smoke run
(correct answers, no errors). The real run, about 1 minute, also requires ours to be ahead::

    python -m pytest benches/test_bench_server.py --benchmark-enable -p no:cacheprovider -q -s
    python benches/test_bench_server.py      # the same, without pytest: prints the table
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from instrumentation_sdk import count_tokens

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load_client import base_text, prompt  # noqa: E402

SIZES = (40, 4096, 100_000)
SERVERS = ("ours", "reference")
MODEL = "gpt-4o"
CONNECTIONS = 16


@dataclass(frozen=True)
class Plan:
    """How long each server is loaded per size: ``rounds`` turns of ``duration`` seconds."""

    rounds: int
    duration: float
    warmup: float


REAL = Plan(rounds=3, duration=3.0, warmup=0.5)
SMOKE = Plan(rounds=1, duration=0.3, warmup=0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_command() -> list[str]:
    script = Path(sys.executable).with_name("instrumentation-sdk")
    if not script.is_file():
        script = Path(shutil.which("instrumentation-sdk") or "-")
    if script.is_file():
        probe = subprocess.run([str(script), "serve", "--help"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [str(script), "serve"]
    return [sys.executable, "-m", "instrumentation_sdk.cli_serve", "serve"]


class Running:
    """One server process on a free port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = _free_port()
        if name == "ours":
            command = [*_serve_command(), "--port", str(self.port), "--log-level", "warning"]
        else:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "reference_server:app",
                "--app-dir",
                str(HERE),
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        body = msgspec.json.encode({"prompt": "warm up", "model": MODEL})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} server exited {self.proc.returncode}"
            try:
                status, _ = self.request("POST", "/v1/token-counting/count", body)
                if status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{self.name} server not ready in 60 s")

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """One request on a fresh connection: (status, body)."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head_bytes, _, payload = data.partition(b"\r\n\r\n")
        return int(head_bytes[9:12]), payload

    def cache_hits(self) -> int:
        status, text = self.request("GET", "/metrics")
        assert status == 200
        match = re.search(rb"^instrumentation_sdk_token_cache_hits_total (\d+)$", text, re.M)
        assert match is not None
        return int(match.group(1))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def expected_tokens(size: int) -> int:
    """The token count of every prompt of this size (the same whatever the request number)."""
    base = base_text(size)
    counts = {count_tokens(prompt(n, base), MODEL).tokens for n in (0, 1, 123456789, 999999999)}
    assert len(counts) == 1, f"{size}: the count depends on the request number: {counts}"
    return counts.pop()


_RUNS = iter(range(1, 100))


def load(server: Running, size: int, plan: Plan, expect: int) -> dict[str, Any]:
    """Run ``load_client.py`` against ``server`` once; its JSON summary. Each run numbers its
    requests from its own range, so no prompt is ever sent twice."""
    command = [
        sys.executable,
        str(HERE / "load_client.py"),
        "--port",
        str(server.port),
        "--size",
        str(size),
        "--model",
        MODEL,
        "--connections",
        str(CONNECTIONS),
        "--duration",
        str(plan.duration),
        "--warmup",
        str(plan.warmup),
        "--expect",
        str(expect),
        "--first",
        str(next(_RUNS) * 10_000_000),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.stdout, f"load client failed: {done.stderr}"
    result: dict[str, Any] = msgspec.json.decode(done.stdout)
    assert result["errors"] == 0, f"{server.name} {size} B: {result['first_error']}"
    assert result["requests"] > 0, f"{server.name} {size} B: no request completed"
    return result


def compare(servers: dict[str, Running], size: int, plan: Plan) -> dict[str, dict[str, Any]]:
    """Both servers under the same load, taking turns; per server: rps, p50, p99 (ms)."""
    expect = expected_tokens(size)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    hits_before = servers["ours"].cache_hits()
    for turn in range(plan.rounds):
        order = SERVERS if turn % 2 == 0 else SERVERS[::-1]
        for name in order:
            runs[name].append(load(servers[name], size, plan, expect))
    assert servers["ours"].cache_hits() == hits_before, "our count cache answered a request"
    summary = {}
    for name, results in runs.items():
        requests = sum(r["requests"] for r in results)
        seconds = sum(r["seconds"] for r in results)
        summary[name] = {
            "rps": requests / seconds,
            "requests": requests,
            # The rounds' percentiles, weighted by their requests (close to the pooled ones).
            "p50_ms": sum(r["p50_ms"] * r["requests"] for r in results) / requests,
            "p99_ms": sum(r["p99_ms"] * r["requests"] for r in results) / requests,
            "tokens": expect,
        }
    return summary


def table(rows: dict[int, dict[str, dict[str, Any]]]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| prompt | ours req/s | reference req/s | speedup | ours p50 / p99 ms "
        "| reference p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for size, result in rows.items():
        ours, ref = result["ours"], result["reference"]
        label = f"{size:,} B"
        lines.append(
            f"| {label} ({ours['tokens']} tokens) | {ours['rps']:,.0f} | {ref['rps']:,.0f} "
            f"| {ours['rps'] / ref['rps']:.2f}x | {ours['p50_ms']:.2f} / {ours['p99_ms']:.2f} "
            f"| {ref['p50_ms']:.2f} / {ref['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Running]]:
    started: dict[str, Running] = {}
    try:
        for name in SERVERS:
            started[name] = Running(name)
        yield started
    finally:
        for running in started.values():
            running.stop()


_RESULTS: dict[int, dict[str, dict[str, Any]]] = {}


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[dict[int, dict[str, dict[str, Any]]]]:
    yield _RESULTS
    if len(_RESULTS) == len(SIZES):
        text = "\nHTTP load, 1 worker each, 16 connections:\n" + table(_RESULTS) + "\n"
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            sys.stdout.write(text)
        else:
            with capture.global_and_fixture_disabled():
                sys.stdout.write(text)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.benchmark(group="server_load")
def test_server_load(
    benchmark: Any,
    servers: dict[str, Running],
    report: dict[int, dict[str, dict[str, Any]]],
    size: int,
) -> None:
    plan = REAL if benchmark.enabled else SMOKE
    result = benchmark.pedantic(compare, args=(servers, size, plan), rounds=1, iterations=1)
    report[size] = result
    benchmark.extra_info.update(size=size, connections=CONNECTIONS, plan=plan.__dict__, **result)
    if benchmark.enabled:
        ours, ref = result["ours"]["rps"], result["reference"]["rps"]
        assert ours > ref, f"{size} B: ours {ours:.0f} req/s, reference {ref:.0f} req/s"


def main() -> int:
    """The real run without pytest: prints the Markdown table."""
    os.environ.setdefault(
        "TIKTOKEN_CACHE_DIR", str(HERE.parent.parent / "shared" / "tiktoken-cache")
    )
    started = {name: Running(name) for name in SERVERS}
    try:
        rows = {size: compare(started, size, REAL) for size in SIZES}
    finally:
        for running in started.values():
            running.stop()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
