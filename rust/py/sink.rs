//! Where finished spans go: the active pipeline's sink (the core's bounded buffer), and the
//! batches the flusher takes out of it, encoded to JSON Lines or records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::context::{fault, HOOKS};
use super::jsonl::JsonlFile;
use super::record::{encode_object, record_dict};
use crate::buffer::{Push, SpanBuffer};
use crate::span::{write_json, EncodeReport, Encoded, SpanData};

/// A finished span on its way to the exporter.
pub struct Finished {
    pub(crate) data: Arc<SpanData>,
    /// The caller's objects for `Value::Deferred` entries, by index.
    pub(crate) objects: Vec<Py<PyAny>>,
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
    /// seconds for a batch, drain up to `max_items` spans, encode them as JSON Lines, append
    /// them to `file`, free them. Returns (spans, truncated values, unencodable values, the bytes
    /// if the write failed, the error); on failure the caller retries with the bytes.
    #[allow(clippy::too_many_arguments)]
    fn export_jsonl<'py>(
        &self,
        py: Python<'py>,
        file: &JsonlFile,
        timeout: f64,
        max_items: usize,
        default_service: &str,
        max_value_bytes: usize,
        encode: &Bound<'py, PyAny>,
    ) -> JsonlOutcome<'py> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let buffer = &self.sink.buffer;
        let stage = py.detach(|| {
            if !timeout.is_zero() {
                buffer.wait(timeout);
            }
            let batch = Batch {
                spans: buffer.drain(max_items),
                encoded: Vec::new(),
            };
            if batch.spans.iter().any(|span| !span.objects.is_empty()) {
                return Err(batch); // their objects need the interpreter to encode
            }
            Ok(batch.write_jsonl(&file.inner, default_service, max_value_bytes))
        });
        let (count, report, failed) = match stage {
            Ok(done) => done,
            Err(mut batch) => {
                let unencodable = batch.encode_deferred(py, encode);
                // The caller's objects are released here, attached; the rest goes detached.
                let objects: Vec<Vec<Py<PyAny>>> = batch
                    .spans
                    .iter_mut()
                    .map(|span| std::mem::take(&mut span.objects))
                    .collect();
                let (count, mut report, failed) =
                    py.detach(|| batch.write_jsonl(&file.inner, default_service, max_value_bytes));
                drop(objects);
                report.unencodable = unencodable;
                (count, report, failed)
            }
        };
        match failed {
            None => (count, report.truncated, report.unencodable, None, None),
            Some((text, error)) => (
                count,
                report.truncated,
                report.unencodable,
                Some(PyBytes::new(py, text.as_bytes())),
                Some(format!("{}: {error}", file.inner.path().display())),
            ),
        }
    }

    /// Take up to `max_items` finished spans, oldest first.
    fn drain(&self, max_items: usize) -> Batch {
        Batch {
            spans: self.sink.buffer.drain(max_items),
            encoded: Vec::new(),
        }
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

type JsonlOutcome<'py> = (usize, u64, u64, Option<Bound<'py, PyBytes>>, Option<String>);

/// What writing a batch did: spans written, encoding figures, and the text and error if the
/// write failed (kept for the caller's retries).
type Written = (usize, WriteReport, Option<(String, std::io::Error)>);

#[derive(Default)]
struct WriteReport {
    truncated: u64,
    unencodable: u64,
}

impl Batch {
    /// Encode, append and free the spans (no Python objects left in them: see `export_jsonl`).
    fn write_jsonl(
        self,
        file: &crate::jsonl::JsonlFile,
        default_service: &str,
        max_value_bytes: usize,
    ) -> Written {
        let count = self.spans.len();
        if count == 0 {
            return (0, WriteReport::default(), None);
        }
        let (text, report) = self.encode_jsonl(default_service, max_value_bytes);
        drop(self);
        let report = WriteReport {
            truncated: report.truncated,
            unencodable: 0,
        };
        match file.append(text.as_bytes()) {
            Ok(()) => (count, report, None),
            Err(error) => (count, report, Some((text, error))),
        }
    }

    fn encode_jsonl(
        &self,
        default_service: &str,
        max_value_bytes: usize,
    ) -> (String, EncodeReport) {
        let mut out = String::with_capacity(self.spans.len() * 512);
        let mut report = EncodeReport::default();
        for (index, span) in self.spans.iter().enumerate() {
            let encoded = self.encoded.get(index).map_or(&[][..], Vec::as_slice);
            write_json(
                &span.data,
                encoded,
                default_service,
                max_value_bytes,
                &mut out,
                &mut report,
            );
            out.push('\n');
        }
        (out, report)
    }
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
    /// cannot encode is replaced by its `repr`. Returns how many were replaced.
    fn encode_deferred(&mut self, py: Python<'_>, encode: &Bound<'_, PyAny>) -> u64 {
        let mut replaced = 0;
        self.encoded = self
            .spans
            .iter()
            .map(|span| {
                span.objects
                    .iter()
                    .map(|object| {
                        let (encoded, fell_back) = encode_object(object.bind(py), encode);
                        replaced += u64::from(fell_back);
                        encoded
                    })
                    .collect()
            })
            .collect();
        replaced
    }

    /// The batch as JSON Lines (one record per line), encoded with the interpreter detached.
    /// Returns the bytes and how many values were truncated.
    fn to_jsonl<'py>(
        &self,
        py: Python<'py>,
        default_service: &str,
        max_value_bytes: usize,
    ) -> (Bound<'py, PyBytes>, u64) {
        let (text, report) = py.detach(|| self.encode_jsonl(default_service, max_value_bytes));
        (PyBytes::new(py, text.as_bytes()), report.truncated)
    }

    /// The batch as records (dicts), the exporter protocol's form. Returns the list and how
    /// many values were truncated.
    fn to_records<'py>(
        &self,
        py: Python<'py>,
        default_service: &str,
        max_value_bytes: usize,
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
                default_service,
                max_value_bytes,
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
    pub(crate) fn spans_with_values(&self) -> impl Iterator<Item = (&SpanData, &[Encoded])> {
        self.spans.iter().enumerate().map(|(index, span)| {
            let encoded = self.encoded.get(index).map_or(&[][..], Vec::as_slice);
            (&*span.data, encoded)
        })
    }
}
