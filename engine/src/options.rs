//! The `WITH (...)` options of `CREATE STREAM`, and the duration and size values they take.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_storage::{Durability, Retention, StreamOptions};

use crate::error::{Error, Location, Result};

/// Options a stream accepts.
pub(crate) const KNOWN: &[&str] = &["retention", "durability", "idle_timeout", "segment_size"];

/// Storage options from declared `WITH` options (keys lower-cased).
pub(crate) fn stream_options(
    declared: &BTreeMap<String, String>,
    at: Option<Location>,
) -> Result<StreamOptions> {
    let mut o = StreamOptions::default();
    for (k, v) in declared {
        match k.as_str() {
            "retention" => o.retention = retention(v, at)?,
            "durability" => {
                o.durability = match v.to_ascii_lowercase().as_str() {
                    "durable" => Durability::Durable,
                    "relaxed" => Durability::Relaxed,
                    _ => {
                        return Err(Error::plan(
                            format!("durability = '{v}': expected 'durable' or 'relaxed'"),
                            at,
                        ));
                    }
                }
            }
            "segment_size" => {
                // The unit of retention: whole segments go.
                o.segment_bytes = size(v)
                    .filter(|b| {
                        (kappa_storage::MIN_SEGMENT_BYTES..=kappa_storage::MAX_SEGMENT_BYTES)
                            .contains(b)
                    })
                    .ok_or_else(|| {
                        Error::plan(
                            format!(
                                "segment_size = '{v}': expected a size from 4 KiB to 4 GiB, like '64 MiB'"
                            ),
                            at,
                        )
                    })?;
            }
            "idle_timeout" => {
                // Read by windowed jobs and push queries (the catalog keeps it).
                duration(v).ok_or_else(|| {
                    Error::plan(format!("idle_timeout = '{v}' is not a duration like '5 s'"), at)
                })?;
            }
            "connector" => {
                return Err(Error::not_supported(format!("the connector '{v}'"), at));
            }
            other => {
                return Err(Error::plan(
                    format!("unknown stream option '{other}' (known: {})", KNOWN.join(", ")),
                    at,
                ));
            }
        }
    }
    Ok(o)
}

/// `'30 days'` (an age) or `'10 GB'` (a size), or both separated by a comma.
fn retention(v: &str, at: Option<Location>) -> Result<Retention> {
    let mut r = Retention::default();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(bytes) = size(part) {
            r.max_bytes = Some(bytes.max(1));
        } else if let Some(d) = duration(part) {
            r.max_age = Some(d);
        } else {
            return Err(Error::plan(
                format!(
                    "retention = '{v}': '{part}' is neither a duration ('30 days') nor a size ('10 GB')"
                ),
                at,
            ));
        }
    }
    Ok(r)
}

fn split_number(s: &str) -> Option<(f64, String)> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    (n >= 0.0).then(|| (n, s[end..].trim().to_ascii_lowercase()))
}

/// A duration: a number and a unit (`ms`, `s`, `min`, `h`, `d`, `w`, and their long forms).
pub(crate) fn duration(s: &str) -> Option<Duration> {
    let (n, unit) = split_number(s)?;
    let secs = match unit.as_str() {
        "ms" | "millisecond" | "milliseconds" => n / 1000.0,
        "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        "w" | "week" | "weeks" => n * 7.0 * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// A size: a number and a unit (`B`, `KB`, `MB`, `GB`, `TB`, decimal; `KiB`, ... binary).
pub(crate) fn size(s: &str) -> Option<u64> {
    let (n, unit) = split_number(s)?;
    let mult: f64 = match unit.as_str() {
        "b" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_options() {
        assert_eq!(duration("30 days"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(duration("1.5 min"), Some(Duration::from_secs(90)));
        assert_eq!(duration("soon"), None);
        assert_eq!(size("10 GB"), Some(10_000_000_000));
        assert_eq!(size("1 MiB"), Some(1 << 20));
        let mut d = BTreeMap::new();
        d.insert("retention".to_string(), "7 days, 1 GiB".to_string());
        d.insert("durability".to_string(), "relaxed".to_string());
        let o = stream_options(&d, None).unwrap();
        assert_eq!(o.retention.max_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(o.retention.max_bytes, Some(1 << 30));
        assert_eq!(o.durability, Durability::Relaxed);
        d.insert("colour".to_string(), "blue".to_string());
        let e = stream_options(&d, None).unwrap_err();
        assert!(e.to_string().contains("unknown stream option 'colour'"), "{e}");
        let mut c = BTreeMap::new();
        c.insert("connector".to_string(), "kafka".to_string());
        assert_eq!(
            stream_options(&c, None).unwrap_err().to_string(),
            "the connector 'kafka' is not supported yet"
        );
    }
}
