//! Kappa's end-to-end tests.
//!
//! The tests live in `tests/`: crash tests that kill a real process, the `.slt` suites in
//! `slt/` run by [`slt`], and the property tests. This library holds what the tests and their
//! child processes share.

pub mod bids;
pub mod crash;
pub mod events;
pub mod slt;

/// The number of cases of a property test: `PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Run `f` to its end on a fresh runtime of two worker threads (a property test's case).
///
/// # Panics
/// When the runtime cannot be built.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("no tokio runtime: {e}"),
    }
}
