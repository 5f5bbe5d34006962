//! OTLP from Python: `encode_otlp` turns a drained batch (or records) into request bodies with
//! the interpreter detached; `otlp_partial_success` reads a protobuf response.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::processor::ExportPlan;
use super::record::spans_from_records;
use super::sink::Batch;
use crate::otlp::{self, proto, Options, Protocol};
use crate::span::{Encoded, SpanData};

/// The batch as OTLP request bodies (`protocol` is `"http/protobuf"` or `"http/json"`), each at
/// most `max_request_bytes` long (uncompressed), bounded by the plan. Returns the bodies and how
/// many values were truncated. Call `Batch.encode_deferred` first so containers export as their
/// JSON.
#[pyfunction]
#[pyo3(signature = (
    batch, plan, protocol, max_request_bytes, resource_attributes = Vec::new(),
    openinference = false,
))]
pub fn encode_otlp<'py>(
    py: Python<'py>,
    batch: PyRef<'py, Batch>,
    plan: &ExportPlan,
    protocol: &str,
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
            default_service: &plan.default_service,
            resource_attributes: &resource_attributes,
            limits: plan.limits,
            max_request_bytes,
            openinference,
        },
    )
}

/// Like `encode_otlp`, from records (the dicts any exporter receives) instead of the core's
/// batch. `encode` (msgspec's JSON encoder) encodes metadata values that are not primitives.
/// Returns the bodies and how many values were truncated. A record that is not one (a missing
/// id or time, a wrong type) raises `ValueError` or `TypeError` naming its position and field.
#[pyfunction]
#[pyo3(signature = (
    records, encode, plan, protocol, max_request_bytes, resource_attributes = Vec::new(),
    openinference = false,
))]
#[allow(clippy::too_many_arguments)]
pub fn encode_otlp_records<'py>(
    py: Python<'py>,
    records: Vec<Bound<'py, PyAny>>,
    encode: &Bound<'py, PyAny>,
    plan: &ExportPlan,
    protocol: &str,
    max_request_bytes: usize,
    resource_attributes: Vec<(String, String)>,
    openinference: bool,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, u64)> {
    let spans = spans_from_records(py, &records, encode)?;
    encode_spans(
        py,
        spans
            .iter()
            .map(|(data, encoded)| (data, encoded.as_slice())),
        protocol,
        &Options {
            default_service: &plan.default_service,
            resource_attributes: &resource_attributes,
            limits: plan.limits,
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
