//! Scanning text for personal data, credentials and prompt injection, and masking what is
//! found. Pure Rust; `py/scan.rs` binds it and the span processor (`spans.rs`) runs it on the
//! flusher.
//!
//! The PII scanner is shared by every thread and rebuilt (swapped whole) when a user adds a
//! rule, so a scan never waits for a lock.

pub mod injection;
pub mod keywords;
pub mod mask;
pub mod pii;
pub mod secrets;
pub mod spans;
mod swar;
pub mod validate;

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use injection::{InjectionScanner, Verdict as InjectionVerdict};
pub use pii::{Finding, Rule, Scanner};

static SCANNER: LazyLock<ArcSwap<Scanner>> =
    LazyLock::new(|| ArcSwap::from_pointee(Scanner::new()));

/// Serialises rule additions (each rebuilds the scanner from the current rules).
static ADDING: Mutex<()> = Mutex::new(());

static INJECTION: LazyLock<InjectionScanner> =
    LazyLock::new(|| InjectionScanner::new().expect("the injection rules compile"));

/// The current PII scanner (built-in and custom rules).
pub fn scanner() -> Arc<Scanner> {
    SCANNER.load_full()
}

/// The prompt-injection scanner.
pub fn injection() -> &'static InjectionScanner {
    &INJECTION
}

/// Adds a rule to the shared scanner (later scans see it).
pub fn add_rule(rule: Rule) -> Result<(), String> {
    let _adding = ADDING.lock().unwrap_or_else(PoisonError::into_inner);
    let mut rules = SCANNER.load().custom_rules().to_vec();
    rules.push(rule);
    let rebuilt = Scanner::with_custom(rules)?;
    SCANNER.store(Arc::new(rebuilt));
    Ok(())
}

/// Removes every custom rule (tests; a fresh process has none).
pub fn clear_custom_rules() {
    let _adding = ADDING.lock().unwrap_or_else(PoisonError::into_inner);
    SCANNER.store(Arc::new(Scanner::new()));
}
