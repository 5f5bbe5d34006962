//! `JsonlFile` from Python: the file behind `JsonlExporter`, written with the interpreter
//! detached.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::jsonl;

#[pyclass(frozen, module = "instrumentation_sdk._core", name = "JsonlFile")]
pub struct JsonlFile {
    pub(crate) inner: jsonl::JsonlFile,
}

#[pymethods]
impl JsonlFile {
    #[new]
    fn new(path: std::path::PathBuf) -> Self {
        JsonlFile {
            inner: jsonl::JsonlFile::new(path),
        }
    }

    #[getter]
    fn path(&self) -> std::path::PathBuf {
        self.inner.path().to_path_buf()
    }

    /// Appends whole lines, under an exclusive lock, without holding the interpreter.
    fn append(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        py.detach(|| self.inner.append(data)).map_err(|error| {
            PyOSError::new_err(format!("{}: {error}", self.inner.path().display()))
        })
    }

    fn close(&self) {
        self.inner.close();
    }
}
