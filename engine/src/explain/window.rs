//! `EXPLAIN WINDOW x`: why job `x`'s windows have (not) closed. It reports the job's
//! watermark, each input's (its stream's watermark as read, whether it is idle or sealed, how
//! far behind the stream's end it reads), which inputs hold the watermark back, the next window
//! to close and how much event time is left before it does, and the late rows.

use kappa_sql::Location;

use crate::dataflow::time;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Output;

impl Engine {
    /// `EXPLAIN WINDOW job`.
    ///
    /// # Errors
    /// When there is no such job, or it does not run, or it has no watermark (no windows, no
    /// bounded join).
    pub(crate) fn explain_window(&self, name: &str, at: Option<Location>) -> Result<Output> {
        let inner = &self.inner;
        let Some(entry) = inner.catalog().jobs.get(name).cloned() else {
            return Err(Error::plan(
                format!("there is no job '{name}' (SHOW JOBS lists them)"),
                at,
            ));
        };
        let live = inner.jobs().get(name).map(|h| h.progress.borrow().clone());
        let finished = matches!(entry.state, crate::catalog::JobState::Finished)
            || live.as_ref().is_some_and(|p| matches!(p.status, crate::job::Status::Finished));
        if finished {
            return crate::dataflow::lines(
                "window",
                vec![format!("job {name} finished: every input ended, so every window closed")],
            );
        }
        let Some(p) = live else {
            return Err(Error::plan(
                format!("job '{name}' is not running (SHOW JOBS says why)"),
                at,
            ));
        };
        if p.inputs.is_empty() {
            return Err(Error::plan(
                format!(
                    "job '{name}' has no watermark to explain: it has no windows or joins bounded by event time"
                ),
                at,
            ));
        }
        let mut lines = Vec::new();
        let wm = p.watermark.filter(|w| *w != i64::MIN);
        lines.push(match wm {
            Some(i64::MAX) => format!("job {name}: every input ended: every window has closed"),
            Some(w) => format!("job {name}: watermark {}", time(w)),
            None => format!("job {name}: no watermark yet (no input has given a row with a time)"),
        });
        lines.push(
            "the watermark is the lowest of the inputs that are neither idle nor sealed".into(),
        );
        let live: Vec<i64> =
            p.inputs.iter().filter(|i| !i.idle && !i.ended).map(|i| i.watermark).collect();
        let lowest = live.iter().copied().min();
        for (i, (stream, s)) in entry.inputs.iter().zip(&p.inputs).enumerate() {
            let lag = match (inner.log(stream), p.positions.get(i)) {
                (Ok(st), Some(pos)) => st.readable_end().saturating_sub(*pos),
                _ => 0,
            };
            let idle = self.idle_timeout(stream).ok().flatten();
            let own = if s.watermark == i64::MIN {
                "no watermark yet".to_string()
            } else if s.watermark == i64::MAX {
                "+inf".to_string()
            } else {
                time(s.watermark)
            };
            let state = if s.ended {
                "sealed and read: counts as +inf".to_string()
            } else if s.idle {
                "idle (no rows for its idle_timeout): left out until its next row".to_string()
            } else if live.len() == 1 || Some(s.watermark) == lowest {
                let why = if lag > 0 {
                    format!("it is {lag} rows behind the stream's end (slow)")
                } else {
                    match idle {
                        Some(t) => format!(
                            "it has read all its stream holds; after {} without rows it is idle",
                            super::ms(t.as_millis() as i64)
                        ),
                        None => "it has read all its stream holds and waits for newer rows (WITH (idle_timeout = '...') on the stream would stop waiting for it)".to_string(),
                    }
                };
                format!("holds the watermark back: {why}")
            } else if lag > 0 {
                format!("ahead; {lag} rows behind the stream's end")
            } else {
                "ahead".to_string()
            };
            lines.push(format!("  input {} ({stream}): watermark {own}; {state}", i + 1));
        }
        match p.windows {
            Some((Some(end), open)) => {
                let left = wm.filter(|w| *w != i64::MAX).map(|w| end - 1 - w);
                let when = match left {
                    Some(l) if l > 0 => format!(" ({} of event time to go)", super::ms(l)),
                    Some(_) => " (the job's watermark has passed it, but the operator keeping it reads an idle input, whose own watermark has not: its next row or SEAL STREAM closes it)".to_string(),
                    None => String::new(),
                };
                lines.push(format!(
                    "next window to close: the one ending {}, once the watermark reaches {}{when}; {open} open",
                    time(end),
                    time(end - 1)
                ));
            }
            Some((None, 0)) => lines.push("no window open".into()),
            Some((None, open)) => lines.push(format!(
                "{open} sessions open, each closing once the watermark passes its last row's time plus the gap"
            )),
            None => {}
        }
        let late: Vec<String> = (0..entry.inputs.len())
            .map(|i| crate::late::name_of(name, i))
            .filter(|n| inner.catalog().streams.contains_key(n))
            .collect();
        lines.push(match late.is_empty() {
            true => format!("late rows: {} (rows behind the watermark, left out)", p.late_rows),
            false => format!(
                "late rows: {} (rows behind the watermark, left out of their windows; kept in {})",
                p.late_rows,
                late.join(", ")
            ),
        });
        crate::dataflow::lines("window", lines)
    }
}
