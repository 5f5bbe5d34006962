"""From finished spans to an exporter, off the request path.

Request threads push finished spans into the Rust core's bounded lock-free buffer and return at
once. One daemon thread per process (the flusher) drains it in batches (``batch_size`` spans or
``flush_interval`` seconds, whichever comes first), turns spans into records (bounding metadata
values), and hands each batch to the exporter, retrying failures with exponential backoff and
jitter. Every span is accounted for: ``produced = exported + dropped + buffered`` in ``stats()``.

Fork-safe: a child process never exports its parent's spans. Python's ``os.register_at_fork``
hook and the core's ``pthread_atfork`` generation check (which also sees forks made from C, as
uWSGI does) give the child an empty buffer and its own flusher, started on its first span.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from . import _core
from .config import Exporter, Settings, settings_from_env
from .tokens import token_cache_stats

__all__ = ["configure", "flush", "get_settings", "shutdown", "stats"]

logger = logging.getLogger("instrumentation_sdk")


class _NullExporter:
    """``exporter="none"``: spans are counted as exported and go nowhere."""

    def export(self, batch: list[dict[str, Any]]) -> None:
        pass


def _build_exporter(settings: Settings) -> Exporter:
    exporter = settings.exporter
    if not isinstance(exporter, str):
        return exporter
    from . import exporters

    if exporter == "sqlite":
        return exporters.SqliteExporter(settings.sqlite_path)
    if exporter == "jsonl":
        return exporters.JsonlExporter(settings.jsonl_path)
    if exporter == "console":
        return exporters.ConsoleExporter()
    if exporter == "memory":
        return exporters.InMemoryExporter()
    return _NullExporter()


class _Faults:
    """Counts the SDK's own faults by kind and logs each kind once per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.warned: set[str] = set()

    def note(self, kind: str, message: str) -> None:
        with self.lock:
            self.counts[kind] += 1
            first = kind not in self.warned
            self.warned.add(kind)
        if first:  # logging reports its own failures (Handler.handleError); it never raises
            logger.warning(
                "instrumentation-sdk: %s (further %r faults are counted in stats(), not logged)",
                message,
                kind,
                exc_info=sys.exc_info()[0] is not None,
            )


class Pipeline:
    """One sink (the Rust buffer), one flusher thread, one exporter."""

    def __init__(self, settings: Settings, exporter: Exporter | None = None) -> None:
        self.settings = settings
        self.exporter = exporter if exporter is not None else _build_exporter(settings)
        self.sink = _core.SpanSink(settings.buffer_capacity, settings.batch_size)
        self.pid = os.getpid()
        self._encode = msgspec.json.Encoder().encode
        self._export_jsonl = getattr(self.exporter, "export_jsonl", None)
        self._abort = threading.Event()
        self._progress = threading.Condition()
        self._resolved = 0  # spans drained and then exported or dropped
        self._exporter_closed = False
        self.counts: Counter[str] = Counter()
        self._thread = threading.Thread(
            target=self._run, name="instrumentation-sdk-flusher", daemon=True
        )
        self._thread.start()
        self.sink.activate()

    @property
    def closed(self) -> bool:
        return bool(self.sink.closed)

    # -- flusher side ----------------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.settings.flush_interval
        while True:
            try:
                self.sink.wait(interval)  # detached: request threads run meanwhile
                closing = self.sink.closed
                self._drain()
                if closing:
                    return
            except BaseException:
                # Nothing an exporter or a record does may kill the flusher.
                note_fault("flusher", "the flusher hit an unexpected error and carried on")
                self._abort.wait(0.05)

    def _drain(self) -> None:
        while not self._abort.is_set():
            batch = self.sink.drain(self.settings.batch_size)
            size = len(batch)
            if not size:
                return
            exported = False
            try:
                exported = self._export(batch)
            finally:
                batch.clear()
                with self._progress:
                    self._resolved += size
                    self.counts["exported" if exported else "dropped_export_failed"] += size
                    self._progress.notify_all()

    def _export(self, batch: _core.Batch) -> bool:
        settings = self.settings
        self.counts["unencodable"] += batch.encode_deferred(self._encode)
        payload: Any
        if self._export_jsonl is not None:
            payload, truncated = batch.to_jsonl(settings.service_name, settings.max_value_bytes)
            send = self._export_jsonl
        else:
            payload, truncated = batch.to_records(settings.service_name, settings.max_value_bytes)
            send = self.exporter.export
        self.counts["truncated"] += truncated
        for attempt in range(settings.export_retries + 1):
            try:
                send(payload)
                return True
            except BaseException:
                self.counts["export_errors"] += 1
                note_fault("export", f"{type(self.exporter).__name__} failed to export a batch")
                if attempt == settings.export_retries:
                    break
                self.counts["retries"] += 1
                delay = min(settings.retry_backoff_max, settings.retry_backoff * 2**attempt)
                if self._abort.wait(delay * random.uniform(0.5, 1.0)):
                    break
        note_fault("export_dropped", "a batch was dropped after its export retries failed")
        return False

    # -- control ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        if threading.current_thread() is self._thread:
            return False  # an exporter calling flush() would wait for itself
        target = self.sink.stats()["accepted"]
        self.sink.wake()
        with self._progress:
            return self._progress.wait_for(lambda: self._resolved >= target, timeout)

    def shutdown(self, timeout: float | None) -> bool:
        """Export what is buffered (waiting at most ``timeout``), stop the flusher, close the
        exporter. Spans ending afterwards are dropped and counted."""
        if not self.closed:
            self.sink.deactivate()
            self.sink.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # stop retrying; what is left stays counted as buffered
            note_fault("shutdown_timeout", "shutdown timed out before every span was exported")
            return False
        shutdown_exporter = getattr(self.exporter, "shutdown", None)
        if callable(shutdown_exporter) and not self._exporter_closed:
            self._exporter_closed = True
            try:
                shutdown_exporter()
            except Exception:
                note_fault("exporter_shutdown", f"{type(self.exporter).__name__}.shutdown failed")
        return True

    def figures(self) -> dict[str, int]:
        with self._progress:
            counts = Counter(self.counts)
            resolved = self._resolved
        sink = self.sink.stats()  # read after `resolved`, so accepted >= resolved
        # Queued or in the flusher's hands: every accepted span not yet exported or dropped.
        buffered = sink["accepted"] - resolved
        counts["dropped_buffer_full"] = sink["dropped"]
        counts["dropped_after_shutdown"] = sink["rejected_closed"]
        counts["buffered"] = buffered
        counts["produced"] = sink["accepted"] + sink["dropped"] + sink["rejected_closed"]
        return dict(counts)


# -- process-wide state ----------------------------------------------------------------------------

_lock = threading.RLock()
_active: Pipeline | None = None
_retired: Counter[str] = Counter()  # figures of pipelines replaced by configure()
_faults = _Faults()
_inherited: tuple[Settings, Exporter] | None = None  # a forked child's recipe for its pipeline
_hooks_installed = False


def note_fault(kind: str, message: str) -> None:
    """Count one of the SDK's own faults; log the first of each kind."""
    _faults.note(kind, message)


def _pipeline() -> Pipeline:
    global _active
    with _lock:
        if _active is None:
            if _inherited is not None:
                settings, exporter = _inherited
                _active = Pipeline(settings, exporter)
            else:
                settings = settings_from_env(on_error=lambda message: logger.warning(message))
                _active = Pipeline(settings.validated())
            _install_process_hooks()
        return _active


def start_default_pipeline() -> None:
    """Called by the core when a span ends and no pipeline is running yet."""
    pipeline = _pipeline()
    if pipeline.closed:
        # Shut down on purpose: later spans are dropped and counted, not exported.
        pipeline.sink.activate()


def configure(
    exporter: Exporter | str | None = None,
    *,
    batch_size: int | None = None,
    flush_interval: float | None = None,
    buffer_capacity: int | None = None,
    max_value_bytes: int | None = None,
    service_name: str | None = None,
    export_retries: int | None = None,
    exit_timeout: float | None = None,
) -> None:
    """Replace the span pipeline (the old one is flushed and shut down first).

    Unset arguments take their ``INSTRUMENTATION_SDK_*`` environment value or the default.
    ``exporter`` is an object with ``export(batch)`` or one of ``"sqlite"`` (default: the local
    store), ``"jsonl"``, ``"console"``, ``"memory"``, ``"none"``. Raises ``ValueError`` for a bad
    value.

    >>> from instrumentation_sdk.exporters import InMemoryExporter
    >>> configure(exporter=InMemoryExporter(), batch_size=64, flush_interval=0.5)
    """
    global _active
    overrides = {
        name: value
        for name, value in (
            ("exporter", exporter),
            ("batch_size", batch_size),
            ("flush_interval", flush_interval),
            ("buffer_capacity", buffer_capacity),
            ("max_value_bytes", max_value_bytes),
            ("service_name", service_name),
            ("export_retries", export_retries),
            ("exit_timeout", exit_timeout),
        )
        if value is not None
    }
    base = settings_from_env(on_error=lambda message: logger.warning(message))
    settings = base.with_overrides(**overrides).validated()
    with _lock:
        old = _active
        _active = None
        if old is not None:
            old.shutdown(old.settings.exit_timeout)
            _retired.update(old.figures())
        _active = Pipeline(settings)
        _install_process_hooks()


def get_settings() -> Settings:
    """The settings of the running pipeline (starting it if needed)."""
    return _pipeline().settings


def flush(timeout: float | None = 5.0) -> bool:
    """Wait until every span that ended before this call is exported (or dropped after its
    retries). Returns False if ``timeout`` seconds passed first."""
    pipeline = _active
    if pipeline is None:
        return True
    return pipeline.flush(timeout)


def shutdown(timeout: float | None = 5.0) -> bool:
    """Flush and stop the pipeline; later spans are dropped and counted. ``configure()`` starts
    a new one. Returns False if ``timeout`` passed before everything was exported."""
    pipeline = _active
    if pipeline is None:
        return True
    return pipeline.shutdown(timeout)


def stats() -> dict[str, Any]:
    """The pipeline's figures since the process started.

    ``produced`` spans = ``exported`` + ``dropped`` + ``buffered``. ``dropped`` adds up
    ``dropped_buffer_full``, ``dropped_export_failed`` and ``dropped_after_shutdown``.
    ``truncated``/``unencodable`` count metadata values that were cut or replaced by their
    ``repr``; ``export_errors`` failed export calls, ``retries`` the retries among them;
    ``span_faults`` the SDK's own swallowed faults (by kind in ``faults``).
    """
    with _lock:
        figures = Counter(_retired)
        if _active is not None:
            figures.update(_active.figures())
    with _faults.lock:
        faults = dict(_faults.counts)
    keys = (
        "produced",
        "exported",
        "buffered",
        "dropped_buffer_full",
        "dropped_export_failed",
        "dropped_after_shutdown",
        "truncated",
        "unencodable",
        "export_errors",
        "retries",
    )
    result: dict[str, Any] = {key: figures[key] for key in keys}
    result["dropped"] = (
        figures["dropped_buffer_full"]
        + figures["dropped_export_failed"]
        + figures["dropped_after_shutdown"]
    )
    result["span_faults"] = sum(faults.values())
    result["faults"] = faults
    result["token_cache"] = token_cache_stats()
    return result


# -- exit and fork ---------------------------------------------------------------------------------


def _at_exit() -> None:
    pipeline = _active
    if pipeline is not None and pipeline.pid == os.getpid():
        pipeline.shutdown(pipeline.settings.exit_timeout)


def after_fork_in_child() -> None:
    """Give the child a clean slate: no inherited spans, locks or threads; its pipeline starts
    on its first span with the parent's settings and exporter (exporters reopen per process)."""
    global _active, _lock, _retired, _faults, _inherited
    parent = _active
    _lock = threading.RLock()
    _retired = Counter()
    _faults = _Faults()
    _active = None
    if parent is not None:
        parent.sink.deactivate()  # the core also refuses it: its buffer is the parent's
        _inherited = (parent.settings, parent.exporter)


def _run_at_exit_in_multiprocessing_child() -> None:
    # multiprocessing's forked children leave through os._exit(), which skips atexit.
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _at_exit, exitpriority=100)


_MULTIPROCESSING_HOOK_OWNER: Callable[[], None] = _run_at_exit_in_multiprocessing_child


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork_in_child)
    import multiprocessing.util

    multiprocessing.util.register_after_fork(
        _MULTIPROCESSING_HOOK_OWNER, lambda _owner: _run_at_exit_in_multiprocessing_child()
    )
