//! OTLP/JSON, as the OTLP specification defines it: the protobuf JSON mapping with lowerCamelCase
//! keys, except that trace and span ids are lowercase hex (not base64) and enums are integers;
//! 64-bit integers (times, `intValue`) are decimal strings.

use std::fmt::Write as _;

use super::proto::{AnyValue, KeyValue, Span, Value};
use super::{resource, Group, Options, SCOPE_NAME, SDK_VERSION};
use crate::record::write_str;

fn write_hex(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out.push('"');
}

pub fn write_span(out: &mut String, span: &Span) {
    out.push_str("{\"traceId\":");
    write_hex(out, &span.trace_id);
    out.push_str(",\"spanId\":");
    write_hex(out, &span.span_id);
    if !span.parent_span_id.is_empty() {
        out.push_str(",\"parentSpanId\":");
        write_hex(out, &span.parent_span_id);
    }
    out.push_str(",\"name\":");
    write_str(out, &span.name);
    let _ = write!(
        out,
        ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":",
        span.kind, span.start_time_unix_nano, span.end_time_unix_nano
    );
    write_attributes(out, &span.attributes);
    if !span.events.is_empty() {
        out.push_str(",\"events\":[");
        for (index, event) in span.events.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"timeUnixNano\":\"{}\",\"name\":",
                event.time_unix_nano
            );
            write_str(out, &event.name);
            out.push_str(",\"attributes\":");
            write_attributes(out, &event.attributes);
            out.push('}');
        }
        out.push(']');
    }
    out.push_str(",\"status\":{");
    if let Some(status) = &span.status {
        if status.code != 0 {
            let _ = write!(out, "\"code\":{}", status.code);
            if !status.message.is_empty() {
                out.push_str(",\"message\":");
                write_str(out, &status.message);
            }
        }
    }
    out.push_str("}}");
}

pub fn write_attributes(out: &mut String, attributes: &[KeyValue]) {
    out.push('[');
    for (index, kv) in attributes.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        write_str(out, &kv.key);
        out.push_str(",\"value\":");
        write_any(out, kv.value.as_ref());
        out.push('}');
    }
    out.push(']');
}

fn write_any(out: &mut String, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        None => out.push_str("{}"),
        Some(Value::StringValue(s)) => {
            out.push_str("{\"stringValue\":");
            write_str(out, s);
            out.push('}');
        }
        Some(Value::BoolValue(b)) => {
            let _ = write!(out, "{{\"boolValue\":{b}}}");
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{{\"intValue\":\"{i}\"}}");
        }
        Some(Value::DoubleValue(f)) => {
            out.push_str("{\"doubleValue\":");
            if f.is_finite() {
                let _ = write!(out, "{f:?}");
            } else if f.is_nan() {
                out.push_str("\"NaN\"");
            } else if *f > 0.0 {
                out.push_str("\"Infinity\"");
            } else {
                out.push_str("\"-Infinity\"");
            }
            out.push('}');
        }
        Some(Value::ArrayValue(array)) => {
            out.push_str("{\"arrayValue\":{\"values\":[");
            for (index, item) in array.values.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_any(out, Some(item));
            }
            out.push_str("]}}");
        }
    }
}

/// A whole `ExportTraceServiceRequest` from spans already written as JSON, grouped by service.
pub fn write_request(groups: &[Group<String, String>], options: &Options<'_>) -> String {
    let size: usize = groups
        .iter()
        .flat_map(|g| g.spans.iter().map(|s| s.len() + 1))
        .sum();
    let mut out = String::with_capacity(size + 512 * groups.len() + 32);
    out.push_str("{\"resourceSpans\":[");
    for (index, group) in groups.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":{\"attributes\":");
        write_attributes(&mut out, &resource(&group.resource, options).attributes);
        out.push_str("},\"scopeSpans\":[{\"scope\":{\"name\":");
        write_str(&mut out, SCOPE_NAME);
        out.push_str(",\"version\":");
        write_str(&mut out, SDK_VERSION);
        out.push_str("},\"spans\":[");
        for (index, span) in group.spans.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(span);
        }
        out.push_str("]}]}");
    }
    out.push_str("]}");
    out
}
