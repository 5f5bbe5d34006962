//! Spans as OTLP: `SpanData` (and its deferred values' JSON) to an `ExportTraceServiceRequest`,
//! as protobuf bytes (`http/protobuf`) or OTLP/JSON (`http/json`), with the OpenTelemetry GenAI
//! semantic conventions (and, on request, the OpenInference names Arize Phoenix reads). No PyO3:
//! the flusher runs this with the interpreter detached.
//!
//! A batch is split into requests of at most `max_request_bytes` each (a span bigger than that
//! alone goes in a request of its own; its values are already bounded by `max_value_bytes`).

pub mod json;
pub mod messages;
pub mod proto;

use std::borrow::Cow;

use crate::record::{
    bounded, resolve, standard_key, EncodeReport, Field, FieldSpec, FieldValue, Limits, Resolved,
    FIELDS,
};
use crate::span::{Encoded, Key, SpanData, Status, Value, DEFAULT_NAME};
use proto::{KeyValue, Value as Any};

/// The instrumentation scope's name and the `telemetry.sdk.*` resource attributes.
pub const SCOPE_NAME: &str = "instrumentation_sdk";
pub const SDK_NAME: &str = "instrumentation-sdk";
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Prefix of the SDK's own attribute keys that no convention covers.
pub const PREFIX: &str = "instrumentation_sdk.";

/// `gen_ai.operation.name` values of the GenAI conventions: a span named one of these keeps it
/// as its operation; any other span is a `chat`.
pub const OPERATIONS: [&str; 7] = [
    "chat",
    "text_completion",
    "embeddings",
    "generate_content",
    "execute_tool",
    "create_agent",
    "invoke_agent",
];
pub const DEFAULT_OPERATION: &str = "chat";
/// Metadata that names the span's operation explicitly (mapped, not copied as an attribute).
pub const OPERATION_KEY: &str = "gen_ai.operation.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Protobuf,
    Json,
}

#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// `service.name` of spans that did not set their own.
    pub default_service: &'a str,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), after `service.name` and the SDK's.
    pub resource_attributes: &'a [(String, String)],
    pub limits: Limits,
    pub max_request_bytes: usize,
    /// Add the OpenInference attribute names as well (`llm.model_name`, ...).
    pub openinference: bool,
}

/// A captured prompt or completion: its text (bounded) and whether it is a whole JSON value.
struct Captured {
    text: String,
    json: bool,
}

fn captured(
    value: &Value,
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
) -> Option<Captured> {
    let (text, json) = match resolve(value, deferred) {
        Resolved::Null => return None,
        Resolved::Text(text) => (text, false),
        Resolved::Json(json) => (json, json.len() <= limit),
        Resolved::Bool(b) => {
            return Some(Captured {
                text: b.to_string(),
                json: true,
            })
        }
        Resolved::Int(i) => {
            return Some(Captured {
                text: i.to_string(),
                json: true,
            })
        }
        Resolved::Float(f) => {
            return Some(Captured {
                text: f.to_string(),
                json: true,
            })
        }
    };
    let (text, cut) = bounded(text, limit);
    report.truncated += u64::from(cut);
    Some(Captured {
        text: text.into_owned(),
        json,
    })
}

/// One span's OTLP form, and the `service.name` of the resource it belongs to. Walks the
/// record's field table: each field is either the `Span` message's own or an attribute.
pub fn to_span<'s>(
    span: &'s SpanData,
    deferred: &[Encoded],
    options: &Options<'s>,
    report: &mut EncodeReport,
) -> (&'s str, proto::Span) {
    let (operation, name) = operation_and_name(span);
    let mut attributes = Vec::with_capacity(span.metadata.len() + 8);
    attributes.push(KeyValue::string(OPERATION_KEY, operation));
    let error = span.status == Status::Error;
    let mut service = options.default_service;
    let mut session = None;
    let mut message = "";
    let (mut input, mut output) = (None, None);
    let (mut prompt, mut completion) = (None, None);
    let mut events = Vec::new();
    for spec in &FIELDS {
        let limit = options.limits.of(spec.bound);
        let value = span.field(spec.field, options.default_service);
        match spec.field {
            // The `Span` message's own fields, set below.
            Field::TraceId
            | Field::SpanId
            | Field::ParentSpanId
            | Field::Name
            | Field::Status
            | Field::StartTime
            | Field::EndTime => {}
            Field::ServiceName => {
                if let FieldValue::Str(name) = value {
                    service = name;
                }
            }
            Field::ErrorMessage => {
                if let FieldValue::Str(text) = value {
                    message = text;
                }
            }
            Field::ErrorType if error => {
                let kind = if let FieldValue::Str(kind) = value {
                    kind
                } else {
                    "_OTHER"
                };
                attributes.push(KeyValue::string(spec.otlp, kind));
            }
            Field::ErrorType => {}
            Field::SessionId => {
                session = session_of(span, value);
                if let Some(session) = session {
                    attributes.push(KeyValue::string(spec.otlp, session));
                }
            }
            Field::Model | Field::Provider | Field::UserId => {
                if let FieldValue::Str(text) = value {
                    attributes.push(KeyValue::string(spec.otlp, text));
                }
            }
            Field::Metadata => {
                (input, output) =
                    metadata(&span.metadata, deferred, limit, report, &mut attributes);
            }
            Field::Events => {
                if let FieldValue::Events(list) = value {
                    events = list
                        .iter()
                        .map(|event| to_event(event, deferred, limit, report))
                        .collect();
                }
            }
            Field::Prompt | Field::Completion => {
                let FieldValue::Content(value) = value else {
                    continue;
                };
                let content = captured(value, deferred, limit, report);
                if let Some(content) = &content {
                    attributes.push(messages_attribute(spec, span, content));
                }
                if spec.field == Field::Prompt {
                    prompt = content;
                } else {
                    completion = content;
                }
            }
        }
    }
    if options.openinference {
        openinference(span, session, input, output, &mut attributes);
        openinference_content(prompt, completion, &mut attributes);
    }
    let status = status(error, message, options.limits.max_value_bytes, report);
    let otlp = proto::Span {
        trace_id: span.trace_id.to_be_bytes().to_vec(),
        span_id: span.span_id.to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: span
            .parent_span_id
            .map_or_else(Vec::new, |id| id.to_be_bytes().to_vec()),
        name,
        kind: proto::SPAN_KIND_CLIENT,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes,
        events,
        status: Some(status),
    };
    (service, otlp)
}

/// `gen_ai.input.messages` or `gen_ai.output.messages` for a captured prompt or completion.
fn messages_attribute(spec: &FieldSpec, span: &SpanData, content: &Captured) -> KeyValue {
    let messages = if spec.field == Field::Prompt {
        messages::input_messages(&content.text, content.json)
    } else {
        messages::output_messages(&content.text, content.json, finish_reason(span))
    };
    KeyValue::string(spec.otlp, messages)
}

/// An error's message as the span's status; a success stays UNSET (OK is for the application).
fn status(error: bool, message: &str, limit: usize, report: &mut EncodeReport) -> proto::Status {
    if !error {
        return proto::Status {
            message: String::new(),
            code: proto::STATUS_CODE_UNSET,
        };
    }
    let (message, cut) = bounded(message, limit);
    report.truncated += u64::from(cut);
    proto::Status {
        message: message.into_owned(),
        code: proto::STATUS_CODE_ERROR,
    }
}

/// The span's session: its own field, else a `session_id` set as metadata.
fn session_of<'s>(span: &'s SpanData, value: FieldValue<'s>) -> Option<&'s str> {
    match value {
        FieldValue::Str(id) => Some(id),
        _ => match span.get("session_id") {
            Some(Value::Str(s)) => Some(s.as_str()),
            _ => None,
        },
    }
}

fn finish_reason(span: &SpanData) -> Option<&str> {
    match span.get("finish_reason") {
        Some(Value::Str(reason)) => Some(reason.as_str()),
        _ => None,
    }
}

fn to_event(
    event: &crate::span::Event,
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
) -> proto::Event {
    proto::Event {
        time_unix_nano: event.time_unix_nano,
        name: bounded(&event.name, limit).0.into_owned(),
        attributes: plain_attributes(&event.attributes, deferred, limit, report),
    }
}

/// OpenInference's `input.value` / `output.value` (Arize Phoenix shows them as the span's
/// input and output) and their MIME types.
fn openinference_content(
    prompt: Option<Captured>,
    completion: Option<Captured>,
    attributes: &mut Vec<KeyValue>,
) {
    for (content, prefix) in [(prompt, "input"), (completion, "output")] {
        if let Some(content) = content {
            let mime = if content.json {
                "application/json"
            } else {
                "text/plain"
            };
            attributes.push(KeyValue::string(format!("{prefix}.value"), content.text));
            attributes.push(KeyValue::string(format!("{prefix}.mime_type"), mime));
        }
    }
}

/// Metadata as attributes: standard keys under their conventions' names (`STANDARD_KEYS`),
/// the rest as they are. Returns the input and output token counts.
fn metadata(
    entries: &[(Key, Value)],
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
    attributes: &mut Vec<KeyValue>,
) -> (Option<i64>, Option<i64>) {
    let (mut input, mut output) = (None, None);
    for (key, value) in entries {
        let Some(value) = any_value(value, deferred, limit, report) else {
            continue; // OTLP attributes have no null
        };
        let name: Cow<'static, str> = match key.as_ref() {
            // Mapped from the session field and the operation above.
            "session_id" | OPERATION_KEY => continue,
            "finish_reason" => {
                let value = Any::ArrayValue(proto::ArrayValue {
                    values: vec![proto::AnyValue { value: Some(value) }],
                });
                attributes.push(KeyValue::new("gen_ai.response.finish_reasons", value));
                continue;
            }
            "time_to_first_token_ms" => {
                let seconds = match value {
                    Any::DoubleValue(ms) => Any::DoubleValue(ms / 1e3),
                    other => other,
                };
                attributes.push(KeyValue::new(
                    "gen_ai.response.time_to_first_chunk",
                    seconds,
                ));
                continue;
            }
            "stream_status" => {
                attributes.push(KeyValue::new("gen_ai.request.stream", Any::BoolValue(true)));
                Cow::Borrowed("instrumentation_sdk.stream_status")
            }
            "prompt_tokens" => {
                input = int_of(&value);
                Cow::Borrowed("gen_ai.usage.input_tokens")
            }
            "completion_tokens" => {
                output = int_of(&value);
                Cow::Borrowed("gen_ai.usage.output_tokens")
            }
            other => standard_key(other).map_or_else(|| key.clone(), |s| Cow::Borrowed(s.otlp)),
        };
        attributes.push(KeyValue::new(name, value));
    }
    (input, output)
}

fn plain_attributes(
    entries: &[(Key, Value)],
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
) -> Vec<KeyValue> {
    entries
        .iter()
        .filter_map(|(key, value)| {
            any_value(value, deferred, limit, report)
                .map(|value| KeyValue::new(key.as_ref(), value))
        })
        .collect()
}

/// `gen_ai.operation.name` and the span's name: `"{operation} {model}"`, unless the span was
/// given a name of its own (neither the default nor an operation).
fn operation_and_name(span: &SpanData) -> (&str, String) {
    let operation = match span.get(OPERATION_KEY) {
        Some(Value::Str(op)) => op.as_str(),
        _ => OPERATIONS
            .iter()
            .copied()
            .find(|op| *op == span.name)
            .unwrap_or(DEFAULT_OPERATION),
    };
    let name = if span.name == DEFAULT_NAME || OPERATIONS.contains(&span.name.as_ref()) {
        if span.model.is_empty() {
            operation.to_owned()
        } else {
            format!("{operation} {}", span.model)
        }
    } else {
        span.name.to_string()
    };
    (operation, name)
}

/// The OpenInference names (Arize Phoenix's), added next to the GenAI ones.
fn openinference(
    span: &SpanData,
    session: Option<&str>,
    input: Option<i64>,
    output: Option<i64>,
    attributes: &mut Vec<KeyValue>,
) {
    attributes.push(KeyValue::string("openinference.span.kind", "LLM"));
    attributes.push(KeyValue::string("llm.model_name", span.model.as_str()));
    if let Some(provider) = &span.provider {
        attributes.push(KeyValue::string("llm.provider", provider.as_str()));
    }
    if let Some(session) = session {
        attributes.push(KeyValue::string("session.id", session));
    }
    if let Some(input) = input {
        attributes.push(KeyValue::new(
            "llm.token_count.prompt",
            Any::IntValue(input),
        ));
    }
    if let Some(output) = output {
        attributes.push(KeyValue::new(
            "llm.token_count.completion",
            Any::IntValue(output),
        ));
    }
    if let (Some(input), Some(output)) = (input, output) {
        attributes.push(KeyValue::new(
            "llm.token_count.total",
            Any::IntValue(input.saturating_add(output)),
        ));
    }
}

fn int_of(value: &Any) -> Option<i64> {
    match value {
        Any::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// A metadata value as an attribute value: containers and objects as their JSON text.
fn any_value(
    value: &Value,
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
) -> Option<Any> {
    let mut text = |s: &str| {
        let (s, cut) = bounded(s, limit);
        report.truncated += u64::from(cut);
        Some(Any::StringValue(s.into_owned()))
    };
    match resolve(value, deferred) {
        Resolved::Null => None,
        Resolved::Bool(b) => Some(Any::BoolValue(b)),
        Resolved::Int(i) => Some(Any::IntValue(i)),
        Resolved::Float(f) => Some(Any::DoubleValue(f)),
        Resolved::Text(s) | Resolved::Json(s) => text(s),
    }
}

/// The resource of one service: `service.name`, the SDK's name and version, then the extras.
pub fn resource(service: &str, options: &Options<'_>) -> proto::Resource {
    let mut attributes = vec![
        KeyValue::string("service.name", service),
        KeyValue::string("telemetry.sdk.name", SDK_NAME),
        KeyValue::string("telemetry.sdk.language", "python"),
        KeyValue::string("telemetry.sdk.version", SDK_VERSION),
    ];
    for (key, value) in options.resource_attributes {
        if key != "service.name" {
            attributes.push(KeyValue::string(key, value));
        }
    }
    proto::Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

pub fn scope() -> proto::InstrumentationScope {
    proto::InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: SDK_VERSION.to_owned(),
    }
}

/// Room kept in each request for its resources and scope (the spans get the rest of the cap).
const ENVELOPE_BYTES: usize = 1024;

/// Encodes spans as OTLP requests of at most `options.max_request_bytes` each (bodies, not
/// compressed). Returns the request bodies and what encoding had to cut.
pub fn encode<'s>(
    spans: impl IntoIterator<Item = (&'s SpanData, &'s [Encoded])>,
    protocol: Protocol,
    options: &Options<'s>,
) -> (Vec<Vec<u8>>, EncodeReport) {
    let mut report = EncodeReport::default();
    let converted: Vec<(&str, proto::Span)> = spans
        .into_iter()
        .map(|(span, deferred)| to_span(span, deferred, options, &mut report))
        .collect();
    let bodies = match protocol {
        Protocol::Protobuf => {
            let sized = converted.into_iter().map(|(service, span)| {
                let size = prost::Message::encoded_len(&span) + 8;
                (service, span, size)
            });
            chunks(sized, options.max_request_bytes)
                .into_iter()
                .map(|chunk| {
                    let request = proto::ExportTraceServiceRequest {
                        resource_spans: group(chunk, |service| resource(service, options))
                            .into_iter()
                            .map(Into::into)
                            .collect(),
                    };
                    prost::Message::encode_to_vec(&request)
                })
                .collect()
        }
        Protocol::Json => {
            let sized = converted.into_iter().map(|(service, span)| {
                let mut text = String::with_capacity(512);
                json::write_span(&mut text, &span);
                let size = text.len() + 1;
                (service, text, size)
            });
            chunks(sized, options.max_request_bytes)
                .into_iter()
                .map(|chunk| {
                    let groups = group(chunk, ToOwned::to_owned);
                    json::write_request(&groups, options).into_bytes()
                })
                .collect()
        }
    };
    (bodies, report)
}

/// Greedy split into runs whose sizes add up to at most the cap (less the envelope).
fn chunks<'s, T>(
    items: impl Iterator<Item = (&'s str, T, usize)>,
    max_request_bytes: usize,
) -> Vec<Vec<(&'s str, T)>> {
    let budget = max_request_bytes.saturating_sub(ENVELOPE_BYTES).max(1);
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for (service, item, size) in items {
        if !current.is_empty() && used + size > budget {
            chunks.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        current.push((service, item));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Spans grouped by service (in order of first appearance), one `ResourceSpans` each.
fn group<T, R>(chunk: Vec<(&str, T)>, make_resource: impl Fn(&str) -> R) -> Vec<Group<R, T>> {
    let mut groups: Vec<(&str, Group<R, T>)> = Vec::new();
    for (service, item) in chunk {
        match groups.iter_mut().find(|(s, _)| *s == service) {
            Some((_, g)) => g.push_item(item),
            None => {
                let mut g = Group::new(make_resource(service));
                g.push_item(item);
                groups.push((service, g));
            }
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// A resource and its spans (spans as messages, or as their JSON text).
pub struct Group<R, T> {
    pub resource: R,
    pub spans: Vec<T>,
}

impl<R, T> Group<R, T> {
    fn new(resource: R) -> Self {
        Group {
            resource,
            spans: Vec::new(),
        }
    }

    fn push_item(&mut self, item: T) {
        self.spans.push(item);
    }
}

impl From<Group<proto::Resource, proto::Span>> for proto::ResourceSpans {
    fn from(group: Group<proto::Resource, proto::Span>) -> Self {
        proto::ResourceSpans {
            resource: Some(group.resource),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(scope()),
                spans: group.spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

#[cfg(test)]
mod tests;
