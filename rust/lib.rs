//! instrumentation-sdk's Rust core. The pure-Rust modules have no PyO3 in them; `py` binds them.

pub mod buffer;
pub mod error;
pub mod fork;
pub mod heuristic;
pub mod histogram;
pub mod jsonl;
pub mod otlp;
pub mod processor;
pub mod record;
pub mod scan;
pub mod span;
pub mod stream;
pub mod tokens;

#[cfg(feature = "python")]
mod py;

/// Spans are allocated on request threads and freed on the flusher thread; mimalloc handles
/// such cross-thread frees without the arena lock contention of the system allocator.
#[cfg(feature = "python")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _core {
    #[pymodule_export]
    use crate::py::context::{install_otel_parent_hook, install_span_hooks};
    #[pymodule_export]
    use crate::py::histogram::{log_histogram, merge_histograms};
    #[pymodule_export]
    use crate::py::jsonl::JsonlFile;
    #[pymodule_export]
    use crate::py::otlp::{encode_otlp, encode_otlp_records, otlp_partial_success};
    #[pymodule_export]
    use crate::py::preload::{preload_encodings, wait_for_preload};
    #[pymodule_export]
    use crate::py::processor::{ExportPlan, RustProcessor};
    #[pymodule_export]
    use crate::py::record::{encode_jsonl_records, record_fields, standard_metadata_keys};
    #[pymodule_export]
    use crate::py::scan::{
        add_pii_pattern, clear_pii_patterns, injection_threshold, install_injection_classes,
        mask_pii, scan_injection, scan_pii, scan_rule_ids, set_injection_block, PiiFinding,
    };
    #[pymodule_export]
    use crate::py::sink::{orphaned_spans, Batch, JsonlRound, SpanSink};
    #[pymodule_export]
    use crate::py::span::{
        capture_content, end_span_with, events_dropped, set_capture_content, start_span_with,
        Ready, SpanCore,
    };
    #[pymodule_export]
    use crate::py::stream::{streams_open, AsyncStream, Awaiting, Cursor, Stream};
    #[pymodule_export]
    use crate::py::tokens::{
        clear_token_cache, configure_token_cache, count_tokens, count_tokens_batch,
        encoding_for_model, encoding_names, model_table, token_cache_stats, warmup_encodings,
        TokenCount,
    };

    #[pymodule_init]
    fn init(module: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        crate::py::fastcall::add_span_factories(module)?;
        module.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
