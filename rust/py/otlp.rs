//! OTLP from Python: `encode_otlp` turns a drained batch into request bodies with the interpreter
//! detached; `otlp_partial_success` reads a protobuf response; `install_otel_parent_hook` lets
//! root spans join an active OpenTelemetry trace.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::context::CurrentSpanVar;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

use super::record::span_from_record;
use super::sink::Batch;
use crate::otlp::{self, proto, Options, Protocol};
use crate::span::{Encoded, SpanData};

/// The batch as OTLP request bodies (`protocol` is `"http/protobuf"` or `"http/json"`), each at
/// most `max_request_bytes` long (uncompressed). Returns the bodies and how many values were
/// truncated. Call `Batch.encode_deferred` first so containers export as their JSON.
#[pyfunction]
#[pyo3(signature = (
    batch, protocol, default_service, max_value_bytes, max_request_bytes,
    resource_attributes = Vec::new(), openinference = false,
))]
#[allow(clippy::too_many_arguments)]
pub fn encode_otlp<'py>(
    py: Python<'py>,
    batch: PyRef<'py, Batch>,
    protocol: &str,
    default_service: &str,
    max_value_bytes: usize,
    max_request_bytes: usize,
    resource_attributes: Vec<(String, String)>,
    openinference: bool,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, u64)> {
    let batch: &Batch = &batch;
    encode_spans(
        py,
        batch.spans_with_values(),
        protocol,
        &Options {
            default_service,
            resource_attributes: &resource_attributes,
            max_value_bytes,
            max_request_bytes,
            openinference,
        },
    )
}

/// Like `encode_otlp`, from records (the dicts any exporter receives) instead of the core's
/// batch. `encode` (msgspec's JSON encoder) encodes metadata values that are not primitives.
/// Returns the bodies and how many values were truncated.
/// A record that is not one (a missing id or time, a wrong type) raises `ValueError` or
/// `TypeError` naming its position and field.
#[pyfunction]
#[pyo3(signature = (
    records, encode, protocol, default_service, max_value_bytes, max_request_bytes,
    resource_attributes = Vec::new(), openinference = false,
))]
#[allow(clippy::too_many_arguments)]
pub fn encode_otlp_records<'py>(
    py: Python<'py>,
    records: Vec<Bound<'py, PyAny>>,
    encode: &Bound<'py, PyAny>,
    protocol: &str,
    default_service: &str,
    max_value_bytes: usize,
    max_request_bytes: usize,
    resource_attributes: Vec<(String, String)>,
    openinference: bool,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, u64)> {
    let mut spans = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let (data, encoded) = span_from_record(record, encode).map_err(|error| {
            let message = format!("record {index}: {}", error.value(py));
            if error.is_instance_of::<PyTypeError>(py) {
                PyTypeError::new_err(message)
            } else {
                PyValueError::new_err(message)
            }
        })?;
        spans.push((data, encoded));
    }
    encode_spans(
        py,
        spans
            .iter()
            .map(|(data, encoded)| (data, encoded.as_slice())),
        protocol,
        &Options {
            default_service,
            resource_attributes: &resource_attributes,
            max_value_bytes,
            max_request_bytes,
            openinference,
        },
    )
}

/// Request bodies for `spans`, encoded with the interpreter detached, and how many values were
/// truncated.
fn encode_spans<'py, 's>(
    py: Python<'py>,
    spans: impl IntoIterator<Item = (&'s SpanData, &'s [Encoded])> + Send,
    protocol: &str,
    options: &Options<'s>,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, u64)> {
    let protocol = parse_protocol(protocol)?;
    let (bodies, report) = py.detach(|| otlp::encode(spans, protocol, options));
    let bodies = bodies.iter().map(|body| PyBytes::new(py, body)).collect();
    Ok((bodies, report.truncated))
}

fn parse_protocol(protocol: &str) -> PyResult<Protocol> {
    match protocol {
        "http/protobuf" => Ok(Protocol::Protobuf),
        "http/json" => Ok(Protocol::Json),
        other => Err(PyValueError::new_err(format!(
            "protocol must be 'http/protobuf' or 'http/json', got {other:?}"
        ))),
    }
}

/// `(rejected_spans, error_message)` of a protobuf `ExportTraceServiceResponse` body.
#[pyfunction]
pub fn otlp_partial_success(body: &[u8]) -> PyResult<(i64, String)> {
    proto::decode_partial_success(body).map_err(|error| {
        PyValueError::new_err(format!("not an ExportTraceServiceResponse: {error}"))
    })
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
