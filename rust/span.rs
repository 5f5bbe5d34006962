//! A span's data (what a finished span carries to the exporter), its clock and its ids, with no
//! Python in it. The exported record's form is declared in `record.rs`.

use std::borrow::Cow;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::fork;

/// The span's strings: up to 24 bytes (model names, providers, ids) live inline, so a span
/// costs the request thread no allocation for them and the flusher no cross-thread free.
pub type Text = compact_str::CompactString;

pub const DEFAULT_NAME: &str = "llm";

/// A metadata or event attribute key: the standard keys are static (no allocation per span).
pub type Key = Cow<'static, str>;

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
    /// JSON a processor rewrote (a masked container): the caller's object no longer stands
    /// for the value, so every encoder, records included, reads this instead.
    Rewritten(String),
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
    pub metadata: Vec<(Key, Value)>,
    /// Timestamped events (`Span.add_event`), at most `MAX_EVENTS` of them.
    pub events: Vec<Event>,
    /// The prompt and the completion, recorded only when content capture is on.
    pub prompt: Option<Value>,
    pub completion: Option<Value>,
}

/// Events kept per span; later ones are dropped and counted.
pub const MAX_EVENTS: usize = 128;

/// Something that happened at a point in a span's life (a retry, a first token, a tool call).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: Text,
    pub time_unix_nano: u64,
    pub attributes: Vec<(Key, Value)>,
}

impl SpanData {
    /// Sets `key`, replacing an earlier value (keys keep their first position).
    pub fn set(&mut self, key: Key, value: Value) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
