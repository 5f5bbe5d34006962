//! What span code needs from the Python layer: the `ContextVar` holding the active span (read
//! and set through CPython's C API where the build allows), and the hooks that start the
//! pipeline, rebuild it after a fork and count the SDK's own faults; and the hook through which
//! root spans join an active OpenTelemetry trace.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// Python callables the span code needs, installed once by `instrumentation_sdk.spans`.
pub(crate) struct Hooks {
    /// The `ContextVar` holding the active span.
    pub(crate) current: CurrentSpanVar,
    /// Starts the pipeline (and activates its sink) when a span ends before there is one.
    pub(crate) start_pipeline: Py<PyAny>,
    /// Rebuilds the pipeline in a child process whose sink was inherited through `fork()`.
    pub(crate) after_fork: Py<PyAny>,
    /// `note_fault(kind, message)`: counts the SDK's own faults, logs each kind once.
    pub(crate) note_fault: Py<PyAny>,
}

pub(crate) static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

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

    pub(crate) fn set<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = value.py();
        // SAFETY: `var` is a ContextVar and `value` a live object; we are attached. Returns a
        // new reference to a Token, or NULL with an exception set.
        let token = unsafe { pyo3::ffi::PyContextVar_Set(self.var.as_ptr(), value.as_ptr()) };
        // SAFETY: a new reference, or NULL with an exception set (handled by the call).
        unsafe { Bound::from_owned_ptr_or_err(py, token) }
    }

    pub(crate) fn reset(&self, token: &Bound<'_, PyAny>) -> PyResult<()> {
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

    pub(crate) fn set<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.set.bind(value.py()).call1((value,))
    }

    pub(crate) fn reset(&self, token: &Bound<'_, PyAny>) -> PyResult<()> {
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

pub(crate) fn fault(py: Python<'_>, kind: &str, message: &str) {
    if let Some(hooks) = HOOKS.get(py) {
        // A failing hook must not turn into an exception in the application either.
        let _ = hooks.note_fault.call1(py, (kind, message));
    }
}

struct OtelParent {
    hook: Py<PyAny>,
    /// OpenTelemetry's own context variable, when we can find it: an empty context means no
    /// active OTel span, known for the price of one C call instead of a Python call.
    context: Option<CurrentSpanVar>,
}

static OTEL_PARENT: PyOnceLock<OtelParent> = PyOnceLock::new();

/// Install `hook() -> (trace_id: int, span_id: int) | None`, called when a span starts with no
/// parent of ours: a valid answer (the active OpenTelemetry span) becomes its parent. Installed
/// once, and only when `opentelemetry` is importable. `context_var`, OpenTelemetry's context
/// `ContextVar`, lets root spans skip the hook while no OTel context is active.
#[pyfunction]
#[pyo3(signature = (hook, context_var = None))]
pub fn install_otel_parent_hook(
    py: Python<'_>,
    hook: Py<PyAny>,
    context_var: Option<&Bound<'_, PyAny>>,
) {
    let context = context_var.and_then(|var| CurrentSpanVar::new(var).ok());
    let _ = OTEL_PARENT.set(py, OtelParent { hook, context });
}

/// The active OpenTelemetry span's ids, if a hook is installed and one is active.
pub(crate) fn otel_parent(py: Python<'_>) -> Option<(u128, u64)> {
    let parent = OTEL_PARENT.get(py)?;
    if let Some(context) = &parent.context {
        let current = context.get(py).ok()?;
        if current.is_none() || current.cast::<PyDict>().is_ok_and(PyDictMethods::is_empty) {
            return None;
        }
    }
    let answer = parent.hook.call0(py).ok()?;
    let (trace_id, span_id): (u128, u64) = answer.extract(py).ok()?;
    (trace_id != 0 && span_id != 0).then_some((trace_id, span_id))
}
