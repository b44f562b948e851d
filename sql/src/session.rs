//! Session windows: which rows chain into one session.
//!
//! `SESSION(t, ts, gap [, key, ...])` (Flink's `SESSION(TABLE t PARTITION BY key,
//! DESCRIPTOR(ts), gap)`) gives each row the bounds of its session: per partition key, rows
//! whose times are less than `gap` apart chain into one session, from its first row's time
//! (`window_start`) to its last row's time plus the gap (`window_end`, exclusive). Each row
//! starts as the window `[t, t + gap)`; windows that overlap merge, so a row that bridges two
//! sessions merges them. (Flink also merges windows that only touch, rows exactly `gap`
//! apart; kappa does not, so that a session closed by the watermark can never grow again.)
//!
//! [`Sessions`] tracks the open sessions of a stream as batches arrive: each row gets the id
//! of its session ([`Sessions::assign`]); the ids of sessions merged into others are recorded
//! ([`Sessions::take_merges`]); the watermark closes the sessions whose end it has reached
//! ([`Sessions::close`]). A row behind the watermark is late: with sessions, any such row
//! could bridge into a session already closed. Snapshot queries use the same tracker over a
//! whole stream ([`assign_sessions`]); continuous aggregations keep partial aggregates per
//! session ([`crate::session_agg`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Error, Result};

/// Sessions one query may hold open at once (a clear error past it).
pub const MAX_OPEN_SESSIONS: usize = 10_000_000;

fn fail(e: impl std::fmt::Display) -> Error {
    Error::plan(format!("the session window: {e}"), None)
}

/// An open session.
#[derive(Debug)]
struct Session {
    key: Box<[u8]>,
    start: i64,
    last: i64,
}

/// A closed session: its id and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// The session's id (as [`Sessions::assign`] gave it to its rows, after merges).
    pub id: u64,
    /// Its first row's time.
    pub start: i64,
    /// Its last row's time plus the gap.
    pub end: i64,
}

/// The open sessions of one stream, by partition key.
pub struct Sessions {
    gap: i64,
    time: usize,
    keys: Vec<usize>,
    /// The partition key columns' fields.
    key_fields: Vec<datafusion::arrow::datatypes::FieldRef>,
    converter: Option<RowConverter>,
    by_key: HashMap<Box<[u8]>, Vec<u64>>,
    open: HashMap<u64, Session>,
    /// `(end, id)` of every open session; an entry's end may be below the session's end (it
    /// grew since), never above it.
    closing: BTreeSet<(i64, u64)>,
    merged: HashMap<u64, u64>,
    next: u64,
    watermark: i64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("gap", &self.gap)
            .field("open", &self.open.len())
            .field("watermark", &self.watermark)
            .finish()
    }
}

impl Sessions {
    /// Sessions of `gap` milliseconds over batches of `schema`, with the time in column
    /// `time` and partitioned by columns `keys`.
    ///
    /// # Errors
    /// When the key columns cannot be compared (a type arrow's row format lacks).
    pub fn new(gap: i64, schema: &SchemaRef, time: usize, keys: Vec<usize>) -> Result<Sessions> {
        let converter = if keys.is_empty() {
            None
        } else {
            let fields =
                keys.iter().map(|k| SortField::new(schema.field(*k).data_type().clone())).collect();
            Some(RowConverter::new(fields).map_err(fail)?)
        };
        let key_fields = keys.iter().map(|k| Arc::new(schema.field(*k).clone())).collect();
        Ok(Sessions {
            gap,
            time,
            keys,
            key_fields,
            converter,
            by_key: HashMap::new(),
            open: HashMap::new(),
            closing: BTreeSet::new(),
            merged: HashMap::new(),
            next: 0,
            watermark: i64::MIN,
        })
    }

    /// The sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.open.len()
    }

    /// The session of every row of `batch`, merging sessions that its rows bridge; `None` for
    /// a late row (its time NULL, or at or behind the watermark).
    ///
    /// # Errors
    /// When the time column is not a timestamp, or the open sessions pass
    /// [`MAX_OPEN_SESSIONS`].
    pub fn assign(&mut self, batch: &RecordBatch) -> Result<Vec<Option<u64>>> {
        self.assign_behind(batch, None)
    }

    /// [`Sessions::assign`], a row also late when at or behind its entry of `behind`: the
    /// watermark of the rows before it, so that lateness does not depend on how rows are cut
    /// into batches. (The sessions that watermark would close need not be closed first: a row
    /// after it cannot reach them.)
    ///
    /// # Errors
    /// As [`Sessions::assign`].
    pub fn assign_behind(
        &mut self,
        batch: &RecordBatch,
        behind: Option<&[i64]>,
    ) -> Result<Vec<Option<u64>>> {
        let ms = millis(batch.column(self.time))?;
        let rows: Option<Rows> = match &self.converter {
            Some(c) => {
                let columns: Vec<ArrayRef> =
                    self.keys.iter().map(|k| Arc::clone(batch.column(*k))).collect();
                Some(c.convert_columns(&columns).map_err(fail)?)
            }
            None => None,
        };
        let mut ids = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if ms.is_null(i) {
                ids.push(None);
                continue;
            }
            let t = ms.value(i);
            let watermark =
                behind.and_then(|b| b.get(i)).map_or(self.watermark, |b| self.watermark.max(*b));
            if watermark != i64::MIN && t <= watermark {
                ids.push(None);
                continue;
            }
            let key: &[u8] = rows.as_ref().map_or(&[], |r| r.row(i).data());
            ids.push(Some(self.add(key, t)?));
        }
        Ok(ids)
    }

    /// Add a row of `key` at time `t`: the id of its session.
    fn add(&mut self, key: &[u8], t: i64) -> Result<u64> {
        let gap = self.gap;
        let mut hit: Option<u64> = None;
        if let Some(list) = self.by_key.get_mut(key) {
            let mut i = 0;
            while i < list.len() {
                let id = list[i];
                let Some(s) = self.open.get(&id) else {
                    list.swap_remove(i);
                    continue;
                };
                // The row's window [t, t + gap) overlaps the session's [start, last + gap).
                if t < s.last.saturating_add(gap) && s.start < t.saturating_add(gap) {
                    match hit {
                        None => {
                            hit = Some(id);
                            if let Some(s) = self.open.get_mut(&id) {
                                s.start = s.start.min(t);
                                s.last = s.last.max(t);
                            }
                            i += 1;
                        }
                        Some(into) => {
                            // The row bridges two sessions: one absorbs the other.
                            if let Some(gone) = self.open.remove(&id)
                                && let Some(s) = self.open.get_mut(&into)
                            {
                                s.start = s.start.min(gone.start);
                                s.last = s.last.max(gone.last);
                            }
                            self.merged.insert(id, into);
                            list.swap_remove(i);
                        }
                    }
                } else {
                    i += 1;
                }
            }
            if let Some(id) = hit {
                return Ok(id);
            }
        }
        if self.open.len() >= MAX_OPEN_SESSIONS {
            return Err(Error::plan(
                format!("the session window holds more than {MAX_OPEN_SESSIONS} open sessions"),
                None,
            ));
        }
        let id = self.next;
        self.next += 1;
        self.open.insert(id, Session { key: key.into(), start: t, last: t });
        self.closing.insert((t.saturating_add(gap), id));
        match self.by_key.get_mut(key) {
            Some(list) => list.push(id),
            None => {
                self.by_key.insert(key.into(), vec![id]);
            }
        }
        Ok(id)
    }

    /// The bounds (start, end) of open session `id`.
    pub fn bounds(&self, id: u64) -> Option<(i64, i64)> {
        self.open.get(&id).map(|s| (s.start, s.last.saturating_add(self.gap)))
    }

    /// The session `id` is part of now (the one it was merged into, if it was).
    pub fn resolve(&self, mut id: u64) -> u64 {
        while let Some(next) = self.merged.get(&id) {
            id = *next;
        }
        id
    }

    /// The merges since the last call, as `(merged, now part of)` (resolved), and forget them.
    pub fn take_merges(&mut self) -> Vec<(u64, u64)> {
        let out = self.merged.keys().map(|id| (*id, self.resolve(*id))).collect();
        self.merged.clear();
        out
    }

    /// Move the watermark to `watermark` (it never goes back) and close every session whose
    /// last instant (`end - 1 ms`) it has reached.
    pub fn close(&mut self, watermark: i64) -> Vec<Closed> {
        self.watermark = self.watermark.max(watermark);
        if self.watermark == i64::MIN {
            return Vec::new();
        }
        let bound = self.watermark.saturating_add(1);
        let mut out = Vec::new();
        while let Some(&(end, id)) = self.closing.first() {
            if end > bound {
                break;
            }
            self.closing.pop_first();
            let Some(s) = self.open.get(&id) else { continue };
            let actual = s.last.saturating_add(self.gap);
            if actual > end {
                self.closing.insert((actual, id));
                continue;
            }
            let Some(s) = self.open.remove(&id) else { continue };
            if let Some(list) = self.by_key.get_mut(&s.key) {
                list.retain(|x| *x != id);
                if list.is_empty() {
                    self.by_key.remove(&s.key);
                }
            }
            out.push(Closed { id, start: s.start, end: actual });
        }
        out
    }
}

impl Sessions {
    /// The open sessions, for a checkpoint: one row per session (`__id`, `__start`, `__last`,
    /// then its partition key columns), the next id, and the watermark. Taken between two
    /// batches (no merge pending).
    ///
    /// # Errors
    /// When the keys cannot be decoded.
    pub(crate) fn snapshot(&self) -> Result<(RecordBatch, u64, i64)> {
        use datafusion::arrow::array::{Int64Array, UInt64Array};
        // Per key in the order of its list (a row bridging sessions keeps the first it meets),
        // so that a restored tracker merges as this one would.
        let mut keys: Vec<(&Box<[u8]>, &Vec<u64>)> = self.by_key.iter().collect();
        keys.sort();
        let open: Vec<(&u64, &Session)> = keys
            .iter()
            .flat_map(|(_, ids)| ids.iter())
            .filter_map(|id| self.open.get_key_value(id))
            .collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(open.iter().map(|(id, _)| **id))),
            Arc::new(Int64Array::from_iter_values(open.iter().map(|(_, s)| s.start))),
            Arc::new(Int64Array::from_iter_values(open.iter().map(|(_, s)| s.last))),
        ];
        if let Some(c) = &self.converter {
            let parser = c.parser();
            columns.extend(
                c.convert_rows(open.iter().map(|(_, s)| parser.parse(&s.key))).map_err(fail)?,
            );
        }
        let batch = RecordBatch::try_new(self.snapshot_schema(), columns).map_err(fail)?;
        Ok((batch, self.next, self.watermark))
    }

    /// The schema of [`Sessions::snapshot`]'s batch.
    pub(crate) fn snapshot_schema(&self) -> SchemaRef {
        use datafusion::arrow::datatypes::{Field, Schema};
        let mut fields = vec![
            Arc::new(Field::new("__id", DataType::UInt64, false)),
            Arc::new(Field::new("__start", DataType::Int64, false)),
            Arc::new(Field::new("__last", DataType::Int64, false)),
        ];
        fields.extend(self.key_fields.iter().cloned());
        Arc::new(Schema::new(fields))
    }

    /// Open the sessions of a snapshot (into a tracker without any).
    ///
    /// # Errors
    /// When the batch is not of [`Sessions::snapshot_schema`].
    pub(crate) fn restore(&mut self, batch: &RecordBatch, next: u64, watermark: i64) -> Result<()> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
        if batch.schema().fields() != self.snapshot_schema().fields() {
            return Err(fail("the snapshot is not of this session window"));
        }
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let starts = batch.column(1).as_primitive::<Int64Type>();
        let lasts = batch.column(2).as_primitive::<Int64Type>();
        let rows = match &self.converter {
            Some(c) => Some(c.convert_columns(&batch.columns()[3..]).map_err(fail)?),
            None => None,
        };
        for i in 0..batch.num_rows() {
            let key: Box<[u8]> = rows.as_ref().map_or(Box::default(), |r| r.row(i).data().into());
            let (id, start, last) = (ids.value(i), starts.value(i), lasts.value(i));
            self.closing.insert((last.saturating_add(self.gap), id));
            self.by_key.entry(key.clone()).or_default().push(id);
            self.open.insert(id, Session { key, start, last });
        }
        self.next = next;
        self.watermark = watermark;
        Ok(())
    }
}

/// A time column in milliseconds.
pub(crate) fn millis(column: &ArrayRef) -> Result<TimestampMillisecondArray> {
    let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(fail)?;
    ms.as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .cloned()
        .ok_or_else(|| fail("the time column is not a timestamp"))
}

/// The session bounds of every row of `batches` (a whole stream, time in column `time`,
/// partitioned by `keys`), as the batches with `window_start`, `window_end` and
/// `window_time` appended (`schema`, [`crate::window::windowed_schema`] of theirs). A row
/// with a NULL time gets NULL bounds.
///
/// # Errors
/// As [`Sessions::assign`].
pub fn assign_sessions(
    batches: &[RecordBatch],
    gap: i64,
    time: usize,
    keys: &[usize],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else { return Ok(Vec::new()) };
    let mut sessions = Sessions::new(gap, &first.schema(), time, keys.to_vec())?;
    let ids = batches.iter().map(|b| sessions.assign(b)).collect::<Result<Vec<_>>>()?;
    let bounds: HashMap<u64, (i64, i64)> =
        sessions.close(i64::MAX).into_iter().map(|c| (c.id, (c.start, c.end))).collect();
    let mut out = Vec::with_capacity(batches.len());
    for (batch, ids) in batches.iter().zip(ids) {
        let n = batch.num_rows();
        let mut starts = TimestampMillisecondBuilder::with_capacity(n);
        let mut ends = TimestampMillisecondBuilder::with_capacity(n);
        let mut times = TimestampMillisecondBuilder::with_capacity(n);
        for id in ids {
            match id.and_then(|id| bounds.get(&sessions.resolve(id))) {
                Some((s, e)) => {
                    starts.append_value(*s);
                    ends.append_value(*e);
                    times.append_value(e - 1);
                }
                None => {
                    starts.append_null();
                    ends.append_null();
                    times.append_null();
                }
            }
        }
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(starts.finish()));
        columns.push(Arc::new(ends.finish()));
        columns.push(Arc::new(times.finish()));
        out.push(RecordBatch::try_new(Arc::clone(schema), columns).map_err(fail)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    fn batch(rows: &[(i64, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_closer_than_the_gap_chain_and_a_bridge_merges_two_sessions() {
        let mut s = Sessions::new(10, &schema(), 1, vec![0]).unwrap();
        let ids = s.assign(&batch(&[(1, Some(0)), (1, Some(25)), (2, Some(5)), (1, Some(9))]));
        let ids = ids.unwrap();
        assert_eq!(ids[0], ids[3]);
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        // Exactly the gap after 9: not in its session, but within the gap before 25.
        let far = s.assign(&batch(&[(1, Some(19))])).unwrap();
        assert_ne!(far[0], ids[0]);
        assert_eq!(far[0], ids[1]);
        assert_eq!(s.open_sessions(), 3);
        // 17 is within 10 of 9 (session [0, 19)) and of 19 (session [19, 35)): they merge.
        let bridge = s.assign(&batch(&[(1, Some(17))])).unwrap()[0].unwrap();
        let merges = s.take_merges();
        assert_eq!(merges.len(), 1);
        assert!(merges.iter().all(|(_, into)| *into == bridge));
        assert_eq!(s.open_sessions(), 2);
        // Key 2's session [5, 15) closes when the watermark reaches 14; key 1's [0, 35) at 34.
        assert!(s.close(13).is_empty());
        assert_eq!(s.close(14), vec![Closed { id: ids[2].unwrap(), start: 5, end: 15 }]);
        // Behind the watermark: late.
        assert_eq!(s.assign(&batch(&[(3, Some(14)), (3, Some(15))])).unwrap()[0], None);
        let rest = s.close(i64::MAX);
        assert_eq!(rest.len(), 2);
        assert!(rest.contains(&Closed { id: bridge, start: 0, end: 35 }));
    }

    #[test]
    fn a_whole_stream_gets_its_session_bounds() {
        let schema = crate::window::windowed_schema(&schema(), None).unwrap();
        let out = assign_sessions(
            &[batch(&[(1, Some(3)), (1, None)]), batch(&[(1, Some(10)), (2, Some(4))])],
            10,
            1,
            &[0],
            &schema,
        )
        .unwrap();
        let col = |b: usize, c: usize| {
            out[b].column(c).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap().clone()
        };
        assert_eq!(col(0, 2).value(0), 3);
        assert_eq!(col(0, 3).value(0), 20);
        assert!(col(0, 2).is_null(1));
        assert_eq!(col(1, 2).value(0), 3);
        assert_eq!(col(1, 4).value(1), 13);
    }
}
