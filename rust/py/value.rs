//! Python values to span values and back: metadata keys and values converted on the request
//! thread (primitives at once, anything else kept for the flusher), the flusher's encoding of
//! kept objects (msgspec, else their `repr()`), and span values back to Python objects.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

use super::context::fault;
use crate::record::{bounded, metadata_key, EncodeReport, KeyKind};
use crate::span::{Encoded, Key, Text, Value};

/// A metadata value after conversion: a primitive, or the caller's object for the flusher.
pub(crate) enum Converted {
    Value(Value),
    Object(Py<PyAny>),
}

/// A metadata key and value, converted without holding any lock. `None`: nothing to record.
pub(crate) fn convert(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> Option<(Key, Converted)> {
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
        KeyKind::Float => standard_float(py, &key, value),
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
pub(crate) fn plain_value(value: &Bound<'_, PyAny>) -> Option<Value> {
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
        Some(Value::Str(Text::from(s.to_string_lossy())))
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
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        fault(
            py,
            "metadata_out_of_range",
            &format!(
                "metadata {key:?} is out of range for a 64-bit int; kept the value as given \
                 (exported as JSON, not as an int attribute)"
            ),
        );
        return plain_value(value);
    }
    fault(
        py,
        "metadata_type",
        &format!("metadata {key:?} expects an int; kept the value as given"),
    );
    plain_value(value)
}

/// `time_to_first_token_ms`, `time_per_output_token_ms`: floats (an int converts).
fn standard_float(py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> Option<Value> {
    if !value.is_instance_of::<PyBool>() {
        if let Ok(float) = value.cast::<PyFloat>() {
            return Some(Value::Float(float.value()));
        }
        if value.is_instance_of::<PyInt>() {
            if let Ok(float) = value.extract::<f64>() {
                return Some(Value::Float(float));
            }
        }
    }
    fault(
        py,
        "metadata_type",
        &format!("metadata {key:?} expects a float; kept the value as given"),
    );
    plain_value(value)
}

/// `actual_model`, `session_id`, `finish_reason`: strs.
fn standard_str(py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> Option<Value> {
    if let Ok(text) = value.cast::<PyString>() {
        return Some(Value::Str(Text::from(text.to_string_lossy())));
    }
    fault(
        py,
        "metadata_type",
        &format!("metadata {key:?} expects a str; kept the value as given"),
    );
    plain_value(value)
}

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
        Value::Json(json) => json_value(py, json, max_value_bytes, report)?,
        Value::Deferred(index) => match encoded.and_then(|e| e.get(*index)) {
            Some(Encoded::Json(json)) if json.len() > max_value_bytes => {
                report.truncated += 1;
                PyString::new(py, &bounded(json, max_value_bytes).0).into_any()
            }
            Some(Encoded::Rewritten(json)) => json_value(py, json, max_value_bytes, report)?,
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

static JSON_LOADS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// JSON the core holds (a value a processor wrote) as Python objects, or its text cut to the
/// bound when it is over it.
fn json_value<'py>(
    py: Python<'py>,
    json: &str,
    max_value_bytes: usize,
    report: &mut EncodeReport,
) -> PyResult<Bound<'py, PyAny>> {
    if json.len() > max_value_bytes {
        report.truncated += 1;
        return Ok(PyString::new(py, &bounded(json, max_value_bytes).0).into_any());
    }
    let loads = JSON_LOADS.get_or_try_init(py, || {
        py.import("json")?.getattr("loads").map(Bound::unbind)
    })?;
    loads.bind(py).call1((json,))
}

/// `object` as JSON through `encode(obj) -> bytes` (msgspec), or its `repr()` when it cannot be
/// encoded (then `true`). A `str` is kept as text.
pub(crate) fn encode_object(
    object: &Bound<'_, PyAny>,
    encode: &Bound<'_, PyAny>,
) -> (Encoded, bool) {
    if let Ok(text) = object.cast_exact::<PyString>() {
        // Text stays text (a captured prompt): bounded as a string, never as its JSON literal.
        return (Encoded::Text(text.to_string_lossy().into_owned()), false);
    }
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
