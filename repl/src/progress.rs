//! Progress on stderr (a terminal only) for a statement that runs for more than a second:
//! the time so far, and for `COPY ... FROM` the rows in the target stream.

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
