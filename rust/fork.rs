//! Knowing that the process forked, for the price of an atomic load.
//!
//! Python's `os.register_at_fork` hooks only run when Python itself calls `fork()`; servers such
//! as uWSGI fork from C and skip them. A `pthread_atfork` child handler runs after *every*
//! `fork()` in the process, so state created before a fork can tell, cheaply, that it now lives in
//! a child and must not be used (its queue may hold the parent's spans, or be mid-update by a
//! thread that did not survive the fork).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

/// How many times this process's ancestry forked since the handler was installed: 0 in the
/// process that installed it, then one more in each child.
pub fn generation() -> u64 {
    REGISTER.call_once(register);
    GENERATION.load(Ordering::Acquire)
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    // Async-signal-safe: a single atomic add.
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn register() {
    // SAFETY: the handler is an `extern "C"` function with no arguments that only touches an
    // atomic; registering it has no other preconditions. A failure (ENOMEM) leaves fork detection
    // to the Python layer's `os.register_at_fork` hook.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    }
}

#[cfg(not(unix))]
fn register() {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn child_sees_a_new_generation() {
        let before = generation();
        // SAFETY: the child only reads an atomic and exits without running destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = i32::from(generation() != before + 1);
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting on our own child.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0, "child saw no new generation");
        assert_eq!(generation(), before, "the parent's generation is unchanged");
    }
}
