//! Kappa's end-to-end tests.
//!
//! The tests live in `tests/`: crash tests that kill a real process, the `.slt` suites in
//! `slt/` run by [`slt`], and the property tests. This library holds what the tests and their
//! child processes share.

pub mod crash;
pub mod events;
pub mod slt;
