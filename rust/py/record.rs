//! Exported records (the dicts exporters and processors receive) built from span data by
//! walking the core's field table, bounding what it says to bound, and read back into span data
//! (`span_from_record`). Also the table itself, for the Python layer (`record_fields`,
//! `standard_metadata_keys`).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use super::processor::ExportPlan;
use super::value::{encode_object, plain_value, value_to_py};
use crate::record::{
    write_jsonl, EncodeReport, FieldType, FieldValue, Limits, Parsed, EVENT_ATTRIBUTES, EVENT_NAME,
    EVENT_TIME, FIELDS, STANDARD_KEYS,
};
use crate::span::{Encoded, Event, Key, SpanData, Status, Text, Value};

/// The record's fields as `(key, type, otlp, sqlite column)`, in record order.
#[pyfunction]
pub fn record_fields() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    FIELDS
        .iter()
        .map(|spec| (spec.key, spec.ty.name(), spec.otlp, spec.column))
        .collect()
}

/// The spec's standard metadata keys as `(key, "int" | "str" | "any", otlp attribute)`.
#[pyfunction]
pub fn standard_metadata_keys() -> Vec<(&'static str, &'static str, &'static str)> {
    STANDARD_KEYS
        .iter()
        .map(|standard| (standard.key, standard.kind.name(), standard.otlp))
        .collect()
}

/// The field keys as interned Python strings (made once per interpreter).
fn field_keys(py: Python<'_>) -> &[Py<PyString>] {
    static KEYS: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
    KEYS.get_or_init(py, || {
        FIELDS
            .iter()
            .map(|spec| PyString::intern(py, spec.key).unbind())
            .collect()
    })
}

fn entries_dict<'py>(
    py: Python<'py>,
    entries: &[(Key, Value)],
    objects: &[Py<PyAny>],
    encoded: Option<&[Encoded]>,
    limit: usize,
    report: &mut EncodeReport,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in entries {
        dict.set_item(
            key,
            value_to_py(py, value, objects, encoded, limit, report)?,
        )?;
    }
    Ok(dict)
}

pub(crate) fn metadata_dict<'py>(
    py: Python<'py>,
    data: &SpanData,
    objects: &[Py<PyAny>],
) -> PyResult<Bound<'py, PyDict>> {
    let mut report = EncodeReport::default();
    entries_dict(py, &data.metadata, objects, None, usize::MAX, &mut report)
}

pub(crate) fn events_list<'py>(
    py: Python<'py>,
    events: &[Event],
    objects: &[Py<PyAny>],
    encoded: Option<&[Encoded]>,
    limit: usize,
    report: &mut EncodeReport,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for event in events {
        let item = PyDict::new(py);
        let (name, cut) = crate::record::bounded(&event.name, limit);
        report.truncated += u64::from(cut);
        item.set_item(EVENT_NAME, name.as_ref())?;
        item.set_item(EVENT_TIME, event.time_unix_nano)?;
        let attributes = entries_dict(py, &event.attributes, objects, encoded, limit, report)?;
        item.set_item(EVENT_ATTRIBUTES, attributes)?;
        list.append(item)?;
    }
    Ok(list)
}

/// The record of one span: a dict with every field of `FIELDS`, in order.
pub(crate) fn record_dict<'py>(
    py: Python<'py>,
    data: &SpanData,
    objects: &[Py<PyAny>],
    encoded: Option<&[Encoded]>,
    default_service: &str,
    limits: Limits,
) -> PyResult<(Bound<'py, PyDict>, EncodeReport)> {
    let mut report = EncodeReport::default();
    let record = PyDict::new(py);
    for (spec, key) in FIELDS.iter().zip(field_keys(py)) {
        let limit = limits.of(spec.bound);
        let value = match data.field(spec.field, default_service) {
            FieldValue::Null => py.None().into_bound(py),
            FieldValue::TraceId(id) => PyString::new(py, &format!("{id:032x}")).into_any(),
            FieldValue::SpanId(id) => PyString::new(py, &format!("{id:016x}")).into_any(),
            FieldValue::Str(text) => {
                let (text, cut) = crate::record::bounded(text, limit);
                report.truncated += u64::from(cut);
                PyString::new(py, &text).into_any()
            }
            FieldValue::Status(status) => PyString::new(py, status.name()).into_any(),
            FieldValue::UnixNano(time) => time.into_pyobject(py)?.into_any(),
            FieldValue::Metadata(entries) => {
                entries_dict(py, entries, objects, encoded, limit, &mut report)?.into_any()
            }
            FieldValue::Events(events) => {
                events_list(py, events, objects, encoded, limit, &mut report)?.into_any()
            }
            FieldValue::Content(value) => {
                value_to_py(py, value, objects, encoded, limit, &mut report)?
            }
        };
        record.set_item(key.bind(py), value)?;
    }
    Ok((record, report))
}

/// A record (as exporters receive it, or built by hand, or returned by a processor) back into
/// span data. Values that `set_metadata` would keep as they are (None, bool, 64-bit int, float,
/// str) stay so; the others go through `encode` (msgspec's JSON encoder), or become their
/// `repr()` when it cannot encode them. Returns the data and its encoded side table.
pub(crate) fn span_from_record(
    record: &Bound<'_, PyAny>,
    encode: &Bound<'_, PyAny>,
) -> PyResult<(SpanData, Vec<Encoded>)> {
    let record = record
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("a record must be a dict"))?;
    let mut data = SpanData::default();
    let mut encoded = Vec::new();
    for spec in &FIELDS {
        let value = record.get_item(spec.key)?.filter(|value| !value.is_none());
        let parsed = parse(spec.key, spec.ty, value.as_ref(), encode, &mut encoded)?;
        data.set_field(spec.field, parsed);
    }
    Ok((data, encoded))
}

/// `span_from_record` over a list, naming the failing record's position in errors.
pub(crate) fn spans_from_records(
    py: Python<'_>,
    records: &[Bound<'_, PyAny>],
    encode: &Bound<'_, PyAny>,
) -> PyResult<Vec<(SpanData, Vec<Encoded>)>> {
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            span_from_record(record, encode).map_err(|error| {
                let message = format!("record {index}: {}", error.value(py));
                if error.is_instance_of::<PyTypeError>(py) {
                    PyTypeError::new_err(message)
                } else {
                    PyValueError::new_err(message)
                }
            })
        })
        .collect()
}

/// Records (as a Python processor returned them) as JSON Lines, bounded by the plan. Returns
/// the bytes and how many values were truncated.
#[pyfunction]
pub fn encode_jsonl_records<'py>(
    py: Python<'py>,
    records: Vec<Bound<'py, PyAny>>,
    encode: &Bound<'py, PyAny>,
    plan: &ExportPlan,
) -> PyResult<(Bound<'py, PyBytes>, u64)> {
    let spans = spans_from_records(py, &records, encode)?;
    let (text, report) = py.detach(|| {
        let spans = spans
            .iter()
            .map(|(data, encoded)| (data, encoded.as_slice()));
        write_jsonl(spans, &plan.default_service, plan.limits)
    });
    Ok((PyBytes::new(py, text.as_bytes()), report.truncated))
}

fn parse(
    name: &str,
    ty: FieldType,
    value: Option<&Bound<'_, PyAny>>,
    encode: &Bound<'_, PyAny>,
    encoded: &mut Vec<Encoded>,
) -> PyResult<Parsed> {
    let missing = || PyValueError::new_err(format!("record {name:?} is missing"));
    let text = |value: &Bound<'_, PyAny>| -> PyResult<Text> {
        value
            .cast::<PyString>()
            .map(|s| Text::from(s.to_string_lossy()))
            .map_err(|_| PyTypeError::new_err(format!("record {name:?} must be a str")))
    };
    let hex_id = |value: &Bound<'_, PyAny>, digits: usize| -> PyResult<Parsed> {
        let id = text(value)?;
        let parsed = (id.len() == digits && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u128::from_str_radix(&id, 16).ok())
            .flatten()
            .filter(|&id| id != 0);
        parsed.map(Parsed::Id).ok_or_else(|| {
            PyValueError::new_err(format!(
                "record {name:?} must be {digits} hex digits, not all zero; got {id:?}"
            ))
        })
    };
    Ok(match (ty, value) {
        (FieldType::TraceId | FieldType::SpanId | FieldType::UnixNano, None) => {
            return Err(missing())
        }
        (_, None) => Parsed::Null,
        (FieldType::TraceId, Some(value)) => hex_id(value, 32)?,
        (FieldType::SpanId | FieldType::ParentSpanId, Some(value)) => hex_id(value, 16)?,
        (FieldType::Str | FieldType::OptStr, Some(value)) => Parsed::Str(text(value)?),
        (FieldType::Status, Some(value)) => Parsed::Status(match text(value)?.as_str() {
            "unset" => Status::Unset,
            "ok" => Status::Ok,
            "error" => Status::Error,
            other => {
                return Err(PyValueError::new_err(format!(
                    "record \"status\" must be 'ok', 'error' or 'unset', got {other:?}"
                )))
            }
        }),
        (FieldType::UnixNano, Some(value)) => {
            Parsed::UnixNano(value.extract::<u64>().map_err(|_| {
                PyValueError::new_err(format!("record {name:?} must be an int >= 0"))
            })?)
        }
        (FieldType::Metadata, Some(value)) => {
            let dict = value
                .cast::<PyDict>()
                .map_err(|_| PyTypeError::new_err(format!("record {name:?} must be a dict")))?;
            Parsed::Metadata(entries(dict, encode, encoded)?)
        }
        (FieldType::Events, Some(value)) => {
            let list = value
                .cast::<PyList>()
                .map_err(|_| PyTypeError::new_err(format!("record {name:?} must be a list")))?;
            let mut events = Vec::with_capacity(list.len());
            for item in list.iter() {
                let event = item.cast::<PyDict>().map_err(|_| {
                    PyTypeError::new_err(format!("record {name:?} must hold dicts"))
                })?;
                let name_of = event
                    .get_item(EVENT_NAME)?
                    .map(|n| text(&n))
                    .transpose()?
                    .unwrap_or_default();
                let time = match event.get_item(EVENT_TIME)? {
                    Some(time) => time.extract::<u64>().map_err(|_| {
                        PyValueError::new_err(format!(
                            "record {name:?}: {EVENT_TIME:?} must be an int >= 0"
                        ))
                    })?,
                    None => 0,
                };
                let attributes = match event.get_item(EVENT_ATTRIBUTES)? {
                    Some(attributes) if !attributes.is_none() => {
                        let dict = attributes.cast::<PyDict>().map_err(|_| {
                            PyTypeError::new_err(format!(
                                "record {name:?}: {EVENT_ATTRIBUTES:?} must be a dict"
                            ))
                        })?;
                        entries(dict, encode, encoded)?
                    }
                    _ => Vec::new(),
                };
                events.push(Event {
                    name: name_of,
                    time_unix_nano: time,
                    attributes,
                });
            }
            Parsed::Events(events)
        }
        (FieldType::Content, Some(value)) => Parsed::Content(kept(value, encode, encoded)),
    })
}

fn entries(
    dict: &Bound<'_, PyDict>,
    encode: &Bound<'_, PyAny>,
    encoded: &mut Vec<Encoded>,
) -> PyResult<Vec<(Key, Value)>> {
    let mut entries: Vec<(Key, Value)> = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let key: Key = key.str()?.to_string_lossy().into_owned().into();
        let value = kept(&value, encode, encoded);
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => entries.push((key, value)),
        }
    }
    Ok(entries)
}

/// A value as `set_metadata` keeps it: a primitive, else encoded into the side table.
fn kept(value: &Bound<'_, PyAny>, encode: &Bound<'_, PyAny>, encoded: &mut Vec<Encoded>) -> Value {
    plain_value(value).unwrap_or_else(|| {
        encoded.push(encode_object(value, encode).0);
        Value::Deferred(encoded.len() - 1)
    })
}
