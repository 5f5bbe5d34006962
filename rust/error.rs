//! The core's one error type. The Python layer maps it to exceptions in `py/`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An encoding name we do not ship ranks for.
    UnknownEncoding(String),
    /// The BPE engine failed on this input (a regex backtrack limit, or a panic in the vendored
    /// tokenizer). Callers fall back to the heuristic rather than surface this to applications.
    Tokenizer(String),
    /// A configuration value out of range (buffer capacity, ...).
    InvalidConfig(String),
    /// A scan could not finish: a user's validator failed (the span it was cleaning is
    /// dropped, never exported unmasked).
    Scan(String),
    /// A rollup histogram blob that is not whole `(bucket, count)` pairs.
    Histogram(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEncoding(name) => write!(
                f,
                "unknown encoding {name:?}; known encodings: {}",
                crate::tokens::Encoding::ALL
                    .iter()
                    .map(|e| e.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Tokenizer(why) => write!(f, "tokenizer failed: {why}"),
            Self::InvalidConfig(why) => f.write_str(why),
            Self::Scan(why) => write!(f, "PII scan failed: {why}"),
            Self::Histogram(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}
