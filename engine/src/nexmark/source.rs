//! The `nexmark` connector: a source that fills one stream (`person`, `auction` or `bid`) from
//! the [`Generator`].
//!
//! Declared as a stream option (`CREATE STREAM bid WITH ('connector' = 'nexmark', 'events' =
//! '1000000')`, or Flink's `CREATE TABLE ... WITH (...)`), it runs on a thread of its own:
//! it generates the stream's rows in chunks of events, appends each chunk (several appends in
//! flight, so generation overlaps the syncs), and seals the stream after the last event.
//!
//! It keeps no state of its own: the stream's row count says where it is. The `k`-th row of a
//! kind comes from a known event ([`Kind::event_of`]) and each append is whole or absent
//! after a crash, so a restart resumes at the event after the last row stored, with no gap and
//! no duplicate. The rows depend only on the event count and rate (never on the chunking or
//! the clock); the real-time mode only paces the appends by the wall clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use kappa_storage::{PendingAppend, Stream};
use tokio::sync::watch;

use super::generator::{Generator, Kind, NexmarkConfig};
use crate::error::{Error, Location, Result};

/// Events generated per append when not paced (about 15,000 bids, 4 MB).
const CHUNK_EVENTS: u64 = 16 * 1024;
/// Appends in flight (written, not yet durable).
const IN_FLIGHT: usize = 4;
/// Appends per second in real-time mode.
const PACED_APPENDS_PER_SECOND: u64 = 20;

/// The options a nexmark stream takes, besides the stream's own.
pub(crate) const OPTIONS: &[&str] = &["table", "events", "rate", "realtime"];

/// How a nexmark stream is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkSource {
    /// Which of the three streams (option `table`; by default the stream's name).
    pub kind: Kind,
    /// Events in all, of every kind (option `events`); the stream is sealed after the last.
    /// `None`: no end, which only the real-time mode allows.
    pub events: Option<u64>,
    /// Events per second of event time (option `rate`, default 10,000).
    pub rate: u64,
    /// Append at `rate` events per wall-clock second rather than as fast as possible (option
    /// `realtime`, default false). The rows are the same either way.
    pub realtime: bool,
}

impl NexmarkSource {
    /// The settings declared in `options` (keys lower case) for stream `name`.
    ///
    /// # Errors
    /// A plan error naming the option that is unknown, missing or malformed.
    pub(crate) fn from_options(
        name: &str,
        options: &BTreeMap<String, String>,
        at: Option<Location>,
    ) -> Result<NexmarkSource> {
        let number = |key: &str, v: &str| -> Result<u64> {
            let digits: String = v.chars().filter(|c| *c != '_' && *c != ',').collect();
            digits.trim().parse::<u64>().map_err(|_| {
                Error::plan(format!("nexmark option {key} = '{v}': expected a whole number"), at)
            })
        };
        let kind = match options.get("table") {
            Some(t) => Kind::from_name(t).ok_or_else(|| {
                Error::plan(
                    format!("nexmark option table = '{t}': expected 'person', 'auction' or 'bid'"),
                    at,
                )
            })?,
            None => Kind::from_name(name).ok_or_else(|| {
                Error::plan(
                    format!(
                        "nexmark stream '{name}': say which events it holds with 'table' = 'person', 'auction' or 'bid'"
                    ),
                    at,
                )
            })?,
        };
        let events = options.get("events").map(|v| number("events", v)).transpose()?;
        let rate = match options.get("rate") {
            Some(v) => number("rate", v)?,
            None => 10_000,
        };
        if rate == 0 {
            return Err(Error::plan(
                "nexmark option rate must be at least 1 (events per second)",
                at,
            ));
        }
        let realtime = match options.get("realtime").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                return Err(Error::plan(
                    format!("nexmark option realtime = '{v}': expected 'true' or 'false'"),
                    at,
                ));
            }
        };
        if events.is_none() && !realtime {
            return Err(Error::plan(
                "a nexmark stream needs 'events' (how many, then it is sealed), or 'realtime' = 'true' to run without end at its rate",
                at,
            ));
        }
        Ok(NexmarkSource { kind, events, rate, realtime })
    }

    fn generator(&self) -> Result<Generator> {
        Generator::new(NexmarkConfig { events: self.events.unwrap_or(u64::MAX), rate: self.rate })
    }
}

/// What a source publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceState {
    Running,
    /// Every event generated, the stream sealed.
    Finished,
    Failed(String),
    /// Stopped by the engine (close, drop).
    Stopped,
}

/// A running source, as the engine holds it.
#[derive(Debug)]
pub(crate) struct SourceHandle {
    /// Dropping it stops the source.
    stop: Option<SyncSender<()>>,
    pub state: watch::Receiver<SourceState>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// It ends by itself (a number of events was given).
    pub bounded: bool,
}

impl SourceHandle {
    /// Stop the source and wait for its thread (it finishes the appends in flight). Blocks.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start filling `stream` as `settings` say, from where its rows end.
///
/// # Errors
/// When the thread cannot be started.
pub(crate) fn start(stream: Arc<Stream>, settings: NexmarkSource) -> Result<SourceHandle> {
    let generator = settings.generator()?;
    let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel(1);
    let (state_tx, state_rx) = watch::channel(SourceState::Running);
    let name = format!("kappa-nexmark-{}", stream.name());
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(&stream, settings, generator, &stop_rx)
            }));
            let state = match outcome {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => SourceState::Failed(e.to_string()),
                Err(p) => SourceState::Failed(format!(
                    "the source panicked: {}",
                    crate::compute::panic_text(p.as_ref())
                )),
            };
            let _ = state_tx.send(state);
        })
        .map_err(|e| Error::Job(format!("cannot start the nexmark source's thread: {e}")))?;
    Ok(SourceHandle {
        stop: Some(stop_tx),
        state: state_rx,
        thread: Some(thread),
        bounded: settings.events.is_some(),
    })
}

/// Whether the source was told to stop (its handle dropped), waiting at most `timeout`.
fn stopped(stop: &Receiver<()>, timeout: Duration) -> bool {
    if timeout.is_zero() {
        return !matches!(stop.try_recv(), Err(TryRecvError::Empty));
    }
    !matches!(stop.recv_timeout(timeout), Err(RecvTimeoutError::Timeout))
}

fn run(
    stream: &Stream,
    settings: NexmarkSource,
    generator: Generator,
    stop: &Receiver<()>,
) -> Result<SourceState> {
    if stream.info().sealed.is_some() {
        return Ok(SourceState::Finished);
    }
    let kind = settings.kind;
    let end = settings.events.unwrap_or(u64::MAX);
    let mut n = kind.event_of(stream.end_offset()).min(end);
    let (start_n, started) = (n, Instant::now());
    let chunk = if settings.realtime {
        (settings.rate / PACED_APPENDS_PER_SECOND).clamp(1, CHUNK_EVENTS)
    } else {
        CHUNK_EVENTS
    };
    let mut in_flight: VecDeque<PendingAppend> = VecDeque::new();
    let outcome = loop {
        if n >= end {
            break Ok(SourceState::Finished);
        }
        let to = n.saturating_add(chunk).min(end);
        let wait = if settings.realtime {
            // Event `to` is due `(to - start) / rate` seconds after the start.
            let due = Duration::from_secs_f64((to - start_n) as f64 / settings.rate as f64);
            due.saturating_sub(started.elapsed())
        } else {
            Duration::ZERO
        };
        if stopped(stop, wait) {
            break Ok(SourceState::Stopped);
        }
        let batch = generator.rows(kind, n, to)?;
        if batch.num_rows() > 0 {
            match stream.submit(&batch) {
                Ok(p) => in_flight.push_back(p),
                Err(e) => break Err(e),
            }
            if in_flight.len() >= IN_FLIGHT
                && let Some(p) = in_flight.pop_front()
                && let Err(e) = p.wait()
            {
                break Err(e);
            }
        }
        n = to;
    };
    let mut outcome = outcome.map_err(Error::from);
    for p in in_flight {
        if let Err(e) = p.wait()
            && outcome.is_ok()
        {
            outcome = Err(e.into());
        }
    }
    match outcome {
        Ok(SourceState::Finished) => {
            stream.seal()?;
            Ok(SourceState::Finished)
        }
        // Sealed by the user (SEAL STREAM ends a source without end): done.
        Err(Error::Storage(kappa_storage::Error::Sealed { .. })) => Ok(SourceState::Finished),
        // Dropped or closed meanwhile.
        Err(Error::Storage(kappa_storage::Error::Closed { .. })) => Ok(SourceState::Stopped),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_and_their_errors() {
        let s = NexmarkSource::from_options("bid", &opts(&[("events", "1_000")]), None).unwrap();
        assert_eq!(
            s,
            NexmarkSource { kind: Kind::Bid, events: Some(1000), rate: 10_000, realtime: false }
        );
        let s = NexmarkSource::from_options(
            "b",
            &opts(&[("table", "Auction"), ("rate", "500"), ("realtime", "TRUE")]),
            None,
        )
        .unwrap();
        assert_eq!((s.kind, s.events, s.rate, s.realtime), (Kind::Auction, None, 500, true));
        let err = |pairs: &[(&str, &str)]| {
            NexmarkSource::from_options("x", &opts(pairs), None).unwrap_err().to_string()
        };
        assert!(err(&[("events", "5")]).contains("'table' = 'person'"));
        assert!(err(&[("table", "bids")]).contains("needs 'events'"));
        assert!(err(&[("table", "bid"), ("events", "many")]).contains("expected a whole number"));
        assert!(err(&[("table", "bid"), ("events", "1"), ("rate", "0")]).contains("at least 1"));
        assert!(err(&[("table", "cars"), ("events", "1")]).contains("table = 'cars'"));
        assert!(err(&[("table", "bid"), ("realtime", "yes")]).contains("realtime = 'yes'"));
    }
}
