//! Exported records (the dicts exporters receive) built from span data, bounding each value,
//! and read back into span data (`span_from_record`).

use std::borrow::Cow;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyString};

use super::span::plain_value;
use crate::span::{bounded, EncodeReport, Encoded, SpanData, Status, Text, Value, DEFAULT_NAME};

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

/// A record (as exporters receive it, or built by hand) back into span data, for exporters
/// that encode in the core (OTLP). Metadata values that `set_metadata` would keep as they are
/// (None, bool, 64-bit int, float, str) stay so; the others go through `encode` (msgspec's JSON
/// encoder), or become their `repr()` when it cannot encode them. Returns the data and its
/// encoded side table.
pub(crate) fn span_from_record(
    record: &Bound<'_, PyAny>,
    encode: &Bound<'_, PyAny>,
) -> PyResult<(SpanData, Vec<Encoded>)> {
    let record = record
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("a record must be a dict"))?;
    let field = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(record.get_item(name)?.filter(|value| !value.is_none()))
    };
    let text = |name: &str| -> PyResult<Option<Text>> {
        field(name)?
            .map(|value| {
                value
                    .cast::<PyString>()
                    .map(|s| Text::from(s.to_string_lossy()))
                    .map_err(|_| PyTypeError::new_err(format!("record {name:?} must be a str")))
            })
            .transpose()
    };
    let hex_id = |name: &str, digits: usize| -> PyResult<Option<u128>> {
        let Some(id) = text(name)? else {
            return Ok(None);
        };
        let parsed = (id.len() == digits && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u128::from_str_radix(&id, 16).ok())
            .flatten()
            .filter(|&id| id != 0);
        parsed.map(Some).ok_or_else(|| {
            PyValueError::new_err(format!(
                "record {name:?} must be {digits} hex digits, not all zero; got {id:?}"
            ))
        })
    };
    let required = |name: &str, value: Option<u128>| {
        value.ok_or_else(|| PyValueError::new_err(format!("record {name:?} is missing")))
    };
    let time = |name: &str| -> PyResult<u64> {
        field(name)?
            .ok_or_else(|| PyValueError::new_err(format!("record {name:?} is missing")))?
            .extract::<u64>()
            .map_err(|_| PyValueError::new_err(format!("record {name:?} must be an int >= 0")))
    };
    let status = match text("status")?.as_deref() {
        None | Some("unset") => Status::Unset,
        Some("ok") => Status::Ok,
        Some("error") => Status::Error,
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "record \"status\" must be 'ok', 'error' or 'unset', got {other:?}"
            )))
        }
    };
    let mut data = SpanData {
        trace_id: required("trace_id", hex_id("trace_id", 32)?)?,
        span_id: u64::try_from(required("span_id", hex_id("span_id", 16)?)?).unwrap_or(0),
        parent_span_id: hex_id("parent_span_id", 16)?.and_then(|id| u64::try_from(id).ok()),
        name: text("name")?.map_or(Cow::Borrowed(DEFAULT_NAME), |n| Cow::Owned(n.into_string())),
        model: text("model")?.unwrap_or_default(),
        provider: text("provider")?,
        service_name: text("service_name")?,
        user_id: text("user_id")?,
        session_id: text("session_id")?,
        status,
        error_type: text("error_type")?,
        error_message: text("error_message")?,
        start_time_unix_nano: time("start_time_unix_nano")?,
        end_time_unix_nano: time("end_time_unix_nano")?,
        metadata: Vec::new(),
    };
    let mut encoded = Vec::new();
    if let Some(metadata) = field("metadata")? {
        let metadata = metadata
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("record \"metadata\" must be a dict"))?;
        for (key, value) in metadata.iter() {
            let key = Cow::Owned(key.str()?.to_string_lossy().into_owned());
            let value = if let Some(value) = plain_value(&value) {
                value
            } else {
                encoded.push(encode_object(&value, encode).0);
                Value::Deferred(encoded.len() - 1)
            };
            data.set(key, value);
        }
    }
    Ok((data, encoded))
}

/// `object` as JSON through `encode(obj) -> bytes` (msgspec), or its `repr()` when it cannot be
/// encoded (then `true`).
pub(crate) fn encode_object(
    object: &Bound<'_, PyAny>,
    encode: &Bound<'_, PyAny>,
) -> (Encoded, bool) {
    let json = encode
        .call1((object,))
        .ok()
        .and_then(|b| b.cast_into::<PyBytes>().ok())
        .and_then(|b| String::from_utf8(b.as_bytes().to_vec()).ok());
    match json {
        Some(json) => (Encoded::Json(json), false),
        None => {
            let repr = object.repr().map_or_else(
                |_| "<unrepresentable>".to_owned(),
                |r| r.to_string_lossy().into_owned(),
            );
            (Encoded::Text(repr), true)
        }
    }
}
