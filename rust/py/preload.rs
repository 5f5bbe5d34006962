//! Loading encodings off the request path: `preload_encodings` starts a background thread (pure
//! Rust, it never needs the interpreter), and a `pthread_atfork` guard makes every `fork()` wait
//! for it, so that no child inherits a load-once cell locked by a thread it does not have (which
//! would hang the child's first count for good). That covers forks made from C, as uWSGI does,
//! as well as `os.fork()`.

use std::sync::{Condvar, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;

use crate::error::Error;
use crate::tokens::Encoding;

/// Background loads under way.
static RUNNING: Mutex<u32> = Mutex::new(0);
static FINISHED: Condvar = Condvar::new();
static FORK_GUARD: Once = Once::new();

/// The longest a `fork()` waits for a background load (one takes about 0.2 s).
const FORK_WAIT: Duration = Duration::from_secs(10);
/// The longest `wait_for_preload` can be asked to wait.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

fn running() -> MutexGuard<'static, u32> {
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts loading `encodings` on a background thread and returns at once. An unknown name is a
/// `ValueError`, raised before anything starts.
#[pyfunction]
pub fn preload_encodings(encodings: Vec<String>) -> PyResult<()> {
    let encodings = encodings
        .iter()
        .map(|name| Encoding::from_name(name))
        .collect::<Result<Vec<_>, Error>>()?;
    FORK_GUARD.call_once(install_fork_guard);
    *running() += 1;
    let spawned = std::thread::Builder::new()
        .name("instrumentation-sdk-preload".into())
        .spawn(move || {
            for encoding in encodings {
                let _ = encoding.warm();
            }
            finish();
        });
    if spawned.is_err() {
        finish(); // no thread: the first count loads it, as without a preload
    }
    Ok(())
}

fn finish() {
    let mut running = running();
    *running -= 1;
    FINISHED.notify_all();
}

/// Whether no background load is under way, after waiting at most `timeout` for that.
fn wait(timeout: Duration) -> bool {
    let guard = running();
    let (guard, _) = FINISHED
        .wait_timeout_while(guard, timeout, |running| *running > 0)
        .unwrap_or_else(PoisonError::into_inner);
    *guard == 0
}

/// Waits (detached) at most `timeout` seconds for the background loads started by
/// `preload_encodings`; True when none is under way.
#[pyfunction]
pub fn wait_for_preload(py: Python<'_>, timeout: f64) -> bool {
    let timeout =
        Duration::try_from_secs_f64(timeout.max(0.0)).map_or(MAX_WAIT, |t| t.min(MAX_WAIT));
    py.detach(|| wait(timeout))
}

#[cfg(unix)]
extern "C" fn before_fork() {
    // The loading thread needs neither the interpreter nor anything the forking thread holds.
    let _ = wait(FORK_WAIT);
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn install_fork_guard() {
    // SAFETY: the handler is an `extern "C"` function with no arguments that only waits on a
    // static Mutex and Condvar; registering it has no other preconditions. A failure (ENOMEM)
    // leaves the guard out, as before there was a preload.
    unsafe {
        libc::pthread_atfork(Some(before_fork), None, None);
    }
}

#[cfg(not(unix))]
fn install_fork_guard() {}
