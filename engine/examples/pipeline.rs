//! Runs a SQL file with the embedded engine and prints what each statement returns.
//!
//! `cargo run -p kappa --example pipeline [FILE.sql] [DATA_DIR]` (defaults:
//! `queries/examples/bids.sql`, a fresh `kappa-demo` directory).

use kappa::datafusion::arrow::util::pretty::pretty_format_batches;
use kappa::{Engine, Output};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::set_current_dir(&root)?;
    let file = std::env::args().nth(1).unwrap_or_else(|| "queries/examples/bids.sql".into());
    let dir = std::env::args().nth(2).unwrap_or_else(|| "kappa-demo".into());
    let _ = std::fs::remove_dir_all(&dir);
    let sql = std::fs::read_to_string(&file)?;
    let engine = Engine::open(&dir).await?;
    for statement in kappa::sql::parse(&sql)? {
        println!("> {}", statement.text.lines().collect::<Vec<_>>().join(" "));
        let output = match engine.execute(&statement.text).await {
            Ok(mut o) => o.pop(),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" at {}:{}", l.line, l.column))
                    .unwrap_or_default();
                eprintln!("{file}{at}: {} error: {e}", e.category());
                std::process::exit(1);
            }
        };
        match output {
            Some(Output::Done { tag, rows }) => match rows {
                Some(n) => println!("{tag} {n}\n"),
                None => println!("{tag}\n"),
            },
            Some(Output::Rows { batches, .. }) => {
                println!("{}\n", pretty_format_batches(&batches)?)
            }
            Some(Output::Subscription(mut sub)) => {
                let mut batches = Vec::new();
                while let Some(b) = sub.next().await {
                    batches.push(b?);
                }
                println!("{}\n", pretty_format_batches(&batches)?);
            }
            None => {}
        }
    }
    engine.close().await?;
    Ok(())
}
