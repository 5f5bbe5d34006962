//! The built-in processors as Python objects (`RustProcessor`), and the flusher's plan for a
//! pipeline (`ExportPlan`): the processors to run in the core and the bounds on each record.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::processor::{DropKeys, Processor, Sample};
use crate::record::Limits;
use crate::scan::mask::Mode;
use crate::scan::spans::{PiiAction, ScanSpans};

/// A processor that runs in the Rust core, on the flusher thread, with the interpreter detached.
/// Made by ``instrumentation_sdk.processors.sample(...)`` and ``drop_keys(...)``.
#[pyclass(frozen, module = "instrumentation_sdk.processors")]
pub struct RustProcessor {
    pub(crate) inner: Arc<dyn Processor>,
    description: String,
}

#[pymethods]
impl RustProcessor {
    /// Keep the share ``ratio`` (0.0 to 1.0) of traces, decided by the trace id.
    #[staticmethod]
    fn sample(ratio: f64) -> PyResult<Self> {
        let sample = Sample::new(ratio).map_err(PyValueError::new_err)?;
        Ok(RustProcessor {
            description: format!("sample({})", sample.ratio()),
            inner: Arc::new(sample),
        })
    }

    /// Remove these metadata keys (and event attributes of these names).
    #[staticmethod]
    fn drop_keys(keys: Vec<String>) -> Self {
        let drop = DropKeys::new(keys);
        RustProcessor {
            description: format!("drop_keys({:?})", drop.keys()),
            inner: Arc::new(drop),
        }
    }

    /// The scanners on each span (``configure(pii=..., injection=...)`` adds this one):
    /// ``pii`` is ``"off"``, ``"detect"``, ``"mask"`` (redact) or ``"hash"`` (with ``key``);
    /// ``detect_injection`` scores the captured prompt, with ``model`` (a callable
    /// ``text -> probability``) as its model tier.
    #[staticmethod]
    #[pyo3(signature = (pii, detect_injection, key = None, model = None))]
    fn scan(
        pii: &str,
        detect_injection: bool,
        key: Option<Vec<u8>>,
        model: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let action = match pii {
            "off" => PiiAction::Off,
            "detect" => PiiAction::Detect,
            "mask" => PiiAction::Mask(Mode::Redact),
            "hash" => PiiAction::Mask(Mode::Hash),
            other => {
                return Err(PyValueError::new_err(format!(
                    "pii must be 'off', 'detect', 'mask' or 'hash', got {other:?}"
                )))
            }
        };
        let key = match (action, key) {
            (PiiAction::Mask(Mode::Hash), None) => {
                return Err(PyValueError::new_err(
                    "pii='hash' needs a key (pii_hash_key)",
                ))
            }
            (_, key) => key.unwrap_or_default(),
        };
        let scan = ScanSpans::new(action, detect_injection, &key)
            .with_model(model.map(super::scan::python_model));
        Ok(RustProcessor {
            description: scan.describe(),
            inner: Arc::new(scan),
        })
    }

    fn __repr__(&self) -> String {
        format!("RustProcessor.{}", self.description)
    }
}

/// What the flusher does to each batch in the core: run these processors, then encode records
/// within these bounds, with this service name for spans that set none.
#[pyclass(frozen, module = "instrumentation_sdk._core")]
pub struct ExportPlan {
    pub(crate) processors: Vec<Arc<dyn Processor>>,
    pub(crate) limits: Limits,
    pub(crate) default_service: String,
}

#[pymethods]
impl ExportPlan {
    #[new]
    #[pyo3(signature = (default_service, max_value_bytes, max_content_bytes, processors = Vec::new(), max_span_bytes = usize::MAX))]
    fn new(
        default_service: String,
        max_value_bytes: usize,
        max_content_bytes: usize,
        processors: Vec<PyRef<'_, RustProcessor>>,
        max_span_bytes: usize,
    ) -> Self {
        ExportPlan {
            processors: processors.iter().map(|p| Arc::clone(&p.inner)).collect(),
            limits: Limits {
                max_value_bytes,
                max_content_bytes,
                max_span_bytes,
            },
            default_service,
        }
    }

    #[getter]
    fn default_service(&self) -> &str {
        &self.default_service
    }
}
