//! What a streamed response adds to its span, with no Python in it: how the stream ended, when
//! its first token came, and the completion its chunks carried (text, finish reason, model,
//! usage), written into the span's standard keys once the stream is over.
//!
//! The request thread only counts chunks and stamps the first token; reading the chunks'
//! shapes (`py/chunks.rs`) and counting the completion happen on the flusher.

use std::borrow::Cow;

use crate::span::{Event, SpanData, Text, Value};
use crate::tokens::{self, Encoding};

/// How a wrapped stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Iterated to its end.
    Completed,
    /// Closed, broken out of or dropped before its end while its span's `with` block was open.
    ClosedEarly,
    /// The producer raised (or the consuming task was cancelled).
    Error,
    /// Collected unfinished after its span's `with` block had exited.
    Abandoned,
}

impl StreamStatus {
    pub const fn name(self) -> &'static str {
        match self {
            StreamStatus::Completed => "completed",
            StreamStatus::ClosedEarly => "closed_early",
            StreamStatus::Error => "error",
            StreamStatus::Abandoned => "abandoned",
        }
    }
}

/// The request thread's facts about one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamFacts {
    /// Every item the stream yielded (role, finish and usage chunks included).
    pub chunks: u64,
    /// Wall-clock time of the first chunk that carried output text or a tool-call delta.
    pub first_token_unix_nano: Option<u64>,
    pub end_unix_nano: u64,
    pub status: StreamStatus,
}

impl StreamFacts {
    /// Two streams of one span (a retry after a failed stream): chunks add up, the first token
    /// is the earliest, and the stream that ended last tells how the span's streaming ended.
    #[must_use]
    pub fn merge(self, later: StreamFacts) -> StreamFacts {
        StreamFacts {
            chunks: self.chunks + later.chunks,
            first_token_unix_nano: match (self.first_token_unix_nano, later.first_token_unix_nano) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            end_unix_nano: self.end_unix_nano.max(later.end_unix_nano),
            status: later.status,
        }
    }
}

/// What the chunks said, gathered on the flusher (or on the request thread for very long
/// streams, whose chunks are folded in as they go to bound the memory they hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    /// Output text per choice (OpenAI's `n > 1`), tool-call arguments included.
    pub choices: Vec<String>,
    pub finish_reason: Option<Text>,
    pub actual_model: Option<Text>,
    /// Output tokens as the provider reported them (Anthropic's are cumulative: the last wins).
    pub output_tokens: Option<i64>,
    /// Input tokens as the provider reported them.
    pub input_tokens: Option<i64>,
    /// The parts of the input and output the provider reported, each recorded under its
    /// standard key: `(key, tokens)`, e.g. `("cache_read_tokens", 1024)`.
    pub usage_parts: Vec<(&'static str, i64)>,
}

impl Completion {
    /// Sets the usage part `key` (a standard key: cache read/creation, uncached input,
    /// reasoning tokens), replacing an earlier value of it.
    pub fn set_usage_part(&mut self, key: &'static str, tokens: i64) {
        match self.usage_parts.iter_mut().find(|(k, _)| *k == key) {
            Some(part) => part.1 = tokens,
            None => self.usage_parts.push((key, tokens)),
        }
    }

    pub fn push_text(&mut self, choice: usize, text: &str) {
        if text.is_empty() {
            return;
        }
        // A choice index is the provider's; more than a few hundred is not a real stream.
        let choice = choice.min(255);
        if self.choices.len() <= choice {
            self.choices.resize_with(choice + 1, String::new);
        }
        self.choices[choice].push_str(text);
    }

    fn text_len(&self) -> usize {
        self.choices.iter().map(String::len).sum()
    }
}

/// How the completion's token count was obtained.
fn count_completion(completion: &Completion, encoding: Option<Encoding>) -> (i64, &'static str) {
    if let Some(tokens) = completion.output_tokens {
        return (tokens, "usage");
    }
    let mut total = 0usize;
    let mut method = tokens::Method::Tiktoken;
    for text in &completion.choices {
        let count = tokens::count_text(encoding, text);
        total += count.tokens;
        if count.method == tokens::Method::Heuristic {
            method = tokens::Method::Heuristic;
        }
    }
    if encoding.is_none() {
        method = tokens::Method::Heuristic;
    }
    (i64::try_from(total).unwrap_or(i64::MAX), method.name())
}

/// Whether the caller already recorded `key` (their value wins over what the stream said).
fn absent(data: &SpanData, key: &str) -> bool {
    data.get(key).is_none()
}

/// Writes a finished stream into its span: `stream_chunks`, `stream_status`,
/// `time_to_first_token_ms` (from the span's start) and a `first_token` event, then, from the
/// chunks, `finish_reason`, `actual_model`, `completion_tokens` with
/// `completion_token_count_method` and `time_per_output_token_ms`; with `capture`, the text
/// of a single choice becomes the span's completion. Keys the caller set themselves are kept.
pub fn record(data: &mut SpanData, facts: &StreamFacts, completion: &Completion, capture: bool) {
    let ms = |nanos: u64| nanos as f64 / 1e6;
    data.set(
        Cow::Borrowed("stream_chunks"),
        Value::Int(i64::try_from(facts.chunks).unwrap_or(i64::MAX)),
    );
    data.set(
        Cow::Borrowed("stream_status"),
        Value::Str(Text::const_new(facts.status.name())),
    );
    let start = data.start_time_unix_nano;
    if let Some(first) = facts.first_token_unix_nano {
        data.set(
            Cow::Borrowed("time_to_first_token_ms"),
            Value::Float(ms(first.saturating_sub(start))),
        );
        if data.events.len() < crate::span::MAX_EVENTS {
            data.events.push(Event {
                name: Text::const_new("first_token"),
                time_unix_nano: first,
                attributes: Vec::new(),
            });
        }
    }
    if let Some(reason) = &completion.finish_reason {
        if absent(data, "finish_reason") {
            data.set(Cow::Borrowed("finish_reason"), Value::Str(reason.clone()));
        }
    }
    if let Some(model) = &completion.actual_model {
        if absent(data, "actual_model") {
            data.set(Cow::Borrowed("actual_model"), Value::Str(model.clone()));
        }
    }
    if let Some(tokens) = completion.input_tokens {
        // Only when nothing was pre-counted: a local count keeps its own method, and so does
        // a pre-count recorded beside it (`prompt_tokens_estimate`, the client integrations').
        if absent(data, "prompt_tokens") {
            data.set(Cow::Borrowed("prompt_tokens"), Value::Int(tokens));
            if absent(data, "token_count_method") {
                data.set(
                    Cow::Borrowed("token_count_method"),
                    Value::Str(Text::const_new("usage")),
                );
            }
        }
    }
    let output_tokens = if absent(data, "completion_tokens") {
        let has_output = completion.output_tokens.is_some() || completion.text_len() > 0;
        has_output.then(|| {
            let encoding = tokens::encoding_for_model(&data.model).or_else(|| {
                completion
                    .actual_model
                    .as_deref()
                    .and_then(tokens::encoding_for_model)
            });
            let (tokens, method) = count_completion(completion, encoding);
            data.set(Cow::Borrowed("completion_tokens"), Value::Int(tokens));
            data.set(
                Cow::Borrowed("completion_token_count_method"),
                Value::Str(Text::const_new(method)),
            );
            tokens
        })
    } else {
        match data.get("completion_tokens") {
            Some(Value::Int(tokens)) => Some(*tokens),
            _ => None,
        }
    };
    // Time per output token after the first: the standard decode-speed figure.
    if let (Some(first), Some(tokens)) = (facts.first_token_unix_nano, output_tokens) {
        if tokens > 1 && facts.end_unix_nano > first {
            let per_token = ms(facts.end_unix_nano - first) / (tokens - 1) as f64;
            data.set(
                Cow::Borrowed("time_per_output_token_ms"),
                Value::Float(per_token),
            );
        }
    }
    for (key, tokens) in &completion.usage_parts {
        if absent(data, key) {
            data.set(Cow::Borrowed(*key), Value::Int(*tokens));
        }
    }
    // Several choices are a list, an object the binding layer records (as prompts are).
    if let (true, None, [one]) = (capture, &data.completion, completion.choices.as_slice()) {
        data.completion = Some(Value::Str(Text::from(one.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: StreamStatus) -> StreamFacts {
        StreamFacts {
            chunks: 5,
            first_token_unix_nano: Some(1_000_250_000_000),
            end_unix_nano: 1_001_250_000_000,
            status,
        }
    }

    fn span() -> SpanData {
        SpanData {
            model: Text::const_new("gpt-4o"),
            start_time_unix_nano: 1_000_000_000_000,
            ..SpanData::default()
        }
    }

    #[test]
    fn usage_wins_and_timings_follow_from_it() {
        let mut data = span();
        let completion = Completion {
            choices: vec!["Hello world".into()],
            output_tokens: Some(11),
            finish_reason: Some("stop".into()),
            actual_model: Some("gpt-4o-2024-08-06".into()),
            input_tokens: None,
            usage_parts: vec![("reasoning_tokens", 4)],
        };
        record(
            &mut data,
            &facts(StreamStatus::Completed),
            &completion,
            false,
        );
        assert_eq!(data.get("stream_chunks"), Some(&Value::Int(5)));
        assert_eq!(
            data.get("stream_status"),
            Some(&Value::Str("completed".into()))
        );
        assert_eq!(
            data.get("time_to_first_token_ms"),
            Some(&Value::Float(250.0))
        );
        assert_eq!(data.get("completion_tokens"), Some(&Value::Int(11)));
        assert_eq!(
            data.get("completion_token_count_method"),
            Some(&Value::Str("usage".into()))
        );
        assert_eq!(
            data.get("time_per_output_token_ms"),
            Some(&Value::Float(100.0))
        );
        assert_eq!(data.events[0].name, "first_token");
        assert_eq!(data.get("reasoning_tokens"), Some(&Value::Int(4)));
        assert!(data.completion.is_none(), "content capture is off");
    }

    #[test]
    fn text_is_counted_exactly_without_usage() {
        let mut data = span();
        let completion = Completion {
            choices: vec!["Hello world!".into()],
            ..Completion::default()
        };
        record(
            &mut data,
            &facts(StreamStatus::ClosedEarly),
            &completion,
            true,
        );
        assert_eq!(data.get("completion_tokens"), Some(&Value::Int(3)));
        assert_eq!(
            data.get("completion_token_count_method"),
            Some(&Value::Str("tiktoken".into()))
        );
        assert_eq!(data.completion, Some(Value::Str("Hello world!".into())));
    }

    #[test]
    fn unknown_models_are_estimated_and_caller_keys_kept() {
        let mut data = span();
        data.model = Text::const_new("my-local-llm");
        data.set(Cow::Borrowed("finish_reason"), Value::Str("mine".into()));
        let completion = Completion {
            choices: vec!["a".repeat(40), "b".repeat(40)],
            finish_reason: Some("stop".into()),
            ..Completion::default()
        };
        record(&mut data, &facts(StreamStatus::Error), &completion, true);
        assert_eq!(data.get("finish_reason"), Some(&Value::Str("mine".into())));
        assert_eq!(
            data.get("completion_token_count_method"),
            Some(&Value::Str("heuristic".into()))
        );
        assert!(
            data.completion.is_none(),
            "several choices: a list, made by the caller"
        );
    }

    #[test]
    fn a_stream_without_output_records_no_tokens() {
        let mut data = span();
        let empty = StreamFacts {
            chunks: 0,
            first_token_unix_nano: None,
            end_unix_nano: 1,
            status: StreamStatus::Abandoned,
        };
        record(&mut data, &empty, &Completion::default(), true);
        assert_eq!(
            data.get("stream_status"),
            Some(&Value::Str("abandoned".into()))
        );
        assert!(data.get("completion_tokens").is_none());
        assert!(data.get("time_to_first_token_ms").is_none());
        assert!(data.events.is_empty());
    }

    #[test]
    fn merged_facts_keep_the_earliest_token_and_the_last_status() {
        let first = StreamFacts {
            chunks: 2,
            first_token_unix_nano: None,
            end_unix_nano: 10,
            status: StreamStatus::Error,
        };
        let merged = first.merge(facts(StreamStatus::Completed));
        assert_eq!(merged.chunks, 7);
        assert_eq!(merged.status, StreamStatus::Completed);
        assert_eq!(merged.first_token_unix_nano, Some(1_000_250_000_000));
    }
}
