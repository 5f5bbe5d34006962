//! `merge_histograms`: the rollups' histogram merge, run with the interpreter detached.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::histogram::merge;

/// The sum of histogram blobs (little-endian `i64` pairs `(bucket, count)`) as one blob, sorted
/// by bucket. A blob that is not whole pairs is a `ValueError`.
#[pyfunction]
pub fn merge_histograms(py: Python<'_>, blobs: Vec<PyBackedBytes>) -> PyResult<Bound<'_, PyBytes>> {
    let merged = py.detach(|| merge(blobs.iter().map(|blob| &blob[..])))?;
    Ok(PyBytes::new(py, &merged))
}
