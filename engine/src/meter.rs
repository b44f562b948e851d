//! Rates for `SHOW DATAFLOW`: every second the background task samples how many rows each
//! stream holds and each job has read; a rate is the change over the last ten seconds.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the background task samples.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Sample every stream's rows and every job's rows read.
pub(crate) fn sample(inner: &crate::engine::Inner) {
    let now = Instant::now();
    let names: Vec<String> = inner.catalog().streams.keys().cloned().collect();
    for name in names {
        if let Ok(s) = inner.log(&name) {
            // (By log: a rebuilt stream's new log starts its own series.)
            inner.meter.sample(&format!("stream {}", s.name()), s.readable_end(), now);
        }
    }
    let jobs: Vec<(String, u64)> =
        inner.jobs().iter().map(|(n, h)| (n.clone(), h.progress.borrow().rows_in)).collect();
    for (name, rows) in jobs {
        inner.meter.sample(&format!("job {name}"), rows, now);
    }
    inner.meter.retain(now);
}

/// How far back a rate looks.
const WINDOW: Duration = Duration::from_secs(10);
/// Most series kept (streams and jobs; a store holds at most 10,000 streams).
const MAX_SERIES: usize = 40_000;

/// Samples of counters, by name.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    series: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

impl Meter {
    /// Record counter `name` at `value` now.
    pub fn sample(&self, name: &str, value: u64, now: Instant) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(name) && all.len() >= MAX_SERIES {
            return;
        }
        let s = all.entry(name.to_string()).or_default();
        s.push_back((now, value));
        while s.len() > 2 && s.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
            s.pop_front();
        }
    }

    /// Forget the series not sampled in this pass (dropped streams and jobs).
    pub fn retain(&self, since: Instant) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, s| s.back().is_some_and(|(t, _)| *t >= since));
    }

    /// Counter `name`'s change per second over the last ten seconds (`None` until two samples
    /// half a second apart).
    pub fn rate(&self, name: &str) -> Option<f64> {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.get(name)?;
        let (t0, v0) = *s.front()?;
        let (t1, v1) = *s.back()?;
        let span = t1.duration_since(t0).as_secs_f64();
        (span >= 0.5).then(|| v1.saturating_sub(v0) as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_the_window() {
        let m = Meter::default();
        let t = Instant::now();
        m.sample("s", 0, t);
        assert_eq!(m.rate("s"), None);
        m.sample("s", 100, t + Duration::from_secs(1));
        m.sample("s", 300, t + Duration::from_secs(2));
        assert_eq!(m.rate("s"), Some(150.0));
        // Samples older than the window go.
        m.sample("s", 300, t + Duration::from_secs(13));
        assert_eq!(m.rate("s"), Some(0.0));
        m.retain(t + Duration::from_secs(14));
        assert_eq!(m.rate("s"), None);
    }
}
