//! Built-in span processors: they run on the flusher, with the interpreter detached, between
//! draining a batch and encoding it. A processor sees each finished span and keeps it (possibly
//! changed) or drops it. One that panics fails closed: the span is dropped, never exported
//! unprocessed (a processor may be a redactor).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::span::{Encoded, SpanData};

/// What a processor decided about one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
    /// The processor could not do its work on this span (a scanner's validator raised): the
    /// span is dropped and counted as a failure, like a panic (fail closed).
    Fail,
}

/// One finished span as processors see it: its data (shared with the `Span` object the
/// application may still hold, so changing it copies it once: `Arc::make_mut`) and what its
/// deferred values encoded to.
pub struct SpanView<'a> {
    pub data: &'a mut Arc<SpanData>,
    pub encoded: &'a mut Vec<Encoded>,
}

pub trait Processor: Send + Sync + std::fmt::Debug {
    fn process(&self, span: &mut SpanView<'_>) -> Verdict;
}

/// Keeps a fixed share of traces, decided by the trace id so a trace is kept or dropped whole
/// (OpenTelemetry's `TraceIdRatioBased` rule: the id's low 64 bits below `ratio * 2^64`).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    ratio: f64,
    bound: u64,
}

impl Sample {
    pub fn new(ratio: f64) -> Result<Sample, String> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!("ratio must be from 0.0 to 1.0, got {ratio}"));
        }
        let bound = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * 2f64.powi(64)) as u64
        };
        Ok(Sample { ratio, bound })
    }

    pub fn ratio(&self) -> f64 {
        self.ratio
    }
}

impl Processor for Sample {
    fn process(&self, span: &mut SpanView<'_>) -> Verdict {
        let low = span.data.trace_id as u64;
        if self.bound == u64::MAX || low < self.bound {
            Verdict::Keep
        } else {
            Verdict::Drop
        }
    }
}

/// Removes metadata keys (and event attributes of those names) before export.
#[derive(Debug, Clone)]
pub struct DropKeys {
    keys: Vec<String>,
}

impl DropKeys {
    pub fn new(keys: Vec<String>) -> DropKeys {
        DropKeys { keys }
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    fn listed(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

impl Processor for DropKeys {
    fn process(&self, span: &mut SpanView<'_>) -> Verdict {
        let data: &SpanData = span.data;
        let present = data.metadata.iter().any(|(k, _)| self.listed(k))
            || data
                .events
                .iter()
                .any(|e| e.attributes.iter().any(|(k, _)| self.listed(k)));
        if present {
            // Only now copy-on-write: spans without those keys cost one scan.
            let data = Arc::make_mut(span.data);
            data.metadata.retain(|(k, _)| !self.listed(k));
            for event in &mut data.events {
                event.attributes.retain(|(k, _)| !self.listed(k));
            }
        }
        Verdict::Keep
    }
}

/// What a chain of processors did to one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Kept,
    /// A processor dropped it.
    Filtered,
    /// A processor panicked: dropped (fail closed).
    Failed,
}

/// Runs `chain` on one span, in order, stopping at the first drop.
pub fn run(chain: &[Arc<dyn Processor>], span: &mut SpanView<'_>) -> Outcome {
    for processor in chain {
        match catch_unwind(AssertUnwindSafe(|| processor.process(span))) {
            Ok(Verdict::Keep) => {}
            Ok(Verdict::Drop) => return Outcome::Filtered,
            Ok(Verdict::Fail) => return Outcome::Failed,
            Err(_) => return Outcome::Failed,
        }
    }
    Outcome::Kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{Event, Value};

    fn span(trace_id: u128) -> Arc<SpanData> {
        Arc::new(SpanData {
            trace_id,
            metadata: vec![
                ("keep".into(), Value::Int(1)),
                ("secret".into(), Value::Str("s".into())),
            ],
            events: vec![Event {
                name: "e".into(),
                time_unix_nano: 1,
                attributes: vec![("secret".into(), Value::Int(2))],
            }],
            ..SpanData::default()
        })
    }

    fn outcome(chain: &[Arc<dyn Processor>], data: &mut Arc<SpanData>) -> Outcome {
        let mut encoded = Vec::new();
        run(
            chain,
            &mut SpanView {
                data,
                encoded: &mut encoded,
            },
        )
    }

    #[test]
    fn sample_keeps_about_its_ratio_and_whole_traces() {
        let chain: Vec<Arc<dyn Processor>> = vec![Arc::new(Sample::new(0.25).unwrap())];
        let kept = (0..20_000)
            .filter(|_| {
                let id = crate::span::new_trace_id();
                let first = outcome(&chain, &mut span(id));
                assert_eq!(
                    first,
                    outcome(&chain, &mut span(id)),
                    "same trace, same verdict"
                );
                first == Outcome::Kept
            })
            .count();
        assert!(
            (4_500..5_500).contains(&kept),
            "{kept} of 20000 kept at 0.25"
        );
        let all: Vec<Arc<dyn Processor>> = vec![Arc::new(Sample::new(1.0).unwrap())];
        let none: Vec<Arc<dyn Processor>> = vec![Arc::new(Sample::new(0.0).unwrap())];
        assert_eq!(outcome(&all, &mut span(u128::MAX)), Outcome::Kept);
        assert_eq!(outcome(&none, &mut span(1)), Outcome::Filtered);
        assert!(Sample::new(1.5).is_err());
        assert!(Sample::new(f64::NAN).is_err());
    }

    #[test]
    fn drop_keys_copies_only_spans_it_changes() {
        let chain: Vec<Arc<dyn Processor>> =
            vec![Arc::new(DropKeys::new(vec!["secret".to_owned()]))];
        let mut data = span(1);
        let held = Arc::clone(&data); // the application's Span still holds its data
        assert_eq!(outcome(&chain, &mut data), Outcome::Kept);
        assert_eq!(data.metadata.len(), 1);
        assert!(data.events[0].attributes.is_empty());
        assert_eq!(
            held.metadata.len(),
            2,
            "the application's view is unchanged"
        );

        let untouched: Vec<Arc<dyn Processor>> =
            vec![Arc::new(DropKeys::new(vec!["absent".to_owned()]))];
        let mut data = span(1);
        let before = Arc::clone(&data);
        outcome(&untouched, &mut data);
        assert!(
            Arc::ptr_eq(&before, &data),
            "no copy when nothing is removed"
        );
    }

    #[derive(Debug)]
    struct Panics;

    impl Processor for Panics {
        fn process(&self, _: &mut SpanView<'_>) -> Verdict {
            panic!("processor bug")
        }
    }

    #[test]
    fn a_panicking_processor_fails_closed() {
        let chain: Vec<Arc<dyn Processor>> = vec![Arc::new(Panics)];
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = outcome(&chain, &mut span(1));
        std::panic::set_hook(previous);
        assert_eq!(result, Outcome::Failed);
    }
}
