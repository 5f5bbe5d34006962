//! `count_tokens`, `count_tokens_batch`, `encoding_for_model`, `warmup` and the count cache, as
//! seen from Python. The public docstrings live in `python/instrumentation_sdk/tokens.py`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::prompt::{borrow_text, Prompt};
use crate::error::Error;
use crate::tokens::cache;
use crate::tokens::{self, count_text, Count, Encoding, Method};

/// Below this many bytes counting takes a few microseconds: cheaper than detaching from and
/// re-attaching to the interpreter, which can wait a whole switch interval under contention.
const DETACH_MIN_BYTES: usize = 1024;
/// A batch smaller than this is counted on the calling thread; spawning costs ~20 us a thread.
const PARALLEL_MIN_BYTES: usize = 64 * 1024;
const MAX_BATCH_THREADS: usize = 16;

#[pyclass(frozen, eq, hash, module = "instrumentation_sdk", name = "TokenCount")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenCount(Count);

#[pymethods]
impl TokenCount {
    #[new]
    #[pyo3(signature = (tokens, method, encoding = None))]
    fn new(tokens: usize, method: &str, encoding: Option<&str>) -> PyResult<Self> {
        let method = match method {
            "tiktoken" => Method::Tiktoken,
            "heuristic" => Method::Heuristic,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "method must be 'tiktoken' or 'heuristic', got {other:?}"
                )))
            }
        };
        let encoding = encoding.map(Encoding::from_name).transpose()?;
        Ok(TokenCount(Count {
            tokens,
            method,
            encoding,
        }))
    }

    /// The number of tokens.
    #[getter]
    fn tokens(&self) -> usize {
        self.0.tokens
    }

    /// `"tiktoken"` for an exact BPE count, `"heuristic"` for an estimate.
    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> &Bound<'py, PyString> {
        match self.0.method {
            Method::Tiktoken => intern!(py, "tiktoken"),
            Method::Heuristic => intern!(py, "heuristic"),
        }
    }

    /// The BPE encoding used (`"o200k_base"`, ...), or `None` for a heuristic count.
    #[getter]
    fn encoding(&self) -> Option<&'static str> {
        self.0.encoding.map(Encoding::name)
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("tokens", "method", "encoding")
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenCount(tokens={}, method='{}', encoding={})",
            self.0.tokens,
            self.0.method.name(),
            self.0
                .encoding
                .map_or_else(|| "None".to_owned(), |e| format!("'{}'", e.name()))
        )
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> (
        Bound<'py, pyo3::types::PyType>,
        (usize, &'static str, Option<&'static str>),
    ) {
        let count = slf.get().0;
        (
            slf.get_type(),
            (
                count.tokens,
                count.method.name(),
                count.encoding.map(Encoding::name),
            ),
        )
    }
}

/// A model name as tiktoken matches it: lone surrogates (which no table entry contains) become
/// U+FFFD instead of failing, so prefixes still match as they do in Python.
fn model_name<'a>(model: &'a Bound<'_, PyString>) -> std::borrow::Cow<'a, str> {
    model.to_string_lossy()
}

#[pyfunction]
pub fn encoding_for_model(model: &Bound<'_, PyString>) -> Option<&'static str> {
    tokens::encoding_for_model(&model_name(model)).map(Encoding::name)
}

#[pyfunction]
pub fn count_tokens(
    py: Python<'_>,
    prompt: &Bound<'_, PyAny>,
    model: &Bound<'_, PyString>,
) -> PyResult<TokenCount> {
    let encoding = tokens::encoding_for_model(&model_name(model));
    // Fast path: a plain str, borrowed without a copy.
    if let Ok(text) = prompt.cast::<PyString>() {
        let text = borrow_text(text)?;
        let count = if text.len() < DETACH_MIN_BYTES {
            count_text(encoding, &text)
        } else {
            let text: &str = &text;
            py.detach(|| count_text(encoding, text))
        };
        return Ok(TokenCount(count));
    }
    let prompt = Prompt::extract(prompt, "prompt")?;
    let count = if prompt.text_bytes() < DETACH_MIN_BYTES {
        prompt.count(encoding)
    } else {
        py.detach(|| prompt.count(encoding))
    };
    Ok(TokenCount(count))
}

#[pyfunction]
pub fn count_tokens_batch(
    py: Python<'_>,
    prompts: &Bound<'_, PyAny>,
    model: &Bound<'_, PyString>,
) -> PyResult<Vec<TokenCount>> {
    let encoding = tokens::encoding_for_model(&model_name(model));
    if prompts.is_instance_of::<PyString>() || prompts.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "prompts must be an iterable of prompts (a list of str or message lists), not a \
             single str; use count_tokens() for one prompt",
        ));
    }
    let prompts = prompts
        .try_iter()?
        .enumerate()
        .map(|(index, prompt)| Prompt::extract(&prompt?, &format!("prompts[{index}]")))
        .collect::<PyResult<Vec<Prompt>>>()?;
    let total_bytes: usize = prompts.iter().map(Prompt::text_bytes).sum();
    let counts = if total_bytes < DETACH_MIN_BYTES {
        prompts.iter().map(|p| p.count(encoding)).collect()
    } else {
        py.detach(|| count_in_parallel(&prompts, encoding, total_bytes))
    };
    Ok(counts.into_iter().map(TokenCount).collect())
}

/// Counts on scoped threads that take the next prompt as they finish, so one huge prompt does not
/// hold up the rest. Scoped threads (no global pool) keep this safe in processes that fork.
fn count_in_parallel(
    prompts: &[Prompt],
    encoding: Option<Encoding>,
    total_bytes: usize,
) -> Vec<Count> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(prompts.len())
        .min(MAX_BATCH_THREADS);
    if threads <= 1 || total_bytes < PARALLEL_MIN_BYTES {
        return prompts.iter().map(|p| p.count(encoding)).collect();
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![Count::heuristic(0); prompts.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut done = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(prompt) = prompts.get(index) else {
                        break;
                    };
                    done.push((index, prompt.count(encoding)));
                }
                let mut results = results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (index, count) in done {
                    results[index] = count;
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Loads the named encodings now (detached, so other threads run meanwhile) and returns the
/// seconds each load took in this call (0.0 for one already loaded).
#[pyfunction]
pub fn warmup_encodings(py: Python<'_>, encodings: Vec<String>) -> PyResult<Vec<(String, f64)>> {
    let encodings = encodings
        .iter()
        .map(|name| Encoding::from_name(name))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(py.detach(|| {
        encodings
            .into_iter()
            .map(|e| (e.name().to_owned(), e.warm().as_secs_f64()))
            .collect()
    }))
}

/// Every encoding name this build can count with.
#[pyfunction]
pub fn encoding_names() -> Vec<&'static str> {
    Encoding::ALL.iter().map(|e| e.name()).collect()
}

/// tiktoken's model table as two lists of (name or prefix, encoding), prefixes in match order.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn model_table() -> (
    Vec<(&'static str, &'static str)>,
    Vec<(&'static str, &'static str)>,
) {
    let names = |table: &[(&'static str, Encoding)]| {
        table.iter().map(|&(name, e)| (name, e.name())).collect()
    };
    (
        names(tokens::MODEL_TO_ENCODING),
        names(tokens::MODEL_PREFIX_TO_ENCODING),
    )
}

#[pyfunction]
#[pyo3(signature = (*, max_entries = None, min_text_bytes = None))]
pub fn configure_token_cache(max_entries: Option<usize>, min_text_bytes: Option<usize>) {
    cache::configure(max_entries, min_text_bytes);
}

#[pyfunction]
pub fn clear_token_cache() {
    cache::clear();
}

#[pyfunction]
pub fn token_cache_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let stats = cache::stats();
    let dict = PyDict::new(py);
    dict.set_item("hits", stats.hits)?;
    dict.set_item("misses", stats.misses)?;
    dict.set_item("entries", stats.entries)?;
    dict.set_item("max_entries", stats.capacity)?;
    dict.set_item("min_text_bytes", stats.min_text_bytes)?;
    dict.set_item("tokenizer_faults", stats.tokenizer_faults)?;
    Ok(dict)
}
