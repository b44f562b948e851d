//! Kappa's end-to-end tests.
//!
//! The tests live in `tests/`: crash tests that kill a real process, the `.slt` suites in
//! `slt/` run by [`slt`], and the property tests. This library holds what the tests and their
//! child processes share.

pub mod bids;
pub mod crash;
pub mod events;
pub mod slt;

/// The table a changelog describes: `rows` as [`slt::format_rows`] gives them, each ending in
/// its `__op` (`0` `+I`, `1` `-U`, `2` `+U`, `3` `-D`), applied in order; the rows left, sorted.
///
/// # Errors
/// A `-U` or `-D` of a row not in the table, or an unknown `__op`.
pub fn apply_changelog(rows: impl IntoIterator<Item = String>) -> Result<Vec<String>, String> {
    let mut table: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for row in rows {
        let (data, op) = row.rsplit_once(' ').ok_or_else(|| format!("no __op in {row}"))?;
        let count = table.entry(data.to_string()).or_default();
        match op {
            "0" | "2" => *count += 1,
            "1" | "3" if *count > 0 => *count -= 1,
            "1" | "3" => return Err(format!("-U or -D of a row not in the table: {data}")),
            other => return Err(format!("__op {other} in {row}")),
        }
    }
    let mut out: Vec<String> =
        table.into_iter().filter(|(_, n)| *n > 0).flat_map(|(r, n)| vec![r; n as usize]).collect();
    out.sort();
    Ok(out)
}

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
