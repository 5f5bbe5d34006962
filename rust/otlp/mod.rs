//! Spans as OTLP: `SpanData` (and its deferred values' JSON) to an `ExportTraceServiceRequest`,
//! as protobuf bytes (`http/protobuf`) or OTLP/JSON (`http/json`), with the OpenTelemetry GenAI
//! semantic conventions (and, on request, the OpenInference names Arize Phoenix reads). No PyO3:
//! the flusher runs this with the interpreter detached.
//!
//! A batch is split into requests of at most `max_request_bytes` each (a span bigger than that
//! alone goes in a request of its own; its values are already bounded by `max_value_bytes`).

pub mod json;
pub mod proto;

use std::borrow::Cow;

use crate::span::{bounded, EncodeReport, Encoded, SpanData, Status, Value, DEFAULT_NAME};
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
    pub max_value_bytes: usize,
    pub max_request_bytes: usize,
    /// Add the OpenInference attribute names as well (`llm.model_name`, ...).
    pub openinference: bool,
}

/// One span's OTLP form, and the `service.name` of the resource it belongs to.
pub fn to_span<'s>(
    span: &'s SpanData,
    deferred: &[Encoded],
    options: &Options<'s>,
    report: &mut EncodeReport,
) -> (&'s str, proto::Span) {
    let limit = options.max_value_bytes;
    let (operation, name) = operation_and_name(span);
    let mut attributes = Vec::with_capacity(span.metadata.len() + 8);
    attributes.push(KeyValue::string("gen_ai.operation.name", operation));
    attributes.push(KeyValue::string(
        "gen_ai.request.model",
        span.model.as_str(),
    ));
    if let Some(provider) = &span.provider {
        attributes.push(KeyValue::string("gen_ai.provider.name", provider.as_str()));
    }
    let session = span.session_id.as_deref().or(match span.get("session_id") {
        Some(Value::Str(s)) => Some(s.as_str()),
        _ => None,
    });
    if let Some(session) = session {
        attributes.push(KeyValue::string("gen_ai.conversation.id", session));
    }
    if let Some(user) = &span.user_id {
        attributes.push(KeyValue::string("user.id", user.as_str()));
    }
    let error = span.status == Status::Error;
    if error {
        let kind = span.error_type.as_deref().unwrap_or("_OTHER");
        attributes.push(KeyValue::string("error.type", kind));
    }
    let (mut input, mut output) = (None, None);
    for (key, value) in &span.metadata {
        let Some(value) = any_value(value, deferred, limit, report) else {
            continue; // OTLP attributes have no null
        };
        let key: Cow<'static, str> = match key.as_ref() {
            "prompt_tokens" => {
                input = int_of(&value);
                Cow::Borrowed("gen_ai.usage.input_tokens")
            }
            "completion_tokens" => {
                output = int_of(&value);
                Cow::Borrowed("gen_ai.usage.output_tokens")
            }
            "actual_model" => Cow::Borrowed("gen_ai.response.model"),
            "finish_reason" => {
                let value = Any::ArrayValue(proto::ArrayValue {
                    values: vec![proto::AnyValue { value: Some(value) }],
                });
                attributes.push(KeyValue::new("gen_ai.response.finish_reasons", value));
                continue;
            }
            "session_id" | "gen_ai.operation.name" => continue, // mapped above
            "token_count_method" | "token_encoding" | "retry_count" => {
                Cow::Owned(format!("{PREFIX}{key}"))
            }
            _ => key.clone(),
        };
        attributes.push(KeyValue::new(key, value));
    }
    if options.openinference {
        openinference(span, session, input, output, &mut attributes);
    }
    let status = if error {
        let message = span.error_message.as_deref().unwrap_or("");
        let (message, cut) = bounded(message, limit);
        report.truncated += u64::from(cut);
        proto::Status {
            message: message.into_owned(),
            code: proto::STATUS_CODE_ERROR,
        }
    } else {
        // Instrumentation leaves a success UNSET (OK is for the application to set).
        proto::Status {
            message: String::new(),
            code: proto::STATUS_CODE_UNSET,
        }
    };
    let service = span
        .service_name
        .as_deref()
        .unwrap_or(options.default_service);
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
        status: Some(status),
    };
    (service, otlp)
}

/// `gen_ai.operation.name` and the span's name: `"{operation} {model}"`, unless the span was
/// given a name of its own (neither the default nor an operation).
fn operation_and_name(span: &SpanData) -> (&str, String) {
    let operation = match span.get("gen_ai.operation.name") {
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
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(Any::BoolValue(*b)),
        Value::Int(i) => Some(Any::IntValue(*i)),
        Value::Float(f) => Some(Any::DoubleValue(*f)),
        Value::Str(s) => text(s),
        Value::Json(s) => text(s),
        Value::Deferred(index) => match deferred.get(*index)? {
            Encoded::Json(s) | Encoded::Text(s) => text(s),
        },
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
