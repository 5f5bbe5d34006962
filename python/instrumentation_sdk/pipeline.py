"""From finished spans to an exporter, off the request path.

Request threads push finished spans into the Rust core's bounded lock-free buffer and return at
once. One daemon thread per process (the flusher) drains it in batches (``batch_size`` spans or
``flush_interval`` seconds, whichever comes first) and takes each batch down one path:

    drain -> processors (built-in ones in the core, detached; then Python ones, on records)
          -> one encoding, in the format the exporter declares (records, JSON Lines, OTLP)
          -> send, retrying failures with exponential backoff and jitter

Every span is accounted for: ``produced = exported + dropped + buffered`` in ``stats()``, where
``dropped`` includes the spans processors filtered out or failed on.

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
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any, Literal

import msgspec

from . import _core
from .config import Processor, Settings, settings_from_env
from .export import Exporter, ExportError, OtlpEncoding, export_format
from .prices import PricesSource, load_prices
from .tokens import DEFAULT_MODEL, token_cache_stats

__all__ = ["configure", "flush", "get_settings", "shutdown", "stats"]

logger = logging.getLogger("instrumentation_sdk")

#: A ``Retry-After`` longer than this is not waited for: the batch is dropped (and counted)
#: rather than held up, or sent early against the backend's wish.
MAX_RETRY_AFTER = 30.0

#: After an export failure is logged, later ones of the same exporter and kind are counted and
#: summed up in one line at most this often (seconds), with the latest cause.
EXPORT_FAULT_SUMMARY_INTERVAL = 60.0

#: The longest cause (exception type and message) kept and logged for an export failure.
MAX_CAUSE_CHARS = 500

_monotonic = time.monotonic  # the export-fault summaries' clock (tests stand in a fake one)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _NullExporter:
    """``exporter="none"``: spans are counted as exported and go nowhere. It takes JSON Lines,
    which the core encodes with the interpreter detached: as records (a dict per span, built
    holding the GIL) a busy request thread outran it and spans were dropped as buffer-full."""

    export_format: Literal["jsonl"] = "jsonl"
    jsonl_file: _core.JsonlFile | None = None

    def export_jsonl(self, lines: bytes) -> None:
        pass


def _build_exporter(settings: Settings) -> Exporter:
    exporter = settings.exporter
    if not isinstance(exporter, str):
        return exporter
    from . import exporters

    if exporter == "sqlite":
        return exporters.SqliteExporter(
            settings.sqlite_path,
            max_bytes=settings.store_max_bytes,
            max_age=settings.store_max_age,
            prices=load_prices(settings.prices),
        )
    if exporter == "jsonl":
        return exporters.JsonlExporter(settings.jsonl_path)
    if exporter == "console":
        return exporters.ConsoleExporter()
    if exporter == "memory":
        return exporters.InMemoryExporter()
    if exporter == "otlp":
        return exporters.OtlpExporter()
    return _NullExporter()


class _ExportReport:
    """When one exporter's failures of one kind were last logged, and how many since."""

    __slots__ = ("logged_at", "since")

    def __init__(self, logged_at: float) -> None:
        self.logged_at = logged_at
        self.since = 0


#: What an export failure of each kind did, for the log: (first occurrence, summary of more).
_EXPORT_FAULT_LINES = {
    "export": (
        "{exporter} failed to export a batch: {cause} (retried within export_retries; later "
        "failures are counted in stats() and summed up here at most once a minute)",
        "{exporter}: {more} more failed export attempts since the last report {elapsed:.0f} s "
        "ago; latest cause: {cause}",
    ),
    "export_dropped": (
        "{exporter} dropped a batch after its export retries failed; last cause: {cause}",
        "{exporter}: {more} more batches dropped after their retries since the last report "
        "{elapsed:.0f} s ago; latest cause: {cause}",
    ),
    "export_rejected": (
        "{exporter} rejected a batch for good (not retried): {cause}",
        "{exporter}: {more} more batches rejected for good since the last report "
        "{elapsed:.0f} s ago; latest cause: {cause}",
    ),
}


class _Faults:
    """Counts the SDK's own faults by kind and logs each kind once per process; export
    failures once per exporter and kind, then in a summary at most once a minute."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.warned: set[str] = set()
        self.last_export_error: dict[str, str] = {}  # exporter class name -> "Type: message"
        self.export_reports: dict[tuple[str, str], _ExportReport] = {}

    def note(self, kind: str, message: str, *, count: bool = True, site: bool = False) -> None:
        with self.lock:
            if count:
                self.counts[kind] += 1
            first = kind not in self.warned
            self.warned.add(kind)
        if first:  # logging reports its own failures (Handler.handleError); it never raises
            where = _call_site() if site else None
            logger.warning(
                "instrumentation-sdk: %s (%sfurther %r events are counted in stats(), not logged)",
                message,
                f"at {where}; " if where else "",
                kind,
                exc_info=sys.exc_info()[0] is not None,
            )

    def note_export(self, exporter: str, kind: str, cause: str) -> None:
        """Count an export failure of ``kind`` (a key of ``_EXPORT_FAULT_LINES``) and keep its
        cause; log it if it is the first of its exporter and kind, or sum up the ones since
        the last line if that was at least ``EXPORT_FAULT_SUMMARY_INTERVAL`` ago."""
        now = _monotonic()
        first, summary = _EXPORT_FAULT_LINES[kind]
        line = None
        with self.lock:
            self.counts[kind] += 1
            self.last_export_error[exporter] = cause
            report = self.export_reports.get((exporter, kind))
            if report is None:
                self.export_reports[(exporter, kind)] = _ExportReport(now)
                line = first.format(exporter=exporter, cause=cause)
            else:
                report.since += 1
                elapsed = now - report.logged_at
                if elapsed >= EXPORT_FAULT_SUMMARY_INTERVAL:
                    line = summary.format(
                        exporter=exporter, more=report.since, elapsed=elapsed, cause=cause
                    )
                    report.logged_at, report.since = now, 0
        if line is not None:
            logger.warning("instrumentation-sdk: %s", line)


def _describe(error: BaseException) -> str:
    """``"RuntimeError: backend down"``: an export failure's cause, on one bounded line."""
    try:
        message = str(error)
    except Exception:
        message = "<str() of the exception failed>"
    cause = type(error).__name__ + (f": {message}" if message else "")
    cause = " ".join(cause.split())
    return cause if len(cause) <= MAX_CAUSE_CHARS else cause[: MAX_CAUSE_CHARS - 3] + "..."


def _call_site() -> str | None:
    """The innermost frame outside this package: where the application called into the SDK."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(_PACKAGE_DIR):
            return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        frame = frame.f_back
    return None


class Pipeline:
    """One sink (the Rust buffer), one flusher thread, one exporter."""

    def __init__(self, settings: Settings, exporter: Exporter | None = None) -> None:
        self.settings = settings
        self.exporter = exporter if exporter is not None else _build_exporter(settings)
        self.format = export_format(self.exporter)
        self.sink = _core.SpanSink(settings.buffer_capacity, settings.batch_size)
        self.pid = os.getpid()
        self._encode = msgspec.json.Encoder().encode
        builtin = [p for p in settings.processors if isinstance(p, _core.RustProcessor)]
        scanner = _scan_processor(settings)
        if scanner is not None:
            # Last among the built-in ones (what sampling drops is not scanned) and before any
            # Python processor or exporter sees the span.
            builtin.append(scanner)
        self._python_processors: list[Callable[[dict[str, Any]], Any]] = [
            p for p in settings.processors if not isinstance(p, _core.RustProcessor)
        ]
        default_service = settings.service_name
        if self.format == "otlp" and default_service == "unknown_service":
            default_service = self.exporter.otlp_encoding.service_name or default_service  # type: ignore[union-attr]
        self.plan = _core.ExportPlan(
            default_service,
            settings.max_value_bytes,
            settings.max_content_bytes,
            builtin,
            settings.max_span_bytes,
        )
        # The whole JSON Lines round in the core (drain, process, encode, append, detached),
        # unless a Python processor needs the batch as records.
        file = getattr(self.exporter, "jsonl_file", None) if self.format == "jsonl" else None
        self._file = file if isinstance(file, _core.JsonlFile) else None
        if self._python_processors:
            self._file = None
        #: Which path batches take: the core's JSON Lines round, or drain-process-encode-send.
        self.path: str = "core_jsonl" if self._file is not None else self.format
        if self._python_processors:
            self.path = f"records_then_{self.format}"
            logger.info(
                "instrumentation-sdk: %d Python processor(s) configured: batches go through "
                "records before export (slower than the core's own encoding)",
                len(self._python_processors),
            )
        _core.set_capture_content(settings.capture_content)
        _core.set_injection_block(settings.injection == "block", settings.injection_model)
        self._abort = threading.Event()
        self._progress = threading.Condition()
        self._resolved = 0  # spans drained and then exported or dropped
        self._abandoned = False  # shutdown gave up on the spans this pipeline still held
        self._exporter_closed = False
        self.counts: Counter[str] = Counter()
        self._thread = threading.Thread(
            target=self._run, name="instrumentation-sdk-flusher", daemon=True
        )
        self._thread.start()
        self.sink.activate()
        _preload_default_encoding()

    @property
    def closed(self) -> bool:
        return bool(self.sink.closed)

    # -- flusher side ----------------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.settings.flush_interval
        file = self._file
        wait = interval
        while True:
            try:
                closing = self.sink.closed
                if file is not None:
                    # One call per round: wait, drain, process, encode, append (detached).
                    size = self._export_to_file(file, wait)
                    if closing and not size:
                        return
                    # Straight on while there is a backlog (or to finish a shutdown); otherwise
                    # wait for the next batch, so a busy request thread is not interrupted for
                    # every few spans.
                    backlog = size >= self.settings.batch_size * 16 or closing
                    wait = 0.0 if backlog else interval
                    continue
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
        file = self._file
        while not self._abort.is_set():
            size = self._export_to_file(file, 0.0) if file is not None else self._export_batch()
            if not size:
                return

    def _resolve(self, drained: int, filtered: int, failed: int, exported: bool) -> None:
        """Account for a drained batch: what processors dropped, and the rest, exported or
        dropped after its retries."""
        sent = drained - filtered - failed
        with self._progress:
            if not self._abandoned:  # else already counted as dropped at shutdown
                self._resolved += drained
                self.counts["filtered"] += filtered
                self.counts["processor_errors"] += failed
                self.counts["exported" if exported else "dropped_export_failed"] += sent
            self._progress.notify_all()

    def _export_batch(self) -> int:
        """One batch down the one path: drain, process, encode once, send."""
        batch = self.sink.drain(self.settings.batch_size)
        size = len(batch)
        if not size:
            return 0
        filtered = failed = 0
        exported = False
        try:
            self._note_values(0, batch.encode_deferred(self._encode))
            filtered, failed, cut = batch.process(self.plan)
            self._note_values(cut, 0)
            if failed:
                note_fault(
                    "processor", "a built-in processor failed on a span; the span was dropped"
                )
            records = None
            if self._python_processors:
                records, truncated = batch.to_records(self.plan)
                self._note_values(truncated, 0)
                records, dropped, errors = self._run_python_processors(records)
                filtered += dropped
                failed += errors
            try:
                send = self._encoded(batch, records)
            except (ValueError, TypeError) as error:
                if records is None:
                    raise
                # A Python processor returned a dict that is not a record: drop those (fail
                # closed) and send the rest.
                records, bad = self._valid_records(records)
                failed += bad
                note_fault("processor", f"a processor returned a malformed record: {error}")
                send = self._encoded(batch, records)
            exported = send is None or self._retry(send)
        finally:
            batch.clear()
            self._resolve(size, filtered, failed, exported)
        return size

    def _run_python_processors(
        self, records: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], int, int]:
        """The Python processors over records, in order. Returns the records kept, how many a
        processor dropped (``None``) and how many were dropped because one raised or returned
        something other than a dict: fail closed, a processor may be a redactor."""
        kept: list[dict[str, Any]] = []
        dropped = errors = 0
        for record in records:
            current: Any = record
            try:
                for processor in self._python_processors:
                    current = processor(current)
                    if current is None:
                        break
                    if not isinstance(current, dict):
                        raise TypeError(
                            f"processor {processor!r} returned {type(current).__name__}, "
                            "not a record (dict) or None"
                        )
            except Exception as error:
                errors += 1
                note_fault(
                    "processor",
                    f"processor failed, span dropped: {type(error).__name__}: {error}",
                )
                continue
            if current is None:
                dropped += 1
            else:
                kept.append(current)
        return kept, dropped, errors

    def _valid_records(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The records the core can read back, and how many it cannot."""
        valid = []
        for record in records:
            try:
                _core.encode_jsonl_records([record], self._encode, self.plan)
            except (ValueError, TypeError):
                continue
            valid.append(record)
        return valid, len(records) - len(valid)

    def _encoded(
        self, batch: _core.Batch, records: list[dict[str, Any]] | None
    ) -> Callable[[], object] | None:
        """The batch (or the records the Python processors returned) encoded once, in the
        exporter's format; returns the send to retry, or None when nothing is left to send."""
        if records is not None and not records:
            return None
        if not len(batch):
            return None
        exporter: Any = self.exporter
        plan = self.plan
        if self.format == "records":
            if records is None:
                records, truncated = batch.to_records(plan)
                self._note_values(truncated, 0)
            payload = records
            return lambda: exporter.export(payload)
        if self.format == "jsonl":
            if records is None:
                lines, truncated = batch.to_jsonl(plan)
            else:
                lines, truncated = _core.encode_jsonl_records(records, self._encode, plan)
            self._note_values(truncated, 0)
            return lambda: exporter.export_jsonl(lines)
        encoding: OtlpEncoding = exporter.otlp_encoding
        resource = list(encoding.resource_attributes)
        if records is None:
            bodies, truncated = _core.encode_otlp(
                batch,
                plan,
                encoding.protocol,
                encoding.max_request_bytes,
                resource,
                encoding.openinference,
            )
        else:
            bodies, truncated = _core.encode_otlp_records(
                records,
                self._encode,
                plan,
                encoding.protocol,
                encoding.max_request_bytes,
                resource,
                encoding.openinference,
            )
        self._note_values(truncated, 0)
        pending = list(bodies)

        def send() -> None:
            rejected = exporter.export_otlp(pending)  # removes what it delivered
            if isinstance(rejected, int) and rejected > 0:
                self.counts["rejected_spans"] += rejected

        return send

    def _export_to_file(self, file: _core.JsonlFile, wait: float) -> int:
        """Up to 16 batches drained, processed, encoded and appended by the core with the
        interpreter released once: fewer GIL hand-offs with busy request threads."""
        if self._abort.is_set():
            return 0
        settings = self.settings
        size = filtered = failed = 0
        exported = False
        try:
            round_, failure = self.sink.export_jsonl(
                file, wait, settings.batch_size * 16, self.plan, self._encode
            )
            size, filtered, failed = round_.drained, round_.filtered, round_.failed
            if failed:
                note_fault(
                    "processor", "a built-in processor failed on a span; the span was dropped"
                )
            self._note_values(round_.truncated, round_.unencodable)
            if failure is None:
                exported = True
            else:
                lines, error = failure
                exported = self._retry(lambda: file.append(lines), error)
        finally:
            if size:
                self._resolve(size, filtered, failed, exported)
        return size

    def _note_values(self, truncated: int, unencodable: int) -> None:
        if unencodable:
            self.counts["unencodable"] += unencodable
            _faults.note(
                "unencodable",
                "a metadata value could not be encoded as JSON (exported its repr() instead) or "
                "was not encoded within the flusher's time budget (exported its type name)",
                count=False,
            )
        if truncated:
            self.counts["truncated"] += truncated
            _faults.note(
                "truncated",
                f"a value was over max_value_bytes ({self.settings.max_value_bytes}) or "
                f"max_content_bytes ({self.settings.max_content_bytes}), or a span over "
                f"max_span_bytes ({self.settings.max_span_bytes}); exported it truncated (cut "
                "text is marked; metadata entries and events past the span's bound are left out)",
                count=False,
            )

    def _retry(self, send: Callable[[], object], first_error: str | None = None) -> bool:
        """Send, retrying failures with exponential backoff and jitter, within
        ``export_retries``. The first attempt already failed when ``first_error`` is given.
        An ``ExportError`` may forbid retrying or ask for a least wait (``retry_after``)."""
        settings = self.settings
        attempts = settings.export_retries + 1
        exporter = type(self.exporter).__name__
        # The core's append failure names the file and the OS error: an OSError in Python.
        cause = f"OSError: {first_error}" if first_error else "unknown error"
        for attempt in range(attempts):
            retry_after = None
            if attempt or first_error is None:
                try:
                    send()
                    return True
                except ExportError as error:
                    cause = _describe(error)
                    if not error.retryable:
                        self.counts["export_errors"] += 1
                        self.counts["export_rejected"] += 1
                        _faults.note_export(exporter, "export_rejected", cause)
                        return False
                    retry_after = error.retry_after
                except BaseException as error:
                    cause = _describe(error)
            self.counts["export_errors"] += 1
            _faults.note_export(exporter, "export", cause)
            if attempt == attempts - 1:
                break
            delay = min(settings.retry_backoff_max, settings.retry_backoff * 2**attempt)
            delay *= random.uniform(0.5, 1.0)
            if retry_after is not None:
                if retry_after > MAX_RETRY_AFTER:
                    break
                delay = max(delay, retry_after)
            self.counts["retries"] += 1
            if self._abort.wait(delay):
                break
        _faults.note_export(exporter, "export_dropped", cause)
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
        exporter. Spans ending afterwards are dropped and counted; spans still held when the
        time is up are counted as dropped (``dropped_at_shutdown``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.closed:
            self.sink.deactivate()
            self.sink.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # stop retrying
            with self._progress:
                if not self._abandoned:
                    self._abandoned = True
                    held = self.sink.stats()["accepted"] - self._resolved
                    self.counts["dropped_at_shutdown"] += held
                    self._resolved += held
                self._progress.notify_all()
            note_fault("shutdown_timeout", "shutdown timed out; the spans still held are dropped")
            return False
        if not self._exporter_closed:
            self._exporter_closed = True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            outcome = _call_bounded(getattr(self.exporter, "shutdown", None), remaining)
            if outcome != "returned":
                note_fault(
                    "exporter_shutdown", f"{type(self.exporter).__name__}.shutdown {outcome}"
                )
            return outcome != "timed out"  # a raising shutdown() lost no span
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
        # `dropped_at_shutdown` spans were accepted, then given up on: they are in `resolved`.
        counts["buffered"] = buffered
        counts["produced"] = sink["accepted"] + sink["dropped"] + sink["rejected_closed"]
        evicted = getattr(self.exporter, "evicted", 0)  # the SQLite store's retention
        if type(evicted) is int:
            counts["evicted"] = evicted
        return dict(counts)


# -- process-wide state ----------------------------------------------------------------------------

_lock = threading.RLock()
_active: Pipeline | None = None
_retired: list[Pipeline] = []  # pipelines replaced by configure(); their figures stay live
_faults = _Faults()
_inherited: tuple[Settings, Exporter] | None = None  # a forked child's recipe for its pipeline


def note_fault(kind: str, message: str) -> None:
    """Count one of the SDK's own faults; log the first of each kind."""
    _faults.note(kind, message)


#: Span faults reported where no call of the application is on the stack (a span collected by
#: the garbage collector): logged without a call site.
_FAULTS_WITHOUT_SITE = frozenset({"not_ended"})


def note_span_fault(kind: str, message: str) -> None:
    """``note_fault`` for the span code (the core's hook): the first of each kind is logged
    with the application's call site, e.g. the line that exited a span out of order."""
    _faults.note(kind, message, site=kind not in _FAULTS_WITHOUT_SITE)


_preload_started = False


def _preload_default_encoding() -> None:
    """Start loading the default model's encoding in the background (once per process), so
    the first ``llm_span_with_tokens`` does not spend ~0.2 s loading it on a request thread.
    The core loads it on a thread of its own; a count that needs it meanwhile waits for that
    load rather than starting another, and a ``fork()`` waits for it to finish."""
    global _preload_started
    if _preload_started:
        return
    _preload_started = True
    try:
        encoding = _core.encoding_for_model(DEFAULT_MODEL)
        if encoding is not None:
            _core.preload_encodings([encoding])
    except Exception:  # no thread to be had: the first count loads it, as without a preload
        note_fault("preload", "loading the default encoding in the background failed")


def _pipeline() -> Pipeline:
    global _active
    with _lock:
        if _active is not None and _active.pid != os.getpid():
            after_fork_in_child()  # forked without Python's hooks (e.g. uWSGI)
        if _active is None:
            if _inherited is not None:
                settings, exporter = _inherited
                _active = Pipeline(settings, exporter)
            else:
                settings = settings_from_env(on_error=lambda message: logger.warning(message))
                _active = Pipeline(settings.validated())
        return _active


def _running() -> Pipeline | None:
    """The pipeline of this process, if one was started (never the parent's, after a fork)."""
    if _active is not None and _active.pid != os.getpid():
        after_fork_in_child()
    return _active


def start_default_pipeline() -> None:
    """Called by the core when a span ends and no pipeline is running yet."""
    pipeline = _pipeline()
    if pipeline.closed:
        # Shut down on purpose: later spans are dropped and counted, not exported.
        pipeline.sink.activate()


def _scan_processor(settings: Settings) -> _core.RustProcessor | None:
    """The scanners' processor for ``pii``/``injection="detect"``, or None when both are off."""
    detect_injection = settings.injection == "detect"
    if settings.pii == "off" and not detect_injection:
        return None
    if detect_injection and not settings.capture_content:
        logger.warning(
            "instrumentation-sdk: injection='detect' scores captured prompts, and "
            "capture_content is off: no prompt will be scored (use injection='block', or "
            "capture_content=True)"
        )
    key = settings.pii_hash_key.encode() if settings.pii_hash_key else None
    model = settings.injection_model if detect_injection else None
    return _core.RustProcessor.scan(settings.pii, detect_injection, key, model)


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
    sqlite_path: str | os.PathLike[str] | None = None,
    processors: list[Processor] | tuple[Processor, ...] | None = None,
    capture_content: bool | None = None,
    max_content_bytes: int | None = None,
    store_max_bytes: int | None = None,
    store_max_age: float | None = None,
    max_span_bytes: int | None = None,
    prices: PricesSource | None = None,
    pii: str | None = None,
    injection: str | None = None,
    pii_hash_key: str | None = None,
    injection_model: Callable[[str], float] | None = None,
) -> None:
    """Replace the span pipeline: new spans go to the new one at once, then the old one is
    flushed and shut down (waiting at most its ``exit_timeout``).

    Unset arguments take their ``INSTRUMENTATION_SDK_*`` environment value or the default.
    ``exporter`` is an object with ``export(batch)`` or one of ``"sqlite"`` (default: the local
    store), ``"jsonl"``, ``"console"``, ``"memory"``, ``"otlp"`` (``OtlpExporter()`` from the
    ``OTEL_*`` variables), ``"none"``. ``sqlite_path`` is where ``"sqlite"`` keeps the store
    (default: ``$INSTRUMENTATION_SDK_DB``, else the per-user data directory). ``processors`` run
    on the flusher on each finished span (built-in ones from ``instrumentation_sdk.processors``
    first, then callables taking a record and returning it or ``None`` to drop it).
    ``capture_content=True`` records prompts and completions (bounded by ``max_content_bytes``);
    it wins over the variables ``INSTRUMENTATION_SDK_CAPTURE_CONTENT`` and
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``. ``store_max_bytes`` (default 1 GiB)
    and ``store_max_age`` (seconds, default 30 days; 0 means unbounded) bound the ``"sqlite"``
    store: the flusher deletes its oldest spans past either (``stats()["evicted"]``).
    ``prices`` extends or overrides the shipped price table the ``"sqlite"`` store computes each
    span's ``cost_usd`` with: a mapping of model -> ``{"input": ..., "cached_input": ...,
    "output": ...}`` in USD per million tokens, or the path of a JSON file of them (default:
    ``$INSTRUMENTATION_SDK_PRICES``). Raises
    ``pii`` (``"off"``, ``"detect"``, ``"mask"``, ``"hash"`` with ``pii_hash_key``) and
    ``injection`` (``"off"``, ``"detect"``, ``"block"``) switch the scanners on spans, and
    ``injection_model`` (a callable ``text -> probability``) adds a model tier to
    ``injection`` (see ``instrumentation_sdk.scan``). Raises
    ``ValueError`` for a bad value and ``TypeError`` for an unknown keyword, leaving the running
    pipeline untouched.

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
            ("sqlite_path", _path_setting(sqlite_path)),
            ("processors", None if processors is None else tuple(processors)),
            ("capture_content", capture_content),
            ("max_content_bytes", max_content_bytes),
            ("store_max_bytes", store_max_bytes),
            ("store_max_age", store_max_age),
            ("max_span_bytes", max_span_bytes),
            ("prices", _path_setting(prices)),
            ("pii", pii),
            ("injection", injection),
            ("pii_hash_key", pii_hash_key),
            ("injection_model", injection_model),
        )
        if value is not None
    }
    base = settings_from_env(on_error=lambda message: logger.warning(message))
    if batch_size is None and type(buffer_capacity) is int and buffer_capacity > 0:
        # A small buffer with the default batch size: the batch is the whole buffer.
        overrides["batch_size"] = min(base.batch_size, buffer_capacity)
    settings = base.with_overrides(**overrides).validated()
    new = Pipeline(settings)
    with _lock:
        old = _running()
        _active = new
        if old is not None:
            _retired.append(old)
    if old is not None:
        old.shutdown(old.settings.exit_timeout)  # outside the lock: spans keep flowing to `new`


def _path_setting(path: object) -> object:
    """A path-like setting as a str (validated with the others); anything else as given."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def get_settings() -> Settings:
    """The settings of the running pipeline (starting it if needed)."""
    return _pipeline().settings


def flush(timeout: float | None = 5.0) -> bool:
    """Wait until every span that ended before this call is exported (or dropped after its
    retries). Returns False if ``timeout`` seconds passed first."""
    pipeline = _running()
    if pipeline is None:
        return True
    return pipeline.flush(timeout)


def shutdown(timeout: float | None = 5.0) -> bool:
    """Flush and stop the pipeline; later spans are dropped and counted. ``configure()`` starts
    a new one. Returns False if ``timeout`` passed before everything was exported."""
    pipeline = _running()
    if pipeline is None:
        return True
    return pipeline.shutdown(timeout)


def stats() -> dict[str, Any]:
    """The pipeline's figures since the process started (or, in a forked child, since the fork).

    ``produced`` spans = ``exported`` + ``dropped`` + ``buffered``. ``dropped`` adds up
    ``dropped_buffer_full``, ``dropped_export_failed``, ``dropped_at_shutdown`` (held when a
    shutdown timed out), ``dropped_after_shutdown``, ``dropped_no_pipeline``, ``filtered``
    (dropped by a processor) and ``processor_errors`` (dropped because a processor failed on
    them: fail closed). ``events_dropped`` counts events over a span's limit of 128.
    ``streams_open`` is how many wrapped streams (``Span.wrap_stream``) have not ended: their
    spans are exported when they do, so they are in none of the counts above yet.
    ``export_path`` names the running pipeline's path: ``"core_jsonl"`` (the core's own JSON Lines
    round), ``"records"``, ``"jsonl"``, ``"otlp"``, or ``"records_then_<format>"`` when a Python
    processor makes batches go through records first.
    ``truncated`` counts values cut to ``max_value_bytes``/``max_content_bytes`` and the text
    fields, metadata keys, metadata entries and events a span over ``max_span_bytes`` lost;
    ``unencodable`` counts metadata values that were replaced by their
    ``repr`` (or, past the flusher's encoding time budget, their type name); ``export_errors``
    failed export calls, ``retries`` the retries among them,
    ``export_rejected`` batches refused for good (e.g. an HTTP 400: not retried);
    ``rejected_spans`` spans a backend delivered to refused (OTLP partial success);
    ``span_faults`` the SDK's own swallowed faults (by kind in ``faults``: export failures,
    span misuse such as ``exit_order``, ...); ``last_export_error`` the cause of each
    exporter's latest failure (``{"SqliteExporter": "OperationalError: ..."}``).
    ``evicted`` counts spans the SQLite store deleted (oldest first) to stay within
    ``store_max_bytes`` and ``store_max_age``: they were exported, so they are not ``dropped``.
    """
    with _lock:
        current = _running()
        pipelines = [*_retired, *([current] if current is not None else [])]
    figures: Counter[str] = Counter()
    for pipeline in pipelines:
        figures.update(pipeline.figures())
    orphaned = _core.orphaned_spans() - _orphaned_before
    figures["dropped_no_pipeline"] += orphaned
    figures["produced"] += orphaned
    with _faults.lock:
        faults = dict(_faults.counts)
        last_export_error = dict(_faults.last_export_error)
    dropped_kinds = (
        "dropped_buffer_full",
        "dropped_export_failed",
        "dropped_at_shutdown",
        "dropped_after_shutdown",
        "dropped_no_pipeline",
        "filtered",
        "processor_errors",
    )
    result: dict[str, Any] = {
        key: figures[key]
        for key in (
            "produced",
            "exported",
            "buffered",
            *dropped_kinds,
            "truncated",
            "unencodable",
            "export_errors",
            "retries",
            "export_rejected",
            "rejected_spans",
            "evicted",
        )
    }
    result["dropped"] = sum(figures[kind] for kind in dropped_kinds)
    result["events_dropped"] = _core.events_dropped() - _events_dropped_before
    result["streams_open"] = _core.streams_open()
    result["span_faults"] = sum(faults.values())
    result["faults"] = faults
    result["last_export_error"] = last_export_error
    result["export_path"] = current.path if current is not None else None
    result["token_cache"] = token_cache_stats()
    return result


_orphaned_before = 0  # the core's count at the last fork (the child counts its own)
_events_dropped_before = 0


# -- exit and fork ---------------------------------------------------------------------------------


def _call_bounded(function: Callable[[], object] | None, timeout: float | None) -> str:
    """Run ``function`` on a daemon thread, waiting at most ``timeout``: an exporter's own
    ``shutdown()`` must not hold up the application's exit. Returns ``"returned"``,
    ``"raised"`` or ``"timed out"``."""
    if not callable(function):
        return "returned"
    outcome: list[str] = []

    def run() -> None:
        try:
            function()
            outcome.append("returned")
        except BaseException:
            outcome.append("raised")

    worker = threading.Thread(target=run, name="instrumentation-sdk-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else "timed out"


def _at_exit() -> None:
    pipeline = _active
    if pipeline is not None and pipeline.pid == os.getpid():
        pipeline.shutdown(pipeline.settings.exit_timeout)


def after_fork_in_child() -> None:
    """Give the child a clean slate: no inherited spans, locks, threads or figures; its pipeline
    starts on its first span with the parent's settings and exporter (exporters reopen their
    files and connections per process)."""
    global _active, _lock, _retired, _faults, _inherited, _orphaned_before, _events_dropped_before
    parent = _active
    _lock = threading.RLock()
    _retired = []
    _faults = _Faults()
    _active = None
    _orphaned_before = _core.orphaned_spans()
    _events_dropped_before = _core.events_dropped()
    if parent is not None:
        parent.sink.deactivate()  # the core also refuses it: its buffer is the parent's
        _inherited = (parent.settings, parent.exporter)


def _multiprocessing_child_started(_owner: object) -> None:
    # multiprocessing's forked children leave through os._exit(), which skips atexit.
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _at_exit, exitpriority=100)


def _install_process_hooks() -> None:
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork_in_child)
    import multiprocessing.util

    multiprocessing.util.register_after_fork(
        _multiprocessing_child_started, _multiprocessing_child_started
    )


_install_process_hooks()


def _capture_from_environment() -> None:
    """Spans that start before any pipeline (it starts on the first span's end) already follow
    the environment's content-capture switch."""
    settings = settings_from_env(on_error=lambda message: None)
    _core.set_capture_content(settings.capture_content)
    _core.set_injection_block(settings.injection == "block")


_capture_from_environment()
