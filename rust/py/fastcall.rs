//! `llm_span` and `llm_span_with_tokens` as `METH_FASTCALL | METH_KEYWORDS` builtins.
//!
//! PyO3 gives a function that takes `**kwargs` the tuple-and-dict calling convention, so every
//! `llm_span("gpt-4o", "openai", user_id=...)` built a tuple and a dict only to be taken apart
//! again: about 50 ns of a span's request-thread cost of about 1 µs. Here CPython hands over its
//! argument array and keyword names as they are, and the keywords are matched by hand.

use std::ffi::CStr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyString, PyTuple};

use super::span::{new_span, SpanArgs, SpanCore};

/// Which function is being called: they differ only in `prompt`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Factory {
    LlmSpan,
    WithTokens,
}

impl Factory {
    const fn name(self) -> &'static str {
        match self {
            Factory::LlmSpan => "llm_span",
            Factory::WithTokens => "llm_span_with_tokens",
        }
    }
}

const LLM_SPAN_DOC: &CStr = c"llm_span($module, /, model, provider=None, *, service_name=None, \
user_id=None, session_id=None, name=None, parent=None, **attributes)
--

A span around one LLM call, for ``with`` or ``async with``.

Extra keyword arguments become metadata. ``service_name``, ``user_id`` and ``session_id``
default to the parent span's; a span without a service name gets the configured one. An
exception in the block ends the span with ``status=\"error\"``, ``error_type`` (the class name)
and ``error_message``, then propagates unchanged.

>>> with llm_span(\"gpt-4o\", \"openai\", user_id=\"u1\") as span:
...     span.set_metadata(\"completion_tokens\", 42)
>>> span.status, span.metadata[\"completion_tokens\"]
('ok', 42)";

const WITH_TOKENS_DOC: &CStr = c"llm_span_with_tokens($module, /, model, provider=None, *, \
prompt, service_name=None, user_id=None, session_id=None, name=None, parent=None, **attributes)
--

Like ``llm_span``, and counts ``prompt`` in the Rust core before the block runs.

Records ``prompt_tokens``, ``token_count_method`` (``\"tiktoken\"`` for models in tiktoken's
table, else ``\"heuristic\"``) and, for exact counts, ``token_encoding``. Never raises: a
prompt that is neither a ``str`` nor a message list is estimated from its ``str()``. With a
pre-count of your own (``prompt_tokens_estimate=...``) the prompt is not counted again: it is
only scanned (``injection=\"block\"``) and captured (``capture_content``).

>>> with llm_span_with_tokens(\"gpt-4o\", \"openai\", prompt=\"Hello world!\") as span:
...     pass
>>> span.metadata[\"prompt_tokens\"], span.metadata[\"token_count_method\"]
(3, 'tiktoken')";

/// Adds `llm_span` and `llm_span_with_tokens` to the module.
pub(crate) fn add_span_factories(module: &Bound<'_, PyModule>) -> PyResult<()> {
    add(module, c"llm_span", LLM_SPAN_DOC, LLM_SPAN)?;
    add(
        module,
        c"llm_span_with_tokens",
        WITH_TOKENS_DOC,
        WITH_TOKENS,
    )
}

type FastcallWithKeywords = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

#[allow(unsafe_code)]
fn add(
    module: &Bound<'_, PyModule>,
    name: &'static CStr,
    doc: &'static CStr,
    entry: FastcallWithKeywords,
) -> PyResult<()> {
    let py = module.py();
    // CPython keeps a pointer to the definition for the function's lifetime: leak one per
    // module initialisation (once per process).
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: entry,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }));
    let module_name = module.name()?;
    // SAFETY: `def` is valid for the rest of the process; `module` is the function's `self`
    // (borrowed, CPython takes its own reference) and `module_name` its `__module__`. Returns a
    // new reference or NULL with an exception set.
    let function = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(def, module.as_ptr(), module_name.as_ptr()),
        )?
    };
    module.add(name.to_string_lossy(), function)
}

// PyO3's own trampoline for METH_FASTCALL | METH_KEYWORDS (what `#[pyfunction]` expands to):
// it keeps PyO3's attach count and deferred reference counts right and turns a panic into a
// `PanicException`. It is doc-hidden, so a PyO3 upgrade may need this line changed.
const LLM_SPAN: FastcallWithKeywords = pyo3::impl_::trampoline::get_trampoline_function!(
    fastcall_cfunction_with_keywords,
    body::<false>
);
const WITH_TOKENS: FastcallWithKeywords = pyo3::impl_::trampoline::get_trampoline_function!(
    fastcall_cfunction_with_keywords,
    body::<true>
);

/// # Safety
/// As `bind`.
#[allow(unsafe_code)]
unsafe fn body<const WITH_TOKENS: bool>(
    py: Python<'_>,
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let factory = if WITH_TOKENS {
        Factory::WithTokens
    } else {
        Factory::LlmSpan
    };
    // SAFETY: as this function requires.
    unsafe { bind(py, factory, args, nargs, kwnames) }
}

/// # Safety
/// Called by CPython with the interpreter attached, `nargs` positional arguments in `args`
/// followed by one value per name in `kwnames` (a tuple of str, or NULL for none).
#[allow(unsafe_code)]
unsafe fn bind(
    py: Python<'_>,
    factory: Factory,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: as this function requires.
    let arguments = unsafe { Arguments::new(py, args, nargs, kwnames) }?;
    call(factory, &arguments).map(Bound::into_ptr)
}

/// A vectorcall's arguments as CPython passed them, read without copying them out.
struct Arguments<'a, 'py> {
    py: Python<'py>,
    /// The positional values, then one value per keyword name.
    values: &'a [*mut ffi::PyObject],
    positional: usize,
    names: Option<Bound<'py, PyTuple>>,
}

impl<'py> Arguments<'_, 'py> {
    /// # Safety
    /// As `bind`: `args` holds `nargs` live references then one per name in `kwnames`, and all
    /// of them outlive the returned value.
    #[allow(unsafe_code)]
    unsafe fn new(
        py: Python<'py>,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<Self> {
        // SAFETY: `kwnames` is NULL or a live tuple the caller holds for this call.
        let names = unsafe { Bound::from_borrowed_ptr_or_opt(py, kwnames) }
            .map(Bound::cast_into::<PyTuple>)
            .transpose()?;
        let positional = usize::try_from(nargs).unwrap_or(0);
        let total = positional + names.as_ref().map_or(0, PyTupleMethods::len);
        let values: &[*mut ffi::PyObject] = if total == 0 || args.is_null() {
            &[]
        } else {
            // SAFETY: CPython passes `nargs` positional values then one per keyword name.
            unsafe { std::slice::from_raw_parts(args, total) }
        };
        Ok(Arguments {
            py,
            values,
            positional,
            names,
        })
    }

    #[allow(unsafe_code)]
    fn value(&self, index: usize) -> Bound<'py, PyAny> {
        // SAFETY: every entry is a live, non-NULL reference (see `new`); this takes a new one.
        unsafe { Bound::from_borrowed_ptr(self.py, self.values[index]) }
    }
}

/// Binds the arguments the way Python would for the signatures in the docs above.
fn call<'py>(factory: Factory, arguments: &Arguments<'_, 'py>) -> PyResult<Bound<'py, SpanCore>> {
    let function = factory.name();
    let given = arguments.positional;
    if given > 2 {
        return Err(PyTypeError::new_err(format!(
            "{function}() takes from 1 to 2 positional arguments but {given} were given"
        )));
    }
    let mut model = (given > 0).then(|| arguments.value(0));
    let mut provider = (given > 1).then(|| arguments.value(1));
    let (mut service_name, mut user_id, mut session_id) = (None, None, None);
    let (mut name, mut parent, mut prompt) = (None, None, None);
    let mut attributes = Vec::new();
    if let Some(names) = &arguments.names {
        for (index, key) in names.iter().enumerate() {
            let key = key.cast_into::<PyString>()?;
            let value = arguments.value(given + index);
            // A name that is not UTF-8 (a lone surrogate) matches no parameter: metadata.
            let slot = match key.to_str().unwrap_or_default() {
                "model" => &mut model,
                "provider" => &mut provider,
                "service_name" => &mut service_name,
                "user_id" => &mut user_id,
                "session_id" => &mut session_id,
                "name" => &mut name,
                "parent" => &mut parent,
                "prompt" if factory == Factory::WithTokens => &mut prompt,
                _ => {
                    attributes.push((key.into_any(), value));
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{function}() got multiple values for argument '{key}'"
                )));
            }
        }
    }
    let Some(model) = model else {
        return Err(PyTypeError::new_err(format!(
            "{function}() missing 1 required positional argument: 'model'"
        )));
    };
    if factory == Factory::WithTokens && prompt.is_none() {
        return Err(PyTypeError::new_err(format!(
            "{function}() missing 1 required keyword-only argument: 'prompt'"
        )));
    }
    let args = SpanArgs {
        model,
        provider,
        service_name,
        user_id,
        session_id,
        name,
        parent,
        attributes,
    };
    new_span(arguments.py, args, prompt.map(Bound::unbind))
}
