//! Where finished spans go: the active pipeline's sink (the core's bounded buffer), and the
//! batches the flusher takes out of it: processed, then encoded to JSON Lines or records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::context::{fault, HOOKS};
use super::jsonl::JsonlFile;
use super::processor::ExportPlan;
use super::record::record_dict;
use super::stream::{self, StreamTail};
use super::value::encode_object;
use crate::buffer::{Push, SpanBuffer};
use crate::processor::{self, Outcome, SpanView};
use crate::record::{fit_span, write_jsonl, EncodeReport};
use crate::span::{Encoded, SpanData};

/// A finished span on its way to the exporter.
pub struct Finished {
    pub(crate) data: Arc<SpanData>,
    /// The caller's objects for `Value::Deferred` entries, by index.
    pub(crate) objects: Vec<Py<PyAny>>,
    /// The span's streams, read on the flusher (`Batch::encode_deferred`).
    pub(crate) streams: Vec<StreamTail>,
}

impl Finished {
    /// Whether finishing this span needs the interpreter (caller objects or stream chunks).
    fn holds_objects(&self) -> bool {
        !self.objects.is_empty() || !self.streams.is_empty()
    }
}

/// Where finished spans go: the active pipeline's buffer.
pub struct Sink {
    buffer: SpanBuffer<Finished>,
}

pub(crate) static ACTIVE_SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();

/// Spans that ended when no pipeline could take them (counted, reported by `stats()`).
static ORPHANED: AtomicU64 = AtomicU64::new(0);

/// How many spans were dropped because no pipeline could be started for them.
#[pyfunction]
pub fn orphaned_spans() -> u64 {
    ORPHANED.load(Ordering::Relaxed)
}

pub(crate) fn submit(py: Python<'_>, finished: Finished) {
    let mut finished = finished;
    // At most: rebuild the pipeline after a fork, start it, then push again.
    for _ in 0..3 {
        let sink = ACTIVE_SINK.load();
        let Some(sink) = sink.as_ref() else {
            match HOOKS.get(py) {
                Some(hooks) if hooks.start_pipeline.call0(py).is_ok() => continue,
                _ => {
                    ORPHANED.fetch_add(1, Ordering::Relaxed);
                    fault(
                        py,
                        "no_pipeline",
                        "no span pipeline could be started; span dropped",
                    );
                    return;
                }
            }
        };
        match sink.buffer.push(finished) {
            Push::Accepted(_) => return,
            Push::Full(_) => {
                fault(
                    py,
                    "buffer_full",
                    "the span buffer is full; new spans are dropped",
                );
                return;
            }
            Push::Closed(_) => {
                fault(
                    py,
                    "after_shutdown",
                    "a span ended after shutdown(); dropped",
                );
                return;
            }
            Push::Forked(back) => {
                // Forked without Python's at-fork hooks (uWSGI forks from C).
                finished = back;
                ACTIVE_SINK.store(None);
                if let Some(hooks) = HOOKS.get(py) {
                    let _ = hooks.after_fork.call0(py);
                }
            }
        }
    }
    ORPHANED.fetch_add(1, Ordering::Relaxed);
    fault(
        py,
        "no_pipeline",
        "no span pipeline could be started; span dropped",
    );
}

/// The active pipeline's buffer, from Python's side.
#[pyclass(frozen, module = "instrumentation_sdk._core")]
pub struct SpanSink {
    sink: Arc<Sink>,
}

#[pymethods]
impl SpanSink {
    #[new]
    fn new(capacity: usize, batch_size: usize) -> PyResult<Self> {
        let buffer = SpanBuffer::new(capacity)?;
        buffer.set_wake_at(batch_size);
        Ok(SpanSink {
            sink: Arc::new(Sink { buffer }),
        })
    }

    /// Make this the sink that ending spans push into.
    fn activate(&self) {
        ACTIVE_SINK.store(Some(Arc::clone(&self.sink)));
    }

    /// Stop being the active sink (if it still is).
    fn deactivate(&self) {
        let current = ACTIVE_SINK.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.sink)) {
            ACTIVE_SINK.store(None);
        }
    }

    /// Refuse new spans (counted) and wake the flusher to drain the rest.
    fn close(&self) {
        self.sink.buffer.close();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.sink.buffer.is_closed()
    }

    fn wake(&self) {
        self.sink.buffer.wake();
    }

    /// Wait (detached) until a batch is ready, `wake()` is called, or `timeout` seconds pass.
    fn wait(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        py.detach(|| self.sink.buffer.wait(timeout))
    }

    /// The flusher's whole round for a JSON Lines file, in one call and (unless some span holds
    /// Python objects to encode) one stretch without the interpreter: wait up to `timeout`
    /// seconds for a batch, drain up to `max_items` spans, run the plan's processors, encode
    /// the rest as JSON Lines, append them to `file`, free them. Returns the figures
    /// (`JsonlRound`) and, if the write failed, the bytes and the error; on failure the caller
    /// retries with the bytes.
    fn export_jsonl<'py>(
        &self,
        py: Python<'py>,
        file: &JsonlFile,
        timeout: f64,
        max_items: usize,
        plan: &ExportPlan,
        encode: &Bound<'py, PyAny>,
    ) -> JsonlOutcome<'py> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let buffer = &self.sink.buffer;
        let stage = py.detach(|| {
            if !timeout.is_zero() {
                buffer.wait(timeout);
            }
            let batch = Batch::new(buffer.drain(max_items));
            if batch.spans.iter().any(Finished::holds_objects) {
                return Err(batch); // their objects need the interpreter to encode
            }
            Ok(batch.write_jsonl(&file.inner, plan))
        });
        let (round, failed) = match stage {
            Ok(done) => done,
            Err(mut batch) => {
                let unencodable = batch.encode_deferred(py, encode);
                // The caller's objects are released here, attached; the rest goes detached.
                let objects: Vec<Vec<Py<PyAny>>> = batch
                    .spans
                    .iter_mut()
                    .map(|span| std::mem::take(&mut span.objects))
                    .collect();
                let (mut round, failed) = py.detach(|| batch.write_jsonl(&file.inner, plan));
                drop(objects);
                round.unencodable = unencodable;
                (round, failed)
            }
        };
        let failed = failed.map(|(text, error)| {
            (
                PyBytes::new(py, text.as_bytes()),
                format!("{}: {error}", file.inner.path().display()),
            )
        });
        (round, failed)
    }

    /// Take up to `max_items` finished spans, oldest first.
    fn drain(&self, max_items: usize) -> Batch {
        Batch::new(self.sink.buffer.drain(max_items))
    }

    #[getter]
    fn owned_by_this_process(&self) -> bool {
        self.sink.buffer.is_owned_by_this_process()
    }

    fn __len__(&self) -> usize {
        self.sink.buffer.len()
    }

    /// `accepted`, `dropped` (buffer full), `rejected_closed`, `drained`, `len`, `capacity`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.sink.buffer.stats();
        let dict = PyDict::new(py);
        dict.set_item("accepted", stats.accepted)?;
        dict.set_item("dropped", stats.dropped)?;
        dict.set_item("rejected_closed", stats.rejected_closed)?;
        dict.set_item("drained", stats.drained)?;
        dict.set_item("len", stats.len)?;
        dict.set_item("capacity", stats.capacity)?;
        Ok(dict)
    }
}

/// A JSON Lines round: its figures, and the bytes and error of a failed write.
type JsonlOutcome<'py> = (JsonlRound, Option<(Bound<'py, PyBytes>, String)>);

/// What one flusher round did with the spans it drained: `drained` = `filtered` (a processor
/// dropped them) + `failed` (a processor failed on them: dropped, fail closed) + the rest, which
/// went to the file. `truncated` and `unencodable` count values cut or replaced.
#[pyclass(frozen, get_all, module = "instrumentation_sdk._core")]
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonlRound {
    pub drained: usize,
    pub filtered: usize,
    pub failed: usize,
    pub truncated: u64,
    pub unencodable: u64,
}

/// What running the processors did to a batch.
#[derive(Debug, Default, Clone, Copy)]
struct Processed {
    filtered: usize,
    failed: usize,
}

impl Batch {
    fn new(spans: Vec<Finished>) -> Batch {
        Batch {
            spans,
            encoded: Vec::new(),
        }
    }

    /// Runs the plan's processors over every span (no interpreter needed: call detached), and
    /// returns each span's outcome.
    fn run_processors(&mut self, plan: &ExportPlan) -> Vec<Outcome> {
        if plan.processors.is_empty() {
            return Vec::new();
        }
        self.encoded.resize_with(self.spans.len(), Vec::new);
        self.spans
            .iter_mut()
            .zip(self.encoded.iter_mut())
            .map(|(span, encoded)| {
                let mut view = SpanView {
                    data: &mut span.data,
                    encoded,
                };
                processor::run(&plan.processors, &mut view)
            })
            .collect()
    }

    /// Removes the spans the processors did not keep (call attached if they hold objects).
    fn keep(&mut self, outcomes: &[Outcome]) -> Processed {
        let mut processed = Processed::default();
        if outcomes.is_empty() {
            return processed;
        }
        let mut index = 0;
        self.encoded.resize_with(self.spans.len(), Vec::new);
        let mut encoded = std::mem::take(&mut self.encoded).into_iter();
        let mut kept_encoded = Vec::with_capacity(self.spans.len());
        self.spans.retain(|_| {
            let outcome = outcomes[index];
            index += 1;
            let values = encoded.next().unwrap_or_default();
            match outcome {
                Outcome::Kept => {
                    kept_encoded.push(values);
                    true
                }
                Outcome::Filtered => {
                    processed.filtered += 1;
                    false
                }
                Outcome::Failed => {
                    processed.failed += 1;
                    false
                }
            }
        });
        self.encoded = kept_encoded;
        processed
    }

    /// Process, encode, append and free the spans (no Python objects left in them: see
    /// `export_jsonl`).
    fn write_jsonl(
        mut self,
        file: &crate::jsonl::JsonlFile,
        plan: &ExportPlan,
    ) -> (JsonlRound, Option<(String, std::io::Error)>) {
        let drained = self.spans.len();
        let outcomes = self.run_processors(plan);
        let processed = self.keep(&outcomes);
        let mut round = JsonlRound {
            drained,
            filtered: processed.filtered,
            failed: processed.failed,
            ..JsonlRound::default()
        };
        if self.spans.is_empty() {
            return (round, None);
        }
        let fitted = self.fit(plan);
        let (text, report) = self.encode_jsonl(plan);
        drop(self);
        round.truncated = report.truncated + fitted;
        match file.append(text.as_bytes()) {
            Ok(()) => (round, None),
            Err(error) => (round, Some((text, error))),
        }
    }

    /// Fits every span within the plan's per-span bound (`fit_span`); returns how much was cut.
    fn fit(&mut self, plan: &ExportPlan) -> u64 {
        let encoded = &self.encoded;
        self.spans
            .iter_mut()
            .enumerate()
            .map(|(index, span)| {
                let deferred = encoded.get(index).map_or(&[][..], Vec::as_slice);
                fit_span(&mut span.data, deferred, plan.limits)
            })
            .sum()
    }

    fn encode_jsonl(&self, plan: &ExportPlan) -> (String, EncodeReport) {
        write_jsonl(self.spans_with_values(), &plan.default_service, plan.limits)
    }
}

/// How long encoding one batch's caller objects may take on the flusher: past it, objects are
/// recorded by their type name (counted as unencodable), so one slow `__repr__` cannot stall
/// export. Plain msgspec encoding takes microseconds per object; this is for caller code.
pub const ENCODE_BUDGET: Duration = Duration::from_millis(500);

/// What an object that was not encoded within the budget is recorded as: its type's name.
fn over_budget(object: &Bound<'_, PyAny>) -> Encoded {
    let name = object.get_type().name().map_or_else(
        |_| "object".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    Encoded::Text(format!(
        "<{name}: not encoded, over the flusher's time budget>"
    ))
}

/// A batch of finished spans in the flusher's hands.
#[pyclass(module = "instrumentation_sdk._core")]
pub struct Batch {
    spans: Vec<Finished>,
    /// Per span, what its deferred values encoded to (filled by `encode_deferred`).
    encoded: Vec<Vec<Encoded>>,
}

#[pymethods]
impl Batch {
    fn __len__(&self) -> usize {
        self.spans.len()
    }

    /// Encode every deferred metadata value with `encode(obj) -> bytes` (msgspec); a value it
    /// cannot encode is replaced by its `repr`. The caller's code (a `__repr__`, an encoder
    /// hook) may be slow: once the batch has spent `ENCODE_BUDGET`, the object that went over
    /// it and every later one are recorded by their type name instead, not encoded. Returns how
    /// many were replaced (by a `repr` or a type name).
    fn encode_deferred(&mut self, py: Python<'_>, encode: &Bound<'_, PyAny>) -> u64 {
        for span in &mut self.spans {
            let tails = std::mem::take(&mut span.streams);
            if !tails.is_empty() {
                stream::resolve(py, &mut span.data, &mut span.objects, tails);
            }
        }
        let mut replaced = 0;
        let started = Instant::now();
        self.encoded = self
            .spans
            .iter()
            .map(|span| {
                span.objects
                    .iter()
                    .map(|object| {
                        let object = object.bind(py);
                        // A str runs no caller code: always kept.
                        let text = object.is_exact_instance_of::<PyString>();
                        let spent = || !text && started.elapsed() > ENCODE_BUDGET;
                        let (encoded, fell_back) = if spent() {
                            (over_budget(object), true)
                        } else {
                            let done = encode_object(object, encode);
                            if spent() {
                                (over_budget(object), true)
                            } else {
                                done
                            }
                        };
                        replaced += u64::from(fell_back);
                        encoded
                    })
                    .collect()
            })
            .collect();
        replaced
    }

    /// Run the plan's processors (detached); the spans they drop leave the batch; then fit
    /// the rest within the plan's per-span bound. Returns (filtered, failed, cut): dropped by a
    /// processor, dropped because one failed, and fields, keys, entries and events cut.
    fn process(&mut self, py: Python<'_>, plan: &ExportPlan) -> (usize, usize, u64) {
        let outcomes = py.detach(|| self.run_processors(plan));
        let processed = self.keep(&outcomes);
        let cut = py.detach(|| self.fit(plan));
        (processed.filtered, processed.failed, cut)
    }

    /// The batch as JSON Lines (one record per line), encoded with the interpreter detached.
    /// Returns the bytes and how many values were truncated.
    fn to_jsonl<'py>(&self, py: Python<'py>, plan: &ExportPlan) -> (Bound<'py, PyBytes>, u64) {
        let (text, report) = py.detach(|| self.encode_jsonl(plan));
        (PyBytes::new(py, text.as_bytes()), report.truncated)
    }

    /// The batch as records (dicts), the exporter protocol's form. Returns the list and how
    /// many values were truncated.
    fn to_records<'py>(
        &self,
        py: Python<'py>,
        plan: &ExportPlan,
    ) -> PyResult<(Vec<Bound<'py, PyDict>>, u64)> {
        let mut truncated = 0;
        let mut records = Vec::with_capacity(self.spans.len());
        for (index, span) in self.spans.iter().enumerate() {
            let encoded = self.encoded.get(index).map(Vec::as_slice);
            let (record, report) = record_dict(
                py,
                &span.data,
                &span.objects,
                encoded,
                &plan.default_service,
                plan.limits,
            )?;
            truncated += report.truncated;
            records.push(record);
        }
        Ok((records, truncated))
    }

    /// Drop the Python objects the batch holds (done with the interpreter attached).
    fn clear(&mut self) {
        self.spans.clear();
        self.encoded.clear();
    }
}

impl Batch {
    /// Each span's data with what its deferred values encoded to.
    pub(crate) fn spans_with_values(
        &self,
    ) -> impl ExactSizeIterator<Item = (&SpanData, &[Encoded])> {
        self.spans.iter().enumerate().map(|(index, span)| {
            let encoded = self.encoded.get(index).map_or(&[][..], Vec::as_slice);
            (&*span.data, encoded)
        })
    }
}
