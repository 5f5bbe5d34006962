//! The scanners as Python functions (wrapped by `instrumentation_sdk.scan`, which owns the
//! public API), the injection check of `injection="block"` on entering a span, and the
//! Python validators of custom rules.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use super::context::fault;
use super::prompt::{borrow_text, Prompt};
use crate::scan::injection::{self, InjectionModel, Verdict};
use crate::scan::mask::{mask, Mode};
use crate::scan::pii::{custom_rule, CustomCheck, Finding};
use crate::scan::{self as core_scan};

/// Texts at least this long are scanned with the interpreter detached.
const DETACH_MIN_BYTES: usize = 4096;

/// `injection="block"`: `llm_span_with_tokens(..., prompt=...)` scans the prompt on entering.
static BLOCK_INJECTION: AtomicBool = AtomicBool::new(false);

/// The classes the block raises with: `PromptInjectionError(message, verdict)` and
/// `InjectionVerdict(score, flagged, rules)`, installed by `instrumentation_sdk.scan`.
struct Classes {
    error: Py<PyAny>,
    verdict: Py<PyAny>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// Install the Python classes of the block's exception and verdict (once, at import).
#[pyfunction]
pub fn install_injection_classes(py: Python<'_>, error: Py<PyAny>, verdict: Py<PyAny>) {
    let _ = CLASSES.set(py, Classes { error, verdict });
}

/// The model tier of `injection="block"` (`configure(injection_model=...)`).
static BLOCK_MODEL: RwLock<Option<InjectionModel>> = RwLock::new(None);

/// Turn the injection block on or off for spans entered from now on, with its model tier.
#[pyfunction]
#[pyo3(signature = (on, model = None))]
pub fn set_injection_block(on: bool, model: Option<Py<PyAny>>) {
    *BLOCK_MODEL.write().unwrap_or_else(PoisonError::into_inner) = model.map(python_model);
    BLOCK_INJECTION.store(on, Ordering::Relaxed);
}

/// A Python callable `text -> probability` as the core's model tier. It runs attached; a
/// raise, a non-number or a number outside 0..1 is a fault (counted in `stats()`, logged
/// once, by type only: an exception's message may quote the prompt) and gives no answer, so
/// the rules' verdict stands.
pub(crate) fn python_model(model: Py<PyAny>) -> InjectionModel {
    Arc::new(move |text: &str| {
        Python::attach(|py| {
            let answer = model
                .bind(py)
                .call1((text,))
                .and_then(|answer| answer.extract::<f64>());
            let problem = match answer {
                Ok(probability) if (0.0..=1.0).contains(&probability) => return Some(probability),
                Ok(other) => format!("returned {other}, not a probability in [0, 1]"),
                Err(error) => format!(
                    "raised {}",
                    error
                        .get_type(py)
                        .name()
                        .map_or_else(|_| "an exception".to_owned(), |name| name.to_string())
                ),
            };
            fault(
                py,
                "injection_model",
                &format!("the injection model {problem}; the rules' verdict stands"),
            );
            None
        })
    })
}

fn run<T: Send>(py: Python<'_>, text: &str, work: impl FnOnce(&str) -> T + Send) -> T {
    if text.len() < DETACH_MIN_BYTES {
        work(text)
    } else {
        py.detach(|| work(text))
    }
}

/// One thing ``scan_pii`` found: ``text[start:end]`` is it (Python string indices).
///
/// ``kind`` is Presidio's entity name (``"EMAIL_ADDRESS"``, ``"SECRET"``, or a custom kind),
/// ``score`` how sure the rule is (1.0 for checksummed values), ``detail`` the rule that found
/// it (``"aws_access_key_id"``, ``"phone_international"``, ``"custom:employee_id"``).
/// Immutable, compared and hashed by value.
// A class of the core (not a Python dataclass): a scan builds one per finding, and a frozen
// dataclass costs about a microsecond to build.
#[pyclass(frozen, get_all, module = "instrumentation_sdk.scan")]
pub struct PiiFinding {
    kind: Py<PyString>,
    start: usize,
    end: usize,
    score: f64,
    detail: Py<PyString>,
}

#[pymethods]
impl PiiFinding {
    #[new]
    fn new(kind: Py<PyString>, start: usize, end: usize, score: f64, detail: Py<PyString>) -> Self {
        PiiFinding {
            kind,
            start,
            end,
            score,
            detail,
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "PiiFinding(kind={}, start={}, end={}, score={}, detail={})",
            self.kind.bind(py).repr()?,
            self.start,
            self.end,
            self.score.into_pyobject(py)?.repr()?,
            self.detail.bind(py).repr()?,
        ))
    }

    #[allow(clippy::float_cmp)] // equality of values, as Python compares floats
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Ok(other) = other.cast::<PiiFinding>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let same = self.start == other.start
            && self.end == other.end
            && self.score == other.score
            && self.kind.bind(py).to_str()? == other.kind.bind(py).to_str()?
            && self.detail.bind(py).to_str()? == other.detail.bind(py).to_str()?;
        Ok(pyo3::types::PyBool::new(py, same)
            .to_owned()
            .into_any()
            .unbind())
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (
            self.kind.clone_ref(py),
            self.start,
            self.end,
            self.score,
            self.detail.clone_ref(py),
        )
            .into_pyobject(py)?
            .hash()
    }
}

/// Byte offsets of sorted findings to `PiiFinding`s with character offsets (Python string
/// indices). Kind and rule names are interned: one string object each per process.
fn to_findings(py: Python<'_>, text: &str, findings: &[Finding]) -> PyResult<Vec<Py<PiiFinding>>> {
    let ascii = text.is_ascii();
    let mut out = Vec::with_capacity(findings.len());
    let mut chars_before = 0;
    let mut bytes_seen = 0;
    let mut char_index = |byte: usize| {
        if ascii {
            return byte;
        }
        chars_before += text[bytes_seen..byte].chars().count();
        bytes_seen = byte;
        chars_before
    };
    for finding in findings {
        let start = char_index(finding.start);
        let end = char_index(finding.end);
        let found = PiiFinding {
            kind: PyString::intern(py, &finding.kind).unbind(),
            start,
            end,
            score: finding.score,
            detail: PyString::intern(py, &finding.detail).unbind(),
        };
        out.push(Py::new(py, found)?);
    }
    Ok(out)
}

/// The PII and secrets in `text`, as `PiiFinding`s.
#[pyfunction]
pub fn scan_pii(py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<Vec<Py<PiiFinding>>> {
    let text = borrow_text(text)?;
    let scanner = core_scan::scanner();
    let found = run(py, &text, |text| scanner.scan(text))?;
    to_findings(py, &text, &found)
}

/// `text` with its PII and secrets masked (`mode`: redact, partial or hash with `key`).
#[pyfunction]
#[pyo3(signature = (text, mode, key = None))]
pub fn mask_pii(
    py: Python<'_>,
    text: &Bound<'_, PyString>,
    mode: &str,
    key: Option<Vec<u8>>,
) -> PyResult<String> {
    let mode = Mode::parse(mode).ok_or_else(|| {
        PyValueError::new_err(format!(
            "mode must be 'redact', 'partial' or 'hash', got {mode:?}"
        ))
    })?;
    let key = match (mode, key) {
        (Mode::Hash, None) => {
            return Err(PyValueError::new_err(
                "mode='hash' needs a key: configure(pii_hash_key=...) or mask_pii(key=...)",
            ))
        }
        (_, key) => key.unwrap_or_default(),
    };
    let text = borrow_text(text)?;
    let scanner = core_scan::scanner();
    let masked = run(py, &text, |text| {
        scanner
            .scan(text)
            .map(|found| mask(text, &found, mode, &key))
    })?;
    Ok(masked)
}

/// (score, flagged, rules) for `text`.
#[pyfunction]
pub fn scan_injection(
    py: Python<'_>,
    text: &Bound<'_, PyString>,
) -> PyResult<(f64, bool, Vec<&'static str>)> {
    let text = borrow_text(text)?;
    let verdict = run(py, &text, |text| core_scan::injection().scan(text));
    let flagged = verdict.flagged();
    Ok((verdict.score, flagged, verdict.rules))
}

/// The score at and above which a text is flagged.
#[pyfunction]
pub fn injection_threshold() -> f64 {
    injection::THRESHOLD
}

/// The ids of the injection rules and of the provider secret rules (for docs and tests).
#[pyfunction]
pub fn scan_rule_ids() -> (Vec<&'static str>, Vec<&'static str>) {
    (
        injection::rule_ids().collect(),
        crate::scan::secrets::rule_names().collect(),
    )
}

/// Add a custom rule; `validator(value) -> bool` runs on each candidate (attached).
#[pyfunction]
#[pyo3(signature = (kind, pattern, validator = None))]
pub fn add_pii_pattern(kind: &str, pattern: &str, validator: Option<Py<PyAny>>) -> PyResult<()> {
    let check = validator.map(|validator| -> CustomCheck {
        Arc::new(move |value: &str| {
            Python::attach(|py| {
                validator
                    .call1(py, (value,))
                    .and_then(|answer| answer.is_truthy(py))
                    .map_err(|error| format!("the validator of a custom rule raised: {error}"))
            })
        })
    });
    let rule = custom_rule(kind, pattern, check).map_err(PyValueError::new_err)?;
    core_scan::add_rule(rule).map_err(PyValueError::new_err)
}

/// Remove every custom rule.
#[pyfunction]
pub fn clear_pii_patterns() {
    core_scan::clear_custom_rules();
}

/// On entering a span with `injection="block"`: the prompt's verdict when it is flagged, as
/// the exception to raise (`None` when the prompt passes or blocking is off).
pub(crate) fn blocked(py: Python<'_>, prompt: &Bound<'_, PyAny>) -> Option<Blocked> {
    if !BLOCK_INJECTION.load(Ordering::Relaxed) {
        return None;
    }
    let extracted = Prompt::extract(prompt, "prompt");
    let text: Cow<'_, str> = match &extracted {
        Ok(Prompt::Text(text)) => Cow::Borrowed(text),
        Ok(prompt @ Prompt::Messages(_)) => Cow::Owned(prompt.joined()),
        Err(_) => Cow::Owned(prompt.str().ok()?.to_string_lossy().into_owned()),
    };
    let mut verdict = run(py, &text, |t| core_scan::injection().scan(t));
    let model = BLOCK_MODEL
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(probability) = model.and_then(|model| model(&text)) {
        verdict = verdict.with_model(probability);
    }
    if !verdict.flagged() {
        return None;
    }
    let message = message(&verdict);
    Some(Blocked {
        error: error(py, &verdict, &message),
        message,
        verdict,
    })
}

/// A prompt the block stopped: the exception to raise and what the span records.
pub(crate) struct Blocked {
    pub(crate) error: PyErr,
    pub(crate) message: String,
    pub(crate) verdict: Verdict,
}

fn message(verdict: &Verdict) -> String {
    format!(
        "prompt blocked: injection score {:.2} >= {} ({})",
        verdict.score,
        injection::THRESHOLD,
        verdict.rules.join(", ")
    )
}

fn error(py: Python<'_>, verdict: &Verdict, message: &str) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let classes = match CLASSES.get(py) {
            Some(classes) => classes,
            None => {
                py.import("instrumentation_sdk.scan")?;
                CLASSES
                    .get(py)
                    .ok_or_else(|| PyValueError::new_err("injection classes not installed"))?
            }
        };
        let verdict = classes.verdict.bind(py).call1((
            verdict.score,
            verdict.flagged(),
            verdict.rules.clone(),
        ))?;
        let error = classes.error.bind(py).call1((message, verdict))?;
        Ok(PyErr::from_value(error))
    };
    build().unwrap_or_else(|failure| failure)
}
