//! The PyO3 binding layer: takes what it needs out of Python objects, then runs the pure core
//! (detached from the interpreter when the work is big enough to matter).

pub mod chunks;
pub mod context;
pub mod error;
pub mod fastcall;
pub mod histogram;
pub mod jsonl;
pub mod otlp;
pub mod preload;
pub mod processor;
pub mod prompt;
pub mod record;
pub mod scan;
pub mod sink;
pub mod span;
pub mod stream;
pub mod tokens;
pub mod value;
