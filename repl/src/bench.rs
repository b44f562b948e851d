//! `kappa bench nexmark`: the Nexmark benchmark on this machine.
//!
//! It fills the streams `person`, `auction` and `bid` with the generator (in a fresh data
//! directory, or in `-d DIR`, where streams of the same size are reused), then runs each query
//! file of `queries/nexmark/` as its continuous job into its blackhole sink (or its
//! materialized view, whose rows are then counted), to the end of the
//! sealed input, one at a time. Per query it prints the events, the seconds from the `INSERT`
//! (the sink is declared before) until the job has finished, events per second, the rows the
//! job produced, and the peak memory of the process during the run: its anonymous resident
//! memory (`RssAnon` in `/proc/self/status`, Linux), sampled every 2 ms; the log's segments are
//! memory-mapped files, page cache that the kernel may drop, and are left out. With
//! `--baseline`, DataFusion runs the same SELECT in batch over the same stored streams (rows
//! streamed and dropped), and the table shows the ratio of kappa's throughput to it. With
//! `--rebuild`, each materialized view is then rebuilt (`ALTER MATERIALIZED VIEW ...
//! REBUILD`) and timed until its new version serves (its rows checked against the first).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kappa::datafusion::arrow::array::{Array, AsArray};
use kappa::datafusion::arrow::datatypes::{Int64Type, UInt64Type};
use kappa::nexmark::{Generator, Kind, NexmarkConfig};
use kappa::sql::Statement;
use kappa::{Engine, NexmarkStreams, Output};

pub const USAGE: &str = "\
kappa bench nexmark: run the Nexmark queries over generated events and time them

Usage: kappa bench nexmark [OPTIONS]

Options:
      --queries q0,q1,...  the queries to run [default: every qN.sql of the queries directory]
      --events N           events to generate, of all kinds [default: 1000000]
      --rate R             events per second of event time [default: 10000]
      --baseline           also run each SELECT in batch on DataFusion, and print the ratio
      --rebuild            also rebuild each materialized view (ALTER MATERIALIZED VIEW
                           REBUILD: a new version from the retained input) and time it until
                           the new version serves
      --queries-dir DIR    where the query files are [default: queries/nexmark]
      --checkpoint-interval D
                           the jobs' checkpoint interval ('1s', '100ms', 'off')
                           [default: the engine's, 1s]
  -d, --data-dir DIR       keep the generated streams in DIR (reused when they have the same
                           size) [default: a temporary directory, removed at the end]
  -h, --help               print this help
";

#[derive(Debug, PartialEq)]
struct Options {
    queries: Option<Vec<String>>,
    events: u64,
    rate: u64,
    baseline: bool,
    rebuild: bool,
    queries_dir: PathBuf,
    data_dir: Option<PathBuf>,
    checkpoint_interval: Option<String>,
}

/// Parse the arguments after `bench`. `Ok(None)`: help was asked for.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        queries: None,
        events: 1_000_000,
        rate: 10_000,
        baseline: false,
        rebuild: false,
        queries_dir: PathBuf::from("queries/nexmark"),
        data_dir: None,
        checkpoint_interval: None,
    };
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("nexmark") => {}
        Some("-h" | "--help") | None => return Ok(None),
        Some(other) => return Err(format!("unknown benchmark '{other}' (there is: nexmark)")),
    }
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| {
            inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{name} needs {what}"))
        };
        let number = |v: String| {
            v.replace('_', "").parse::<u64>().map_err(|_| format!("{name}: '{v}' is not a number"))
        };
        match name {
            "--queries" => {
                let list = value("a list of queries")?;
                o.queries = Some(list.split(',').map(|q| q.trim().to_string()).collect());
            }
            "--events" => o.events = number(value("a number")?)?,
            "--rate" => o.rate = number(value("a number")?)?,
            "--baseline" => o.baseline = true,
            "--rebuild" => o.rebuild = true,
            "--queries-dir" => o.queries_dir = PathBuf::from(value("a directory")?),
            "-d" | "--data-dir" => o.data_dir = Some(PathBuf::from(value("a directory")?)),
            "--checkpoint-interval" => o.checkpoint_interval = Some(value("a duration")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other} (see kappa bench --help)")),
        }
    }
    if o.events == 0 || o.rate == 0 {
        return Err("--events and --rate must be at least 1".into());
    }
    Ok(Some(o))
}

/// `kappa bench ...`: returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let options = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(m) => {
            eprintln!("kappa bench: {m}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kappa bench: cannot start the runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(run(&options)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kappa bench: {e:#}");
            1
        }
    }
}

/// One query's measurements.
struct Measured {
    seconds: f64,
    rows: u64,
    peak_mib: Option<u64>,
}

/// A query file: its sink and the SELECT that feeds it, and its statements.
struct QueryFile {
    name: String,
    statements: Vec<String>,
    sink: String,
    select: String,
    /// The job is a materialized view's (`sink` is the view): its rows are the view's.
    view: bool,
}

fn query_files(o: &Options) -> Result<Vec<QueryFile>> {
    let mut names: Vec<String> = match &o.queries {
        Some(q) => q.clone(),
        None => std::fs::read_dir(&o.queries_dir)
            .with_context(|| format!("the queries directory {}", o.queries_dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with('q') && n.ends_with(".sql"))
            .map(|n| n.trim_end_matches(".sql").to_string())
            .collect(),
    };
    if o.queries.is_none() {
        // q0, q1, q2, ..., q10: by number.
        names.sort_by_key(|n| (n[1..].parse::<u32>().unwrap_or(u32::MAX), n.clone()));
    }
    names
        .into_iter()
        .map(|name| {
            let path = o.queries_dir.join(format!("{name}.sql"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("query {name}: {}", path.display()))?;
            let parsed =
                kappa::sql::parse(&text).with_context(|| format!("in {}", path.display()))?;
            let mut sink_select = None;
            for s in &parsed {
                match &s.statement {
                    Statement::Insert { stream, source, .. } => {
                        sink_select = Some((stream.clone(), source.to_string(), false));
                    }
                    Statement::CreateMaterializedView { name, query, .. } => {
                        sink_select = Some((name.clone(), query.to_string(), true));
                    }
                    _ => {}
                }
            }
            let Some((sink, select, view)) = sink_select else {
                bail!(
                    "{}: no INSERT INTO a sink or CREATE MATERIALIZED VIEW to measure",
                    path.display()
                );
            };
            let statements = parsed.into_iter().map(|s| s.text).collect();
            Ok(QueryFile { name, statements, sink, select, view })
        })
        .collect()
}

/// The process's anonymous resident memory now, in KiB (Linux).
fn anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the anonymous resident memory every 2 ms until stopped; the peak in MiB.
struct PeakMemory {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl PeakMemory {
    fn start() -> PeakMemory {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kappa-bench-memory".into())
            .spawn(move || {
                let mut peak = anon_kib()?;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(anon_kib()?);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Some(peak.max(anon_kib()?))
            })
            .ok();
        PeakMemory { stop, thread }
    }

    fn finish(mut self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take()?.join().ok()?.map(|kib| kib / 1024)
    }
}

/// Whether the data directory holds the three streams, complete, for `events` events at
/// `rate` (an error if it holds other ones).
async fn has_streams(engine: &Engine, events: u64, rate: u64) -> Result<bool> {
    if Kind::ALL.iter().all(|k| engine.stream_rows(k.name()).is_none()) {
        return Ok(false);
    }
    // Sources cut short by an earlier run resume on open: let them finish.
    engine.wait_for_jobs().await?;
    let counts = Kind::ALL.iter().all(|k| engine.stream_rows(k.name()) == Some(k.rows_in(events)));
    let generator = Generator::new(NexmarkConfig { events, rate })?;
    let last_bid = generator.time_ms(Kind::Bid.event_of(Kind::Bid.rows_in(events) - 1));
    let latest = engine.query("SELECT CAST(max(datetime) AS BIGINT) FROM bid").await?;
    let stored = latest
        .first()
        .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().filter(|a| !a.is_empty()))
        .map(|a| a.value(0));
    if !counts || stored != Some(last_bid) {
        bail!(
            "the data directory holds nexmark streams of another size or rate: use an empty directory, or the same --events and --rate"
        );
    }
    Ok(true)
}

/// Drop the jobs that write `sink`, and `sink`, if they exist (left by an interrupted run).
async fn clean_up(engine: &Engine, sink: &str, view: bool) -> Result<()> {
    if view {
        engine.execute(&format!("DROP MATERIALIZED VIEW IF EXISTS {sink}")).await?;
        return Ok(());
    }
    for out in engine.execute("SHOW JOBS").await? {
        let Output::Rows { schema, batches } = out else { continue };
        let (names, outputs) = (schema.index_of("name")?, schema.index_of("output")?);
        for b in &batches {
            let (n, o) = (b.column(names).as_string::<i32>(), b.column(outputs).as_string::<i32>());
            for i in 0..b.num_rows() {
                if o.value(i) == sink {
                    engine.execute(&format!("DROP JOB {}", n.value(i))).await?;
                }
            }
        }
    }
    engine.execute(&format!("DROP TABLE IF EXISTS {sink}")).await?;
    Ok(())
}

async fn run(o: &Options) -> Result<()> {
    let files = query_files(o)?;
    let temp;
    let dir: &Path = match &o.data_dir {
        Some(d) => d,
        None => {
            temp = TempDir::new()?;
            &temp.0
        }
    };
    let engine = Engine::open(dir).await.with_context(|| format!("opening {}", dir.display()))?;
    if let Some(every) = &o.checkpoint_interval {
        engine.execute(&format!("SET checkpoint_interval = '{}'", every.replace('\'', ""))).await?;
    }
    let result = measure_all(&engine, o, &files).await;
    engine.close().await?;
    result
}

async fn measure_all(engine: &Engine, o: &Options, files: &[QueryFile]) -> Result<()> {
    if has_streams(engine, o.events, o.rate).await? {
        eprintln!("reusing the {} events in the data directory", o.events);
    } else {
        let started = Instant::now();
        engine
            .create_nexmark(NexmarkStreams {
                events: Some(o.events),
                rate: o.rate,
                realtime: false,
            })
            .await
            .context("generating the streams (use an empty data directory)")?;
        engine.wait_for_jobs().await?;
        let s = started.elapsed().as_secs_f64();
        eprintln!(
            "generated {} events in {s:.2} s ({}/s), stored durably",
            o.events,
            si(o.events as f64 / s)
        );
    }
    let mut header = format!(
        "{:<6} {:>11} {:>8} {:>10} {:>12} {:>9}",
        "query", "events", "seconds", "events/s", "output rows", "peak MiB"
    );
    if o.rebuild {
        header.push_str(&format!(" {:>10}", "rebuild s"));
    }
    if o.baseline {
        header.push_str(&format!(
            " {:>10} {:>10} {:>9} {:>6}",
            "batch s", "batch ev/s", "batch MiB", "ratio"
        ));
    }
    println!("{header}");
    for f in files {
        clean_up(engine, &f.sink, f.view).await?;
        let mut job = measure_job(engine, f).await;
        let mut rebuilt = None;
        if let Ok(done) = &job
            && o.rebuild
            && f.view
        {
            match measure_rebuild(engine, f).await {
                Ok(r) if r.rows != done.rows => {
                    eprintln!(
                        "warning: {}: the view had {} rows, its rebuilt version {}",
                        f.name, done.rows, r.rows
                    );
                    rebuilt = Some(r.seconds);
                }
                Ok(r) => rebuilt = Some(r.seconds),
                Err(e) => job = Err(e.context("rebuilding the view")),
            }
        }
        clean_up(engine, &f.sink, f.view).await?;
        let job = job.with_context(|| format!("query {}", f.name))?;
        let rate = o.events as f64 / job.seconds;
        let mut line = format!(
            "{:<6} {:>11} {:>8.3} {:>10} {:>12} {:>9}",
            f.name,
            o.events,
            job.seconds,
            si(rate),
            job.rows,
            mib(job.peak_mib)
        );
        if o.rebuild {
            // (An INSERT INTO a sink is not rebuilt: its rows would be written twice.)
            line.push_str(&rebuilt.map_or(format!(" {:>10}", "-"), |s| format!(" {s:>10.3}")));
        }
        if o.baseline {
            let batch = measure_batch(engine, f)
                .await
                .with_context(|| format!("query {} in batch", f.name))?;
            let batch_rate = o.events as f64 / batch.seconds;
            line.push_str(&format!(
                " {:>10.3} {:>10} {:>9} {:>5.0}%",
                batch.seconds,
                si(batch_rate),
                mib(batch.peak_mib),
                100.0 * rate / batch_rate
            ));
            if batch.rows != job.rows {
                eprintln!(
                    "warning: {}: the job produced {} rows, the batch plan {}",
                    f.name, job.rows, batch.rows
                );
            }
        }
        println!("{line}");
    }
    Ok(())
}

/// Run the query's statements (its sink and its job) and wait for the job to finish.
async fn measure_job(engine: &Engine, f: &QueryFile) -> Result<Measured> {
    let (mut started, mut memory) = (Instant::now(), None);
    let mut job = None;
    for s in &f.statements {
        let head = s.trim_start().to_ascii_uppercase();
        if head.starts_with("INSERT") || head.starts_with("CREATE MATERIALIZED VIEW") {
            started = Instant::now();
            memory = Some(PeakMemory::start());
        }
        for out in engine.execute(s).await? {
            if let Output::Done { tag, .. } = out
                && let Some(name) = tag.strip_prefix("INSERT JOB ")
            {
                job = Some(name.to_string());
            }
        }
    }
    if f.view {
        job = Some(f.sink.clone());
    }
    let Some(job) = job else { bail!("the INSERT did not start a job") };
    engine.wait_for_jobs().await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = memory.and_then(PeakMemory::finish);
    let rows = if f.view {
        // The view's rows (its changelog is longer), to compare with the batch answer.
        view_rows(engine, &f.sink).await?
    } else {
        rows_out(engine, &job).await?
    };
    Ok(Measured { seconds, rows, peak_mib })
}

/// Rebuild the query's view and wait until its new version serves; its rows then.
async fn measure_rebuild(engine: &Engine, f: &QueryFile) -> Result<Measured> {
    let started = Instant::now();
    engine.execute(&format!("ALTER MATERIALIZED VIEW {} REBUILD", f.sink)).await?;
    engine.wait_for_jobs().await?;
    let seconds = started.elapsed().as_secs_f64();
    let rows = view_rows(engine, &f.sink).await?;
    Ok(Measured { seconds, rows, peak_mib: None })
}

/// The rows of view `name`.
async fn view_rows(engine: &Engine, name: &str) -> Result<u64> {
    let counted = engine.query(&format!("SELECT count(*) FROM {name}")).await?;
    Ok(counted
        .first()
        .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().filter(|a| !a.is_empty()))
        .map_or(0, |a| a.value(0) as u64))
}

/// The rows job `name` produced (`SHOW JOBS`).
async fn rows_out(engine: &Engine, name: &str) -> Result<u64> {
    for out in engine.execute("SHOW JOBS").await? {
        let Output::Rows { schema, batches } = out else { continue };
        let names = schema.index_of("name")?;
        let rows = schema.index_of("rows_out")?;
        for b in &batches {
            let n = b.column(names).as_string::<i32>();
            let r = b.column(rows).as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                if n.value(i) == name && !r.is_null(i) {
                    return Ok(r.value(i));
                }
            }
        }
    }
    bail!("job {name} is not in SHOW JOBS")
}

/// Run the query's SELECT in batch, streaming and dropping the rows.
async fn measure_batch(engine: &Engine, f: &QueryFile) -> Result<Measured> {
    let memory = PeakMemory::start();
    let started = Instant::now();
    let mut stream = engine.query_stream(&f.select).await?;
    let mut rows = 0u64;
    while let Some(b) = stream.next().await {
        rows += b?.num_rows() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured { seconds, rows, peak_mib: memory.finish() })
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |m| m.to_string())
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        for i in 0..1000u32 {
            let p = base.join(format!("kappa-bench-{}-{i}", std::process::id()));
            if std::fs::create_dir(&p).is_ok() {
                return Ok(TempDir(p));
            }
        }
        bail!("cannot create a temporary directory in {}", base.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&args(&["nexmark", "--queries", "q0,q2", "--events=2_000", "--baseline"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.queries, Some(vec!["q0".to_string(), "q2".to_string()]));
        assert_eq!((o.events, o.rate, o.baseline, o.rebuild), (2000, 10_000, true, false));
        assert!(parse(&args(&["nexmark", "--rebuild"])).unwrap().unwrap().rebuild);
        assert_eq!(parse(&args(&["nexmark", "-h"])).unwrap(), None);
        assert!(parse(&args(&["tpch"])).unwrap_err().contains("unknown benchmark 'tpch'"));
        assert!(parse(&args(&["nexmark", "--events"])).unwrap_err().contains("needs a number"));
        assert!(parse(&args(&["nexmark", "--rate", "0"])).unwrap_err().contains("at least 1"));
        assert!(
            parse(&args(&["nexmark", "--fast"])).unwrap_err().contains("unknown option --fast")
        );
    }
}
