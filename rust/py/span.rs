//! Spans as seen from Python: `Span` (`SpanCore` here), made by `llm_span` and
//! `llm_span_with_tokens` (their argument binding is in `fastcall.rs`).
//!
//! The request thread's whole cost lives here: ids, clocks, metadata and the push are Rust; the
//! only Python-level work is the `ContextVar` (through the C API). Nothing here raises into the
//! application: faults are reported to the Python layer's `note_fault` hook and swallowed.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyDict, PyList, PyString, PyTuple, PyWeakrefMethods, PyWeakrefReference,
};

use super::context::{fault, otel_parent, Hooks, HOOKS};
use super::prompt::Prompt;
use super::record::{events_list, metadata_dict, record_dict};
use super::scan::Blocked;
use super::sink::{submit, Finished};
use super::stream::{self, Cursor, StreamTail};
use super::value::{convert, Converted};
use crate::record::{EncodeReport, Limits};
use crate::span::{
    new_span_id, new_trace_id, Clock, Event, Key, SpanData, Status, Text, Value, DEFAULT_NAME,
    MAX_EVENTS,
};
use crate::tokens::{self, count_text, Method};

/// Prompts at least this long are counted with the interpreter detached.
const DETACH_MIN_BYTES: usize = 1024;

/// Whether spans record their prompt and completion (off by default; set by the pipeline).
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// Events not recorded because their span already held `MAX_EVENTS`.
static EVENTS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Turn content capture on or off for spans that start (prompt) or complete from now on.
#[pyfunction]
pub fn set_capture_content(on: bool) {
    CAPTURE_CONTENT.store(on, Ordering::Relaxed);
}

/// Whether content capture is on.
#[pyfunction]
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}

/// How many events were dropped because their span held `MAX_EVENTS` already.
#[pyfunction]
pub fn events_dropped() -> u64 {
    EVENTS_DROPPED.load(Ordering::Relaxed)
}

/// A span made as `llm_span_with_tokens(model, provider, prompt=prompt, name=name,
/// **attributes)` makes it (as `llm_span` does when `prompt` is `None`), then entered: what the
/// client integrations call once per call, without the keyword arguments' round trip. Raises
/// only what `__enter__` raises (`PromptInjectionError` under `injection="block"`).
#[pyfunction]
pub fn start_span_with<'py>(
    py: Python<'py>,
    model: Bound<'py, PyAny>,
    provider: Option<Bound<'py, PyAny>>,
    name: Bound<'py, PyAny>,
    prompt: Option<Bound<'py, PyAny>>,
    attributes: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, SpanCore>> {
    let args = SpanArgs {
        model,
        provider,
        service_name: None,
        user_id: None,
        session_id: None,
        name: Some(name),
        parent: None,
        attributes: attributes.iter().collect(),
    };
    let span = new_span(py, args, prompt.map(Bound::unbind))?;
    SpanCore::__enter__(span)
}

/// Records each of `groups` (tuples of `key, value, key, value, ...`) as `set_metadata`
/// records each pair, skipping a `None` value, then ends the span as `__exit__(None, None,
/// None)` does. What the client integrations call once per response: a dozen `set_metadata`
/// calls through the interpreter cost more than the recording itself. Never raises.
#[pyfunction]
#[pyo3(signature = (span, *groups))]
pub fn end_span_with(py: Python<'_>, span: &Bound<'_, SpanCore>, groups: &Bound<'_, PyTuple>) {
    guarded(py, "end_span_with", (), || {
        // Convert first: it may call into Python (__index__, __str__), never under the lock.
        let mut converted = Vec::new();
        for group in groups.iter() {
            let Ok(items) = group.cast::<PyTuple>() else {
                fault(
                    py,
                    "argument_type",
                    "end_span_with: a group is not a tuple; ignored",
                );
                continue;
            };
            if items.len() % 2 != 0 {
                fault(
                    py,
                    "argument_type",
                    "end_span_with: a group is not key, value pairs; its last key was ignored",
                );
            }
            let mut pairs = items.iter();
            while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
                if !value.is_none() {
                    converted.extend(convert(py, &key, &value));
                }
            }
        }
        let mut state = span.get().lock();
        if state.ended {
            drop(state);
            drop(converted); // may hold Python objects: released outside the lock
            fault(
                py,
                "metadata_after_end",
                "set_metadata called after the span ended; ignored",
            );
        } else {
            for (key, value) in converted {
                state.insert(key, value);
            }
            drop(state);
        }
        end(span, None);
    });
}

/// Runs an entry point's body; a panic (a bug of ours) is counted and logged, never raised
/// into the application as `PanicException`.
fn guarded<T>(py: Python<'_>, what: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            fault(
                py,
                "panic",
                &format!("{what} hit an internal error; ignored"),
            );
            fallback
        }
    }
}

/// Text arguments: a `str` as is; anything else through `str()` (counted as a fault).
fn text_arg(py: Python<'_>, value: Option<&Bound<'_, PyAny>>, what: &str) -> Option<Text> {
    let value = value?;
    if value.is_none() {
        return None;
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Some(Text::from(text.to_string_lossy()));
    }
    fault(
        py,
        "argument_type",
        &format!("{what} is not a str; recorded its str()"),
    );
    value.str().ok().map(|s| Text::from(s.to_string_lossy()))
}

/// A span's mutable state. The lock is only ever held in pure Rust (never across a call into
/// Python, which could re-enter the span or wait for another thread), so concurrent use of one
/// span from several threads blocks for nanoseconds instead of failing.
struct SpanState {
    /// The span's data. Allocated once, when the span is made: while it is open only this state
    /// holds it (changed in place, see `data_mut`); ending it hands the exporter a second
    /// reference, so nothing is copied or allocated on the way out.
    data: Arc<SpanData>,
    objects: Vec<Py<PyAny>>,
    /// Set when the span ends; its data is read-only from then on.
    ended: bool,
    parent: Option<Py<PyAny>>,
    prompt: Option<Py<PyAny>>,
    clock: Option<Clock>,
    /// Set by the first `__enter__` (before its clock starts), so a second one does nothing.
    entered: bool,
    /// `__enter__` calls not yet matched by an `__exit__`: the span ends when the first entry's
    /// exit brings this back to 0; more than one is misuse (entered twice, or re-entered).
    depth: u32,
    token: Option<Py<PyAny>>,
    /// Streams wrapped by this span that have not ended: their ids and weak references to
    /// their cursors (to end them if the `with` block fails while they are open).
    open_streams: Vec<(u64, Py<PyAny>)>,
    /// Streams that have ended, for the flusher to read.
    streams: Vec<StreamTail>,
    /// The `with` block exited while a stream was open: the span ends when its last stream
    /// does (a handler that returns the stream to its framework).
    exit_pending: bool,
}

impl SpanState {
    fn view(&self) -> &SpanData {
        &self.data
    }

    /// The open span's data, to change. Copies it only if a reader still holds a snapshot.
    fn data_mut(&mut self) -> &mut SpanData {
        Arc::make_mut(&mut self.data)
    }

    fn started(&self) -> bool {
        self.entered
    }

    /// Stamps the span's start and end times (and ids, if its start never ran: it is still
    /// reported). Returns the clock used.
    fn stamp_end(&mut self) -> Clock {
        let started = self.clock;
        let data = self.data_mut();
        let clock = started.unwrap_or_else(|| {
            data.trace_id = new_trace_id();
            data.span_id = new_span_id();
            Clock::start()
        });
        data.start_time_unix_nano = clock.start_unix_nano();
        data.end_time_unix_nano = clock.end_unix_nano();
        clock
    }

    /// Ends the span: its times, its status (an error given here, or one a stream recorded,
    /// else ok), and what goes to the exporter.
    fn finish(&mut self, py: Python<'_>, error: Option<(Option<Text>, Text)>) -> Finished {
        let clock = self.stamp_end();
        let data = self.data_mut();
        match error {
            None if data.status == Status::Error => {}
            None => data.status = Status::Ok,
            Some((kind, message)) => {
                data.status = Status::Error;
                data.error_type = kind;
                data.error_message = Some(message);
            }
        }
        self.ended = true;
        self.exit_pending = false;
        self.clock.get_or_insert(clock);
        Finished {
            data: Arc::clone(&self.data),
            objects: self.objects.iter().map(|o| o.clone_ref(py)).collect(),
            streams: std::mem::take(&mut self.streams),
        }
    }

    /// A converted value as span data: an object goes to the side table, deferred.
    fn keep(&mut self, value: Converted) -> Value {
        match value {
            Converted::Value(value) => value,
            Converted::Object(object) => {
                self.objects.push(object);
                Value::Deferred(self.objects.len() - 1)
            }
        }
    }

    fn insert(&mut self, key: Key, value: Converted) {
        let value = self.keep(value);
        let data = self.data_mut();
        if key == "session_id" {
            if let Value::Str(session) = &value {
                data.session_id = Some(session.clone());
            }
        }
        data.set(key, value);
    }
}

/// One LLM call, for ``with`` or ``async with``. Make one with ``llm_span(...)`` or
/// ``llm_span_with_tokens(...)`` (or ``Span(...)``, the same as ``llm_span``).
///
/// Read-only attributes: ``trace_id`` (32 hex), ``span_id`` (16 hex), ``parent_span_id``,
/// ``name``, ``model``, ``provider``, ``service_name``, ``user_id``, ``session_id``, ``status``
/// (``"unset"`` until it ends, then ``"ok"`` or ``"error"``), ``error_type``, ``error_message``,
/// ``start_time_unix_nano``, ``end_time_unix_nano``, ``metadata`` (a read-only mapping).
///
/// ``set_metadata(key, value)`` records anything else (any str key). The spec's standard keys
/// keep their types: ``prompt_tokens``, ``completion_tokens`` and ``retry_count`` are ints;
/// ``actual_model``, ``session_id`` and ``finish_reason`` are strs. It never raises; after the
/// span ends it is ignored (and counted in ``stats()``).
#[pyclass(frozen, name = "Span", module = "instrumentation_sdk")]
pub struct SpanCore {
    state: Mutex<SpanState>,
}

impl SpanCore {
    fn lock(&self) -> MutexGuard<'_, SpanState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a stream wrapped by this span; gives the span's clock (time to first token
    /// counts from its start) and whether content is captured. `None`: the span has ended.
    pub(crate) fn stream_opened(
        &self,
        py: Python<'_>,
        id: u64,
        weak_cursor: Py<PyAny>,
    ) -> Option<(Clock, bool)> {
        let mut state = self.lock();
        if state.ended || state.exit_pending {
            drop(state);
            drop(weak_cursor);
            return None;
        }
        state.open_streams.push((id, weak_cursor));
        let clock = state.clock.unwrap_or_else(Clock::start);
        let _ = py;
        Some((clock, CAPTURE_CONTENT.load(Ordering::Relaxed)))
    }

    /// A stream of this span ended: its facts are kept for the flusher, a producer's error
    /// becomes the span's, and if the `with` block has already exited and this was its last
    /// open stream, the span ends now. `dropped`: collected before its end.
    pub(crate) fn stream_ended(
        slf: &Bound<'_, SpanCore>,
        id: u64,
        mut tail: StreamTail,
        error: Option<(Option<Text>, Text)>,
        dropped: bool,
    ) {
        let py = slf.py();
        let mut state = slf.get().lock();
        if state.ended {
            // The block failed first and closed this stream's record already.
            drop(state);
            drop(tail); // the caller's chunks: released outside the lock
            return;
        }
        let position = state.open_streams.iter().position(|(open, _)| *open == id);
        let weak = position.map(|p| state.open_streams.swap_remove(p));
        if dropped && state.exit_pending {
            tail.facts.status = crate::stream::StreamStatus::Abandoned;
        }
        if let Some((kind, message)) = error {
            let data = state.data_mut();
            data.status = Status::Error;
            data.error_type = kind;
            data.error_message = Some(message);
        }
        state.streams.push(tail);
        let finished =
            (state.exit_pending && state.open_streams.is_empty()).then(|| state.finish(py, None));
        drop(state);
        drop(weak);
        if let Some(finished) = finished {
            submit(py, finished);
        }
    }

    /// A copy of what Python-facing readers need, taken under the lock and used outside it.
    fn snapshot(&self, py: Python<'_>) -> (Arc<SpanData>, Vec<Py<PyAny>>) {
        let state = self.lock();
        let data = Arc::clone(&state.data);
        let objects = state.objects.iter().map(|o| o.clone_ref(py)).collect();
        (data, objects)
    }
}

/// The constructor's arguments (shared by ``Span(...)``, ``llm_span`` and
/// ``llm_span_with_tokens``).
pub(crate) struct SpanArgs<'py> {
    pub(crate) model: Bound<'py, PyAny>,
    pub(crate) provider: Option<Bound<'py, PyAny>>,
    pub(crate) service_name: Option<Bound<'py, PyAny>>,
    pub(crate) user_id: Option<Bound<'py, PyAny>>,
    pub(crate) session_id: Option<Bound<'py, PyAny>>,
    pub(crate) name: Option<Bound<'py, PyAny>>,
    pub(crate) parent: Option<Bound<'py, PyAny>>,
    /// Extra keyword arguments: (key, value) pairs that become metadata.
    pub(crate) attributes: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
}

impl SpanCore {
    fn build(py: Python<'_>, args: SpanArgs<'_>, prompt: Option<Py<PyAny>>) -> Self {
        let SpanArgs {
            model,
            provider,
            service_name,
            user_id,
            session_id,
            name,
            parent,
            attributes,
        } = args;
        let mut state = SpanState {
            data: Arc::new(SpanData {
                model: text_arg(py, Some(&model), "model").unwrap_or_default(),
                provider: text_arg(py, provider.as_ref(), "provider"),
                service_name: text_arg(py, service_name.as_ref(), "service_name"),
                user_id: text_arg(py, user_id.as_ref(), "user_id"),
                session_id: text_arg(py, session_id.as_ref(), "session_id"),
                name: text_arg(py, name.as_ref(), "name")
                    .map_or(Cow::Borrowed(DEFAULT_NAME), |name| {
                        Cow::Owned(name.into_string())
                    }),
                ..SpanData::default()
            }),
            objects: Vec::new(),
            ended: false,
            parent: None,
            prompt,
            clock: None,
            entered: false,
            depth: 0,
            token: None,
            open_streams: Vec::new(),
            streams: Vec::new(),
            exit_pending: false,
        };
        if let Some(parent) = parent.filter(|p| !p.is_none()) {
            if parent.cast::<SpanCore>().is_ok() {
                state.parent = Some(parent.unbind());
            } else {
                fault(py, "parent_type", "parent= is not a span; ignored");
            }
        }
        for (key, value) in &attributes {
            if let Some((key, value)) = convert(py, key, value) {
                state.insert(key, value);
            }
        }
        SpanCore {
            state: Mutex::new(state),
        }
    }
}

/// A new span (not started): `llm_span(...)`, or `llm_span_with_tokens(...)` with a `prompt` to
/// count when the span starts. The Python-facing signatures are in `fastcall.rs`.
pub(crate) fn new_span<'py>(
    py: Python<'py>,
    args: SpanArgs<'py>,
    prompt: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, SpanCore>> {
    Bound::new(py, SpanCore::build(py, args, prompt))
}

/// An awaitable that is already done: what ``async with`` gets from ``__aenter__`` and
/// ``__aexit__`` (the span's work never waits, so there is nothing to suspend for).
#[pyclass(module = "instrumentation_sdk._core")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub(crate) fn new(value: Option<Py<PyAny>>) -> Ready {
        Ready { value }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(pyo3::exceptions::PyStopIteration::new_err((value,)))
    }
}

static MAPPING_PROXY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[pymethods]
impl SpanCore {
    #[new]
    #[pyo3(signature = (
        model, provider = None, *, service_name = None, user_id = None, session_id = None,
        name = None, parent = None, **attributes
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        provider: Option<&Bound<'_, PyAny>>,
        service_name: Option<&Bound<'_, PyAny>>,
        user_id: Option<&Bound<'_, PyAny>>,
        session_id: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        parent: Option<Bound<'_, PyAny>>,
        attributes: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        SpanCore::build(
            py,
            SpanArgs {
                model: model.clone(),
                provider: provider.cloned(),
                service_name: service_name.cloned(),
                user_id: user_id.cloned(),
                session_id: session_id.cloned(),
                name: name.cloned(),
                parent,
                attributes: attributes.map(|a| a.iter().collect()).unwrap_or_default(),
            },
            None,
        )
    }

    #[getter]
    fn trace_id(&self) -> String {
        format!("{:032x}", self.lock().view().trace_id)
    }

    #[getter]
    fn span_id(&self) -> String {
        format!("{:016x}", self.lock().view().span_id)
    }

    #[getter]
    fn parent_span_id(&self) -> Option<String> {
        self.lock()
            .view()
            .parent_span_id
            .map(|id| format!("{id:016x}"))
    }

    #[getter]
    fn name(&self) -> String {
        self.lock().view().name.to_string()
    }

    #[getter]
    fn model(&self) -> String {
        self.lock().view().model.to_string()
    }

    #[getter]
    fn provider(&self) -> Option<String> {
        self.lock().view().provider.as_deref().map(str::to_owned)
    }

    #[getter]
    fn service_name(&self) -> Option<String> {
        self.lock()
            .view()
            .service_name
            .as_deref()
            .map(str::to_owned)
    }

    #[getter]
    fn user_id(&self) -> Option<String> {
        self.lock().view().user_id.as_deref().map(str::to_owned)
    }

    #[getter]
    fn session_id(&self) -> Option<String> {
        self.lock().view().session_id.as_deref().map(str::to_owned)
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.lock().view().status.name()
    }

    #[getter]
    fn error_type(&self) -> Option<String> {
        self.lock().view().error_type.as_deref().map(str::to_owned)
    }

    #[getter]
    fn error_message(&self) -> Option<String> {
        self.lock()
            .view()
            .error_message
            .as_deref()
            .map(str::to_owned)
    }

    #[getter]
    fn start_time_unix_nano(&self) -> u64 {
        self.lock().view().start_time_unix_nano
    }

    #[getter]
    fn end_time_unix_nano(&self) -> u64 {
        self.lock().view().end_time_unix_nano
    }

    /// True once the span has ended (its metadata is then read-only).
    #[getter]
    fn ended(&self) -> bool {
        self.lock().ended
    }

    /// Records `value` under `key`. Never raises.
    fn set_metadata(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        guarded(py, "set_metadata", (), || {
            // Convert first: it may call into Python (__index__, __str__), never under the lock.
            let Some((key, value)) = convert(py, key, value) else {
                return;
            };
            let mut state = self.lock();
            if state.ended {
                drop(state);
                drop(value); // may hold a Python object: released outside the lock
                fault(
                    py,
                    "metadata_after_end",
                    "set_metadata called after the span ended; ignored",
                );
                return;
            }
            state.insert(key, value);
        });
    }

    /// Records a timestamped event (a retry, a first token, a tool call) with optional
    /// attributes (a dict; values as ``set_metadata`` takes them). At most 128 per span: later
    /// ones are dropped and counted in ``stats()["events_dropped"]``. Never raises.
    #[pyo3(signature = (name, attributes = None))]
    fn add_event(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) {
        guarded(py, "add_event", (), || {
            let name = text_arg(py, Some(name), "event name").unwrap_or_default();
            let mut converted = Vec::new();
            if let Some(attributes) = attributes.filter(|a| !a.is_none()) {
                match attributes.cast::<PyDict>() {
                    Ok(dict) => {
                        for (key, value) in dict.iter() {
                            converted.extend(convert(py, &key, &value));
                        }
                    }
                    Err(_) => fault(
                        py,
                        "argument_type",
                        "add_event attributes are not a dict; ignored",
                    ),
                }
            }
            let mut state = self.lock();
            if state.ended {
                drop(state);
                drop(converted);
                fault(
                    py,
                    "event_after_end",
                    "add_event called after the span ended; ignored",
                );
                return;
            }
            if state.data.events.len() >= MAX_EVENTS {
                drop(state);
                drop(converted);
                EVENTS_DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let time_unix_nano = state
                .clock
                .map_or_else(|| Clock::start().start_unix_nano(), |c| c.end_unix_nano());
            let attributes = converted
                .into_iter()
                .map(|(key, value)| (key, state.keep(value)))
                .collect();
            state.data_mut().events.push(Event {
                name,
                time_unix_nano,
                attributes,
            });
        });
    }

    /// Records the completion (a str, or the response's messages as a list) when content
    /// capture is on (``configure(capture_content=True)``); otherwise does nothing. Bounded by
    /// ``max_content_bytes`` at export. Never raises.
    fn set_completion(&self, py: Python<'_>, completion: &Bound<'_, PyAny>) {
        if !CAPTURE_CONTENT.load(Ordering::Relaxed) || completion.is_none() {
            return;
        }
        guarded(py, "set_completion", (), || {
            let mut state = self.lock();
            if state.ended {
                drop(state);
                fault(
                    py,
                    "completion_after_end",
                    "set_completion called after the span ended; ignored",
                );
                return;
            }
            let value = state.keep(Converted::Object(completion.clone().unbind()));
            state.data_mut().completion = Some(value);
        });
    }

    /// Observes a streamed response: returns a wrapper that yields the very same chunks (a
    /// sync iterator for an iterable, an async one for an async iterable) and forwards every
    /// other attribute, ``with``/``async with`` and ``close()``/``aclose()`` to the stream.
    ///
    /// The span ends once, when its ``with`` block has exited and the stream has ended
    /// (exhausted, closed, broken out of, failed, cancelled or collected), so a stream returned
    /// out of the block keeps its span open until it is consumed. Records
    /// ``time_to_first_token_ms``, ``time_per_output_token_ms``, ``stream_chunks``,
    /// ``stream_status``, ``finish_reason``, ``actual_model`` and ``completion_tokens`` (with
    /// ``completion_token_count_method``) from OpenAI, Anthropic, ``str`` or ``bytes`` chunks;
    /// ``text=`` (a function of a chunk returning its text) covers any other shape. With
    /// content capture on, the streamed text is the span's completion. Never raises: an object
    /// that is not a stream is returned unwrapped (counted in ``stats()``).
    #[pyo3(signature = (stream, *, text = None))]
    fn wrap_stream(
        slf: &Bound<'_, Self>,
        stream: &Bound<'_, PyAny>,
        text: Option<&Bound<'_, PyAny>>,
    ) -> Py<PyAny> {
        let py = slf.py();
        guarded(py, "wrap_stream", None, || match stream::wrap(slf, stream, text) {
            Ok(wrapped) => wrapped,
            Err(error) => {
                fault(
                    py,
                    "stream_wrap",
                    &format!("wrap_stream could not wrap the stream ({error}); returned it unwrapped"),
                );
                None
            }
        })
        .unwrap_or_else(|| stream.clone().unbind())
    }

    /// The events recorded so far, as records carry them.
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let (data, objects) = self.snapshot(py);
        let mut report = EncodeReport::default();
        events_list(py, &data.events, &objects, None, usize::MAX, &mut report)
    }

    /// A read-only snapshot of the metadata recorded so far.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (data, objects) = self.snapshot(py);
        let dict = metadata_dict(py, &data, &objects)?;
        let proxy = MAPPING_PROXY.get_or_try_init(py, || {
            py.import("types")?
                .getattr("MappingProxyType")
                .map(Bound::unbind)
        })?;
        proxy.bind(py).call1((dict,))
    }

    fn __repr__(&self) -> String {
        let state = self.lock();
        let data = state.view();
        format!(
            "Span(name={:?}, model={:?}, trace_id='{:032x}', span_id='{:016x}', status='{}')",
            data.name.as_ref(),
            data.model,
            data.trace_id,
            data.span_id,
            data.status.name()
        )
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        let span = Self::__enter__(slf)?;
        Ok(Ready {
            value: Some(span.into_any().unbind()),
        })
    }

    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __aexit__(
        slf: &Bound<'_, Self>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> Ready {
        let suppress = Self::__exit__(slf, exc_type, exc, traceback);
        Ready {
            value: Some(
                PyBool::new(slf.py(), suppress)
                    .to_owned()
                    .into_any()
                    .unbind(),
            ),
        }
    }

    /// The exported record of this span (as exporters receive it).
    #[pyo3(signature = (default_service = "unknown_service"))]
    fn record<'py>(&self, py: Python<'py>, default_service: &str) -> PyResult<Bound<'py, PyDict>> {
        let (data, objects) = self.snapshot(py);
        record_dict(
            py,
            &data,
            &objects,
            None,
            default_service,
            Limits::UNBOUNDED,
        )
        .map(|(d, _)| d)
    }

    /// The references the garbage collector must see: a token refers to the context it was set
    /// in, which refers back to this span while it is current there (a cycle once that context
    /// is dropped with the span never exited). `try_lock`: a span busy on another thread is
    /// simply not traversed this round.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(state) = self.state.try_lock() else {
            return Ok(());
        };
        for object in [&state.token, &state.parent, &state.prompt]
            .into_iter()
            .flatten()
        {
            visit.call(object)?;
        }
        for object in &state.objects {
            visit.call(object)?;
        }
        for (_, weak) in &state.open_streams {
            visit.call(weak)?;
        }
        for stream in &state.streams {
            stream.visit(&visit)?;
        }
        Ok(())
    }

    /// Breaks a cycle through the context (see `__traverse__`); the span's data is kept, so a
    /// span collected without being ended can still be reported (`Drop`).
    fn __clear__(&self) {
        let token = self.lock().token.take();
        drop(token);
    }

    /// Starts the span. The one exception it raises is ``PromptInjectionError``, with
    /// ``configure(injection="block")``, when the prompt of ``llm_span_with_tokens`` is flagged
    /// (the span is then recorded with ``status="error"``).
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let py = slf.py();
        let blocked = guarded(py, "entering a span", None, || match start(&slf) {
            Ok(blocked) => blocked,
            Err(error) => {
                fault(
                    py,
                    "span_start",
                    &format!("starting a span failed: {error}"),
                );
                None
            }
        });
        match blocked {
            Some(error) => Err(error),
            None => Ok(slf),
        }
    }

    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let _ = (exc_type, traceback);
        guarded(slf.py(), "ending a span", (), || {
            end(slf, exc.filter(|e| !e.is_none()));
        });
        false
    }
}

struct ParentInfo {
    trace_id: u128,
    span_id: u64,
    service_name: Option<Text>,
    user_id: Option<Text>,
    session_id: Option<Text>,
}

fn parent_info(parent: &Bound<'_, PyAny>) -> Option<ParentInfo> {
    let parent = parent.cast::<SpanCore>().ok()?;
    let state = parent.get().lock();
    let data = state.view();
    // A parent still inside its own __enter__ has no trace id yet.
    (state.started() && data.trace_id != 0).then(|| ParentInfo {
        trace_id: data.trace_id,
        span_id: data.span_id,
        service_name: data.service_name.clone(),
        user_id: data.user_id.clone(),
        session_id: data.session_id.clone(),
    })
}

/// Links a starting span to its parent (ours, or OpenTelemetry's) and gives it its ids.
fn link(data: &mut SpanData, parent: Option<ParentInfo>, otel_parent: Option<(u128, u64)>) {
    if let Some(parent) = parent {
        data.trace_id = parent.trace_id;
        data.parent_span_id = Some(parent.span_id);
        data.service_name = data.service_name.take().or(parent.service_name);
        data.user_id = data.user_id.take().or(parent.user_id);
        data.session_id = data.session_id.take().or(parent.session_id);
    } else if let Some((trace_id, span_id)) = otel_parent {
        data.trace_id = trace_id;
        data.parent_span_id = Some(span_id);
    } else {
        data.trace_id = new_trace_id();
    }
    data.span_id = new_span_id();
}

/// Records a span whose prompt `injection="block"` stopped: started and ended now, with
/// `status="error"`, the verdict in its metadata, and never made current.
fn record_blocked(
    py: Python<'_>,
    span: &SpanCore,
    link_to: (Option<ParentInfo>, Option<(u128, u64)>),
    prompt: Option<Py<PyAny>>,
    blocked: &Blocked,
) {
    let finished = {
        let mut state = span.lock();
        let clock = Clock::start();
        state.clock = Some(clock);
        if let Some(prompt) = prompt.filter(|_| CAPTURE_CONTENT.load(Ordering::Relaxed)) {
            let prompt = state.keep(Converted::Object(prompt));
            state.data_mut().prompt = Some(prompt);
        }
        let data = state.data_mut();
        link(data, link_to.0, link_to.1);
        data.status = Status::Error;
        data.error_type = Some(Text::const_new("PromptInjectionError"));
        data.error_message = Some(Text::from(blocked.message.as_str()));
        data.set(
            Cow::Borrowed("injection_score"),
            Value::Float(blocked.verdict.score),
        );
        data.set(
            Cow::Borrowed("injection_rules"),
            Value::Json(serde_json::to_string(&blocked.verdict.rules).unwrap_or_default()),
        );
        state.stamp_end();
        state.ended = true;
        state.depth = 0;
        Finished {
            data: Arc::clone(&state.data),
            objects: state.objects.iter().map(|o| o.clone_ref(py)).collect(),
            streams: std::mem::take(&mut state.streams),
        }
    };
    submit(py, finished);
}

/// Starts the span; `Ok(Some(error))` when `injection="block"` stopped its prompt.
fn start(slf: &Bound<'_, SpanCore>) -> PyResult<Option<PyErr>> {
    let py = slf.py();
    let span = slf.get();
    let hooks = HOOKS.get(py);
    let (explicit_parent, prompt, model) = {
        let mut state = span.lock();
        if state.started() || state.ended {
            // The first entry counts; this one only has to be matched by its own exit.
            state.depth += 1;
            let ended = state.ended;
            drop(state);
            misuse_on_enter(py, ended);
            return Ok(None);
        }
        state.entered = true;
        state.depth = 1;
        // A pre-count the caller made itself (the client integrations' exact one, with its own
        // `token_count_method`) is kept: the prompt is then only scanned and captured.
        let count_it = state.prompt.is_some() && state.data.get("prompt_tokens_estimate").is_none();
        let model = count_it.then(|| state.data.model.clone());
        let parent = state.parent.as_ref().map(|p| p.clone_ref(py));
        (parent, state.prompt.take(), model)
    };
    let parent = match explicit_parent {
        Some(parent) => Some(parent.into_bound(py)),
        None => match hooks {
            Some(hooks) => Some(hooks.current.get(py)?),
            None => None,
        },
    };
    let parent = parent.as_ref().and_then(parent_info);
    let otel_parent = if parent.is_none() {
        otel_parent(py)
    } else {
        None
    };
    if let Some(blocked) = prompt
        .as_ref()
        .and_then(|p| super::scan::blocked(py, p.bind(py)))
    {
        record_blocked(py, span, (parent, otel_parent), prompt, &blocked);
        return Ok(Some(blocked.error));
    }
    let count = match (&prompt, model) {
        (Some(prompt), Some(model)) => count_prompt(py, prompt.bind(py), &model),
        _ => None,
    };
    // The prompt object is kept as given (no copy on the request thread); the flusher encodes
    // and bounds it. Counted whole either way.
    let captured = prompt.filter(|_| CAPTURE_CONTENT.load(Ordering::Relaxed));
    let token = match hooks {
        Some(hooks) => hooks.current.set(slf.as_any())?.unbind(),
        None => py.None(),
    };
    let mut state = span.lock();
    link(state.data_mut(), parent, otel_parent);
    if let Some(prompt) = captured {
        let prompt = state.keep(Converted::Object(prompt));
        state.data_mut().prompt = Some(prompt);
    }
    let data = state.data_mut();
    if let Some(count) = count {
        let tokens = i64::try_from(count.tokens).unwrap_or(i64::MAX);
        data.set(Cow::Borrowed("prompt_tokens"), Value::Int(tokens));
        data.set(
            Cow::Borrowed("token_count_method"),
            Value::Str(Text::const_new(count.method.name())),
        );
        if let Some(encoding) = count.encoding {
            data.set(
                Cow::Borrowed("token_encoding"),
                Value::Str(Text::const_new(encoding.name())),
            );
        }
    }
    // Stamp last, so the span's duration is the block's, not the SDK's (counting included).
    let clock = Clock::start();
    data.start_time_unix_nano = clock.start_unix_nano();
    state.clock = Some(clock);
    let previous = state.token.replace(token);
    drop(state);
    drop(previous);
    Ok(None)
}

/// Never fails: a prompt of another type than str or a message list is estimated from its str().
fn count_prompt(py: Python<'_>, prompt: &Bound<'_, PyAny>, model: &str) -> Option<tokens::Count> {
    let encoding = tokens::encoding_for_model(model);
    match Prompt::extract(prompt, "prompt") {
        Ok(prompt) => Some(if prompt.text_bytes() < DETACH_MIN_BYTES {
            prompt.count(encoding)
        } else {
            py.detach(|| prompt.count(encoding))
        }),
        Err(_) => {
            fault(
                py,
                "prompt_type",
                "the prompt is not a str or a message list; estimated from its str()",
            );
            let text = prompt.str().ok()?.to_string_lossy().into_owned();
            let count = count_text(None, &text);
            debug_assert_eq!(count.method, Method::Heuristic);
            Some(count)
        }
    }
}

/// The exception's class name and message, taken before any lock (str() runs Python code).
pub(crate) fn error_of(exc: &Bound<'_, PyAny>) -> (Option<Text>, Text) {
    let kind = exc
        .get_type()
        .name()
        .ok()
        .map(|n| Text::from(n.to_string_lossy()));
    let message = match exc.str() {
        Ok(text) => Text::from(text.to_string_lossy()),
        Err(_) => Text::const_new("<str() of the exception failed>"),
    };
    (kind, message)
}

fn end(slf: &Bound<'_, SpanCore>, exc: Option<&Bound<'_, PyAny>>) {
    let py = slf.py();
    let error = exc.map(error_of);
    if error.is_some() {
        close_open_streams(slf);
    }
    let (finished, token) = {
        let mut state = slf.get().lock();
        if state.ended || state.depth != 1 {
            let misuse = exit_misuse(&mut state);
            drop(state);
            if let Some((kind, message)) = misuse {
                fault(py, kind, message);
            }
            return;
        }
        state.depth = 0;
        if !state.open_streams.is_empty() && error.is_none() {
            // A stream still open (returned to the caller): the context goes back now, the
            // span ends with its last stream.
            state.exit_pending = true;
            let token = state.token.take();
            drop(state);
            restore(py, slf, token);
            return;
        }
        let finished = state.finish(py, error);
        (finished, state.token.take())
    };
    restore(py, slf, token);
    submit(py, finished);
}

fn restore(py: Python<'_>, slf: &Bound<'_, SpanCore>, token: Option<Py<PyAny>>) {
    if let (Some(token), Some(hooks)) = (token.filter(|t| !t.is_none(py)), HOOKS.get(py)) {
        restore_context(py, hooks, slf.as_any(), token.bind(py));
    }
}

/// The `with` block failed while streams of the span were open: they end now, as closed early
/// (the span records what they saw so far), and the span ends with the block's error.
fn close_open_streams(slf: &Bound<'_, SpanCore>) {
    let py = slf.py();
    let open = {
        let mut state = slf.get().lock();
        if state.ended || state.depth != 1 {
            return;
        }
        std::mem::take(&mut state.open_streams)
    };
    for (_, weak) in open {
        let cursor = weak
            .bind(py)
            .cast::<PyWeakrefReference>()
            .ok()
            .and_then(PyWeakrefMethods::upgrade);
        if let Some(cursor) = cursor.as_ref().and_then(|c| c.cast::<Cursor>().ok()) {
            // Busy (being read on another thread): its facts are not waited for.
            if let Ok(mut cursor) = cursor.try_borrow_mut() {
                cursor.close_early(py);
            }
        }
    }
}

/// Counts an `__enter__` of a span that is open (`ended == false`) or has ended; either way the
/// span's first entry stands and the context is not changed.
fn misuse_on_enter(py: Python<'_>, ended: bool) {
    if ended {
        fault(
            py,
            "reentered",
            "a span that has ended was entered again; ignored (make a new span per call)",
        );
    } else {
        fault(
            py,
            "entered_twice",
            "a span was entered while already open; it ends when its outermost entry exits",
        );
    }
}

/// An `__exit__` that does not end the span: the inner exit of a second entry (nothing to
/// report; the entry was counted), or misuse to count. Called with the span's state locked.
fn exit_misuse(state: &mut SpanState) -> Option<(&'static str, &'static str)> {
    if state.depth > 0 {
        state.depth -= 1;
        return None;
    }
    Some(if state.ended {
        (
            "exited_twice",
            "a span that has ended was exited again; ignored",
        )
    } else {
        (
            "exit_without_enter",
            "a span was exited without being entered; nothing exported",
        )
    })
}

/// Puts the context back as it was before `span` was entered, and only if `span` is still on
/// this context's stack of entered spans, so that no ended span stays current.
///
/// The normal case costs one `ContextVar` read: `span` is current and its token is reset. When
/// a span entered after it is still current (an exit out of order), the context is reset all
/// the same, dropping those later spans from it (they end normally, keeping `span` as their
/// parent), and the misuse is counted. When `span` is not on the stack at all (an earlier
/// out-of-order exit already removed it, or it was entered in another context), the context is
/// left alone: resetting would bring back a span that has ended, or touch an unrelated task.
fn restore_context(
    py: Python<'_>,
    hooks: &Hooks,
    span: &Bound<'_, PyAny>,
    token: &Bound<'_, PyAny>,
) {
    let Ok(current) = hooks.current.get(py) else {
        return;
    };
    if current.is(span) {
        // ValueError: exited in another context than it was entered in; that context keeps its
        // own value, so there is nothing to undo here.
        let _ = hooks.current.reset(token);
        return;
    }
    if entered_below(py, &current, span) && hooks.current.reset(token).is_ok() {
        fault(
            py,
            "exit_order",
            "a span was exited while a span entered after it was still open; the context is \
             back to what it was before the span was entered",
        );
    }
}

/// Whether `span` was current when `current`, or a span entered under it, was entered: walks
/// the chain of values each open span's token replaced. Only ever walked on a misordered exit.
fn entered_below(py: Python<'_>, current: &Bound<'_, PyAny>, span: &Bound<'_, PyAny>) -> bool {
    let mut value = current.clone();
    for _ in 0..MAX_NESTING_WALK {
        let Ok(open) = value.cast::<SpanCore>() else {
            return false;
        };
        let token = match open.get().lock().token.as_ref() {
            Some(token) => token.clone_ref(py),
            None => return false,
        };
        let Ok(previous) = token.bind(py).getattr("old_value") else {
            return false;
        };
        if previous.is(span) {
            return true;
        }
        value = previous;
    }
    false
}

/// How far `entered_below` looks down a chain of nested spans before giving up.
const MAX_NESTING_WALK: usize = 10_000;

impl Drop for SpanCore {
    /// A span entered and never exited, now collected: counted, logged once and exported with
    /// `status="error"` (`error_type="SpanNotEnded"`), so the call it wrapped is not lost.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if state.ended || !state.entered {
            return; // the normal case: a span that ended, or was never used
        }
        state.ended = true;
        let _ = Python::try_attach(|py| report_not_ended(py, state));
    }
}

/// Ends a span being collected without an exit, reports it and submits it. Any exception the
/// interpreter had set when collection started is kept.
fn report_not_ended(py: Python<'_>, state: &mut SpanState) {
    let pending = PyErr::take(py);
    state.stamp_end();
    let data = state.data_mut();
    data.status = Status::Error;
    data.error_type = Some(Text::const_new("SpanNotEnded"));
    data.error_message = Some(Text::const_new(
        "the span was entered but never exited; ended when it was garbage-collected",
    ));
    let message = format!(
        "a span was entered and never exited (name {:?}, model {:?}, span_id {:016x}); exported \
         with status=\"error\" when it was garbage-collected",
        data.name.as_ref(),
        data.model.as_str(),
        data.span_id
    );
    let finished = Finished {
        data: Arc::clone(&state.data),
        objects: state.objects.iter().map(|o| o.clone_ref(py)).collect(),
        streams: std::mem::take(&mut state.streams),
    };
    fault(py, "not_ended", &message);
    submit(py, finished);
    if let Some(pending) = pending {
        pending.restore(py);
    }
}
