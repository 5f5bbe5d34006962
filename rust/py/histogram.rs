//! `merge_histograms`: the rollups' histogram merge; `log_histogram`: the histogram of raw
//! values. Both run with the interpreter detached.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::histogram::{log_histogram as histogram_of, merge};

/// The sum of histogram blobs (little-endian `i64` pairs `(bucket, count)`) as one blob, sorted
/// by bucket. A blob that is not whole pairs is a `ValueError`.
#[pyfunction]
pub fn merge_histograms(py: Python<'_>, blobs: Vec<PyBackedBytes>) -> PyResult<Bound<'_, PyBytes>> {
    let merged = py.detach(|| merge(blobs.iter().map(|blob| &blob[..])))?;
    Ok(PyBytes::new(py, &merged))
}

/// The log histogram (the rollups' blob layout) of `values`: bucket
/// `trunc(ln(max(value, 1)) * buckets_per_e)` for each, as the store's SQL computes it.
#[pyfunction]
pub fn log_histogram(py: Python<'_>, values: Vec<i64>, buckets_per_e: i64) -> Bound<'_, PyBytes> {
    let blob = py.detach(|| histogram_of(&values, buckets_per_e as f64));
    PyBytes::new(py, &blob)
}
