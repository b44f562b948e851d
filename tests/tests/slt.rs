//! Runs every `.slt` file in `tests/slt/` (`KAPPA_SLT=name` runs the files whose name contains it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_suites() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("slt/data");
    let only = std::env::var("KAPPA_SLT").ok();
    let mut failures = Vec::new();
    let mut files = 0;
    for f in kappa_tests::slt::files(&root.join("slt")).unwrap() {
        if only.as_ref().is_some_and(|o| !f.to_string_lossy().contains(o.as_str())) {
            continue;
        }
        files += 1;
        failures.extend(kappa_tests::slt::run_file(&f, &data).await.unwrap());
    }
    for f in &failures {
        eprintln!("{}: {}\n", f.at, f.message);
    }
    assert!(files > 0, "no .slt file ran");
    assert!(failures.is_empty(), "{} failures in {files} files", failures.len());
    eprintln!("{files} .slt files passed");
}
