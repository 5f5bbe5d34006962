"""The service's metrics, rendered in the Prometheus text exposition format (``GET /metrics``).

All figures are per process: with ``serve --workers N`` each worker keeps its own (scrape the
workers one by one, or run one worker per container). Updates happen on the event loop's thread
only, so they need no lock.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping
from typing import Final

__all__ = ["CONTENT_TYPE", "COUNT_SECONDS_BUCKETS", "Histogram", "Metrics"]

CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the counting-latency histogram's buckets.
COUNT_SECONDS_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_P: Final = "instrumentation_sdk_"
# token_cache_stats() key -> (metric name, type, help)
_CACHE: Final = (
    ("hits", "token_cache_hits_total", "counter", "Counts answered from the count cache."),
    ("misses", "token_cache_misses_total", "counter", "Cacheable texts counted afresh."),
    ("entries", "token_cache_entries", "gauge", "Counts held in the cache."),
    ("max_entries", "token_cache_max_entries", "gauge", "The cache's capacity."),
    (
        "tokenizer_faults",
        "tokenizer_faults_total",
        "counter",
        "Inputs the BPE engine failed on (estimated instead); expected to stay 0.",
    ),
)


class Histogram:
    """Cumulative-bucket histogram of observations (Prometheus semantics)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = COUNT_SECONDS_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        """The ``_bucket``, ``_sum`` and ``_count`` samples; ``labels`` is ``k="v",`` or ``""``."""
        out = []
        cumulative = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}le="{le}"}} {cumulative}')
        inner = labels.rstrip(",")
        suffix = f"{{{inner}}}" if inner else ""
        out.append(f"{name}_sum{suffix} {self.sum!r}")
        out.append(f"{name}_count{suffix} {self.count}")
        return out


class Metrics:
    """Request, error, counting and cache figures of one app."""

    __slots__ = ("count_seconds", "prompts", "requests", "started", "tokens")

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, int], int] = {}
        self.count_seconds: dict[str, Histogram] = {}
        self.prompts: dict[str, int] = {}
        self.tokens = 0

    def record_response(self, route: str, status: int) -> None:
        """One response sent for ``route`` (a route path, or ``unmatched``)."""
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def observe_count(self, endpoint: str, seconds: float, prompts: int, tokens: int) -> None:
        """One counting call for ``endpoint`` (``count`` or ``batch``)."""
        histogram = self.count_seconds.get(endpoint)
        if histogram is None:
            histogram = self.count_seconds[endpoint] = Histogram()
        histogram.observe(seconds)
        self.prompts[endpoint] = self.prompts.get(endpoint, 0) + prompts
        self.tokens += tokens

    def render(self, cache_stats: Mapping[str, int], version: str) -> bytes:
        """Everything in the Prometheus text format, with ``cache_stats`` from the core."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> str:
            full = _P + name
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            return full

        name = family("build_info", "gauge", "The instrumentation-sdk version serving.")
        lines.append(f'{name}{{version="{_escape(version)}"}} 1')
        name = family("start_time_seconds", "gauge", "When the service started (Unix time).")
        lines.append(f"{name} {self.started!r}")

        name = family("http_requests_total", "counter", "HTTP responses by route and status.")
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'{name}{{route="{_escape(route)}",status="{status}"}} {n}')
        errors: dict[int, int] = {}
        for (_, status), n in self.requests.items():
            if status >= 400:
                errors[status] = errors.get(status, 0) + n
        name = family("http_errors_total", "counter", "HTTP error responses (4xx, 5xx) by status.")
        for status, n in sorted(errors.items()):
            lines.append(f'{name}{{status="{status}"}} {n}')

        name = family(
            "count_duration_seconds",
            "histogram",
            "Time spent counting per request (a batch counts as one), thread hop included.",
        )
        for endpoint in sorted(self.count_seconds):
            lines.extend(self.count_seconds[endpoint].lines(name, f'endpoint="{endpoint}",'))
        name = family("prompts_counted_total", "counter", "Prompts counted, by endpoint.")
        for endpoint, n in sorted(self.prompts.items()):
            lines.append(f'{name}{{endpoint="{endpoint}"}} {n}')
        name = family("prompt_tokens_total", "counter", "Tokens counted in all prompts.")
        lines.append(f"{name} {self.tokens}")

        for key, metric, kind, help_text in _CACHE:
            if key in cache_stats:
                name = family(metric, kind, help_text)
                lines.append(f"{name} {int(cache_stats[key])}")
        return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
