//! Event-time windows: which windows a row belongs to.
//!
//! The window table functions (`TUMBLE`, `HOP`, `CUMULATE`, as Flink defines them) add three
//! columns to their input: `window_start`, `window_end` and `window_time` (the last instant of
//! the window, `window_end - 1 ms`), all `TIMESTAMP(3)`. A tumbling window holds each row once;
//! hopping and cumulating windows overlap, so a row appears once per window that holds it.
//! [`assign`] computes this for a batch; batch (snapshot) queries and continuous jobs use the
//! same function, so both give the same windows (a row with a NULL time gets NULL windows;
//! continuous aggregations count it as late).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, TimestampMillisecondArray, TimestampMillisecondBuilder,
    UInt32Builder,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;

use crate::error::{Error, Location, Result};

/// Most windows one row may belong to (HOP size / slide, CUMULATE max / step).
pub const MAX_WINDOWS_PER_ROW: i64 = 1000;

/// Times (ms) beyond this, either way (year 73 million), have no window: a row with one is
/// treated like a row without a time (its window arithmetic could overflow).
pub const MAX_TIME: i64 = 1 << 61;

/// A window kind with its sizes, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    /// `TUMBLE(t, ts, size [, offset])`: consecutive windows of `size`.
    Tumble {
        /// The window size.
        size: i64,
        /// Windows start at `offset + k * size`.
        offset: i64,
    },
    /// `HOP(t, ts, slide, size [, offset])`: windows of `size` starting every `slide`.
    Hop {
        /// Time between window starts.
        slide: i64,
        /// The window size (a multiple of `slide`).
        size: i64,
        /// Windows start at `offset + k * slide`.
        offset: i64,
    },
    /// `CUMULATE(t, ts, step, max_size [, offset])`: windows that start every `max_size` and
    /// grow by `step` until they are `max_size` long.
    Cumulate {
        /// The growth step.
        step: i64,
        /// The largest window (a multiple of `step`).
        max_size: i64,
        /// Windows start at `offset + k * max_size`.
        offset: i64,
    },
    /// `SESSION(t, ts, gap [, key, ...])`: per key, rows less than `gap` apart chain into
    /// one window ([`crate::session`]).
    Session {
        /// The gap that ends a session.
        gap: i64,
    },
}

/// The names of the window table functions.
pub const WINDOW_FUNCTIONS: &[&str] = &["tumble", "hop", "cumulate", "session"];

impl WindowSpec {
    /// The spec of window function `name` (`tumble`, `hop`, `cumulate`, `session`) from its
    /// interval arguments after the table and the time column (a session's keys apart).
    ///
    /// # Errors
    /// Wrong number of arguments, a size that is not a positive constant interval of days or
    /// less, a size that is not a multiple of the slide or step.
    pub fn from_args(name: &str, args: &[Expr]) -> Result<WindowSpec> {
        let usage = match name {
            "tumble" => "TUMBLE(table, time_column, size [, offset])",
            "hop" => "HOP(table, time_column, slide, size [, offset])",
            "cumulate" => "CUMULATE(table, time_column, step, max_size [, offset])",
            "session" => "SESSION(table, time_column, gap [, key, ...])",
            other => return Err(Error::plan(format!("{other} is not a window function"), None)),
        };
        let sizes = if matches!(name, "tumble" | "session") { 1 } else { 2 };
        let offsets = usize::from(name != "session");
        if args.len() < sizes || args.len() > sizes + offsets {
            return Err(Error::plan(format!("the window function is {usage}"), None));
        }
        let ms: Vec<i64> = args.iter().map(|a| interval_ms(a, usage)).collect::<Result<_>>()?;
        let offset = ms.get(sizes).copied().unwrap_or(0);
        for (i, v) in ms.iter().take(sizes).enumerate() {
            if *v <= 0 {
                return Err(Error::plan(
                    format!("{usage}: argument {} must be a positive interval", i + 3),
                    None,
                ));
            }
        }
        let multiple = |small: i64, large: i64, what: &str| -> Result<()> {
            if large % small != 0 || large / small > MAX_WINDOWS_PER_ROW {
                return Err(Error::plan(
                    format!(
                        "{usage}: the {what} must be a multiple of the {} at most {MAX_WINDOWS_PER_ROW} times it",
                        if name == "hop" { "slide" } else { "step" }
                    ),
                    None,
                ));
            }
            Ok(())
        };
        Ok(match name {
            "tumble" => WindowSpec::Tumble { size: ms[0], offset },
            "session" => WindowSpec::Session { gap: ms[0] },
            "hop" => {
                multiple(ms[0], ms[1], "size")?;
                WindowSpec::Hop { slide: ms[0], size: ms[1], offset }
            }
            _ => {
                multiple(ms[0], ms[1], "max_size")?;
                WindowSpec::Cumulate { step: ms[0], max_size: ms[1], offset }
            }
        })
    }

    /// The windows that hold time `t` (ms), as `(start, end)`, in order of start then end. (A
    /// session: the row's own window `[t, t + gap)`, before it merges with others.)
    pub fn windows(&self, t: i64, out: &mut Vec<(i64, i64)>) {
        out.clear();
        if !(-MAX_TIME..=MAX_TIME).contains(&t) {
            return;
        }
        match *self {
            WindowSpec::Session { gap } => out.push((t, t.saturating_add(gap))),
            WindowSpec::Tumble { size, offset } => {
                let start = t - (t - offset).rem_euclid(size);
                out.push((start, start + size));
            }
            WindowSpec::Hop { slide, size, offset } => {
                let last = t - (t - offset).rem_euclid(slide);
                let mut start = last - size + slide;
                while start <= last {
                    out.push((start, start + size));
                    start += slide;
                }
            }
            WindowSpec::Cumulate { step, max_size, offset } => {
                let start = t - (t - offset).rem_euclid(max_size);
                let mut end = start + step;
                while end <= start + max_size {
                    if end > t {
                        out.push((start, end));
                    }
                    end += step;
                }
            }
        }
    }
}

impl WindowSpec {
    /// Where windows end: at `offset + k * unit` (`None` for sessions, which end where their
    /// rows say).
    pub fn end_grid(&self) -> Option<(i64, i64)> {
        match *self {
            WindowSpec::Tumble { size, offset } => Some((size, offset)),
            WindowSpec::Hop { slide, offset, .. } => Some((slide, offset)),
            WindowSpec::Cumulate { step, offset, .. } => Some((step, offset)),
            WindowSpec::Session { .. } => None,
        }
    }

    /// The end of the last window that holds time `t` (for a session: of the row's own
    /// window, `t + gap`); `i64::MIN` for a time beyond [`MAX_TIME`].
    pub fn last_end(&self, t: i64) -> i64 {
        if !(-MAX_TIME..=MAX_TIME).contains(&t) {
            return i64::MIN;
        }
        match *self {
            WindowSpec::Tumble { size, offset } => t - (t - offset).rem_euclid(size) + size,
            WindowSpec::Hop { slide, size, offset } => t - (t - offset).rem_euclid(slide) + size,
            WindowSpec::Cumulate { max_size, offset, .. } => {
                t - (t - offset).rem_euclid(max_size) + max_size
            }
            WindowSpec::Session { gap } => t.saturating_add(gap),
        }
    }
}

/// Split `batch` (time in column `time`) into the rows some window of which is still open at
/// `watermark`, and the positions of the late ones: a NULL time, or every window closed (the
/// watermark has reached the last one's `end - 1 ms`; Flink's rule for dropping a row).
/// `i64::MIN`: no watermark yet.
///
/// # Errors
/// When the time column is not a timestamp.
pub fn split_late(
    spec: &WindowSpec,
    batch: RecordBatch,
    time: usize,
    watermark: i64,
) -> Result<(Option<RecordBatch>, Vec<u32>)> {
    let ms = crate::session::millis(batch.column(time))?;
    let late = |t: i64| {
        let end = spec.last_end(t);
        end == i64::MIN || (watermark != i64::MIN && end <= watermark.saturating_add(1))
    };
    // Ends grow with time: when the earliest row is on time, all are.
    let earliest = datafusion::arrow::compute::min(&ms);
    let latest = datafusion::arrow::compute::max(&ms);
    if ms.null_count() == 0
        && earliest.is_none_or(|t| !late(t))
        && latest.is_none_or(|t| t <= MAX_TIME)
    {
        return Ok((Some(batch), Vec::new()));
    }
    let mask: datafusion::arrow::array::BooleanArray =
        ms.iter().map(|t| Some(t.is_some_and(|t| !late(t)))).collect();
    let positions = (0..mask.len()).filter(|i| !mask.value(*i)).map(|i| i as u32).collect();
    let on_time = datafusion::arrow::compute::filter_record_batch(&batch, &mask)
        .map_err(|e| Error::plan(e.to_string(), None))?;
    Ok(((on_time.num_rows() > 0).then_some(on_time), positions))
}

/// An interval of a fixed length in whole milliseconds (days and less, no months), in
/// milliseconds; `None` for any other value.
pub fn fixed_millis(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v))
            if v.months == 0 && v.nanoseconds % 1_000_000 == 0 =>
        {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        _ => None,
    }
}

/// An interval argument in milliseconds.
fn interval_ms(e: &Expr, usage: &str) -> Result<i64> {
    let bad = || {
        Error::plan(
            format!("{usage}: sizes are constant intervals, like INTERVAL '10' SECOND, got {e}"),
            None,
        )
    };
    let value = match e {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => v,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    if let Some(ms) = fixed_millis(value) {
        return Ok(ms);
    }
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Err(Error::plan(format!("{usage}: sizes are whole milliseconds, got {e}"), None))
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(_) => {
            Err(Error::plan(
                format!(
                    "{usage}: windows of months or years are not supported (their length varies)"
                ),
                None,
            ))
        }
        _ => Err(bad()),
    }
}

/// How a window function's scan reads its stream of `columns` columns (time column `time`),
/// to give the columns `wanted` of its table (the stream's, then the three window columns;
/// `None`: all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRead {
    /// The stream's columns to read, in order: those wanted, and the time column.
    pub read: Vec<usize>,
    /// Where the time column is among them.
    pub time: usize,
    /// Where the other columns always read (a session's keys) are among them.
    pub keys: Vec<usize>,
    /// Where each wanted column is in the batch read with its windows assigned.
    pub output: Vec<usize>,
}

impl WindowRead {
    /// The reads for `wanted` columns of a window function over a stream of `columns`, which
    /// needs its `time` column and the columns `keys`.
    pub fn new(
        columns: usize,
        time: usize,
        keys: &[usize],
        wanted: Option<&[usize]>,
    ) -> WindowRead {
        let wanted: Vec<usize> = match wanted {
            Some(w) => w.to_vec(),
            None => (0..columns + 3).collect(),
        };
        let mut read: Vec<usize> = wanted.iter().copied().filter(|i| *i < columns).collect();
        for c in keys.iter().chain([&time]) {
            if !read.contains(c) {
                read.push(*c);
            }
        }
        read.sort_unstable();
        let at = |c: &usize| read.iter().position(|i| i == c).unwrap_or(0);
        let (time, keys) = (at(&time), keys.iter().map(at).collect());
        let output = wanted
            .iter()
            .map(|i| match read.iter().position(|r| r == i) {
                Some(p) => p,
                None => read.len() + (i - columns),
            })
            .collect();
        WindowRead { read, time, keys, output }
    }
}

/// The columns the window functions add.
pub fn window_fields() -> Vec<Field> {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    vec![
        Field::new("window_start", ts.clone(), true),
        Field::new("window_end", ts.clone(), true),
        Field::new("window_time", ts, true),
    ]
}

/// `input`'s schema with the window columns after its own.
///
/// # Errors
/// When the input already has a column named like a window column.
pub fn windowed_schema(input: &Schema, at: Option<Location>) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    for w in window_fields() {
        if input.field_with_name(w.name()).is_ok() {
            return Err(Error::plan(
                format!("the window function's input already has a column {}", w.name()),
                at,
            ));
        }
        fields.push(w);
    }
    Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
}

/// Each row of `batch` once per window that holds its time (column `time`), with the window
/// columns appended; `schema` is [`windowed_schema`] of the batch's. A row whose time is NULL
/// is kept once, with NULL windows.
///
/// # Errors
/// When the time column is not a timestamp.
pub fn assign(
    spec: &WindowSpec,
    batch: &RecordBatch,
    time: usize,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let arrow = |e: datafusion::arrow::error::ArrowError| Error::plan(e.to_string(), None);
    if let WindowSpec::Session { .. } = spec {
        return Err(Error::plan("session windows are assigned over whole sessions", None));
    }
    let ms = cast(batch.column(time), &DataType::Timestamp(TimeUnit::Millisecond, None))
        .map_err(arrow)?;
    let ms = ms
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| Error::plan("the window's time column is not a timestamp", None))?;
    let n = batch.num_rows();
    let mut starts = TimestampMillisecondBuilder::with_capacity(n);
    let mut ends = TimestampMillisecondBuilder::with_capacity(n);
    let mut times = TimestampMillisecondBuilder::with_capacity(n);
    let one_per_row = matches!(spec, WindowSpec::Tumble { .. });
    let mut rows = UInt32Builder::with_capacity(if one_per_row { 0 } else { n });
    let mut windows = Vec::new();
    for i in 0..n {
        if ms.is_null(i) {
            windows.clear();
        } else {
            spec.windows(ms.value(i), &mut windows);
        }
        if windows.is_empty() {
            // No time (or one beyond MAX_TIME): NULL windows.
            starts.append_null();
            ends.append_null();
            times.append_null();
            if !one_per_row {
                rows.append_value(i as u32);
            }
            continue;
        }
        for (s, e) in &windows {
            starts.append_value(*s);
            ends.append_value(*e);
            times.append_value(e - 1);
            if !one_per_row {
                rows.append_value(i as u32);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = if one_per_row {
        batch.columns().to_vec()
    } else {
        let rows = rows.finish();
        batch
            .columns()
            .iter()
            .map(|c| take(c, &rows, None))
            .collect::<std::result::Result<_, _>>()
            .map_err(arrow)?
    };
    columns.push(Arc::new(starts.finish()));
    columns.push(Arc::new(ends.finish()));
    columns.push(Arc::new(times.finish()));
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(arrow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(spec: WindowSpec, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        spec.windows(t, &mut out);
        out
    }

    #[test]
    fn windows_of_each_kind() {
        let tumble = WindowSpec::Tumble { size: 10, offset: 0 };
        assert_eq!(all(tumble, 0), vec![(0, 10)]);
        assert_eq!(all(tumble, 9), vec![(0, 10)]);
        assert_eq!(all(tumble, -1), vec![(-10, 0)]);
        assert_eq!(all(WindowSpec::Tumble { size: 10, offset: 3 }, 2), vec![(-7, 3)]);
        let hop = WindowSpec::Hop { slide: 2, size: 6, offset: 0 };
        assert_eq!(all(hop, 7), vec![(2, 8), (4, 10), (6, 12)]);
        assert_eq!(all(hop, 6), vec![(2, 8), (4, 10), (6, 12)]);
        let cumulate = WindowSpec::Cumulate { step: 2, max_size: 6, offset: 0 };
        assert_eq!(all(cumulate, 0), vec![(0, 2), (0, 4), (0, 6)]);
        assert_eq!(all(cumulate, 3), vec![(0, 4), (0, 6)]);
        assert_eq!(all(cumulate, 5), vec![(0, 6)]);
        // Every window holds the time, and only those.
        for t in -20..20 {
            for spec in [tumble, hop, cumulate] {
                assert!(all(spec, t).iter().all(|(s, e)| *s <= t && t < *e), "{spec:?} {t}");
            }
        }
    }

    #[test]
    fn a_batch_gets_its_windows_and_overlapping_ones_repeat_rows() {
        use datafusion::arrow::array::Int64Array;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1500), None, Some(3000)])),
            ],
        )
        .unwrap();
        let out_schema = windowed_schema(&schema, None).unwrap();
        let hop = WindowSpec::Hop { slide: 1000, size: 2000, offset: 0 };
        let out = assign(&hop, &batch, 1, &out_schema).unwrap();
        assert_eq!(out.num_rows(), 5);
        let k = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(k.values().to_vec(), vec![1, 1, 2, 3, 3]);
        let start = out.column(2).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(start.value(0), 0);
        assert!(start.is_null(2));
        let wt = out.column(4).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(wt.value(3), 3999);
        let tumble = WindowSpec::Tumble { size: 1000, offset: 0 };
        assert_eq!(assign(&tumble, &batch, 1, &out_schema).unwrap().num_rows(), 3);
    }
}
