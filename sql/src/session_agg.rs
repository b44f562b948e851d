//! Aggregation over session windows, driven by the watermark.
//!
//! Sessions grow and merge as rows arrive, so their bounds are known only when they close.
//! The aggregation therefore works on session ids: [`SessionAggregate::assign`] gives every
//! row of a batch read from the stream the id of its session ([`crate::session::Sessions`])
//! in the three window columns; after the filters and projections below the aggregation,
//! [`SessionAggregate::update`] aggregates the batch by session id and the other group keys
//! into **partial states** (DataFusion's `GroupsAccumulator::state`), kept as one chunk per
//! batch; each session lists its rows in the chunks. A merge of two sessions joins their
//! lists; a session whose list grows long is compacted into one chunk (its states merged). When
//! the watermark closes sessions ([`SessionAggregate::advance`]), their states are merged
//! (`merge_batch`) by final session and group key, evaluated, and emitted with the sessions'
//! bounds in place of the ids. State is one partial row per session, group and batch (bounded
//! by compaction), not one per input row.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, interleave};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::{Error, Result};
use crate::session::Sessions;
use crate::window_agg::{
    MAX_OPEN_GROUPS, WindowAggregateSpec, accumulators, arguments, exec, filters, take_rows,
};

mod snapshot;
pub use snapshot::SessionSnapshot;

/// A session's chunk references past which they are merged into one.
const COMPACT_AT: usize = 32;

/// Which bound of the session a group key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `window_start`: the session's first time.
    Start,
    /// `window_end`: its last time plus the gap.
    End,
    /// `window_time`: `window_end - 1 ms`.
    Time,
}

/// How to sessionize and aggregate.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// The gap in milliseconds.
    pub gap: i64,
    /// The time column in the batch read from the stream.
    pub time: usize,
    /// The partition key columns in the batch read.
    pub partition: Vec<usize>,
    /// The batch read with the window columns appended.
    pub assigned: SchemaRef,
    /// The group keys that are bounds of the session (at least one).
    pub bounds: Vec<(usize, Bound)>,
    /// The other group keys.
    pub keys: Vec<usize>,
}

/// Partial states of one batch: the other group keys and each aggregate's state, per row.
struct Chunk {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
    rows: usize,
    live: usize,
}

/// Group keys and their accumulators.
type Merged = (Box<dyn GroupValues>, Vec<Box<dyn GroupsAccumulator>>);

/// The running state of a session-windowed aggregation.
pub struct SessionAggregate {
    spec: WindowAggregateSpec,
    plan: SessionPlan,
    sessions: Sessions,
    key_schema: SchemaRef,
    /// The keys of a closing window: its start and end, then the other group keys.
    bounds_schema: SchemaRef,
    chunks: HashMap<u64, Chunk>,
    next_chunk: u64,
    /// Each open session's partial rows: (chunk, row).
    refs: HashMap<u64, Vec<(u64, u32)>>,
    held: usize,
    skip_through: i64,
    /// `EMIT CHANGES`: the rows last emitted for each open session.
    emitted: HashMap<u64, RecordBatch>,
    /// Sessions updated since the last emission of changes.
    touched: BTreeSet<u64>,
    /// Rows emitted for sessions merged into others since, to retract.
    retract: Vec<RecordBatch>,
}

impl std::fmt::Debug for SessionAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAggregate")
            .field("sessions", &self.sessions)
            .field("chunks", &self.chunks.len())
            .field("held", &self.held)
            .finish()
    }
}

impl SessionAggregate {
    /// A new, empty state.
    ///
    /// # Errors
    /// When the key types cannot be hashed or compared.
    pub fn new(spec: WindowAggregateSpec, plan: SessionPlan) -> Result<SessionAggregate> {
        let mut fields = vec![Field::new("__session", DataType::Int64, false)];
        fields.extend(plan.keys.iter().map(|k| spec.schema.field(*k).clone()));
        let mut bounds_fields = vec![
            Field::new("__start", DataType::Int64, false),
            Field::new("__end", DataType::Int64, false),
        ];
        bounds_fields.extend(fields.iter().skip(1).cloned());
        let key_schema = Arc::new(Schema::new(fields));
        let bounds_schema = Arc::new(Schema::new(bounds_fields));
        new_group_values(Arc::clone(&key_schema), &GroupOrdering::None).map_err(exec)?;
        new_group_values(Arc::clone(&bounds_schema), &GroupOrdering::None).map_err(exec)?;
        let sessions = Sessions::new(plan.gap, &plan.assigned, plan.time, plan.partition.clone())?;
        if plan.bounds.is_empty() {
            return Err(Error::plan("a session aggregation groups by its window", None));
        }
        Ok(SessionAggregate {
            spec,
            plan,
            sessions,
            key_schema,
            bounds_schema,
            chunks: HashMap::new(),
            next_chunk: 0,
            refs: HashMap::new(),
            held: 0,
            skip_through: i64::MIN,
            emitted: HashMap::new(),
            touched: BTreeSet::new(),
            retract: Vec::new(),
        })
    }

    /// Emit only sessions ending after `end` (an earlier run wrote the others).
    pub fn skip_through(&mut self, end: i64) {
        self.skip_through = self.skip_through.max(end);
    }

    /// The sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.open_sessions()
    }

    /// Give each row of `batch` (as read from the stream) its session: the rows with the id
    /// in the three window columns ([`SessionPlan::assigned`]), and the positions of the late
    /// rows (`behind`: each row's watermark before it, [`Sessions::assign_behind`]).
    ///
    /// # Errors
    /// As [`Sessions::assign`].
    pub fn assign(
        &mut self,
        batch: &RecordBatch,
        behind: Option<&[i64]>,
    ) -> Result<(Option<RecordBatch>, Vec<u32>)> {
        let ids = self.sessions.assign_behind(batch, behind)?;
        let ids: Vec<Option<i64>> =
            ids.iter().map(|id| id.map(|id| self.sessions.resolve(id) as i64)).collect();
        for (gone, into) in self.sessions.take_merges() {
            if let Some(moved) = self.refs.remove(&gone) {
                self.refs.entry(into).or_default().extend(moved);
            }
            if self.spec.changes {
                self.retract.extend(self.emitted.remove(&gone));
                self.touched.remove(&gone);
                self.touched.insert(into);
            }
        }
        let late: Vec<u32> =
            (0..ids.len()).filter(|i| ids[*i].is_none()).map(|i| i as u32).collect();
        if late.len() == ids.len() {
            return Ok((None, late));
        }
        let rows = if late.is_empty() {
            batch.clone()
        } else {
            let accepted: Vec<u32> =
                (0..ids.len()).filter(|i| ids[*i].is_some()).map(|i| i as u32).collect();
            take_rows(batch, &UInt32Array::from(accepted))?
        };
        let id: ArrayRef = Arc::new(TimestampMillisecondArray::from(
            ids.into_iter().flatten().collect::<Vec<_>>(),
        ));
        let mut columns = rows.columns().to_vec();
        columns.extend([Arc::clone(&id), Arc::clone(&id), id]);
        let assigned =
            RecordBatch::try_new(Arc::clone(&self.plan.assigned), columns).map_err(exec)?;
        Ok((Some(assigned), late))
    }

    /// Aggregate rows (ids in the window columns, after the pipeline below the aggregation)
    /// into partial states of their sessions.
    ///
    /// # Errors
    /// When an expression fails on the data, or the held states pass [`MAX_OPEN_GROUPS`].
    pub fn update(&mut self, rows: &RecordBatch) -> Result<()> {
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys: Vec<ArrayRef> = self
            .spec
            .group
            .iter()
            .map(|e| e.evaluate(rows).and_then(|v| v.into_array(n)))
            .collect::<datafusion::common::Result<_>>()
            .map_err(exec)?;
        let ids = cast(&keys[self.plan.bounds[0].0], &DataType::Int64).map_err(exec)?;
        let mut group_keys = vec![ids];
        group_keys.extend(self.plan.keys.iter().map(|k| Arc::clone(&keys[*k])));
        let mut groups =
            new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None).map_err(exec)?;
        let mut indices = Vec::with_capacity(n);
        groups.intern(&group_keys, &mut indices).map_err(exec)?;
        let total = groups.len();
        let mut accs = accumulators(&self.spec.aggregates)?;
        let values = arguments(&self.spec.aggregates, rows)?;
        let filters = filters(&self.spec.aggregates, rows)?;
        for ((acc, args), filter) in accs.iter_mut().zip(&values).zip(&filters) {
            acc.update_batch(args, &indices, filter.as_ref(), total).map_err(exec)?;
        }
        let touched = self.add_chunk(groups, accs)?;
        if self.spec.changes {
            self.touched.extend(touched.iter().copied());
        }
        for id in touched {
            if self.refs.get(&id).is_some_and(|r| r.len() > COMPACT_AT) {
                self.compact(id)?;
            }
        }
        Ok(())
    }

    /// Keep the partial states of `groups` (keyed by session id first) as a chunk; the
    /// sessions it touches.
    fn add_chunk(
        &mut self,
        mut groups: Box<dyn GroupValues>,
        mut accs: Vec<Box<dyn GroupsAccumulator>>,
    ) -> Result<Vec<u64>> {
        let mut keys = groups.emit(EmitTo::All).map_err(exec)?;
        let states =
            accs.iter_mut().map(|a| a.state(EmitTo::All).map_err(exec)).collect::<Result<_>>()?;
        if keys.is_empty() {
            return Err(exec("the session key is missing"));
        }
        let ids = keys.remove(0);
        let ids = ids
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| exec("the session key is not an id"))?;
        let slot = self.next_chunk;
        self.next_chunk += 1;
        let mut touched = Vec::new();
        for (row, id) in ids.values().iter().enumerate() {
            let id = *id as u64;
            let list = self.refs.entry(id).or_default();
            if list.last().is_none_or(|(c, _)| *c != slot) {
                touched.push(id);
            }
            list.push((slot, row as u32));
        }
        self.held += ids.len();
        self.chunks.insert(slot, Chunk { keys, states, rows: ids.len(), live: ids.len() });
        if self.held > MAX_OPEN_GROUPS {
            return Err(Error::plan(
                format!(
                    "the session aggregation holds more than {MAX_OPEN_GROUPS} partial groups in its open sessions"
                ),
                None,
            ));
        }
        Ok(touched)
    }

    /// Merge the partial rows of `sessions` by session and group key.
    /// With `bounds`, by the sessions' (start, end) instead of their ids: two sessions (of
    /// different partitions) with the same bounds are one window for a GROUP BY without the
    /// partition keys, as in batch.
    fn gather(
        &self,
        sessions: &[(u64, Vec<(u64, u32)>)],
        bounds: Option<&HashMap<i64, (i64, i64)>>,
    ) -> Result<Merged> {
        let schema = if bounds.is_some() { &self.bounds_schema } else { &self.key_schema };
        let mut groups =
            new_group_values(Arc::clone(schema), &GroupOrdering::None).map_err(exec)?;
        let mut accs = accumulators(&self.spec.aggregates)?;
        let mut slots: Vec<&Chunk> = Vec::new();
        let mut position: HashMap<u64, usize> = HashMap::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut ids: Vec<i64> = Vec::new();
        for (id, refs) in sessions {
            for (slot, row) in refs {
                let p = match position.get(slot) {
                    Some(p) => *p,
                    None => {
                        let chunk =
                            self.chunks.get(slot).ok_or_else(|| exec("a partial state is gone"))?;
                        slots.push(chunk);
                        position.insert(*slot, slots.len() - 1);
                        slots.len() - 1
                    }
                };
                picks.push((p, *row as usize));
                ids.push(*id as i64);
            }
        }
        if picks.is_empty() {
            return Ok((groups, accs));
        }
        let pick = |arrays: Vec<&dyn Array>| interleave(&arrays, &picks).map_err(exec);
        let mut keys: Vec<ArrayRef> = match bounds {
            Some(b) => {
                let of = |id: &i64| b.get(id).copied().unwrap_or((0, 0));
                vec![
                    Arc::new(Int64Array::from(ids.iter().map(|i| of(i).0).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(ids.iter().map(|i| of(i).1).collect::<Vec<_>>())),
                ]
            }
            None => vec![Arc::new(Int64Array::from(ids))],
        };
        for k in 0..self.plan.keys.len() {
            keys.push(pick(slots.iter().map(|c| c.keys[k].as_ref()).collect())?);
        }
        let mut indices = Vec::with_capacity(picks.len());
        groups.intern(&keys, &mut indices).map_err(exec)?;
        let total = groups.len();
        for (a, acc) in accs.iter_mut().enumerate() {
            let columns = slots.first().map_or(0, |c| c.states[a].len());
            let state = (0..columns)
                .map(|j| pick(slots.iter().map(|c| c.states[a][j].as_ref()).collect()))
                .collect::<Result<Vec<_>>>()?;
            acc.merge_batch(&state, &indices, total).map_err(exec)?;
        }
        Ok((groups, accs))
    }

    /// Drop references to partial rows; free the chunks no one refers to.
    fn release(&mut self, refs: &[(u64, u32)]) {
        for (slot, _) in refs {
            if let Some(chunk) = self.chunks.get_mut(slot) {
                chunk.live -= 1;
                if chunk.live == 0
                    && let Some(c) = self.chunks.remove(slot)
                {
                    self.held -= c.rows;
                }
            }
        }
    }

    /// Merge one session's partial rows into one chunk.
    fn compact(&mut self, id: u64) -> Result<()> {
        let Some(refs) = self.refs.remove(&id) else { return Ok(()) };
        let list = [(id, refs)];
        let (groups, accs) = self.gather(&list, None)?;
        let [(_, old)] = list;
        self.release(&old);
        self.add_chunk(groups, accs)?;
        Ok(())
    }

    /// Move the watermark to `watermark` and emit the sessions it closes, as one batch of
    /// [`WindowAggregateSpec::schema`] with the largest end among them.
    ///
    /// # Errors
    /// When an accumulator cannot produce its result.
    pub fn advance(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        let closed = self.sessions.close(watermark);
        if closed.is_empty() {
            return Ok(Vec::new());
        }
        let mut list = Vec::with_capacity(closed.len());
        let mut bounds: HashMap<i64, (i64, i64)> = HashMap::with_capacity(closed.len());
        let mut last = i64::MIN;
        let mut skipped = Vec::new();
        for c in closed {
            let refs = self.refs.remove(&c.id).unwrap_or_default();
            if c.end <= self.skip_through {
                skipped.extend(refs);
                continue;
            }
            bounds.insert(c.id as i64, (c.start, c.end));
            last = last.max(c.end);
            list.push((c.id, refs));
        }
        self.release(&skipped);
        if self.spec.changes {
            return self.closing_changes(list, &bounds);
        }
        let (groups, accs) = self.gather(&list, Some(&bounds))?;
        for (_, refs) in &list {
            self.release(refs);
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.rows_of(groups, accs)?;
        Ok(vec![(last, batch)])
    }

    /// The output rows ([`WindowAggregateSpec::schema`]) of groups keyed by (start, end,
    /// other keys).
    fn rows_of(
        &self,
        mut groups: Box<dyn GroupValues>,
        mut accs: Vec<Box<dyn GroupsAccumulator>>,
    ) -> Result<RecordBatch> {
        let mut keys = groups.emit(EmitTo::All).map_err(exec)?.into_iter();
        let int = |a: Option<ArrayRef>| -> Result<Int64Array> {
            a.and_then(|a| a.as_any().downcast_ref::<Int64Array>().cloned())
                .ok_or_else(|| exec("the session bounds are missing"))
        };
        let (starts, ends) = (int(keys.next())?, int(keys.next())?);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.spec.schema.fields().len());
        for k in 0..self.spec.group.len() {
            match self.plan.bounds.iter().find(|(i, _)| *i == k) {
                Some((_, bound)) => {
                    let values: TimestampMillisecondArray = match bound {
                        Bound::Start => starts.values().iter().map(|v| Some(*v)).collect(),
                        Bound::End => ends.values().iter().map(|v| Some(*v)).collect(),
                        Bound::Time => ends.values().iter().map(|v| Some(v - 1)).collect(),
                    };
                    let ty = self.spec.schema.field(k).data_type();
                    columns.push(cast(&values, ty).map_err(exec)?);
                }
                None => columns.push(keys.next().ok_or_else(|| exec("a group key is missing"))?),
            }
        }
        for acc in &mut accs {
            columns.push(acc.evaluate(EmitTo::All).map_err(exec)?);
        }
        RecordBatch::try_new(Arc::clone(&self.spec.schema), columns).map_err(exec)
    }

    /// `EMIT CHANGES`: the rows of every session updated since the last call, as `-D` of
    /// the rows emitted for it before (and for sessions merged into it) and `+I` of its rows
    /// now (its bounds, part of the key, change as it grows).
    ///
    /// # Errors
    /// When an accumulator cannot produce its result.
    pub fn changes(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        let mut inserts = Vec::new();
        for id in std::mem::take(&mut self.touched) {
            let Some(b) = self.sessions.bounds(id) else { continue };
            let refs = self.refs.get(&id).cloned().unwrap_or_default();
            let rows = self.session_rows(id, refs, b)?;
            self.retract.extend(self.emitted.insert(id, rows.clone()));
            inserts.push(rows);
        }
        self.changelog(inserts)
    }

    /// The output rows of session `id` (partial rows `refs`) with bounds `b`.
    fn session_rows(&self, id: u64, refs: Vec<(u64, u32)>, b: (i64, i64)) -> Result<RecordBatch> {
        let bounds = HashMap::from([(id as i64, b)]);
        let (groups, accs) = self.gather(&[(id, refs)], Some(&bounds))?;
        self.rows_of(groups, accs)
    }

    /// `EMIT CHANGES` of closing sessions: their last changes; their state is freed.
    fn closing_changes(
        &mut self,
        list: Vec<(u64, Vec<(u64, u32)>)>,
        bounds: &HashMap<i64, (i64, i64)>,
    ) -> Result<Vec<(i64, RecordBatch)>> {
        let mut inserts = Vec::new();
        for (id, refs) in list {
            let touched = self.touched.remove(&id);
            let old = self.emitted.remove(&id);
            if touched || old.is_none() {
                let b = bounds.get(&(id as i64)).copied().unwrap_or((0, 0));
                inserts.push(self.session_rows(id, refs.clone(), b)?);
                self.retract.extend(old);
            }
            self.release(&refs);
        }
        self.changelog(inserts)
    }

    /// The pending retractions as `-D`, then `inserts` as `+I`, in one batch with `__op`.
    fn changelog(&mut self, inserts: Vec<RecordBatch>) -> Result<Vec<(i64, RecordBatch)>> {
        use crate::window_agg::changes::{DELETE, INSERT, changelog_schema};
        let deletes = std::mem::take(&mut self.retract);
        let mut ops: Vec<i8> = Vec::new();
        for (batches, op) in [(&deletes, DELETE), (&inserts, INSERT)] {
            for b in batches {
                ops.extend(std::iter::repeat_n(op, b.num_rows()));
            }
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<RecordBatch> = deletes.into_iter().chain(inserts).collect();
        let rows =
            datafusion::arrow::compute::concat_batches(&self.spec.schema, &all).map_err(exec)?;
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(datafusion::arrow::array::Int8Array::from(ops)));
        let batch =
            RecordBatch::try_new(changelog_schema(&self.spec.schema), columns).map_err(exec)?;
        Ok(vec![(0, batch)])
    }
}
