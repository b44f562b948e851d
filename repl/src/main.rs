//! The `kappa` binary.
//!
//! The interactive shell, `-f FILE` and `-c SQL` arrive with the engine (issue 3). Until then the
//! binary says so instead of pretending.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("kappa {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    eprintln!(
        "kappa {}: the SQL shell is not supported yet; the durable log (kappa-storage) is.\n\
         Try: cargo run -p kappa-storage --example log_demo",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
