//! Exported records (the dicts exporters receive) built from span data, bounding each value.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::span::{bounded, EncodeReport, Encoded, SpanData, Value};

pub(crate) fn value_to_py<'py>(
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

pub(crate) fn metadata_dict<'py>(
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

pub(crate) fn record_dict<'py>(
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
    record.set_item(intern!(py, "model"), data.model.as_str())?;
    record.set_item(intern!(py, "provider"), data.provider.as_deref())?;
    record.set_item(
        intern!(py, "service_name"),
        data.service_name.as_deref().unwrap_or(default_service),
    )?;
    record.set_item(intern!(py, "user_id"), data.user_id.as_deref())?;
    record.set_item(intern!(py, "session_id"), data.session_id.as_deref())?;
    record.set_item(intern!(py, "status"), data.status.name())?;
    record.set_item(intern!(py, "error_type"), data.error_type.as_deref())?;
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
