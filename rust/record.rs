//! The exported record, declared once: its fields (`FIELDS`: JSON key, type, bound, OTLP
//! mapping, SQLite column) and the spec's standard metadata keys (`STANDARD_KEYS`). Every
//! encoder walks `FIELDS` and reads a span through `SpanData::field`, whose `match` is exhaustive:
//! a new field does not compile until every encoder and `set_field` handles it.
//!
//! Also the record's JSON form (one line of JSON Lines), written with the interpreter detached.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::span::{Encoded, Event, Key, SpanData, Status, Text, Value};

/// One field of the exported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    TraceId,
    SpanId,
    ParentSpanId,
    Name,
    Model,
    Provider,
    ServiceName,
    UserId,
    SessionId,
    Status,
    ErrorType,
    ErrorMessage,
    StartTime,
    EndTime,
    Metadata,
    Events,
    Prompt,
    Completion,
}

/// How a field is written in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// 32 lowercase hex digits, never null.
    TraceId,
    /// 16 lowercase hex digits, never null.
    SpanId,
    /// 16 lowercase hex digits, or null.
    ParentSpanId,
    Str,
    OptStr,
    /// `"unset"`, `"ok"` or `"error"`.
    Status,
    /// Nanoseconds since the Unix epoch, an int.
    UnixNano,
    /// An object of metadata values.
    Metadata,
    /// A list of `{"name", "time_unix_nano", "attributes"}` objects.
    Events,
    /// Captured text: a str, a list of messages as given, or null.
    Content,
}

impl FieldType {
    pub const fn name(self) -> &'static str {
        match self {
            FieldType::TraceId => "trace_id",
            FieldType::SpanId => "span_id",
            FieldType::ParentSpanId => "parent_span_id",
            FieldType::Str => "str",
            FieldType::OptStr => "str | None",
            FieldType::Status => "status",
            FieldType::UnixNano => "unix_nano",
            FieldType::Metadata => "metadata",
            FieldType::Events => "events",
            FieldType::Content => "content",
        }
    }
}

/// Which configured bound a field's text is cut to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Unbounded,
    /// `max_value_bytes` (each metadata value, the error message).
    Value,
    /// `max_content_bytes` (the captured prompt and completion).
    Content,
}

/// A record field's declaration: everything each encoder needs to know about it.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub field: Field,
    /// The key in records and JSON Lines.
    pub key: &'static str,
    pub ty: FieldType,
    pub bound: Bound,
    /// Where OTLP puts it: an attribute name, or the `Span` message's own field (`span.*`).
    pub otlp: &'static str,
    /// The SQLite store's column.
    pub column: &'static str,
}

const fn spec(
    field: Field,
    key: &'static str,
    ty: FieldType,
    bound: Bound,
    otlp: &'static str,
) -> FieldSpec {
    FieldSpec {
        field,
        key,
        ty,
        bound,
        otlp,
        column: key,
    }
}

/// The record's fields, in the order records and JSON Lines list them.
pub const FIELDS: [FieldSpec; 18] = [
    spec(
        Field::TraceId,
        "trace_id",
        FieldType::TraceId,
        Bound::Unbounded,
        "span.trace_id",
    ),
    spec(
        Field::SpanId,
        "span_id",
        FieldType::SpanId,
        Bound::Unbounded,
        "span.span_id",
    ),
    spec(
        Field::ParentSpanId,
        "parent_span_id",
        FieldType::ParentSpanId,
        Bound::Unbounded,
        "span.parent_span_id",
    ),
    spec(
        Field::Name,
        "name",
        FieldType::Str,
        Bound::Unbounded,
        "span.name",
    ),
    spec(
        Field::Model,
        "model",
        FieldType::Str,
        Bound::Unbounded,
        "gen_ai.request.model",
    ),
    spec(
        Field::Provider,
        "provider",
        FieldType::OptStr,
        Bound::Unbounded,
        "gen_ai.provider.name",
    ),
    spec(
        Field::ServiceName,
        "service_name",
        FieldType::Str,
        Bound::Unbounded,
        "resource.service.name",
    ),
    spec(
        Field::UserId,
        "user_id",
        FieldType::OptStr,
        Bound::Unbounded,
        "user.id",
    ),
    spec(
        Field::SessionId,
        "session_id",
        FieldType::OptStr,
        Bound::Unbounded,
        "gen_ai.conversation.id",
    ),
    spec(
        Field::Status,
        "status",
        FieldType::Status,
        Bound::Unbounded,
        "span.status.code",
    ),
    spec(
        Field::ErrorType,
        "error_type",
        FieldType::OptStr,
        Bound::Unbounded,
        "error.type",
    ),
    spec(
        Field::ErrorMessage,
        "error_message",
        FieldType::OptStr,
        Bound::Value,
        "span.status.message",
    ),
    spec(
        Field::StartTime,
        "start_time_unix_nano",
        FieldType::UnixNano,
        Bound::Unbounded,
        "span.start_time_unix_nano",
    ),
    spec(
        Field::EndTime,
        "end_time_unix_nano",
        FieldType::UnixNano,
        Bound::Unbounded,
        "span.end_time_unix_nano",
    ),
    spec(
        Field::Metadata,
        "metadata",
        FieldType::Metadata,
        Bound::Value,
        "span.attributes",
    ),
    spec(
        Field::Events,
        "events",
        FieldType::Events,
        Bound::Value,
        "span.events",
    ),
    spec(
        Field::Prompt,
        "prompt",
        FieldType::Content,
        Bound::Content,
        "gen_ai.input.messages",
    ),
    spec(
        Field::Completion,
        "completion",
        FieldType::Content,
        Bound::Content,
        "gen_ai.output.messages",
    ),
];

/// Keys of an event object in records.
pub const EVENT_NAME: &str = "name";
pub const EVENT_TIME: &str = "time_unix_nano";
pub const EVENT_ATTRIBUTES: &str = "attributes";

/// The type a metadata key's values keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Int,
    Float,
    Str,
    Any,
}

impl KeyKind {
    pub const fn name(self) -> &'static str {
        match self {
            KeyKind::Int => "int",
            KeyKind::Float => "float",
            KeyKind::Str => "str",
            KeyKind::Any => "any",
        }
    }
}

/// One of the spec's standard metadata keys: the type its values keep and its OTLP attribute.
#[derive(Debug, Clone, Copy)]
pub struct StandardKey {
    pub key: &'static str,
    pub kind: KeyKind,
    pub otlp: &'static str,
}

const fn standard(key: &'static str, kind: KeyKind, otlp: &'static str) -> StandardKey {
    StandardKey { key, kind, otlp }
}

/// The spec's "standard dashboard keys", the SDK's own token-count keys, what streams record,
/// what the client integrations record of a call (usage parts, request parameters, ids, the
/// HTTP status) and what the scanners record.
pub const STANDARD_KEYS: [StandardKey; 28] = [
    standard("prompt_tokens", KeyKind::Int, "gen_ai.usage.input_tokens"),
    standard(
        "completion_tokens",
        KeyKind::Int,
        "gen_ai.usage.output_tokens",
    ),
    standard(
        "retry_count",
        KeyKind::Int,
        "instrumentation_sdk.retry_count",
    ),
    standard("actual_model", KeyKind::Str, "gen_ai.response.model"),
    standard("session_id", KeyKind::Str, "gen_ai.conversation.id"),
    standard(
        "finish_reason",
        KeyKind::Str,
        "gen_ai.response.finish_reasons",
    ),
    standard(
        "token_count_method",
        KeyKind::Any,
        "instrumentation_sdk.token_count_method",
    ),
    standard(
        "token_encoding",
        KeyKind::Any,
        "instrumentation_sdk.token_encoding",
    ),
    // Streams (`Span.wrap_stream`). The conventions give time to first chunk in seconds; the
    // OTLP mapping converts.
    standard(
        "time_to_first_token_ms",
        KeyKind::Float,
        "gen_ai.response.time_to_first_chunk",
    ),
    standard(
        "time_per_output_token_ms",
        KeyKind::Float,
        "instrumentation_sdk.time_per_output_token_ms",
    ),
    standard(
        "stream_chunks",
        KeyKind::Int,
        "instrumentation_sdk.stream_chunks",
    ),
    standard(
        "stream_status",
        KeyKind::Str,
        "instrumentation_sdk.stream_status",
    ),
    standard(
        "completion_token_count_method",
        KeyKind::Any,
        "instrumentation_sdk.completion_token_count_method",
    ),
    standard(
        "prompt_tokens_estimate",
        KeyKind::Int,
        "instrumentation_sdk.prompt_tokens_estimate",
    ),
    standard(
        "cache_read_tokens",
        KeyKind::Int,
        "gen_ai.usage.cache_read.input_tokens",
    ),
    standard(
        "cache_creation_tokens",
        KeyKind::Int,
        "gen_ai.usage.cache_creation.input_tokens",
    ),
    standard(
        "uncached_prompt_tokens",
        KeyKind::Int,
        "instrumentation_sdk.uncached_prompt_tokens",
    ),
    standard(
        "reasoning_tokens",
        KeyKind::Int,
        "gen_ai.usage.reasoning.output_tokens",
    ),
    standard("temperature", KeyKind::Float, "gen_ai.request.temperature"),
    standard("max_tokens", KeyKind::Int, "gen_ai.request.max_tokens"),
    standard("top_p", KeyKind::Float, "gen_ai.request.top_p"),
    standard("tool_count", KeyKind::Int, "instrumentation_sdk.tool_count"),
    standard("request_id", KeyKind::Str, "instrumentation_sdk.request_id"),
    standard("response_id", KeyKind::Str, "gen_ai.response.id"),
    standard(
        "http_status_code",
        KeyKind::Int,
        "http.response.status_code",
    ),
    // Set by the scanners (`configure(pii="detect", injection="detect")`, scan/spans.rs):
    // findings counted by kind (`{"EMAIL_ADDRESS": 2}`), the prompt's injection score (0..1)
    // and the ids of the injection rules that fired.
    standard(
        "pii_findings",
        KeyKind::Any,
        "instrumentation_sdk.pii_findings",
    ),
    standard(
        "injection_score",
        KeyKind::Any,
        "instrumentation_sdk.injection_score",
    ),
    standard(
        "injection_rules",
        KeyKind::Any,
        "instrumentation_sdk.injection_rules",
    ),
];

/// The standard key named `key`, if it is one.
pub fn standard_key(key: &str) -> Option<&'static StandardKey> {
    STANDARD_KEYS.iter().find(|standard| standard.key == key)
}

/// `key` as a static string when it is a standard key (no allocation), else owned, and the
/// type its values keep.
pub fn metadata_key(key: &str) -> (Key, KeyKind) {
    match standard_key(key) {
        Some(standard) => (Cow::Borrowed(standard.key), standard.kind),
        None => (Cow::Owned(key.to_owned()), KeyKind::Any),
    }
}

/// One field of one span, as every encoder reads it.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Null,
    TraceId(u128),
    SpanId(u64),
    Str(&'a str),
    Status(Status),
    UnixNano(u64),
    Metadata(&'a [(Key, Value)]),
    Events(&'a [Event]),
    Content(&'a Value),
}

/// A field's value read from a record, for `SpanData::set_field`.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Null,
    Id(u128),
    Str(Text),
    Status(Status),
    UnixNano(u64),
    Metadata(Vec<(Key, Value)>),
    Events(Vec<Event>),
    Content(Value),
}

impl SpanData {
    /// The value of `field`; `default_service` stands in for a span without a service name.
    // Inlined into each encoder's loop over FIELDS, so the match folds into it (measured:
    // about 5% of encoding a batch as JSON Lines when it is a call).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn field<'a>(&'a self, field: Field, default_service: &'a str) -> FieldValue<'a> {
        let text =
            |value: &'a Option<Text>| value.as_deref().map_or(FieldValue::Null, FieldValue::Str);
        match field {
            Field::TraceId => FieldValue::TraceId(self.trace_id),
            Field::SpanId => FieldValue::SpanId(self.span_id),
            Field::ParentSpanId => self
                .parent_span_id
                .map_or(FieldValue::Null, FieldValue::SpanId),
            Field::Name => FieldValue::Str(&self.name),
            Field::Model => FieldValue::Str(&self.model),
            Field::Provider => text(&self.provider),
            Field::ServiceName => {
                FieldValue::Str(self.service_name.as_deref().unwrap_or(default_service))
            }
            Field::UserId => text(&self.user_id),
            Field::SessionId => text(&self.session_id),
            Field::Status => FieldValue::Status(self.status),
            Field::ErrorType => text(&self.error_type),
            Field::ErrorMessage => text(&self.error_message),
            Field::StartTime => FieldValue::UnixNano(self.start_time_unix_nano),
            Field::EndTime => FieldValue::UnixNano(self.end_time_unix_nano),
            Field::Metadata => FieldValue::Metadata(&self.metadata),
            Field::Events => FieldValue::Events(&self.events),
            Field::Prompt => self
                .prompt
                .as_ref()
                .map_or(FieldValue::Null, FieldValue::Content),
            Field::Completion => self
                .completion
                .as_ref()
                .map_or(FieldValue::Null, FieldValue::Content),
        }
    }

    /// Sets `field` from a parsed record value (a value of another shape than the field's is
    /// ignored: `parse` in the binding layer produces the right one for each `FieldType`).
    pub fn set_field(&mut self, field: Field, value: Parsed) {
        let text = |value: Parsed| match value {
            Parsed::Str(text) => Some(text),
            _ => None,
        };
        let id = |value: &Parsed| match value {
            Parsed::Id(id) => Some(*id),
            _ => None,
        };
        let time = |value: &Parsed| match value {
            Parsed::UnixNano(time) => *time,
            _ => 0,
        };
        match field {
            Field::TraceId => self.trace_id = id(&value).unwrap_or(0),
            Field::SpanId => self.span_id = id(&value).map_or(0, |id| id as u64),
            Field::ParentSpanId => self.parent_span_id = id(&value).map(|id| id as u64),
            Field::Name => {
                self.name = text(value).map_or(Cow::Borrowed(crate::span::DEFAULT_NAME), |n| {
                    Cow::Owned(n.into_string())
                });
            }
            Field::Model => self.model = text(value).unwrap_or_default(),
            Field::Provider => self.provider = text(value),
            Field::ServiceName => self.service_name = text(value),
            Field::UserId => self.user_id = text(value),
            Field::SessionId => self.session_id = text(value),
            Field::Status => {
                self.status = match value {
                    Parsed::Status(status) => status,
                    _ => Status::Unset,
                };
            }
            Field::ErrorType => self.error_type = text(value),
            Field::ErrorMessage => self.error_message = text(value),
            Field::StartTime => self.start_time_unix_nano = time(&value),
            Field::EndTime => self.end_time_unix_nano = time(&value),
            Field::Metadata => {
                if let Parsed::Metadata(metadata) = value {
                    self.metadata = metadata;
                }
            }
            Field::Events => {
                if let Parsed::Events(events) = value {
                    self.events = events;
                }
            }
            Field::Prompt => {
                self.prompt = match value {
                    Parsed::Content(value) => Some(value),
                    _ => None,
                };
            }
            Field::Completion => {
                self.completion = match value {
                    Parsed::Content(value) => Some(value),
                    _ => None,
                };
            }
        }
    }
}

/// The configured bounds on what one record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub max_content_bytes: usize,
    /// One whole span (`fit_span`): its text fields, metadata keys, and how many metadata
    /// entries and events fit.
    pub max_span_bytes: usize,
}

impl Limits {
    pub const UNBOUNDED: Limits = Limits {
        max_value_bytes: usize::MAX,
        max_content_bytes: usize::MAX,
        max_span_bytes: usize::MAX,
    };

    pub const fn of(self, bound: Bound) -> usize {
        match bound {
            Bound::Unbounded => usize::MAX,
            Bound::Value => self.max_value_bytes,
            Bound::Content => self.max_content_bytes,
        }
    }
}

/// Counts of what encoding had to change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeReport {
    pub truncated: u64,
}

pub const TRUNCATION_MARKER: &str = "...[truncated {} bytes]";

/// `text` cut to at most `limit` bytes at a char boundary, with the marker; and whether it was.
pub fn bounded(text: &str, limit: usize) -> (Cow<'_, str>, bool) {
    if text.len() <= limit {
        return (Cow::Borrowed(text), false);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    let marker = TRUNCATION_MARKER.replace("{}", &dropped.to_string());
    (Cow::Owned(format!("{}{marker}", &text[..cut])), true)
}

/// What one span's fields, other than its metadata, events and content, may take in a record:
/// the ids, times, status and keys, and their JSON punctuation.
const SPAN_OVERHEAD_BYTES: usize = 512;
/// A metadata entry's or event's share of JSON punctuation.
const ENTRY_OVERHEAD_BYTES: usize = 8;

/// The bytes `value` takes in a record once bounded to `limit` (text by its length; JSON
/// escaping may add a little).
fn value_bytes(value: &Value, deferred: &[Encoded], limit: usize) -> usize {
    let marker = TRUNCATION_MARKER.len() + 20;
    match resolve(value, deferred) {
        Resolved::Null | Resolved::Bool(_) | Resolved::Int(_) | Resolved::Float(_) => 24,
        Resolved::Text(text) | Resolved::Json(text) if text.len() > limit => limit + marker,
        Resolved::Text(text) | Resolved::Json(text) => text.len() + 2,
    }
}

fn entries_bytes(entries: &[(Key, Value)], deferred: &[Encoded], limits: Limits) -> usize {
    entries
        .iter()
        .map(|(key, value)| {
            key.len().min(limits.max_value_bytes)
                + value_bytes(value, deferred, limits.max_value_bytes)
                + ENTRY_OVERHEAD_BYTES
        })
        .sum()
}

/// A span's text fields, as `fit_span` bounds them.
fn texts(span: &SpanData) -> [Option<&str>; 8] {
    [
        Some(&*span.name),
        Some(&*span.model),
        span.provider.as_deref(),
        span.service_name.as_deref(),
        span.user_id.as_deref(),
        span.session_id.as_deref(),
        span.error_type.as_deref(),
        span.error_message.as_deref(),
    ]
}

fn content_bytes(value: Option<&Value>, deferred: &[Encoded], limits: Limits) -> usize {
    value.map_or(0, |value| {
        value_bytes(value, deferred, limits.max_content_bytes)
    })
}

fn event_bytes(event: &Event, deferred: &[Encoded], limits: Limits) -> usize {
    event.name.len().min(limits.max_value_bytes)
        + entries_bytes(&event.attributes, deferred, limits)
        + 40
}

/// Whether `fit_span` has anything to do: a text or key over `max_value_bytes`, or the whole
/// span over `max_span_bytes`.
fn needs_fitting(span: &SpanData, deferred: &[Encoded], limits: Limits) -> bool {
    let limit = limits.max_value_bytes;
    let texts = texts(span);
    if texts.iter().flatten().any(|text| text.len() > limit)
        || span.metadata.iter().any(|(key, _)| key.len() > limit)
        || span.events.iter().any(|event| {
            event.name.len() > limit || event.attributes.iter().any(|(key, _)| key.len() > limit)
        })
    {
        return true;
    }
    let total = SPAN_OVERHEAD_BYTES
        + texts.iter().flatten().map(|text| text.len()).sum::<usize>()
        + content_bytes(span.prompt.as_ref(), deferred, limits)
        + content_bytes(span.completion.as_ref(), deferred, limits)
        + entries_bytes(&span.metadata, deferred, limits)
        + span
            .events
            .iter()
            .map(|event| event_bytes(event, deferred, limits))
            .sum::<usize>();
    total > limits.max_span_bytes
}

/// Cuts every text field and metadata key (the span's and its events') to `limit`; returns
/// how many were cut.
fn bound_texts_and_keys(span: &mut SpanData, limit: usize) -> u64 {
    let mut cut = 0u64;
    let mut bound_text = |text: &mut Text| {
        if text.len() > limit {
            *text = Text::from(bounded(text, limit).0);
            cut += 1;
        }
    };
    bound_text(&mut span.model);
    for text in [
        &mut span.provider,
        &mut span.service_name,
        &mut span.user_id,
        &mut span.session_id,
        &mut span.error_type,
        &mut span.error_message,
    ]
    .into_iter()
    .flatten()
    {
        bound_text(text);
    }
    for event in &mut span.events {
        bound_text(&mut event.name);
    }
    if span.name.len() > limit {
        span.name = Cow::Owned(bounded(&span.name, limit).0.into_owned());
        cut += 1;
    }
    let mut bound_keys = |entries: &mut Vec<(Key, Value)>| {
        for (key, _) in entries.iter_mut() {
            if key.len() > limit {
                *key = Cow::Owned(bounded(key, limit).0.into_owned());
                cut += 1;
            }
        }
    };
    bound_keys(&mut span.metadata);
    for event in &mut span.events {
        bound_keys(&mut event.attributes);
    }
    cut
}

/// Keeps the captured prompt and completion, the metadata entries and the events, in that
/// order, while the span fits `max_span_bytes`; leaves out the rest (nothing after the first
/// that does not fit). Returns how many were left out.
fn leave_out_past_bound(span: &mut SpanData, deferred: &[Encoded], limits: Limits) -> u64 {
    let fixed: usize = texts(span).iter().flatten().map(|text| text.len()).sum();
    let mut room = limits
        .max_span_bytes
        .saturating_sub(SPAN_OVERHEAD_BYTES + fixed);
    let mut left_out = 0u64;
    for slot in [&mut span.prompt, &mut span.completion] {
        let size = content_bytes(slot.as_ref(), deferred, limits);
        if size <= room {
            room -= size;
        } else if slot.is_some() {
            *slot = None;
            left_out += 1;
        }
    }
    let mut keep = |size: usize| {
        if size <= room {
            room -= size;
            true
        } else {
            room = 0; // keep the order: nothing after an entry left out
            false
        }
    };
    let entries = span.metadata.len();
    span.metadata.retain(|(key, value)| {
        keep(
            key.len() + value_bytes(value, deferred, limits.max_value_bytes) + ENTRY_OVERHEAD_BYTES,
        )
    });
    let events = span.events.len();
    span.events
        .retain(|event| keep(event_bytes(event, deferred, limits)));
    left_out + (entries - span.metadata.len()) as u64 + (events - span.events.len()) as u64
}

/// Fits one span within `limits`, in place (a shared span is copied first), before any
/// encoder sees it, so every format exports the same bounded span: each text field and each
/// metadata key (of the span and of its events) is cut to `max_value_bytes`; then, in this
/// order, the captured prompt and completion, the metadata entries and the events are kept
/// while the span stays within `max_span_bytes`, and the rest of them are left out. Returns how
/// many fields, keys, entries and events were cut or left out. A span within every bound is
/// only measured.
pub fn fit_span(data: &mut std::sync::Arc<SpanData>, deferred: &[Encoded], limits: Limits) -> u64 {
    if !needs_fitting(data, deferred, limits) {
        return 0;
    }
    let span = std::sync::Arc::make_mut(data);
    bound_texts_and_keys(span, limits.max_value_bytes)
        + leave_out_past_bound(span, deferred, limits)
}

/// What a value holds once its deferred part is looked up: text to bound, JSON to keep whole
/// when it fits, or a primitive.
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    Json(&'a str),
}

pub fn resolve<'a>(value: &'a Value, deferred: &'a [Encoded]) -> Resolved<'a> {
    match value {
        Value::Null => Resolved::Null,
        Value::Bool(b) => Resolved::Bool(*b),
        Value::Int(i) => Resolved::Int(*i),
        Value::Float(f) => Resolved::Float(*f),
        Value::Str(s) => Resolved::Text(s),
        Value::Json(json) => Resolved::Json(json),
        Value::Deferred(index) => match deferred.get(*index) {
            Some(Encoded::Json(json) | Encoded::Rewritten(json)) => Resolved::Json(json),
            Some(Encoded::Text(text)) => Resolved::Text(text),
            None => Resolved::Null,
        },
    }
}

/// Writes one span as a JSON object (the exported record), bounding what `FIELDS` says to bound
/// (cut at a character boundary, with a visible marker; counted in `report`).
pub fn write_json(
    span: &SpanData,
    deferred: &[Encoded],
    default_service: &str,
    limits: Limits,
    out: &mut String,
    report: &mut EncodeReport,
) {
    out.push('{');
    for (index, spec) in FIELDS.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        // Field keys are plain identifiers (a test checks): no escaping to scan for.
        out.push('"');
        out.push_str(spec.key);
        out.push_str("\":");
        let limit = limits.of(spec.bound);
        match span.field(spec.field, default_service) {
            FieldValue::Null => out.push_str("null"),
            FieldValue::TraceId(id) => write_hex_id(out, id, 32),
            FieldValue::SpanId(id) => write_hex_id(out, u128::from(id), 16),
            FieldValue::Str(text) => write_bounded(out, text, limit, report),
            FieldValue::Status(status) => write_str(out, status.name()),
            FieldValue::UnixNano(time) => {
                let _ = write!(out, "{time}");
            }
            FieldValue::Metadata(entries) => write_object(out, entries, deferred, limit, report),
            FieldValue::Events(events) => {
                out.push('[');
                for (index, event) in events.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push('{');
                    write_str(out, EVENT_NAME);
                    out.push(':');
                    write_bounded(out, &event.name, limit, report);
                    out.push(',');
                    write_str(out, EVENT_TIME);
                    let _ = write!(out, ":{},", event.time_unix_nano);
                    write_str(out, EVENT_ATTRIBUTES);
                    out.push(':');
                    write_object(out, &event.attributes, deferred, limit, report);
                    out.push('}');
                }
                out.push(']');
            }
            FieldValue::Content(value) => write_value(out, value, deferred, limit, report),
        }
    }
    out.push('}');
}

/// Spans as JSON Lines: one record per line.
pub fn write_jsonl<'s>(
    spans: impl ExactSizeIterator<Item = (&'s SpanData, &'s [Encoded])>,
    default_service: &str,
    limits: Limits,
) -> (String, EncodeReport) {
    let mut out = String::with_capacity(spans.len() * 512);
    let mut report = EncodeReport::default();
    for (data, encoded) in spans {
        write_json(
            data,
            encoded,
            default_service,
            limits,
            &mut out,
            &mut report,
        );
        out.push('\n');
    }
    (out, report)
}

fn write_object(
    out: &mut String,
    entries: &[(Key, Value)],
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
) {
    out.push('{');
    for (index, (key, value)) in entries.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_value(out, value, deferred, limit, report);
    }
    out.push('}');
}

/// One value: primitives as they are, text bounded, JSON whole when it fits (else its start,
/// as a marked string).
pub fn write_value(
    out: &mut String,
    value: &Value,
    deferred: &[Encoded],
    limit: usize,
    report: &mut EncodeReport,
) {
    match resolve(value, deferred) {
        Resolved::Null => out.push_str("null"),
        Resolved::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Resolved::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Resolved::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Resolved::Float(_) => out.push_str("null"), // JSON has no NaN/inf (msgspec does the same)
        Resolved::Text(text) => write_bounded(out, text, limit, report),
        Resolved::Json(json) if json.len() <= limit => out.push_str(json),
        Resolved::Json(json) => write_bounded(out, json, limit, report),
    }
}

fn write_bounded(out: &mut String, text: &str, limit: usize, report: &mut EncodeReport) {
    let (text, cut) = bounded(text, limit);
    report.truncated += u64::from(cut);
    write_str(out, &text);
}

/// A JSON string literal (RFC 8259 escaping). Most text needs no escape: find the first byte
/// that does in one pass and copy the plain runs whole.
pub fn write_str(out: &mut String, s: &str) {
    let needs_escape = |byte: &u8| *byte < 0x20 || *byte == b'"' || *byte == b'\\';
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let Some(first) = bytes.iter().position(needs_escape) else {
        out.push_str(s);
        out.push('"');
        return;
    };
    let mut plain_from = 0;
    for (index, byte) in bytes.iter().enumerate().skip(first) {
        if !needs_escape(byte) {
            continue;
        }
        out.push_str(&s[plain_from..index]);
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        plain_from = index + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

/// `id` as `digits` lowercase hex digits in quotes (ids are fixed width, zero-padded).
fn write_hex_id(out: &mut String, id: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 34];
    text[0] = b'"';
    for position in 0..digits {
        let shift = (digits - 1 - position) * 4;
        text[1 + position as usize] = HEX[((id >> shift) & 0xf) as usize];
    }
    text[1 + digits as usize] = b'"';
    // ASCII by construction.
    out.push_str(std::str::from_utf8(&text[..digits as usize + 2]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SpanData {
        SpanData {
            trace_id: 0xabc,
            span_id: 0x12,
            parent_span_id: Some(0x34),
            name: "llm".into(),
            model: "gpt-4o".into(),
            provider: Some("openai".into()),
            status: Status::Ok,
            start_time_unix_nano: 10,
            end_time_unix_nano: 25,
            metadata: vec![
                ("prompt_tokens".into(), Value::Int(12)),
                ("note".into(), Value::Str("line\n\"quoted\"\u{1}é".into())),
                ("ratio".into(), Value::Float(0.5)),
                ("nan".into(), Value::Float(f64::NAN)),
                ("tags".into(), Value::Json("[1,2]".into())),
                ("none".into(), Value::Null),
                ("flag".into(), Value::Bool(true)),
            ],
            ..SpanData::default()
        }
    }

    fn json(span: &SpanData, deferred: &[Encoded], limits: Limits) -> (String, EncodeReport) {
        let mut out = String::new();
        let mut report = EncodeReport::default();
        write_json(span, deferred, "svc", limits, &mut out, &mut report);
        (out, report)
    }

    #[test]
    fn json_record_has_every_field() {
        let (out, report) = json(&sample(), &[], Limits::UNBOUNDED);
        assert_eq!(
            out,
            concat!(
                r#"{"trace_id":"00000000000000000000000000000abc","span_id":"0000000000000012","#,
                r#""parent_span_id":"0000000000000034","name":"llm","model":"gpt-4o","#,
                r#""provider":"openai","service_name":"svc","user_id":null,"session_id":null,"#,
                r#""status":"ok","error_type":null,"error_message":null,"#,
                r#""start_time_unix_nano":10,"end_time_unix_nano":25,"metadata":{"#,
                r#""prompt_tokens":12,"note":"line\n\"quoted\"\u0001é","ratio":0.5,"nan":null,"#,
                r#""tags":[1,2],"none":null,"flag":true},"events":[],"prompt":null,"#,
                r#""completion":null}"#
            )
        );
        assert_eq!(report, EncodeReport::default());
    }

    #[test]
    fn every_declared_field_is_written_under_its_key() {
        let mut span = sample();
        span.events.push(Event {
            name: "retry".into(),
            time_unix_nano: 17,
            attributes: vec![("attempt".into(), Value::Int(2))],
        });
        span.prompt = Some(Value::Str("hello".into()));
        span.completion = Some(Value::Deferred(0));
        let (out, _) = json(
            &span,
            &[Encoded::Json("[\"hi\"]".into())],
            Limits::UNBOUNDED,
        );
        for spec in &FIELDS {
            assert!(
                out.contains(&format!("\"{}\":", spec.key)),
                "{} missing: {out}",
                spec.key
            );
        }
        assert!(out.contains(
            r#""events":[{"name":"retry","time_unix_nano":17,"attributes":{"attempt":2}}]"#
        ));
        assert!(
            out.ends_with(r#""prompt":"hello","completion":["hi"]}"#),
            "{out}"
        );
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary_with_a_marker() {
        let (text, cut) = bounded("ééééé", 5);
        assert!(cut);
        assert_eq!(text, "éé...[truncated 6 bytes]");
        let mut span = sample();
        span.metadata = vec![(
            "big".into(),
            Value::Json(format!("[{}]", "1,".repeat(100) + "1")),
        )];
        span.prompt = Some(Value::Str("x".repeat(40).into()));
        let limits = Limits {
            max_value_bytes: 16,
            max_content_bytes: 32,
            max_span_bytes: usize::MAX,
        };
        let (out, report) = json(&span, &[], limits);
        assert_eq!(report.truncated, 2);
        assert!(
            out.contains(r#""big":"[1,1,1,1,1,1,1,1...[truncated"#),
            "{out}"
        );
        assert!(out.contains(&format!(
            "\"prompt\":\"{}...[truncated 8 bytes]\"",
            "x".repeat(32)
        )));
    }

    #[test]
    fn deferred_values_come_from_the_side_table() {
        let mut span = sample();
        span.metadata = vec![
            ("vector".into(), Value::Deferred(0)),
            ("odd".into(), Value::Deferred(1)),
        ];
        let deferred = [
            Encoded::Json("[0.1,0.2]".into()),
            Encoded::Text("<object at 0x1>".into()),
        ];
        let (out, _) = json(&span, &deferred, Limits::UNBOUNDED);
        assert!(
            out.contains(r#""metadata":{"vector":[0.1,0.2],"odd":"<object at 0x1>"}"#),
            "{out}"
        );
    }

    #[test]
    fn standard_keys_are_static_and_typed() {
        for standard in &STANDARD_KEYS {
            assert_eq!(
                metadata_key(standard.key),
                (Cow::Borrowed(standard.key), standard.kind)
            );
        }
        assert_eq!(metadata_key("prompt_tokens").1, KeyKind::Int);
        assert_eq!(metadata_key("actual_model").1, KeyKind::Str);
        let (custom, kind) = metadata_key("tier");
        assert!(matches!(custom, Cow::Owned(ref k) if k == "tier"));
        assert_eq!(kind, KeyKind::Any);
    }

    #[test]
    fn set_field_reads_back_what_field_gives() {
        let mut span = sample();
        span.events.push(Event {
            name: "e".into(),
            time_unix_nano: 3,
            attributes: vec![],
        });
        span.prompt = Some(Value::Str("p".into()));
        span.completion = Some(Value::Str("c".into()));
        span.user_id = Some("u".into());
        span.error_message = Some("boom".into());
        let mut copy = SpanData::default();
        for spec in &FIELDS {
            let parsed = match span.field(spec.field, "svc") {
                FieldValue::Null => Parsed::Null,
                FieldValue::TraceId(id) => Parsed::Id(id),
                FieldValue::SpanId(id) => Parsed::Id(u128::from(id)),
                FieldValue::Str(text) => Parsed::Str(text.into()),
                FieldValue::Status(status) => Parsed::Status(status),
                FieldValue::UnixNano(time) => Parsed::UnixNano(time),
                FieldValue::Metadata(m) => Parsed::Metadata(m.to_vec()),
                FieldValue::Events(e) => Parsed::Events(e.to_vec()),
                FieldValue::Content(v) => Parsed::Content(v.clone()),
            };
            copy.set_field(spec.field, parsed);
        }
        span.service_name = Some("svc".into());
        // NaN != NaN: compare the encoded forms.
        assert_eq!(
            json(&copy, &[], Limits::UNBOUNDED).0,
            json(&span, &[], Limits::UNBOUNDED).0
        );
    }

    #[test]
    fn keys_need_no_json_escaping() {
        for spec in &FIELDS {
            assert!(
                spec.key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                spec.key
            );
        }
    }

    #[test]
    fn strings_are_escaped_as_rfc_8259_says() {
        let mut out = String::new();
        write_str(&mut out, "plain");
        write_str(&mut out, "a\"b\\c\nd\re\tf\u{1}g\u{1f}é\u{7f}");
        write_str(&mut out, "");
        assert_eq!(
            out,
            "\"plain\"\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fé\u{7f}\"\"\""
        );
        let mut ids = String::new();
        write_hex_id(&mut ids, 0xabc, 32);
        write_hex_id(&mut ids, u128::from(u64::MAX), 16);
        assert_eq!(
            ids,
            r#""00000000000000000000000000000abc""ffffffffffffffff""#
        );
    }

    #[test]
    fn a_span_is_fitted_within_its_bound_and_every_cut_counted() {
        let limits = Limits {
            max_value_bytes: 100,
            max_content_bytes: 1000,
            max_span_bytes: 8192,
        };
        let mut span = std::sync::Arc::new(sample());
        assert_eq!(
            fit_span(&mut span, &[], limits),
            0,
            "within bounds: untouched"
        );
        let data = std::sync::Arc::make_mut(&mut span);
        data.model = "m".repeat(10_000).into();
        data.user_id = Some("u".repeat(10_000).into());
        data.metadata = (0..1000)
            .map(|i| {
                (
                    Cow::Owned(format!("key{i}")),
                    Value::Str("v".repeat(90).into()),
                )
            })
            .collect();
        data.metadata
            .insert(0, (Cow::Owned("k".repeat(10_000)), Value::Int(1)));
        let shared = std::sync::Arc::clone(&span);
        let cut = fit_span(&mut span, &[], limits);
        assert_eq!(
            shared.metadata.len(),
            1001,
            "a shared span is copied, not changed"
        );
        let (out, _) = json(&span, &[], limits);
        assert!(out.len() <= limits.max_span_bytes, "{} bytes", out.len());
        assert!(span.model.len() < 200 && span.user_id.as_ref().unwrap().len() < 200);
        assert!(span.metadata[0].0.starts_with("kkk") && span.metadata[0].0.len() < 200);
        let kept = span.metadata.len();
        assert!(kept > 10 && kept < 1001, "{kept}");
        // model, user_id, the long key, and each entry left out.
        assert_eq!(cut, 3 + (1001 - kept) as u64);
    }

    #[test]
    fn keys_and_columns_are_unique() {
        let keys: std::collections::HashSet<_> = FIELDS.iter().map(|f| f.key).collect();
        let columns: std::collections::HashSet<_> = FIELDS.iter().map(|f| f.column).collect();
        assert_eq!(keys.len(), FIELDS.len());
        assert_eq!(columns.len(), FIELDS.len());
    }
}
