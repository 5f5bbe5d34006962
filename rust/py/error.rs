use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        match error {
            Error::UnknownEncoding(_) | Error::InvalidConfig(_) | Error::Histogram(_) => {
                PyValueError::new_err(error.to_string())
            }
            Error::Tokenizer(_) | Error::Scan(_) => PyRuntimeError::new_err(error.to_string()),
        }
    }
}
