//! Progress on stderr (a terminal only) for a statement that runs for more than a second:
//! the time so far, and for `COPY ... FROM` the rows in the target stream; after a rebuild
//! (`ALTER ... REBUILD`, `CREATE OR REPLACE`), a bar while the new version catches up, until
//! it takes over; after a statement that starts a job over a stream's history (a backfill), a
//! bar while the job reads it, if that takes more than a second.

use std::io::Write;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::session::Session;

/// A running progress line; dropping it clears the line.
pub struct Progress {
    /// Dropped to stop the thread at once (it waits on the other end).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The stream a `COPY s FROM` loads.
fn copy_target(text: &str) -> Option<String> {
    match kappa::sql::parse_one(text).ok()?.statement {
        kappa::sql::Statement::CopyFrom { stream, .. } => Some(stream),
        _ => None,
    }
}

impl Progress {
    /// Start showing progress of `text` after a second.
    pub fn start(session: &Session, text: &str) -> Progress {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let what: String = text.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        let target = copy_target(text);
        let engine = session.engine.clone();
        let thread = std::thread::Builder::new()
            .name("kappa-progress".into())
            .spawn(move || {
                let start = Instant::now();
                let before = target.as_deref().and_then(|t| engine.stream_rows(t)).unwrap_or(0);
                let mut shown = false;
                // Until the sender is dropped.
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_millis(100))
                {
                    let elapsed = start.elapsed();
                    if elapsed < Duration::from_secs(1) {
                        continue;
                    }
                    let rows = target
                        .as_deref()
                        .and_then(|t| engine.stream_rows(t))
                        .map(|n| match n.saturating_sub(before) {
                            0 => ", reading the file".to_string(),
                            n => format!(", {n} rows appended"),
                        })
                        .unwrap_or_default();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{what} ... {:.1} s{rows}", elapsed.as_secs_f64());
                    let _ = err.flush();
                    shown = true;
                }
                if shown {
                    let _ = write!(std::io::stderr(), "\r\x1b[2K");
                }
            })
            .ok();
        Progress { stop: Some(stop), thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The stream or view a rebuild's command tag names (`REBUILD STREAM x AS x__v2`).
pub fn rebuilt(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("REBUILD ")?;
    let rest = rest.strip_prefix("MATERIALIZED VIEW ").or_else(|| rest.strip_prefix("STREAM "))?;
    rest.split(" AS ").next().map(str::to_string)
}

/// The job a statement started that reads its inputs' history (a backfill): `CREATE STREAM x
/// AS ...` and `CREATE MATERIALIZED VIEW x` (named by the statement), `INSERT INTO ... SELECT`
/// (named by its tag, `INSERT JOB x`).
pub fn backfill(text: &str, tag: &str) -> Option<String> {
    if let Some(job) = tag.strip_prefix("INSERT JOB ") {
        return Some(job.to_string());
    }
    match (tag, kappa::sql::parse_one(text).ok()?.statement) {
        ("CREATE STREAM", kappa::sql::Statement::CreateStream(c)) if c.query.is_some() => {
            Some(c.name)
        }
        (
            "CREATE MATERIALIZED VIEW",
            kappa::sql::Statement::CreateMaterializedView { name, .. },
        ) => Some(name),
        _ => None,
    }
}

/// After a second, a bar while job `job` reads what its inputs hold, until it has (or it
/// fails, or Ctrl-C, which stops watching: the job goes on). Returns what to tell the user at
/// the end, if anything (nothing when it caught up within the second).
pub fn catch_up(session: &Session, job: &str) -> Option<String> {
    let engine = session.engine.clone();
    let stopped = format!("stopped watching: job {job} goes on (SHOW JOBS shows it)");
    watch(session, Duration::from_secs(1), stopped, |shown| {
        let Some(p) = engine.job_progress(job) else { return Step::End(None) };
        match p.state {
            "failed" => Step::End(Some(format!(
                "job {job} failed: {}",
                p.error.unwrap_or_else(|| "(no reason given)".into())
            ))),
            "running" if p.lag_rows > 0 => Step::Bar(
                p.percent,
                format!("{job} reading its input's history ({} rows to read)", p.lag_rows),
            ),
            _ => Step::End(shown.then(|| format!("{job} has read its input's history"))),
        }
    })
}

/// What a watched statement's job is at: still going (the bar's percent and text), or done
/// (what to tell the user, if anything).
enum Step {
    Bar(f64, String),
    End(Option<String>),
}

/// Poll `step` every 200 ms (it is told whether a bar was drawn yet), drawing its bar on
/// stderr once `after` has passed, until it ends or Ctrl-C (then `stopped` is the answer).
fn watch(
    session: &Session,
    after: Duration,
    stopped: String,
    mut step: impl FnMut(bool) -> Step,
) -> Option<String> {
    let (mut interrupts, _) = session.fresh_interrupts();
    session.runtime.block_on(async move {
        let start = Instant::now();
        let mut shown = false;
        let end = loop {
            match step(shown) {
                Step::End(end) => break end,
                Step::Bar(percent, what) if start.elapsed() >= after => {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{} {percent:>5.1}% {what}", bar(percent, 30));
                    let _ = err.flush();
                    shown = true;
                }
                Step::Bar(..) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = crate::session::pressed(&mut interrupts) => break Some(stopped),
            }
        };
        if shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
        end
    })
}

/// A bar of `width` characters, `percent` full.
pub fn bar(percent: f64, width: usize) -> String {
    let full = ((percent.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(full), ".".repeat(width - full))
}

/// Show the rebuild of `name` catching up, until it takes over, fails, or Ctrl-C (which stops
/// watching; the rebuild goes on). Returns what to tell the user at the end.
pub fn follow(session: &Session, name: &str) -> String {
    let engine = session.engine.clone();
    let stopped = format!("stopped watching: the rebuild of {name} goes on (SHOW JOBS shows it)");
    let end = watch(session, Duration::ZERO, stopped, |_| {
        let Some(p) = engine.rebuild_progress(name) else {
            return Step::End(Some(format!("{name} now serves its new version")));
        };
        if let Some(e) = p.failed {
            return Step::End(Some(format!(
                "the rebuild of {name} failed ({e}); the old version serves on (DROP JOB {} cleans up)",
                p.job
            )));
        }
        let what = match p.versions {
            0 | 1 => p.job.clone(),
            2 => format!("{} and 1 job reading it", p.job),
            n => format!("{} and {} jobs reading it", p.job, n - 1),
        };
        Step::Bar(p.percent, format!("{what} catching up ({} rows to read)", p.lag_rows))
    });
    end.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_tags_and_bars() {
        assert_eq!(rebuilt("REBUILD STREAM slow AS slow__v2").as_deref(), Some("slow"));
        assert_eq!(rebuilt("REBUILD MATERIALIZED VIEW v AS v__v3").as_deref(), Some("v"));
        assert_eq!(rebuilt("CREATE STREAM"), None);
        assert_eq!(bar(50.0, 10), "[#####.....]");
        assert_eq!(bar(0.0, 4), "[....]");
        assert_eq!(bar(120.0, 4), "[####]");
    }

    #[test]
    fn backfills_by_statement_and_tag() {
        let create = "CREATE STREAM d AS SELECT * FROM s";
        assert_eq!(backfill(create, "CREATE STREAM").as_deref(), Some("d"));
        assert_eq!(backfill("CREATE STREAM s (a INT)", "CREATE STREAM"), None);
        let view = "CREATE MATERIALIZED VIEW v AS SELECT k, count(*) FROM s GROUP BY k";
        assert_eq!(backfill(view, "CREATE MATERIALIZED VIEW").as_deref(), Some("v"));
        assert_eq!(backfill("INSERT INTO t SELECT * FROM s", "INSERT JOB j").as_deref(), Some("j"));
        assert_eq!(backfill("INSERT INTO t VALUES (1)", "INSERT 1"), None);
        assert_eq!(
            backfill("CREATE OR REPLACE STREAM d AS SELECT 1", "REBUILD STREAM d AS d__v2"),
            None
        );
    }
}
