//! The temporal join as of the event time: `o JOIN r FOR SYSTEM_TIME AS OF o.ts ON o.k = r.k`.
//!
//! The table side `r` is a stream of versions: a row of key `k` and time `t` is `k`'s value
//! from `t` on, until a row of `k` with a later time. A row of `o` with time `t` meets the
//! version of its key as of `t` (the row of the greatest time at or before `t`; among equal
//! times the last to come), once `r`'s watermark has passed `t` (every version up to `t` has
//! come, the later ones being late): until then it waits, held by its time. (A deduplicating
//! view's versions, [`crate::versions`], keep the first of equal times instead.) A key keeps its
//! versions after the oldest time a row of `o` can still ask for (the lower of `o`'s
//! watermark and the oldest waiting row's time), and the last one before it. The output is
//! append-only; a `LEFT JOIN` gives a row without a version padded with NULLs.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use super::side::{RowId, arrow, row_id};
use super::{Delta, Join, JoinKind, times};
use crate::error::Result;

/// A temporal join's sides and times.
#[derive(Debug, Clone)]
pub struct Temporal {
    /// The table's (versions') side.
    pub table: usize,
    /// The deduplicating view whose input the versions are ([`crate::versions`]): among
    /// versions of equal times, the first to come holds then (as the view's TopN keeps it),
    /// not the last (a stream's).
    pub view: Option<String>,
}

impl Temporal {
    /// Whether version `a` (time, row) is later than `b`.
    fn later(&self, a: (i64, RowId), b: (i64, RowId)) -> bool {
        if a.0 != b.0 {
            return a.0 > b.0;
        }
        if self.view.is_some() { a.1 < b.1 } else { a.1 > b.1 }
    }
}

impl Join {
    /// A batch of side `s` of a temporal join: versions are kept; rows of the other side wait
    /// for the table's watermark.
    pub(super) fn temporal_push(&mut self, s: usize, rows: RecordBatch) -> Result<Option<Delta>> {
        let Some(t) = self.spec.temporal.clone() else { return Ok(None) };
        let Some(time) = self.spec.bound[s].clone() else { return Ok(None) };
        let at = times(time.as_ref(), &rows)?;
        let (keys, null_key) = self.keys_of(s, &rows)?;
        let now = crate::updating_agg::now_ms();
        let probe = 1 - t.table;
        let b = self.sides[s].add_batch(rows);
        for (r, null) in null_key.iter().enumerate() {
            let id = row_id(b, r);
            if s == t.table {
                // (A version without a key or time is no one's.)
                if *null || at[r] == i64::MIN {
                    continue;
                }
                self.sides[s].hold(id, keys.row(r).as_ref(), None, 0, None, now)?;
                self.sides[s].meta_mut(id).expire = at[r];
                self.prune(keys.row(r).as_ref())?;
            } else {
                // Waits for the table's watermark, by its time (a NULL key waits too, marked
                // in its match count: it meets no version, a LEFT JOIN pads it).
                self.sides[probe].hold(
                    id,
                    keys.row(r).as_ref(),
                    None,
                    u32::from(*null),
                    Some(at[r]),
                    now,
                )?;
            }
        }
        self.sides[s].settle(b);
        self.temporal_ready()
    }

    /// Forget the versions of `key` no row can ask for any more.
    fn prune(&mut self, key: &[u8]) -> Result<()> {
        let Some(t) = self.spec.temporal.clone() else { return Ok(()) };
        let probe = 1 - t.table;
        let oldest = self.sides[probe].oldest().unwrap_or(i64::MAX);
        let floor = self.watermarks[probe].min(oldest);
        let mut versions: Vec<(i64, RowId)> = Vec::new();
        self.sides[t.table].each_of(key, |id| versions.push((0, id)));
        for v in &mut versions {
            v.0 = self.sides[t.table].meta(v.1).expire;
        }
        // The last version at or before the floor stays; those before it go.
        let mut keep: Option<(i64, RowId)> = None;
        for v in versions.iter().filter(|v| v.0 <= floor) {
            if keep.is_none_or(|k| t.later(*v, k)) {
                keep = Some(*v);
            }
        }
        let Some(keep) = keep else { return Ok(()) };
        for v in versions {
            if v.0 <= floor && v != keep {
                self.sides[t.table].release(v.1);
            }
        }
        Ok(())
    }

    /// The waiting rows the table's watermark has reached, joined with their versions.
    pub(super) fn temporal_ready(&mut self) -> Result<Option<Delta>> {
        let Some(t) = self.spec.temporal.clone() else { return Ok(None) };
        let probe = 1 - t.table;
        let w = self.watermarks[t.table];
        if w == i64::MIN {
            return Ok(None);
        }
        // (Rows before the watermark: a version at the watermark itself may still come.)
        let ready = self.sides[probe].expired(w);
        if ready.is_empty() {
            return Ok(None);
        }
        // Each ready row's version (the greatest time at or before its own, then the latest).
        let ids: Vec<Option<RowId>> = ready.iter().map(|q| Some(*q)).collect();
        let probe_rows = RecordBatch::try_new(
            Arc::clone(&self.spec.sides[probe]),
            self.sides[probe].gather(&ids)?,
        )
        .map_err(arrow)?;
        let (keys, _) = self.keys_of(probe, &probe_rows)?;
        let mut version = Vec::with_capacity(ready.len());
        for (r, q) in ready.iter().enumerate() {
            let m = self.sides[probe].meta(*q);
            let mut best: Option<(i64, RowId)> = None;
            if m.matches == 0 {
                let table = &mut self.sides[t.table];
                let mut found = Vec::new();
                table.each_of(keys.row(r).as_ref(), |id| found.push(id));
                for id in found {
                    let at = table.meta(id).expire;
                    if at <= m.expire && best.is_none_or(|b| t.later((at, id), b)) {
                        best = Some((at, id));
                    }
                }
            }
            version.push(best.map(|b| b.1));
        }
        // The join's other conditions over the pairs with a version.
        let pairs: Vec<(usize, RowId)> =
            version.iter().enumerate().filter_map(|(r, v)| v.map(|v| (r, v))).collect();
        let pr: Vec<u32> = pairs.iter().map(|p| p.0 as u32).collect();
        let pq: Vec<RowId> = pairs.iter().map(|p| p.1).collect();
        let pass = self.filter(probe, &probe_rows, &pr, &pq)?;
        for (j, (r, _)) in pairs.iter().enumerate() {
            if !pass[j] {
                version[*r] = None;
            }
        }
        let keep = self.spec.kind == JoinKind::Left && probe == 0
            || self.spec.kind == JoinKind::Right && probe == 1;
        let out: Vec<(Option<u32>, Option<RowId>, i8)> = version
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some() || keep)
            .map(|(r, v)| (Some(r as u32), *v, crate::window_agg::changes::INSERT))
            .collect();
        let delta = self.output(probe, Some(&probe_rows), &out)?;
        for q in ready {
            self.sides[probe].release(q);
        }
        Ok(delta)
    }
}
