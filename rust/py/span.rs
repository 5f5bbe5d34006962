//! Spans as seen from Python: `SpanCore` (the base of `instrumentation_sdk.Span`), the sink that
//! finished spans go to, and the batches the flusher takes out of it.
//!
//! The request thread's whole cost lives here: ids, clocks, metadata and the push are Rust; the
//! only Python calls are the `ContextVar`'s `get`/`set`/`reset`. Nothing here raises into the
//! application: faults are reported to the Python layer's `note_fault` hook and swallowed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};

use super::jsonl::JsonlFile;
use super::prompt::Prompt;
use crate::buffer::{Push, SpanBuffer};
use std::borrow::Cow;

use crate::span::{
    bounded, metadata_key, new_span_id, new_trace_id, write_json, Clock, EncodeReport, Encoded,
    KeyKind, SpanData, Status, Value, DEFAULT_NAME,
};
use crate::tokens::{self, count_text, Method};

/// Prompts at least this long are counted with the interpreter detached.
const DETACH_MIN_BYTES: usize = 1024;

/// A finished span on its way to the exporter.
pub struct Finished {
    data: Arc<SpanData>,
    /// The caller's objects for `Value::Deferred` entries, by index.
    objects: Vec<Py<PyAny>>,
}

/// Where finished spans go: the active pipeline's buffer.
pub struct Sink {
    buffer: SpanBuffer<Finished>,
}

static ACTIVE_SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();

/// Spans that ended when no pipeline could take them (counted, reported by `stats()`).
static ORPHANED: AtomicU64 = AtomicU64::new(0);

/// How many spans were dropped because no pipeline could be started for them.
#[pyfunction]
pub fn orphaned_spans() -> u64 {
    ORPHANED.load(Ordering::Relaxed)
}

/// Python callables the span code needs, installed once by `instrumentation_sdk.spans`.
struct Hooks {
    /// The `ContextVar` holding the active span.
    current: CurrentSpanVar,
    /// Starts the pipeline (and activates its sink) when a span ends before there is one.
    start_pipeline: Py<PyAny>,
    /// Rebuilds the pipeline in a child process whose sink was inherited through `fork()`.
    after_fork: Py<PyAny>,
    /// `note_fault(kind, message)`: counts the SDK's own faults, logs each kind once.
    note_fault: Py<PyAny>,
}

static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

/// The span `ContextVar`'s get/set/reset: through CPython's C API where the build may use it
/// (a third of the cost of Python method calls on the request thread), else through methods
/// bound once.
#[cfg(not(feature = "abi3"))]
pub(crate) struct CurrentSpanVar {
    var: Py<PyAny>,
}

#[cfg(not(feature = "abi3"))]
#[allow(unsafe_code)]
impl CurrentSpanVar {
    pub(crate) fn new(var: &Bound<'_, PyAny>) -> PyResult<Self> {
        if !var.get_type().name()?.to_string().eq("ContextVar") {
            return Err(PyValueError::new_err("expected a contextvars.ContextVar"));
        }
        Ok(CurrentSpanVar {
            var: var.clone().unbind(),
        })
    }

    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: `var` is a ContextVar (checked in `new`), we are attached, and `value` is a
        // valid out-pointer; on success it holds a new reference or NULL (no value, no default).
        let status = unsafe {
            pyo3::ffi::PyContextVar_Get(self.var.as_ptr(), std::ptr::null_mut(), &raw mut value)
        };
        if status < 0 {
            return Err(PyErr::fetch(py));
        }
        if value.is_null() {
            return Ok(py.None().into_bound(py));
        }
        // SAFETY: a new, non-null reference returned by the C API.
        Ok(unsafe { Bound::from_owned_ptr(py, value) })
    }

    fn set<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = value.py();
        // SAFETY: `var` is a ContextVar and `value` a live object; we are attached. Returns a
        // new reference to a Token, or NULL with an exception set.
        let token = unsafe { pyo3::ffi::PyContextVar_Set(self.var.as_ptr(), value.as_ptr()) };
        // SAFETY: a new reference, or NULL with an exception set (handled by the call).
        unsafe { Bound::from_owned_ptr_or_err(py, token) }
    }

    fn reset(&self, token: &Bound<'_, PyAny>) -> PyResult<()> {
        // SAFETY: `var` is a ContextVar and `token` a live object; we are attached. Returns -1
        // with an exception set on failure (e.g. a token from another context).
        let status = unsafe { pyo3::ffi::PyContextVar_Reset(self.var.as_ptr(), token.as_ptr()) };
        if status < 0 {
            return Err(PyErr::fetch(token.py()));
        }
        Ok(())
    }
}

#[cfg(feature = "abi3")]
pub(crate) struct CurrentSpanVar {
    get: Py<PyAny>,
    set: Py<PyAny>,
    reset: Py<PyAny>,
}

#[cfg(feature = "abi3")]
impl CurrentSpanVar {
    pub(crate) fn new(var: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(CurrentSpanVar {
            get: var.getattr("get")?.unbind(),
            set: var.getattr("set")?.unbind(),
            reset: var.getattr("reset")?.unbind(),
        })
    }

    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get.bind(py).call0()
    }

    fn set<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.set.bind(value.py()).call1((value,))
    }

    fn reset(&self, token: &Bound<'_, PyAny>) -> PyResult<()> {
        self.reset.bind(token.py()).call1((token,)).map(|_| ())
    }
}

#[pyfunction]
pub fn install_span_hooks(
    py: Python<'_>,
    current: Py<PyAny>,
    start_pipeline: Py<PyAny>,
    after_fork: Py<PyAny>,
    note_fault: Py<PyAny>,
) -> PyResult<()> {
    let current = current.bind(py);
    HOOKS
        .set(
            py,
            Hooks {
                current: CurrentSpanVar::new(current)?,
                start_pipeline,
                after_fork,
                note_fault,
            },
        )
        .map_err(|_| PyValueError::new_err("span hooks are already installed"))
}

fn fault(py: Python<'_>, kind: &str, message: &str) {
    if let Some(hooks) = HOOKS.get(py) {
        // A failing hook must not turn into an exception in the application either.
        let _ = hooks.note_fault.call1(py, (kind, message));
    }
}

/// Text arguments: a `str` as is; anything else through `str()` (counted as a fault).
fn text_arg(py: Python<'_>, value: Option<&Bound<'_, PyAny>>, what: &str) -> Option<String> {
    let value = value?;
    if value.is_none() {
        return None;
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Some(text.to_string_lossy().into_owned());
    }
    fault(
        py,
        "argument_type",
        &format!("{what} is not a str; recorded its str()"),
    );
    value.str().ok().map(|s| s.to_string_lossy().into_owned())
}

/// A span's mutable state. The lock is only ever held in pure Rust (never across a call into
/// Python, which could re-enter the span or wait for another thread), so concurrent use of one
/// span from several threads blocks for nanoseconds instead of failing.
struct SpanState {
    /// The span's data while it is open; empty once it has ended (see `done`).
    data: SpanData,
    objects: Vec<Py<PyAny>>,
    /// The ended span's data, shared with the exporter's copy.
    done: Option<Arc<SpanData>>,
    parent: Option<Py<PyAny>>,
    prompt: Option<Py<PyAny>>,
    clock: Option<Clock>,
    /// Set by the first `__enter__` (before its clock starts), so a second one does nothing.
    entered: bool,
    token: Option<Py<PyAny>>,
}

impl SpanState {
    fn view(&self) -> &SpanData {
        self.done.as_deref().unwrap_or(&self.data)
    }

    fn started(&self) -> bool {
        self.entered
    }

    fn insert(&mut self, key: Cow<'static, str>, value: Converted) {
        let value = match value {
            Converted::Value(value) => value,
            Converted::Object(object) => {
                self.objects.push(object);
                Value::Deferred(self.objects.len() - 1)
            }
        };
        if key == "session_id" {
            if let Value::Str(session) = &value {
                self.data.session_id = Some(session.clone());
            }
        }
        self.data.set(key, value);
    }
}

/// A metadata value after conversion: a primitive, or the caller's object for the flusher.
enum Converted {
    Value(Value),
    Object(Py<PyAny>),
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

    /// A copy of what Python-facing readers need, taken under the lock and used outside it.
    fn snapshot(&self, py: Python<'_>) -> (Arc<SpanData>, Vec<Py<PyAny>>) {
        let state = self.lock();
        let data = match &state.done {
            Some(done) => Arc::clone(done),
            None => Arc::new(state.data.clone()),
        };
        let objects = state.objects.iter().map(|o| o.clone_ref(py)).collect();
        (data, objects)
    }
}

/// The constructor's arguments (shared by ``Span(...)``, ``llm_span`` and
/// ``llm_span_with_tokens``).
struct SpanArgs<'a, 'py> {
    model: &'a Bound<'py, PyAny>,
    provider: Option<&'a Bound<'py, PyAny>>,
    service_name: Option<&'a Bound<'py, PyAny>>,
    user_id: Option<&'a Bound<'py, PyAny>>,
    session_id: Option<&'a Bound<'py, PyAny>>,
    name: Option<&'a Bound<'py, PyAny>>,
    parent: Option<Bound<'py, PyAny>>,
    attributes: Option<&'a Bound<'py, PyDict>>,
}

impl SpanCore {
    fn build(py: Python<'_>, args: SpanArgs<'_, '_>) -> Self {
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
            data: SpanData {
                model: text_arg(py, Some(model), "model").unwrap_or_default(),
                provider: text_arg(py, provider, "provider"),
                service_name: text_arg(py, service_name, "service_name"),
                user_id: text_arg(py, user_id, "user_id"),
                session_id: text_arg(py, session_id, "session_id"),
                name: text_arg(py, name, "name").map_or(Cow::Borrowed(DEFAULT_NAME), Cow::Owned),
                ..SpanData::default()
            },
            objects: Vec::new(),
            done: None,
            parent: None,
            prompt: None,
            clock: None,
            entered: false,
            token: None,
        };
        if let Some(parent) = parent.filter(|p| !p.is_none()) {
            if parent.cast::<SpanCore>().is_ok() {
                state.parent = Some(parent.unbind());
            } else {
                fault(py, "parent_type", "parent= is not a span; ignored");
            }
        }
        if let Some(attributes) = attributes {
            for (key, value) in attributes.iter() {
                if let Some((key, value)) = convert(py, &key, &value) {
                    state.insert(key, value);
                }
            }
        }
        SpanCore {
            state: Mutex::new(state),
        }
    }
}

/// A span around one LLM call, for ``with`` or ``async with``.
///
/// Extra keyword arguments become metadata. ``service_name``, ``user_id`` and ``session_id``
/// default to the parent span's; a span without a service name gets the configured one. An
/// exception in the block ends the span with ``status="error"``, ``error_type`` (the class name)
/// and ``error_message``, then propagates unchanged.
///
/// >>> with llm_span("gpt-4o", "openai", user_id="u1") as span:
/// ...     span.set_metadata("completion_tokens", 42)
/// >>> span.status, span.metadata["completion_tokens"]
/// ('ok', 42)
#[pyfunction]
#[pyo3(signature = (
    model, provider = None, *, service_name = None, user_id = None, session_id = None,
    name = None, parent = None, **attributes
))]
#[allow(clippy::too_many_arguments)]
pub fn llm_span<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    provider: Option<&Bound<'py, PyAny>>,
    service_name: Option<&Bound<'py, PyAny>>,
    user_id: Option<&Bound<'py, PyAny>>,
    session_id: Option<&Bound<'py, PyAny>>,
    name: Option<&Bound<'py, PyAny>>,
    parent: Option<Bound<'py, PyAny>>,
    attributes: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, SpanCore>> {
    let span = SpanCore::build(
        py,
        SpanArgs {
            model,
            provider,
            service_name,
            user_id,
            session_id,
            name,
            parent,
            attributes,
        },
    );
    Bound::new(py, span)
}

/// Like ``llm_span``, and counts ``prompt`` in the Rust core before the block runs.
///
/// Records ``prompt_tokens``, ``token_count_method`` (``"tiktoken"`` for models in tiktoken's
/// table, else ``"heuristic"``) and, for exact counts, ``token_encoding``. Never raises: a
/// prompt that is neither a ``str`` nor a message list is estimated from its ``str()``.
///
/// >>> with llm_span_with_tokens("gpt-4o", "openai", prompt="Hello world!") as span:
/// ...     pass
/// >>> span.metadata["prompt_tokens"], span.metadata["token_count_method"]
/// (3, 'tiktoken')
#[pyfunction]
#[pyo3(signature = (
    model, provider = None, *, prompt, service_name = None, user_id = None, session_id = None,
    name = None, parent = None, **attributes
))]
#[allow(clippy::too_many_arguments)]
pub fn llm_span_with_tokens<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    provider: Option<&Bound<'py, PyAny>>,
    prompt: Py<PyAny>,
    service_name: Option<&Bound<'py, PyAny>>,
    user_id: Option<&Bound<'py, PyAny>>,
    session_id: Option<&Bound<'py, PyAny>>,
    name: Option<&Bound<'py, PyAny>>,
    parent: Option<Bound<'py, PyAny>>,
    attributes: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, SpanCore>> {
    let span = llm_span(
        py,
        model,
        provider,
        service_name,
        user_id,
        session_id,
        name,
        parent,
        attributes,
    )?;
    span.get().lock().prompt = Some(prompt);
    Ok(span)
}

/// An awaitable that is already done: what ``async with`` gets from ``__aenter__`` and
/// ``__aexit__`` (the span's work never waits, so there is nothing to suspend for).
#[pyclass(module = "instrumentation_sdk._core")]
pub struct Ready {
    value: Option<Py<PyAny>>,
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
                model,
                provider,
                service_name,
                user_id,
                session_id,
                name,
                parent,
                attributes,
            },
        )
    }

    /// Counts `prompt` when the span starts (`llm_span_with_tokens`).
    fn _set_prompt(&self, prompt: Py<PyAny>) {
        let previous = self.lock().prompt.replace(prompt);
        drop(previous); // outside the lock: dropping may run Python code
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
        self.lock().view().model.clone()
    }

    #[getter]
    fn provider(&self) -> Option<String> {
        self.lock().view().provider.clone()
    }

    #[getter]
    fn service_name(&self) -> Option<String> {
        self.lock().view().service_name.clone()
    }

    #[getter]
    fn user_id(&self) -> Option<String> {
        self.lock().view().user_id.clone()
    }

    #[getter]
    fn session_id(&self) -> Option<String> {
        self.lock().view().session_id.clone()
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.lock().view().status.name()
    }

    #[getter]
    fn error_type(&self) -> Option<String> {
        self.lock().view().error_type.clone()
    }

    #[getter]
    fn error_message(&self) -> Option<String> {
        self.lock().view().error_message.clone()
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
        self.lock().done.is_some()
    }

    /// Records `value` under `key`. Never raises.
    fn set_metadata(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        // Convert first: it may call into Python (__index__, __str__), never under the lock.
        let Some((key, value)) = convert(py, key, value) else {
            return;
        };
        let mut state = self.lock();
        if state.done.is_some() {
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
    }

    /// A read-only snapshot of the metadata recorded so far.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (data, objects) = self.snapshot(py);
        let dict = metadata_dict(py, &data, &objects, None)?;
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

    fn __aenter__(slf: Bound<'_, Self>) -> Ready {
        let span = Self::__enter__(slf);
        Ready {
            value: Some(span.into_any().unbind()),
        }
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
        record_dict(py, &data, &objects, None, default_service, usize::MAX).map(|(d, _)| d)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        let py = slf.py();
        if let Err(error) = start(&slf) {
            fault(
                py,
                "span_start",
                &format!("starting a span failed: {error}"),
            );
        }
        slf
    }

    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let _ = (exc_type, traceback);
        end(slf, exc.filter(|e| !e.is_none()));
        false
    }
}

/// A metadata key and value, converted without holding any lock. `None`: nothing to record.
fn convert(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> Option<(Cow<'static, str>, Converted)> {
    let (key, kind) = if let Ok(key) = key.cast::<PyString>() {
        metadata_key(&key.to_string_lossy())
    } else {
        fault(
            py,
            "metadata_key_not_str",
            "a metadata key is not a str; used its str()",
        );
        metadata_key(&key.str().ok()?.to_string_lossy())
    };
    let converted = match kind {
        KeyKind::Int => standard_int(py, &key, value),
        KeyKind::Str => standard_str(py, &key, value),
        KeyKind::Any => plain_value(value),
    };
    let converted = match converted {
        Some(value) => Converted::Value(value),
        None => Converted::Object(value.clone().unbind()),
    };
    Some((key, converted))
}

/// Primitives become `Value`s now; anything else is deferred to the flusher (`None`).
fn plain_value(value: &Bound<'_, PyAny>) -> Option<Value> {
    if value.is_none() {
        Some(Value::Null)
    } else if let Ok(b) = value.cast_exact::<PyBool>() {
        Some(Value::Bool(b.is_true()))
    } else if value.is_exact_instance_of::<PyInt>() {
        value.extract::<i64>().ok().map(Value::Int) // big ints are deferred to msgspec
    } else if let Ok(f) = value.cast_exact::<PyFloat>() {
        Some(Value::Float(f.value()))
    } else if let Ok(s) = value.cast_exact::<PyString>() {
        // to_string_lossy: a lone surrogate becomes U+FFFD instead of failing the export.
        Some(Value::Str(s.to_string_lossy().into_owned()))
    } else {
        None
    }
}

/// `prompt_tokens`, `completion_tokens`, `retry_count`: ints, converted when lossless.
fn standard_int(py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> Option<Value> {
    if !value.is_instance_of::<PyBool>() {
        if let Ok(int) = value.extract::<i64>() {
            return Some(Value::Int(int)); // int, int subclasses, anything with __index__
        }
        if let Ok(float) = value.cast::<PyFloat>() {
            let float = float.value();
            if float.fract() == 0.0 && float.abs() < 9.0e15 {
                return Some(Value::Int(float as i64));
            }
        }
        if let Ok(text) = value.cast::<PyString>() {
            if let Ok(int) = text.to_string_lossy().trim().parse::<i64>() {
                return Some(Value::Int(int));
            }
        }
    }
    fault(
        py,
        "metadata_type",
        &format!("metadata {key:?} expects an int; kept the value as given"),
    );
    plain_value(value)
}

/// `actual_model`, `session_id`, `finish_reason`: strs.
fn standard_str(py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> Option<Value> {
    if let Ok(text) = value.cast::<PyString>() {
        return Some(Value::Str(text.to_string_lossy().into_owned()));
    }
    fault(
        py,
        "metadata_type",
        &format!("metadata {key:?} expects a str; kept the value as given"),
    );
    plain_value(value)
}

struct ParentInfo {
    trace_id: u128,
    span_id: u64,
    service_name: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
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

fn start(slf: &Bound<'_, SpanCore>) -> PyResult<()> {
    let py = slf.py();
    let span = slf.get();
    let hooks = HOOKS.get(py);
    let (explicit_parent, prompt, model) = {
        let mut state = span.lock();
        if state.started() || state.done.is_some() {
            return Ok(()); // entered twice: the first entry counts
        }
        state.entered = true;
        let model = state.prompt.is_some().then(|| state.data.model.clone());
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
        super::otlp::otel_parent(py)
    } else {
        None
    };
    let count = match (prompt, model) {
        (Some(prompt), Some(model)) => count_prompt(py, prompt.bind(py), &model),
        _ => None,
    };
    let token = match hooks {
        Some(hooks) => hooks.current.set(slf.as_any())?.unbind(),
        None => py.None(),
    };
    let mut state = span.lock();
    let data = &mut state.data;
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
    if let Some(count) = count {
        let tokens = i64::try_from(count.tokens).unwrap_or(i64::MAX);
        data.set(Cow::Borrowed("prompt_tokens"), Value::Int(tokens));
        data.set(
            Cow::Borrowed("token_count_method"),
            Value::Str(count.method.name().to_owned()),
        );
        if let Some(encoding) = count.encoding {
            data.set(
                Cow::Borrowed("token_encoding"),
                Value::Str(encoding.name().to_owned()),
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
    Ok(())
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
fn error_of(exc: &Bound<'_, PyAny>) -> (Option<String>, String) {
    let kind = exc.get_type().name().ok().map(|n| n.to_string());
    let message = match exc.str() {
        Ok(text) => text.to_string_lossy().into_owned(),
        Err(_) => "<str() of the exception failed>".to_owned(),
    };
    (kind, message)
}

fn end(slf: &Bound<'_, SpanCore>, exc: Option<&Bound<'_, PyAny>>) {
    let py = slf.py();
    let error = exc.map(error_of);
    let (finished, token) = {
        let mut state = slf.get().lock();
        if state.done.is_some() {
            return;
        }
        let clock = match state.clock {
            Some(clock) => clock,
            None => {
                // Ended without a successful start: still report it, with fresh ids.
                state.data.trace_id = new_trace_id();
                state.data.span_id = new_span_id();
                Clock::start()
            }
        };
        let mut data = std::mem::take(&mut state.data);
        data.start_time_unix_nano = clock.start_unix_nano();
        data.end_time_unix_nano = clock.end_unix_nano();
        match error {
            None => data.status = Status::Ok,
            Some((kind, message)) => {
                data.status = Status::Error;
                data.error_type = kind;
                data.error_message = Some(message);
            }
        }
        let data = Arc::new(data);
        state.done = Some(Arc::clone(&data));
        state.clock.get_or_insert(clock);
        let objects = state.objects.iter().map(|o| o.clone_ref(py)).collect();
        (Finished { data, objects }, state.token.take())
    };
    if let (Some(token), Some(hooks)) = (token.filter(|t| !t.is_none(py)), HOOKS.get(py)) {
        // ValueError: exited in another context than it was entered in (another task); that
        // context keeps its own value, so there is nothing to undo here.
        let _ = hooks.current.reset(token.bind(py));
    }
    submit(py, finished);
}

fn submit(py: Python<'_>, finished: Finished) {
    let mut finished = finished;
    // At most: rebuild the pipeline after a fork, start it, then push again.
    for _ in 0..3 {
        let sink = ACTIVE_SINK.load();
        let Some(sink) = sink.as_ref() else {
            match HOOKS.get(py) {
                Some(hooks) if hooks.start_pipeline.call0(py).is_ok() => continue,
                _ => {
                    ORPHANED.fetch_add(1, Ordering::Relaxed);
                    fault(
                        py,
                        "no_pipeline",
                        "no span pipeline could be started; span dropped",
                    );
                    return;
                }
            }
        };
        match sink.buffer.push(finished) {
            Push::Accepted(_) => return,
            Push::Full(_) => {
                fault(
                    py,
                    "buffer_full",
                    "the span buffer is full; new spans are dropped",
                );
                return;
            }
            Push::Closed(_) => {
                fault(
                    py,
                    "after_shutdown",
                    "a span ended after shutdown(); dropped",
                );
                return;
            }
            Push::Forked(back) => {
                // Forked without Python's at-fork hooks (uWSGI forks from C).
                finished = back;
                ACTIVE_SINK.store(None);
                if let Some(hooks) = HOOKS.get(py) {
                    let _ = hooks.after_fork.call0(py);
                }
            }
        }
    }
    ORPHANED.fetch_add(1, Ordering::Relaxed);
    fault(
        py,
        "no_pipeline",
        "no span pipeline could be started; span dropped",
    );
}

fn value_to_py<'py>(
    py: Python<'py>,
    value: &Value,
    objects: &[Py<PyAny>],
    encoded: Option<&[Encoded]>,
    max_value_bytes: usize,
    report: &mut EncodeReport,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Str(s) => {
            let (text, cut) = bounded(s, max_value_bytes);
            report.truncated += u64::from(cut);
            PyString::new(py, &text).into_any()
        }
        Value::Json(json) => {
            let (text, cut) = bounded(json, max_value_bytes);
            report.truncated += u64::from(cut);
            PyString::new(py, &text).into_any()
        }
        Value::Deferred(index) => match encoded.and_then(|e| e.get(*index)) {
            Some(Encoded::Json(json)) if json.len() > max_value_bytes => {
                report.truncated += 1;
                PyString::new(py, &bounded(json, max_value_bytes).0).into_any()
            }
            Some(Encoded::Text(text)) => {
                let (text, cut) = bounded(text, max_value_bytes);
                report.truncated += u64::from(cut);
                PyString::new(py, &text).into_any()
            }
            _ => objects
                .get(*index)
                .map_or_else(|| py.None().into_bound(py), |o| o.bind(py).clone()),
        },
    })
}

fn metadata_dict<'py>(
    py: Python<'py>,
    data: &SpanData,
    objects: &[Py<PyAny>],
    encoded: Option<&[Encoded]>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut report = EncodeReport::default();
    let dict = PyDict::new(py);
    for (key, value) in &data.metadata {
        dict.set_item(
            key,
            value_to_py(py, value, objects, encoded, usize::MAX, &mut report)?,
        )?;
    }
    Ok(dict)
}

fn record_dict<'py>(
    py: Python<'py>,
    data: &SpanData,
    objects: &[Py<PyAny>],
    encoded: Option<&[Encoded]>,
    default_service: &str,
    max_value_bytes: usize,
) -> PyResult<(Bound<'py, PyDict>, EncodeReport)> {
    let mut report = EncodeReport::default();
    let record = PyDict::new(py);
    let hex_opt = |id: Option<u64>| id.map(|id| format!("{id:016x}"));
    record.set_item(intern!(py, "trace_id"), format!("{:032x}", data.trace_id))?;
    record.set_item(intern!(py, "span_id"), format!("{:016x}", data.span_id))?;
    record.set_item(intern!(py, "parent_span_id"), hex_opt(data.parent_span_id))?;
    record.set_item(intern!(py, "name"), &data.name)?;
    record.set_item(intern!(py, "model"), &data.model)?;
    record.set_item(intern!(py, "provider"), &data.provider)?;
    record.set_item(
        intern!(py, "service_name"),
        data.service_name.as_deref().unwrap_or(default_service),
    )?;
    record.set_item(intern!(py, "user_id"), &data.user_id)?;
    record.set_item(intern!(py, "session_id"), &data.session_id)?;
    record.set_item(intern!(py, "status"), data.status.name())?;
    record.set_item(intern!(py, "error_type"), &data.error_type)?;
    let message = data.error_message.as_deref().map(|m| {
        let (text, cut) = bounded(m, max_value_bytes);
        report.truncated += u64::from(cut);
        text.into_owned()
    });
    record.set_item(intern!(py, "error_message"), message)?;
    record.set_item(
        intern!(py, "start_time_unix_nano"),
        data.start_time_unix_nano,
    )?;
    record.set_item(intern!(py, "end_time_unix_nano"), data.end_time_unix_nano)?;
    let metadata = PyDict::new(py);
    for (key, value) in &data.metadata {
        let value = value_to_py(py, value, objects, encoded, max_value_bytes, &mut report)?;
        metadata.set_item(key, value)?;
    }
    record.set_item(intern!(py, "metadata"), metadata)?;
    Ok((record, report))
}

/// The active pipeline's buffer, from Python's side.
#[pyclass(frozen, module = "instrumentation_sdk._core")]
pub struct SpanSink {
    sink: Arc<Sink>,
}

#[pymethods]
impl SpanSink {
    #[new]
    fn new(capacity: usize, batch_size: usize) -> PyResult<Self> {
        let buffer = SpanBuffer::new(capacity)?;
        buffer.set_wake_at(batch_size);
        Ok(SpanSink {
            sink: Arc::new(Sink { buffer }),
        })
    }

    /// Make this the sink that ending spans push into.
    fn activate(&self) {
        ACTIVE_SINK.store(Some(Arc::clone(&self.sink)));
    }

    /// Stop being the active sink (if it still is).
    fn deactivate(&self) {
        let current = ACTIVE_SINK.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.sink)) {
            ACTIVE_SINK.store(None);
        }
    }

    /// Refuse new spans (counted) and wake the flusher to drain the rest.
    fn close(&self) {
        self.sink.buffer.close();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.sink.buffer.is_closed()
    }

    fn wake(&self) {
        self.sink.buffer.wake();
    }

    /// Wait (detached) until a batch is ready, `wake()` is called, or `timeout` seconds pass.
    fn wait(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        py.detach(|| self.sink.buffer.wait(timeout))
    }

    /// The flusher's whole round for a JSON Lines file, in one call and (unless some span holds
    /// Python objects to encode) one stretch without the interpreter: wait up to `timeout`
    /// seconds for a batch, drain up to `max_items` spans, encode them as JSON Lines, append
    /// them to `file`, free them. Returns (spans, truncated values, unencodable values, the bytes
    /// if the write failed, the error); on failure the caller retries with the bytes.
    #[allow(clippy::too_many_arguments)]
    fn export_jsonl<'py>(
        &self,
        py: Python<'py>,
        file: &JsonlFile,
        timeout: f64,
        max_items: usize,
        default_service: &str,
        max_value_bytes: usize,
        encode: &Bound<'py, PyAny>,
    ) -> JsonlOutcome<'py> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let buffer = &self.sink.buffer;
        let stage = py.detach(|| {
            if !timeout.is_zero() {
                buffer.wait(timeout);
            }
            let batch = Batch {
                spans: buffer.drain(max_items),
                encoded: Vec::new(),
            };
            if batch.spans.iter().any(|span| !span.objects.is_empty()) {
                return Err(batch); // their objects need the interpreter to encode
            }
            Ok(batch.write_jsonl(&file.inner, default_service, max_value_bytes))
        });
        let (count, report, failed) = match stage {
            Ok(done) => done,
            Err(mut batch) => {
                let unencodable = batch.encode_deferred(py, encode);
                // The caller's objects are released here, attached; the rest goes detached.
                let objects: Vec<Vec<Py<PyAny>>> = batch
                    .spans
                    .iter_mut()
                    .map(|span| std::mem::take(&mut span.objects))
                    .collect();
                let (count, mut report, failed) =
                    py.detach(|| batch.write_jsonl(&file.inner, default_service, max_value_bytes));
                drop(objects);
                report.unencodable = unencodable;
                (count, report, failed)
            }
        };
        match failed {
            None => (count, report.truncated, report.unencodable, None, None),
            Some((text, error)) => (
                count,
                report.truncated,
                report.unencodable,
                Some(PyBytes::new(py, text.as_bytes())),
                Some(format!("{}: {error}", file.inner.path().display())),
            ),
        }
    }

    /// Take up to `max_items` finished spans, oldest first.
    fn drain(&self, max_items: usize) -> Batch {
        Batch {
            spans: self.sink.buffer.drain(max_items),
            encoded: Vec::new(),
        }
    }

    #[getter]
    fn owned_by_this_process(&self) -> bool {
        self.sink.buffer.is_owned_by_this_process()
    }

    fn __len__(&self) -> usize {
        self.sink.buffer.len()
    }

    /// `accepted`, `dropped` (buffer full), `rejected_closed`, `drained`, `len`, `capacity`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.sink.buffer.stats();
        let dict = PyDict::new(py);
        dict.set_item("accepted", stats.accepted)?;
        dict.set_item("dropped", stats.dropped)?;
        dict.set_item("rejected_closed", stats.rejected_closed)?;
        dict.set_item("drained", stats.drained)?;
        dict.set_item("len", stats.len)?;
        dict.set_item("capacity", stats.capacity)?;
        Ok(dict)
    }
}

type JsonlOutcome<'py> = (usize, u64, u64, Option<Bound<'py, PyBytes>>, Option<String>);

/// What writing a batch did: spans written, encoding figures, and the text and error if the
/// write failed (kept for the caller's retries).
type Written = (usize, WriteReport, Option<(String, std::io::Error)>);

#[derive(Default)]
struct WriteReport {
    truncated: u64,
    unencodable: u64,
}

impl Batch {
    /// Encode, append and free the spans (no Python objects left in them: see `export_jsonl`).
    fn write_jsonl(
        self,
        file: &crate::jsonl::JsonlFile,
        default_service: &str,
        max_value_bytes: usize,
    ) -> Written {
        let count = self.spans.len();
        if count == 0 {
            return (0, WriteReport::default(), None);
        }
        let (text, report) = self.encode_jsonl(default_service, max_value_bytes);
        drop(self);
        let report = WriteReport {
            truncated: report.truncated,
            unencodable: 0,
        };
        match file.append(text.as_bytes()) {
            Ok(()) => (count, report, None),
            Err(error) => (count, report, Some((text, error))),
        }
    }

    fn encode_jsonl(
        &self,
        default_service: &str,
        max_value_bytes: usize,
    ) -> (String, EncodeReport) {
        let mut out = String::with_capacity(self.spans.len() * 512);
        let mut report = EncodeReport::default();
        for (index, span) in self.spans.iter().enumerate() {
            let encoded = self.encoded.get(index).map_or(&[][..], Vec::as_slice);
            write_json(
                &span.data,
                encoded,
                default_service,
                max_value_bytes,
                &mut out,
                &mut report,
            );
            out.push('\n');
        }
        (out, report)
    }
}

/// A batch of finished spans in the flusher's hands.
#[pyclass(module = "instrumentation_sdk._core")]
pub struct Batch {
    spans: Vec<Finished>,
    /// Per span, what its deferred values encoded to (filled by `encode_deferred`).
    encoded: Vec<Vec<Encoded>>,
}

#[pymethods]
impl Batch {
    fn __len__(&self) -> usize {
        self.spans.len()
    }

    /// Encode every deferred metadata value with `encode(obj) -> bytes` (msgspec); a value it
    /// cannot encode is replaced by its `repr`. Returns how many were replaced.
    fn encode_deferred(&mut self, py: Python<'_>, encode: &Bound<'_, PyAny>) -> u64 {
        let mut replaced = 0;
        self.encoded = self
            .spans
            .iter()
            .map(|span| {
                span.objects
                    .iter()
                    .map(|object| {
                        let object = object.bind(py);
                        let json = encode
                            .call1((object,))
                            .ok()
                            .and_then(|b| b.cast_into::<PyBytes>().ok())
                            .and_then(|b| String::from_utf8(b.as_bytes().to_vec()).ok());
                        json.map_or_else(
                            || {
                                replaced += 1;
                                Encoded::Text(object.repr().map_or_else(
                                    |_| "<unrepresentable>".to_owned(),
                                    |r| r.to_string_lossy().into_owned(),
                                ))
                            },
                            Encoded::Json,
                        )
                    })
                    .collect()
            })
            .collect();
        replaced
    }

    /// The batch as JSON Lines (one record per line), encoded with the interpreter detached.
    /// Returns the bytes and how many values were truncated.
    fn to_jsonl<'py>(
        &self,
        py: Python<'py>,
        default_service: &str,
        max_value_bytes: usize,
    ) -> (Bound<'py, PyBytes>, u64) {
        let (text, report) = py.detach(|| self.encode_jsonl(default_service, max_value_bytes));
        (PyBytes::new(py, text.as_bytes()), report.truncated)
    }

    /// The batch as records (dicts), the exporter protocol's form. Returns the list and how
    /// many values were truncated.
    fn to_records<'py>(
        &self,
        py: Python<'py>,
        default_service: &str,
        max_value_bytes: usize,
    ) -> PyResult<(Vec<Bound<'py, PyDict>>, u64)> {
        let mut truncated = 0;
        let mut records = Vec::with_capacity(self.spans.len());
        for (index, span) in self.spans.iter().enumerate() {
            let encoded = self.encoded.get(index).map(Vec::as_slice);
            let (record, report) = record_dict(
                py,
                &span.data,
                &span.objects,
                encoded,
                default_service,
                max_value_bytes,
            )?;
            truncated += report.truncated;
            records.push(record);
        }
        Ok((records, truncated))
    }

    /// Drop the Python objects the batch holds (done with the interpreter attached).
    fn clear(&mut self) {
        self.spans.clear();
        self.encoded.clear();
    }
}

impl Batch {
    /// Each span's data with what its deferred values encoded to.
    pub(crate) fn spans_with_values(&self) -> impl Iterator<Item = (&SpanData, &[Encoded])> {
        self.spans.iter().enumerate().map(|(index, span)| {
            let encoded = self.encoded.get(index).map_or(&[][..], Vec::as_slice);
            (&*span.data, encoded)
        })
    }
}
