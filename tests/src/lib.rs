//! Kappa's end-to-end tests.
//!
//! The tests live in `tests/` (crash tests that kill a real process, and later the `.slt` suites
//! and the Nexmark oracle); this library holds what the tests and their child processes share.

pub mod crash;
