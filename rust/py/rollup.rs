//! `sum_rollups`: many rollup rows added up per group in one pass (the histograms merged with
//! the interpreter detached).

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::histogram::merge;
use crate::rollup::{RollupRow, RollupSum};

/// Columns of a row: the group, the status, then `span_rollups`' ten value columns.
const ROW_WIDTH: usize = 12;

/// One group's sum and the histogram blobs still to merge.
struct Group<'py> {
    key: Bound<'py, PyAny>,
    sum: RollupSum,
    latency: Vec<PyBackedBytes>,
    ttft: Vec<PyBackedBytes>,
}

/// Rollup rows `(group, status, spans, prompt_tokens, completion_tokens, cost_usd,
/// min_duration_ns, max_duration_ns, latency_histogram, min_ttft_ns, max_ttft_ns,
/// ttft_histogram)` added up per group, groups in order of first appearance: per group
/// `(group, spans, errors, prompt_tokens, completion_tokens, cost_usd, min_duration_ns,
/// max_duration_ns, latency_histogram, min_ttft_ns, max_ttft_ns, ttft_histogram)`, sums
/// `None` when every part is, a row's spans errors when its status is `"error"`, the
/// histograms merged. A row of another shape, or a torn histogram blob, is a `ValueError`.
#[pyfunction]
pub fn sum_rollups<'py>(py: Python<'py>, rows: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyList>> {
    let error = intern!(py, "error");
    let index = PyDict::new(py);
    let mut groups: Vec<Group<'py>> = Vec::new();
    for row in rows.iter() {
        let row = row.cast::<PyTuple>()?;
        if row.len() != ROW_WIDTH {
            return Err(PyValueError::new_err(format!(
                "a rollup row has {ROW_WIDTH} columns, got {}",
                row.len()
            )));
        }
        let key = row.get_item(0)?;
        let slot = match index.get_item(&key)? {
            Some(found) => found.extract::<usize>()?,
            None => {
                index.set_item(&key, groups.len())?;
                groups.push(Group {
                    key,
                    sum: RollupSum::default(),
                    latency: Vec::new(),
                    ttft: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let status = row.get_item(1)?;
        let values = RollupRow {
            spans: row.get_item(2)?.extract()?,
            is_error: status.is(error) || status.eq(error)?,
            prompt_tokens: row.get_item(3)?.extract()?,
            completion_tokens: row.get_item(4)?.extract()?,
            cost_usd: row.get_item(5)?.extract()?,
            min_duration_ns: row.get_item(6)?.extract()?,
            max_duration_ns: row.get_item(7)?.extract()?,
            min_ttft_ns: row.get_item(9)?.extract()?,
            max_ttft_ns: row.get_item(10)?.extract()?,
        };
        let group = &mut groups[slot];
        group.sum.add(&values);
        group.latency.push(row.get_item(8)?.extract()?);
        if values.min_ttft_ns.is_some() {
            group.ttft.push(row.get_item(11)?.extract()?);
        }
    }
    let blobs: Vec<(&[PyBackedBytes], &[PyBackedBytes])> = groups
        .iter()
        .map(|group| (group.latency.as_slice(), group.ttft.as_slice()))
        .collect();
    let merged = py.detach(|| {
        blobs
            .iter()
            .map(|(latency, ttft)| {
                Ok((
                    merge(latency.iter().map(|blob| &blob[..]))?,
                    merge(ttft.iter().map(|blob| &blob[..]))?,
                ))
            })
            .collect::<crate::error::Result<Vec<(Vec<u8>, Vec<u8>)>>>()
    })?;
    let out = PyList::empty(py);
    for (group, (latency, ttft)) in groups.iter().zip(merged) {
        let sum = &group.sum;
        out.append((
            &group.key,
            sum.spans,
            sum.errors,
            sum.prompt_tokens,
            sum.completion_tokens,
            sum.cost_usd,
            sum.min_duration_ns,
            sum.max_duration_ns,
            PyBytes::new(py, &latency),
            sum.min_ttft_ns,
            sum.max_ttft_ns,
            PyBytes::new(py, &ttft),
        ))?;
    }
    Ok(out)
}
