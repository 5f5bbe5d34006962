//! A finished span's data and its exported JSON form, with no Python in it, so the flusher can
//! encode whole batches with the interpreter detached.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::fork;

/// The span's strings: up to 24 bytes (model names, providers, ids) live inline, so a span
/// costs the request thread no allocation for them and the flusher no cross-thread free.
pub type Text = compact_str::CompactString;

/// Keys of the spec's metadata table whose values keep a type (see `metadata_key`).
pub const INT_KEYS: [&str; 3] = ["prompt_tokens", "completion_tokens", "retry_count"];
pub const STR_KEYS: [&str; 3] = ["actual_model", "session_id", "finish_reason"];

pub const DEFAULT_NAME: &str = "llm";

/// The type a metadata key's values keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Int,
    Str,
    Any,
}

/// `key` as a static string when it is a known key (no allocation), else owned, and the type
/// its values keep. One `match`: the compiler turns it into a length switch and a compare.
pub fn metadata_key(key: &str) -> (Cow<'static, str>, KeyKind) {
    let known = |name: &'static str, kind| (Cow::Borrowed(name), kind);
    match key {
        "prompt_tokens" => known("prompt_tokens", KeyKind::Int),
        "completion_tokens" => known("completion_tokens", KeyKind::Int),
        "retry_count" => known("retry_count", KeyKind::Int),
        "actual_model" => known("actual_model", KeyKind::Str),
        "session_id" => known("session_id", KeyKind::Str),
        "finish_reason" => known("finish_reason", KeyKind::Str),
        "token_count_method" => known("token_count_method", KeyKind::Any),
        "token_encoding" => known("token_encoding", KeyKind::Any),
        _ => (Cow::Owned(key.to_owned()), KeyKind::Any),
    }
}

pub const TRUNCATION_MARKER: &str = "...[truncated {} bytes]";

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text),
    /// A value already encoded as JSON (containers and objects, encoded by the Python layer).
    Json(String),
    /// A value kept as the caller's object until the flusher encodes it: an index into the
    /// span's side table (`Encoded`), so the request thread never pays for encoding containers.
    Deferred(usize),
}

/// What a deferred value became once encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    Json(String),
    /// Not encodable: its `repr`, kept as a string.
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Unset,
    Ok,
    Error,
}

impl Status {
    pub const fn name(self) -> &'static str {
        match self {
            Status::Unset => "unset",
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanData {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    /// `Cow` so the default name and the standard metadata keys cost no allocation per span.
    pub name: Cow<'static, str>,
    pub model: Text,
    pub provider: Option<Text>,
    pub service_name: Option<Text>,
    pub user_id: Option<Text>,
    pub session_id: Option<Text>,
    pub status: Status,
    pub error_type: Option<Text>,
    pub error_message: Option<Text>,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub metadata: Vec<(Cow<'static, str>, Value)>,
}

impl SpanData {
    /// Sets `key`, replacing an earlier value (keys keep their first position).
    pub fn set(&mut self, key: Cow<'static, str>, value: Value) {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key, value));
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Wall-clock start plus a monotonic clock for the duration (the wall clock may jump).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_unix_nano: u64,
    started: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        let start_unix_nano = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock {
            start_unix_nano,
            started: Instant::now(),
        }
    }

    pub fn start_unix_nano(&self) -> u64 {
        self.start_unix_nano
    }

    pub fn end_unix_nano(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.start_unix_nano.saturating_add(elapsed)
    }
}

thread_local! {
    static RNG_GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

/// Random non-zero ids. The per-thread generator is reseeded in a forked child, so parent and
/// child never produce the same ids.
pub fn new_trace_id() -> u128 {
    reseed_after_fork();
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

pub fn new_span_id() -> u64 {
    reseed_after_fork();
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

fn reseed_after_fork() {
    let generation = fork::generation();
    RNG_GENERATION.with(|seen| {
        if seen.get() != generation {
            seen.set(generation);
            // RandomState draws fresh OS randomness per process; mix in the pid and the clock.
            let mut seed = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                (
                    std::process::id(),
                    Clock::start().start_unix_nano(),
                    generation,
                ),
            );
            seed ^= fastrand::u64(..);
            fastrand::seed(seed);
        }
    });
}

/// Counts of what encoding had to change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeReport {
    pub truncated: u64,
}

/// Writes one span as a JSON object (the exported record), bounding each metadata value and the
/// error message to `max_value_bytes` (cut at a character boundary, with a visible marker).
pub fn write_json(
    span: &SpanData,
    deferred: &[Encoded],
    default_service: &str,
    max_value_bytes: usize,
    out: &mut String,
    report: &mut EncodeReport,
) {
    out.push_str("{\"trace_id\":\"");
    let _ = write!(out, "{:032x}", span.trace_id);
    out.push_str("\",\"span_id\":\"");
    let _ = write!(out, "{:016x}", span.span_id);
    out.push_str("\",\"parent_span_id\":");
    match span.parent_span_id {
        Some(id) => {
            let _ = write!(out, "\"{id:016x}\"");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"name\":");
    write_str(out, &span.name);
    out.push_str(",\"model\":");
    write_str(out, &span.model);
    out.push_str(",\"provider\":");
    write_opt_str(out, span.provider.as_deref());
    out.push_str(",\"service_name\":");
    write_str(out, span.service_name.as_deref().unwrap_or(default_service));
    out.push_str(",\"user_id\":");
    write_opt_str(out, span.user_id.as_deref());
    out.push_str(",\"session_id\":");
    write_opt_str(out, span.session_id.as_deref());
    out.push_str(",\"status\":\"");
    out.push_str(span.status.name());
    out.push_str("\",\"error_type\":");
    write_opt_str(out, span.error_type.as_deref());
    out.push_str(",\"error_message\":");
    match &span.error_message {
        Some(message) => {
            let (text, cut) = bounded(message, max_value_bytes);
            report.truncated += u64::from(cut);
            write_str(out, &text);
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"start_time_unix_nano\":{},\"end_time_unix_nano\":{},\"metadata\":{{",
        span.start_time_unix_nano, span.end_time_unix_nano
    );
    for (index, (key, value)) in span.metadata.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            Value::Float(_) => out.push_str("null"), // JSON has no NaN/inf (msgspec does the same)
            Value::Str(s) => {
                let (text, cut) = bounded(s, max_value_bytes);
                report.truncated += u64::from(cut);
                write_str(out, &text);
            }
            Value::Json(json) => write_json_value(out, json, max_value_bytes, report),
            Value::Deferred(index) => match deferred.get(*index) {
                Some(Encoded::Json(json)) => write_json_value(out, json, max_value_bytes, report),
                Some(Encoded::Text(text)) => {
                    let (text, cut) = bounded(text, max_value_bytes);
                    report.truncated += u64::from(cut);
                    write_str(out, &text);
                }
                None => out.push_str("null"),
            },
        }
    }
    out.push_str("}}");
}

fn write_json_value(
    out: &mut String,
    json: &str,
    max_value_bytes: usize,
    report: &mut EncodeReport,
) {
    if json.len() <= max_value_bytes {
        out.push_str(json);
    } else {
        // Too big to keep whole: keep its start as a string, marked.
        let (text, _) = bounded(json, max_value_bytes);
        report.truncated += 1;
        write_str(out, &text);
    }
}

/// `text` cut to at most `limit` bytes at a char boundary, with the marker; and whether it was.
pub fn bounded(text: &str, limit: usize) -> (std::borrow::Cow<'_, str>, bool) {
    if text.len() <= limit {
        return (std::borrow::Cow::Borrowed(text), false);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    let marker = TRUNCATION_MARKER.replace("{}", &dropped.to_string());
    (
        std::borrow::Cow::Owned(format!("{}{marker}", &text[..cut])),
        true,
    )
}

fn write_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(s) => write_str(out, s),
        None => out.push_str("null"),
    }
}

/// A JSON string literal (RFC 8259 escaping).
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut plain_from = 0;
    for (index, byte) in s.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        plain_from = index + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SpanData {
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

    #[test]
    fn json_record_has_every_field() {
        let mut out = String::new();
        let mut report = EncodeReport::default();
        write_json(&sample(), &[], "svc", 1024, &mut out, &mut report);
        assert_eq!(
            out,
            concat!(
                r#"{"trace_id":"00000000000000000000000000000abc","span_id":"0000000000000012","#,
                r#""parent_span_id":"0000000000000034","name":"llm","model":"gpt-4o","#,
                r#""provider":"openai","service_name":"svc","user_id":null,"session_id":null,"#,
                r#""status":"ok","error_type":null,"error_message":null,"#,
                r#""start_time_unix_nano":10,"end_time_unix_nano":25,"metadata":{"#,
                r#""prompt_tokens":12,"note":"line\n\"quoted\"\u0001é","ratio":0.5,"nan":null,"#,
                r#""tags":[1,2],"none":null,"flag":true}}"#
            )
        );
        assert_eq!(report, EncodeReport::default());
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
        let mut out = String::new();
        let mut report = EncodeReport::default();
        write_json(&span, &[], "svc", 16, &mut out, &mut report);
        assert_eq!(report.truncated, 1);
        assert!(
            out.contains(r#""big":"[1,1,1,1,1,1,1,1...[truncated"#),
            "{out}"
        );
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
        let mut out = String::new();
        let mut report = EncodeReport::default();
        write_json(&span, &deferred, "svc", 1024, &mut out, &mut report);
        assert!(
            out.ends_with(r#""metadata":{"vector":[0.1,0.2],"odd":"<object at 0x1>"}}"#),
            "{out}"
        );
    }

    #[test]
    fn known_keys_are_static_and_typed() {
        for key in INT_KEYS {
            assert_eq!(metadata_key(key), (Cow::Borrowed(key), KeyKind::Int));
        }
        for key in STR_KEYS {
            assert_eq!(metadata_key(key), (Cow::Borrowed(key), KeyKind::Str));
        }
        let (custom, kind) = metadata_key("temperature");
        assert!(matches!(custom, Cow::Owned(ref k) if k == "temperature"));
        assert_eq!(kind, KeyKind::Any);
    }

    #[test]
    fn set_replaces_in_place() {
        let mut span = SpanData::default();
        span.set("a".into(), Value::Int(1));
        span.set("b".into(), Value::Int(2));
        span.set("a".into(), Value::Int(3));
        assert_eq!(
            span.metadata,
            vec![("a".into(), Value::Int(3)), ("b".into(), Value::Int(2))]
        );
    }

    #[test]
    fn ids_are_non_zero_and_distinct() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert_ne!(new_trace_id(), 0);
    }

    #[test]
    fn clock_is_monotonic_from_the_wall_start() {
        let clock = Clock::start();
        assert!(clock.start_unix_nano() > 1_600_000_000_000_000_000);
        assert!(clock.end_unix_nano() >= clock.start_unix_nano());
    }
}
