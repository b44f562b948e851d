//! A child process for the crash tests: appends batches from several threads to a durable and a
//! relaxed stream, forever, and prints `ack <stream> <base> <rows> <tag>` after each append is
//! acknowledged. The test kills it with SIGKILL at a random moment and checks what survived.
//!
//! Usage: `kappa-crash-appender DATA_DIR THREADS`

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use kappa_storage::{Durability, Store, StoreOptions, StreamOptions};
use kappa_tests::crash::{STREAMS, schema, tagged_batch};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: kappa-crash-appender DATA_DIR THREADS")?;
    let threads: u64 = args.next().unwrap_or_else(|| "4".into()).parse()?;
    let store = Store::open(&dir, StoreOptions::default())?;
    let mut streams = Vec::new();
    for (name, durability) in STREAMS {
        let s = match store.stream(name) {
            Ok(s) => s,
            Err(_) => store.create_stream(
                name,
                schema(),
                StreamOptions { durability, segment_bytes: 64 * 1024, ..StreamOptions::default() },
            )?,
        };
        debug_assert!(matches!(durability, Durability::Durable | Durability::Relaxed));
        streams.push(s);
    }
    // A run number keeps tags unique across restarts.
    let run =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as u64;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let streams = streams.clone();
            let out = Arc::clone(&out);
            std::thread::spawn(move || -> anyhow::Result<()> {
                for seq in 0u64.. {
                    let tag = ((run % 1_000_000_000) * 1000 + t) * 1_000_000 + seq;
                    let tag = (tag % (i64::MAX as u64)) as i64;
                    let s = &streams[(seq % streams.len() as u64) as usize];
                    let ack = s.append(&tagged_batch(tag))?;
                    let mut o = out.lock().map_err(|_| anyhow::anyhow!("stdout lock"))?;
                    writeln!(o, "ack {} {} {} {tag}", s.name(), ack.base_offset, ack.rows)?;
                    o.flush()?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("appender thread panicked"))??;
    }
    Ok(())
}
