//! `Span.wrap_stream`: observed streams, sync (`Stream`) and async (`AsyncStream`).
//!
//! A wrapper yields the very chunks of the stream it wraps and forwards everything else to it
//! (attributes, `with`/`async with`, `close`/`aclose`). Per chunk, the request thread only
//! counts it and keeps a reference to it, after asking whether it carries the first token;
//! reading the chunks (`chunks.rs`) and counting the completion wait for the flusher.
//!
//! A wrapper's mutable state is its `Cursor`, borrowed for the duration of one step, so the
//! wrapper itself (frozen) can be read from anywhere, even while a step waits on the network.
//! The span is told once when the stream ends (exhausted, closed, failed, or collected) and
//! ends itself when both its `with` block and its streams are done (`span.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::types::iterator::PySendResult;
use pyo3::types::{PyIterator, PyList, PyString, PyWeakrefReference};

use super::chunks::{absorb, carries_output};
use super::context::fault;
use super::span::{error_of, Ready, SpanCore};
use crate::span::{Clock, SpanData, Value};
use crate::stream::{self, Completion, StreamFacts, StreamStatus};

/// Chunks a stream keeps for the flusher; past this many, each new chunk has the oldest one read
/// on the request thread, so a very long stream holds bounded memory (and never stalls on a
/// batch of reads).
const FOLD_AT: usize = 4096;

/// Ids that tell a span's streams apart.
static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

/// Wrapped streams that have not ended (their spans wait for them).
static OPEN_STREAMS: AtomicU64 = AtomicU64::new(0);

/// How many wrapped streams have not ended yet (each keeps its span from being exported).
#[pyfunction]
pub fn streams_open() -> u64 {
    OPEN_STREAMS.load(Ordering::Relaxed)
}

/// A stream that has ended, as its span keeps it until the flusher reads it.
pub(crate) struct StreamTail {
    pub(crate) facts: StreamFacts,
    /// What chunks already read (folded) said.
    completion: Completion,
    /// Chunks not read yet, in order.
    chunks: VecDeque<Py<PyAny>>,
    /// What the caller's `text=` function returned per chunk (then chunks give no text).
    texts: VecDeque<Py<PyAny>>,
    take_text: bool,
    capture: bool,
}

impl StreamTail {
    /// Reads the chunks still held (attached: they are the caller's objects).
    fn read(&mut self, py: Python<'_>) {
        for chunk in std::mem::take(&mut self.chunks) {
            absorb(chunk.bind(py), &mut self.completion, self.take_text);
        }
        for text in std::mem::take(&mut self.texts) {
            if let Ok(text) = text.bind(py).cast::<PyString>() {
                self.completion.push_text(0, &text.to_string_lossy());
            }
        }
    }

    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for object in self.chunks.iter().chain(&self.texts) {
            visit.call(object)?;
        }
        Ok(())
    }
}

/// On the flusher: reads a finished span's streams and writes what they said into its data
/// (counting the completion with the interpreter detached).
pub(crate) fn resolve(
    py: Python<'_>,
    data: &mut Arc<SpanData>,
    objects: &mut Vec<Py<PyAny>>,
    tails: Vec<StreamTail>,
) {
    let mut facts: Option<StreamFacts> = None;
    let mut completion = Completion::default();
    let mut capture = false;
    for mut tail in tails {
        tail.read(py);
        facts = Some(facts.map_or(tail.facts, |f| f.merge(tail.facts)));
        capture |= tail.capture;
        let read = tail.completion;
        for (index, text) in read.choices.iter().enumerate() {
            completion.push_text(index, text);
        }
        completion.finish_reason = read.finish_reason.or(completion.finish_reason);
        completion.actual_model = read.actual_model.or(completion.actual_model);
        completion.output_tokens = read.output_tokens.or(completion.output_tokens);
        completion.input_tokens = read.input_tokens.or(completion.input_tokens);
        for (key, tokens) in read.usage_parts {
            completion.set_usage_part(key, tokens);
        }
    }
    let Some(facts) = facts else {
        return;
    };
    let data = Arc::make_mut(data);
    py.detach(|| stream::record(data, &facts, &completion, capture));
    if capture && data.completion.is_none() && completion.choices.len() > 1 {
        if let Ok(list) = PyList::new(py, &completion.choices) {
            objects.push(list.into_any().unbind());
            data.completion = Some(Value::Deferred(objects.len() - 1));
        }
    }
}

/// What one wrapped stream has seen so far.
struct Observer {
    /// The span to tell when the stream ends; `None` once told.
    span: Option<Py<SpanCore>>,
    id: u64,
    clock: Clock,
    chunks_seen: u64,
    first_token_unix_nano: Option<u64>,
    completion: Completion,
    chunks: VecDeque<Py<PyAny>>,
    texts: VecDeque<Py<PyAny>>,
    text_fn: Option<Py<PyAny>>,
    capture: bool,
}

impl Observer {
    #[inline]
    fn observe(&mut self, py: Python<'_>, chunk: &Bound<'_, PyAny>) {
        if self.span.is_none() {
            return; // ended (closed early): the caller may still drain it
        }
        self.chunks_seen += 1;
        if let Some(text_fn) = &self.text_fn {
            let text = match text_fn.bind(py).call1((chunk,)) {
                Ok(text) if text.is_instance_of::<PyString>() => Some(text),
                Ok(text) if text.is_none() => None,
                Ok(_) | Err(_) => {
                    fault(
                        py,
                        "stream_text",
                        "wrap_stream's text= function raised or returned a non-str; that chunk's \
                         text is not recorded",
                    );
                    None
                }
            };
            if let Some(text) = text {
                if self.first_token_unix_nano.is_none() && text.len().is_ok_and(|n| n > 0) {
                    self.first_token_unix_nano = Some(self.clock.end_unix_nano());
                }
                self.texts.push_back(text.unbind());
                if self.texts.len() > FOLD_AT {
                    if let Some(oldest) = self.texts.pop_front() {
                        if let Ok(text) = oldest.bind(py).cast::<PyString>() {
                            self.completion.push_text(0, &text.to_string_lossy());
                        }
                    }
                }
            }
        } else if self.first_token_unix_nano.is_none() && carries_output(chunk) {
            self.first_token_unix_nano = Some(self.clock.end_unix_nano());
        }
        self.chunks.push_back(chunk.clone().unbind());
        if self.chunks.len() > FOLD_AT {
            if let Some(oldest) = self.chunks.pop_front() {
                absorb(
                    oldest.bind(py),
                    &mut self.completion,
                    self.text_fn.is_none(),
                );
            }
        }
    }

    /// Tells the span once how the stream ended. `dropped`: collected unfinished (the span
    /// decides between `closed_early` and `abandoned`).
    fn end(&mut self, py: Python<'_>, status: StreamStatus, error: Option<&PyErr>, dropped: bool) {
        let Some(span) = self.span.take() else {
            return;
        };
        OPEN_STREAMS.fetch_sub(1, Ordering::Relaxed);
        let tail = StreamTail {
            facts: StreamFacts {
                chunks: self.chunks_seen,
                first_token_unix_nano: self.first_token_unix_nano,
                end_unix_nano: self.clock.end_unix_nano(),
                status,
            },
            completion: std::mem::take(&mut self.completion),
            chunks: std::mem::take(&mut self.chunks),
            texts: std::mem::take(&mut self.texts),
            take_text: self.text_fn.is_none(),
            capture: self.capture,
        };
        let error = error.map(|e| error_of(e.value(py).as_any()));
        SpanCore::stream_ended(span.bind(py), self.id, tail, error, dropped);
    }
}

impl Drop for Observer {
    /// A stream collected before its end: the span still hears of it.
    fn drop(&mut self) {
        if self.span.is_some() {
            let _ = Python::try_attach(|py| {
                let pending = PyErr::take(py);
                self.end(py, StreamStatus::ClosedEarly, None, true);
                if let Some(pending) = pending {
                    pending.restore(py);
                }
            });
        }
    }
}

/// A wrapper's mutable state, borrowed for one step at a time.
#[pyclass(weakref, module = "instrumentation_sdk._core")]
pub struct Cursor {
    /// The iterator being read (sync streams), made on the first step.
    iter: Option<Py<PyIterator>>,
    /// The async iterator being read (async streams), made on the first step.
    aiter: Option<Py<PyAny>>,
    observer: Observer,
}

#[pymethods]
impl Cursor {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let observer = &self.observer;
        if let Some(iter) = &self.iter {
            visit.call(iter)?;
        }
        for object in [&self.aiter, &observer.text_fn].into_iter().flatten() {
            visit.call(object)?;
        }
        if let Some(span) = &observer.span {
            visit.call(span)?;
        }
        for object in observer.chunks.iter().chain(&observer.texts) {
            visit.call(object)?;
        }
        Ok(())
    }

    /// Collected as part of a cycle: the stream ends as if dropped, then lets go.
    fn __clear__(&mut self) {
        Python::attach(|py| self.observer.end(py, StreamStatus::ClosedEarly, None, true));
        self.iter = None;
        self.aiter = None;
        self.observer.text_fn = None;
    }
}

impl Cursor {
    /// Ends the stream as closed before its end (a no-op once it has ended).
    pub(crate) fn close_early(&mut self, py: Python<'_>) {
        self.observer
            .end(py, StreamStatus::ClosedEarly, None, false);
    }
}

/// What both wrappers share: the wrapped object, what its context manager gave, the cursor.
struct Wrapped {
    /// The object given to `wrap_stream` (its `with` is the one entered and exited).
    stream: Py<PyAny>,
    /// What attributes and iteration go to: the stream, or what its `__enter__` returned
    /// (Anthropic's `messages.stream()` manager gives the stream itself that way).
    target: Mutex<Py<PyAny>>,
    cursor: Py<Cursor>,
    /// Set by `close()`/`aclose()`, so an end they cause is not taken for the producer's.
    closing: AtomicBool,
}

impl Wrapped {
    fn target<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bind(py)
            .clone()
    }

    fn retarget(&self, py: Python<'_>, entered: Bound<'_, PyAny>) {
        if entered.is(self.stream.bind(py)) || entered.is_none() {
            return;
        }
        let previous = std::mem::replace(
            &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner),
            entered.unbind(),
        );
        drop(previous);
        if let Ok(mut cursor) = self.cursor.bind(py).try_borrow_mut() {
            cursor.iter = None;
            cursor.aiter = None;
        }
    }

    fn cursor<'py>(&self, py: Python<'py>) -> PyResult<PyRefMut<'py, Cursor>> {
        self.cursor.bind(py).try_borrow_mut().map_err(|_| {
            PyValueError::new_err("this stream is already being read (by another thread or task)")
        })
    }

    /// Ends the stream as closed early unless a step is running elsewhere (it will see the
    /// `closing` flag when the stream stops).
    fn close_early(&self, py: Python<'_>) {
        self.closing.store(true, Ordering::Relaxed);
        if let Ok(mut cursor) = self.cursor.bind(py).try_borrow_mut() {
            cursor.close_early(py);
        }
    }

    /// Ends the stream as closed early, then passes the exit to the wrapped stream's own
    /// `method` (`__exit__` or `__aexit__`) if it has one; `None` if it has none.
    fn exit_wrapped(
        &self,
        py: Python<'_>,
        method: &Bound<'_, PyString>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.close_early(py);
        let stream = self.stream.bind(py);
        if !stream.hasattr(method)? {
            return Ok(None);
        }
        let none = py.None().into_bound(py);
        let args = (
            exc_type.unwrap_or(&none),
            exc.unwrap_or(&none),
            traceback.unwrap_or(&none),
        );
        Ok(Some(stream.call_method1(method, args)?.unbind()))
    }

    /// How a stream that stopped (or failed) ended.
    fn stopped(&self, failed: bool) -> StreamStatus {
        match (self.closing.load(Ordering::Relaxed), failed) {
            (true, _) => StreamStatus::ClosedEarly,
            (false, true) => StreamStatus::Error,
            (false, false) => StreamStatus::Completed,
        }
    }

    fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.stream)?;
        if let Ok(target) = self.target.try_lock() {
            visit.call(&*target)?;
        }
        visit.call(&self.cursor)
    }

    fn repr(&self, py: Python<'_>, kind: &str) -> String {
        let target = self.target(py);
        let inner = target
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string_lossy().into_owned());
        format!("<instrumentation_sdk.{kind} wrapping {inner}>")
    }
}

/// `Span.wrap_stream`: a `Stream` for an iterable (or a context manager giving one), an
/// `AsyncStream` for an async iterable (or an async context manager). `None`: the span has
/// ended or the object is not a stream (the caller returns it unwrapped).
pub(crate) fn wrap(
    span: &Bound<'_, SpanCore>,
    stream: &Bound<'_, PyAny>,
    text: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    let py = span.py();
    let has = |name: &str| stream.hasattr(name).unwrap_or(false);
    let asynchronous = if has("__iter__") || (has("__enter__") && !has("__aiter__")) {
        false
    } else if has("__aiter__") || has("__aenter__") {
        true
    } else {
        fault(
            py,
            "stream_type",
            "wrap_stream got an object that is neither iterable nor async iterable; returned it \
             unwrapped",
        );
        return Ok(None);
    };
    let text_fn = match text.filter(|t| !t.is_none()) {
        Some(text) if text.is_callable() => Some(text.clone().unbind()),
        Some(_) => {
            fault(
                py,
                "argument_type",
                "wrap_stream's text= is not callable; ignored",
            );
            None
        }
        None => None,
    };
    let id = NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed);
    let cursor = Bound::new(
        py,
        Cursor {
            iter: None,
            aiter: None,
            observer: Observer {
                span: None,
                id,
                clock: Clock::start(),
                chunks_seen: 0,
                first_token_unix_nano: None,
                completion: Completion::default(),
                chunks: VecDeque::with_capacity(64),
                texts: VecDeque::new(),
                text_fn,
                capture: false,
            },
        },
    )?;
    let weak = PyWeakrefReference::new(&cursor)?;
    let Some((clock, capture)) = span.get().stream_opened(py, id, weak.into_any().unbind()) else {
        fault(
            py,
            "stream_after_end",
            "wrap_stream was called on a span that has ended; returned the stream unwrapped",
        );
        return Ok(None);
    };
    {
        let mut state = cursor.borrow_mut();
        let observer = &mut state.observer;
        observer.span = Some(span.clone().unbind());
        observer.clock = clock;
        observer.capture = capture;
    }
    OPEN_STREAMS.fetch_add(1, Ordering::Relaxed);
    let wrapped = Wrapped {
        stream: stream.clone().unbind(),
        target: Mutex::new(stream.clone().unbind()),
        cursor: cursor.unbind(),
        closing: AtomicBool::new(false),
    };
    Ok(Some(if asynchronous {
        Bound::new(py, AsyncStream { wrapped })?.into_any().unbind()
    } else {
        Bound::new(py, Stream { wrapped })?.into_any().unbind()
    }))
}

/// A sync stream observed by its span (made by ``Span.wrap_stream``): iterate it as the stream
/// it wraps; ``with``, ``close()`` and every other attribute go to that stream.
#[pyclass(frozen, weakref, module = "instrumentation_sdk")]
pub struct Stream {
    wrapped: Wrapped,
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut cursor = self.wrapped.cursor(py)?;
        let cursor = &mut *cursor;
        let mut iter = match &cursor.iter {
            Some(iter) => iter.bind(py).clone(),
            None => {
                let iter = self.wrapped.target(py).try_iter()?;
                cursor.iter = Some(iter.clone().unbind());
                iter
            }
        };
        // PyIter_Next: no exception object on a normal end.
        let next = iter.next();
        match next {
            Some(Ok(chunk)) => {
                cursor.observer.observe(py, &chunk);
                Ok(Some(chunk.unbind()))
            }
            None => {
                let status = self.wrapped.stopped(false);
                cursor.observer.end(py, status, None, false);
                Ok(None)
            }
            Some(Err(error)) if error.is_instance_of::<PyStopIteration>(py) => {
                let status = self.wrapped.stopped(false);
                cursor.observer.end(py, status, None, false);
                Err(error)
            }
            Some(Err(error)) => {
                let status = self.wrapped.stopped(true);
                let recorded = (status == StreamStatus::Error).then_some(&error);
                cursor.observer.end(py, status, recorded, false);
                Err(error)
            }
        }
    }

    /// Enters the wrapped stream's own context manager (if it has one) and returns this
    /// wrapper, so iterating what ``with`` gives is observed.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let py = slf.py();
        let stream = slf.get().wrapped.stream.bind(py).clone();
        if stream.hasattr(intern!(py, "__enter__"))? {
            let entered = stream.call_method0(intern!(py, "__enter__"))?;
            slf.get().wrapped.retarget(py, entered);
        }
        Ok(slf)
    }

    /// Exits the wrapped stream's context manager (or closes it); the stream has ended.
    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let method = intern!(py, "__exit__");
        if let Some(exited) = self
            .wrapped
            .exit_wrapped(py, method, exc_type, exc, traceback)?
        {
            return Ok(exited);
        }
        self.close(py)?;
        Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())
    }

    /// Closes the wrapped stream (``close()`` of the stream, or of its iterator); the stream
    /// has ended (``stream_status="closed_early"`` unless it had already ended).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.wrapped.close_early(py);
        let target = self.wrapped.target(py);
        if target.hasattr(intern!(py, "close"))? {
            target.call_method0(intern!(py, "close"))?;
        } else if let Ok(cursor) = self.wrapped.cursor.bind(py).try_borrow() {
            if let Some(iter) = &cursor.iter {
                let iter = iter.bind(py).clone().into_any();
                drop(cursor);
                if iter.hasattr(intern!(py, "close"))? {
                    iter.call_method0(intern!(py, "close"))?;
                }
            }
        }
        Ok(())
    }

    fn __getattr__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.wrapped.target(py).getattr(name)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.wrapped.repr(py, "Stream")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.wrapped.visit(&visit)
    }
}

/// An async stream observed by its span (made by ``Span.wrap_stream``): ``async for`` it as the
/// stream it wraps; ``async with``, ``aclose()`` and every other attribute go to that stream.
#[pyclass(frozen, weakref, module = "instrumentation_sdk")]
pub struct AsyncStream {
    wrapped: Wrapped,
}

#[pymethods]
impl AsyncStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__(slf: &Bound<'_, Self>) -> PyResult<Awaiting> {
        let py = slf.py();
        let wrapped = &slf.get().wrapped;
        let iter = {
            let mut cursor = wrapped.cursor(py)?;
            match &cursor.aiter {
                Some(iter) => iter.bind(py).clone(),
                None => {
                    let iter = wrapped.target(py).call_method0(intern!(py, "__aiter__"))?;
                    cursor.aiter = Some(iter.clone().unbind());
                    iter
                }
            }
        };
        let awaitable = iter.call_method0(intern!(py, "__anext__"))?;
        Awaiting::new(&awaitable, Then::Chunk(slf.clone().unbind()))
    }

    /// Enters the wrapped stream's own async context manager (if it has one); gives this
    /// wrapper.
    fn __aenter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let stream = slf.get().wrapped.stream.bind(py);
        if stream.hasattr(intern!(py, "__aenter__"))? {
            let awaitable = stream.call_method0(intern!(py, "__aenter__"))?;
            let awaiting = Awaiting::new(&awaitable, Then::Enter(slf.clone().unbind()))?;
            return Ok(Bound::new(py, awaiting)?.into_any().unbind());
        }
        Ok(
            Bound::new(py, Ready::new(Some(slf.clone().into_any().unbind())))?
                .into_any()
                .unbind(),
        )
    }

    /// Exits the wrapped stream's async context manager (or closes it); the stream has ended.
    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __aexit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let method = intern!(py, "__aexit__");
        if let Some(exited) = self
            .wrapped
            .exit_wrapped(py, method, exc_type, exc, traceback)?
        {
            return Ok(exited);
        }
        self.aclose(py)
    }

    /// Closes the wrapped stream (its ``aclose()``, else its ``close()``); awaitable. The stream
    /// has ended (``stream_status="closed_early"`` unless it had already ended).
    fn aclose(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.wrapped.close_early(py);
        let target = self.wrapped.target(py);
        let iter = self
            .wrapped
            .cursor
            .bind(py)
            .try_borrow()
            .ok()
            .and_then(|c| c.aiter.as_ref().map(|i| i.bind(py).clone()));
        for object in std::iter::once(target).chain(iter) {
            for method in [intern!(py, "aclose"), intern!(py, "close")] {
                if object.hasattr(method)? {
                    let result = object.call_method0(method)?;
                    if result.hasattr(intern!(py, "__await__"))? {
                        return Ok(result.unbind());
                    }
                    return Ok(Bound::new(py, Ready::new(None))?.into_any().unbind());
                }
            }
        }
        Ok(Bound::new(py, Ready::new(None))?.into_any().unbind())
    }

    fn __getattr__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.wrapped.target(py).getattr(name)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.wrapped.repr(py, "AsyncStream")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.wrapped.visit(&visit)
    }
}

/// What an `Awaiting` does with the result of what it awaited.
enum Then {
    /// A chunk from `__anext__` (observed), or the stream's end.
    Chunk(Py<AsyncStream>),
    /// The stream's `__aenter__` result: becomes the target; the wrapper is the result.
    Enter(Py<AsyncStream>),
}

/// Awaits another awaitable step by step (send, throw, close go to it) and handles its result
/// without a Python frame: what ``await wrapper.__anext__()`` runs.
#[pyclass(module = "instrumentation_sdk._core")]
pub struct Awaiting {
    /// The awaited object's iterator (its `__await__()`).
    inner: Py<PyIterator>,
    then: Option<Then>,
}

impl Awaiting {
    fn new(awaitable: &Bound<'_, PyAny>, then: Then) -> PyResult<Awaiting> {
        let py = awaitable.py();
        let inner = awaitable
            .call_method0(intern!(py, "__await__"))?
            .cast_into::<PyIterator>()?;
        Ok(Awaiting {
            inner: inner.unbind(),
            then: Some(then),
        })
    }

    /// The awaited step's outcome: a value it yields (to the event loop) passes through; its
    /// return value or exception is handled by `then`.
    fn step(&mut self, py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        match outcome {
            Ok(yielded) => Ok(yielded.unbind()),
            Err(error) if error.is_instance_of::<PyStopIteration>(py) => {
                let value = error.value(py).getattr(intern!(py, "value"))?;
                self.finish(py, Ok(value))
            }
            Err(error) => self.finish(py, Err(error)),
        }
    }

    fn finish(
        &mut self,
        py: Python<'_>,
        result: PyResult<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(then) = self.then.take() else {
            return result.map(Bound::unbind);
        };
        match then {
            Then::Chunk(stream) => {
                let wrapped = &stream.get().wrapped;
                match result {
                    Ok(chunk) => {
                        if let Ok(mut cursor) = wrapped.cursor.bind(py).try_borrow_mut() {
                            cursor.observer.observe(py, &chunk);
                        }
                        Err(PyStopIteration::new_err((chunk.unbind(),)))
                    }
                    Err(error) => {
                        let stopped = error.is_instance_of::<PyStopAsyncIteration>(py);
                        let status = wrapped.stopped(!stopped);
                        let recorded = (status == StreamStatus::Error).then_some(&error);
                        if let Ok(mut cursor) = wrapped.cursor.bind(py).try_borrow_mut() {
                            cursor.observer.end(py, status, recorded, false);
                        }
                        Err(error)
                    }
                }
            }
            Then::Enter(stream) => {
                let entered = result?;
                stream.get().wrapped.retarget(py, entered);
                Err(PyStopIteration::new_err((stream,)))
            }
        }
    }
}

#[pymethods]
impl Awaiting {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.send(py, &py.None().into_bound(py))
    }

    /// PyIter_Send: a return value comes back as a value, not as a `StopIteration`.
    fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let inner = self.inner.bind(py).clone();
        match inner.send(value) {
            Ok(PySendResult::Next(yielded)) => Ok(yielded.unbind()),
            Ok(PySendResult::Return(result)) => self.finish(py, Ok(result)),
            Err(error) => self.step(py, Err(error)),
        }
    }

    #[pyo3(signature = (kind, value = None, traceback = None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        kind: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let inner = self.inner.bind(py).clone().into_any();
        let outcome = match (value, traceback) {
            (None, None) => inner.call_method1(intern!(py, "throw"), (kind,)),
            (value, None) => inner.call_method1(intern!(py, "throw"), (kind, value)),
            (value, traceback) => {
                inner.call_method1(intern!(py, "throw"), (kind, value, traceback))
            }
        };
        self.step(py, outcome)
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.bind(py).clone().into_any();
        if inner.hasattr(intern!(py, "close"))? {
            inner.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.inner)?;
        match &self.then {
            Some(Then::Chunk(stream) | Then::Enter(stream)) => visit.call(stream),
            None => Ok(()),
        }
    }
}
