//! A windowed plan at run time: batches of its inputs in, closed windows (or changes) out.
//!
//! Each input has its own watermark (the running maximum of its stream's declared watermark
//! over the batches read). The plan's watermark is the **minimum** over its inputs, leaving
//! out an input declared idle by the caller (no data for its stream's `idle_timeout`) and
//! counting an input that ended (sealed and read) as `+inf`; it never goes back. When every
//! input is idle or ended, it does not move (unless all ended: then every window closes).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::session_agg::SessionAggregate;
use crate::stream_plan::{Op, run_ops, run_ops_keeping};
use crate::topn::TopN;
use crate::updating_agg::UpdatingAggregate;
use crate::window::split_late;
use crate::window_agg::WindowAggregate;
use crate::window_agg::changes::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};
use crate::windowed_plan::{EmitMode, Grouping, WindowedPlan};

mod snapshot;
pub use snapshot::{AggregationSnapshot, RunSnapshot, StatePart};

/// The aggregation state of a run.
#[derive(Debug)]
enum State {
    Windows(Box<WindowAggregate>),
    Sessions(Box<SessionAggregate>),
    Updating(Box<UpdatingAggregate>),
    TopN(Box<TopN>),
    Graph(Box<crate::graph::GraphRun>),
}

/// Where an input stands, for `EXPLAIN WINDOW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputStatus {
    /// Its watermark (`i64::MIN` before its first row).
    pub watermark: i64,
    /// Idle: no data for its idle timeout, so it does not hold the watermark back.
    pub idle: bool,
    /// Ended (sealed and read): `+inf`.
    pub ended: bool,
}

/// Where one input stands.
#[derive(Debug, Clone, Copy)]
struct InputState {
    watermark: i64,
    idle: bool,
    ended: bool,
}

/// A windowed plan running over its inputs' batches, each input in order (a push query's or a
/// job's).
#[derive(Debug)]
pub struct WindowedRun {
    plan: WindowedPlan,
    state: State,
    inputs: Vec<InputState>,
    /// The plan's watermark.
    watermark: i64,
    /// The watermark the aggregation has seen (before the batch being pushed).
    state_watermark: i64,
    late_rows: u64,
    skip_through: i64,
    /// The positions of the late rows in the batch pushed last.
    late: Vec<u32>,
    /// Without windows: keep the changes until [`WindowedRun::flush`] instead of giving
    /// them after every batch.
    deferred: bool,
}

impl WindowedRun {
    /// A run from the first row of every input.
    ///
    /// # Errors
    /// When the aggregation cannot be set up.
    pub fn new(plan: WindowedPlan) -> Result<WindowedRun> {
        let state = match &plan.grouping {
            Grouping::Windows(w) => match &w.session {
                Some(s) => State::Sessions(Box::new(SessionAggregate::new(
                    w.aggregate.clone(),
                    s.clone(),
                )?)),
                None => State::Windows(Box::new(WindowAggregate::new(w.aggregate.clone())?)),
            },
            Grouping::Updating(u) => State::Updating(Box::new(UpdatingAggregate::new(u.clone())?)),
            Grouping::TopN(t) => State::TopN(Box::new(TopN::new(t.clone())?)),
            Grouping::Graph(g) => {
                State::Graph(Box::new(crate::graph::GraphRun::new(g.as_ref().clone())?))
            }
        };
        let inputs =
            vec![InputState { watermark: i64::MIN, idle: false, ended: false }; plan.inputs.len()];
        Ok(WindowedRun {
            plan,
            state,
            inputs,
            watermark: i64::MIN,
            state_watermark: i64::MIN,
            late_rows: 0,
            skip_through: i64::MIN,
            late: Vec::new(),
            deferred: false,
        })
    }

    /// Without windows (an updating aggregation, a TopN): keep the changes of the batches
    /// until [`WindowedRun::flush`] (a group or partition changed by several batches in
    /// between then gives one change).
    pub fn defer_changes(&mut self) {
        self.deferred = true;
        if let State::Graph(g) = &mut self.state {
            g.defer_changes();
        }
    }

    /// The changes kept since the last flush (without windows; nothing otherwise).
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn flush(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        if let State::Graph(g) = &mut self.state {
            let out = g.flush()?;
            return self.graph_out(out);
        }
        let changes = self.kept_changes()?;
        self.emit(changes)
    }

    /// The changes an aggregation without windows or a TopN kept since it last gave them
    /// (one batch, with no window end: `i64::MAX`); nothing for windows.
    fn kept_changes(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        let changes = match &mut self.state {
            State::Updating(state) => state.changes()?,
            State::TopN(state) => state.changes()?,
            State::Windows(_) | State::Sessions(_) | State::Graph(_) => None,
        };
        Ok(changes.map(|c| (i64::MAX, c)).into_iter().collect())
    }

    /// Emit only windows ending after `end` (an earlier run wrote the others).
    pub fn skip_through(&mut self, end: i64) {
        self.skip_through = self.skip_through.max(end);
        if let State::Sessions(s) = &mut self.state {
            s.skip_through(end);
        }
    }

    /// The plan.
    pub fn plan(&self) -> &WindowedPlan {
        &self.plan
    }

    /// The plan's watermark (`i64::MIN`: none yet).
    pub fn watermark(&self) -> i64 {
        match &self.state {
            State::Graph(g) => g.watermark(),
            _ => self.watermark,
        }
    }

    /// Rows left out so far because their windows had closed (or they had no time).
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// The positions of the late rows in the batch pushed last (rows whose windows had all
    /// closed, or without a time), in order.
    pub fn late_positions(&self) -> &[u32] {
        &self.late
    }

    /// The plan's watermark before each row of a batch of input `input` whose rows' own
    /// watermark values are `values`: as if the batch had been cut before every row.
    fn watermarks_before(&self, input: usize, values: &[i64]) -> Vec<i64> {
        let others = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != input && !s.idle && !s.ended)
            .map(|(_, s)| s.watermark)
            .min();
        let mut wm = self.inputs.get(input).map_or(i64::MIN, |s| s.watermark);
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            out.push(others.map_or(wm, |o| o.min(wm)).max(self.watermark));
            wm = wm.max(*v);
        }
        out
    }

    /// The minimum over the inputs that are neither idle nor ended; never lower than before.
    fn combined(&self) -> i64 {
        let live = self.inputs.iter().filter(|i| !i.idle && !i.ended);
        match live.map(|i| i.watermark).min() {
            Some(w) => w.max(self.watermark),
            None if self.inputs.iter().all(|i| i.ended) => i64::MAX,
            None => self.watermark,
        }
    }

    /// A batch read from input `input`: its watermark moves, the rows are aggregated, and the
    /// windows this closes come back, each with its end and its rows in the plan's schema.
    ///
    /// # Errors
    /// When an expression fails on the data, or the state passes its limit.
    pub fn push(&mut self, input: usize, batch: RecordBatch) -> Result<Vec<(i64, RecordBatch)>> {
        // A row is late against the watermark of the rows before it, whatever the batches:
        // the batch goes in pieces inside which no window closes (a log's batches may be
        // merged by compaction, and a replay must count the same rows late).
        let Some(pieces) = self.pieces(input, &batch)? else {
            return self.push_piece(input, batch, None);
        };
        if let [(_, wm)] = pieces.as_slice() {
            return self.push_piece(input, batch, Some(*wm));
        }
        let (mut out, mut late, mut from) = (Vec::new(), Vec::new(), 0usize);
        for (to, wm) in pieces {
            out.extend(self.push_piece(input, batch.slice(from, to - from), Some(wm))?);
            late.extend(self.late.iter().map(|p| p + from as u32));
            from = to;
        }
        self.late = late;
        Ok(out)
    }

    /// The pieces to cut a batch of input `input` into, each its end and the input's
    /// watermark after it: a cut after each row that moves the watermark past a window's last
    /// instant. `None`: no cut to look for (no windows on a grid, or no watermark).
    fn pieces(&self, input: usize, batch: &RecordBatch) -> Result<Option<Vec<(usize, i64)>>> {
        let (State::Windows(_), Grouping::Windows(w)) = (&self.state, &self.plan.grouping) else {
            return Ok(None);
        };
        let Some(spec) = self.plan.inputs.get(input) else { return Ok(None) };
        let (Some(watermark), Some(Op::Window { .. })) =
            (&spec.watermark, spec.pipeline.ops.first())
        else {
            return Ok(None);
        };
        let Some((unit, offset)) = w.window.end_grid() else { return Ok(None) };
        let n = batch.num_rows();
        if n < 2 || unit <= 0 {
            return Ok(None);
        }
        // The windows closed at watermark `w` end at or before grid line `closed(w)`.
        let closed = |w: i64| match w {
            i64::MIN => i64::MIN,
            w => w.saturating_add(1).saturating_sub(offset).div_euclid(unit),
        };
        let mut wm = self.inputs[input].watermark;
        let mut pieces = Vec::new();
        for (r, v) in watermark.per_row(batch)?.into_iter().enumerate() {
            let next = wm.max(v);
            if closed(next) > closed(wm) && r + 1 < n {
                pieces.push((r + 1, next));
            }
            wm = next;
        }
        pieces.push((n, wm));
        Ok(Some(pieces))
    }

    /// Push a piece of a batch; `known`: the input's watermark after it, when the caller
    /// computed it.
    fn push_piece(
        &mut self,
        input: usize,
        batch: RecordBatch,
        known: Option<i64>,
    ) -> Result<Vec<(i64, RecordBatch)>> {
        let Some(spec) = self.plan.inputs.get(input) else {
            return Err(Error::plan(format!("the windowed plan has no input {input}"), None));
        };
        // A session's row is late against the watermark of the rows before it.
        let behind = match (&self.state, &spec.watermark) {
            (State::Sessions(_), Some(w)) if batch.num_rows() > 1 => {
                Some(self.watermarks_before(input, &w.per_row(&batch)?))
            }
            _ => None,
        };
        let mut wm = self.inputs[input].watermark;
        match (known, &spec.watermark) {
            (Some(k), _) => wm = wm.max(k),
            (None, Some(w)) => wm = wm.max(w.of(&batch)?),
            (None, None) => {}
        }
        self.inputs[input] = InputState { watermark: wm, idle: false, ended: false };
        if let State::Graph(g) = &mut self.state {
            let out = g.push(input, batch)?;
            self.late = g.late_positions().to_vec();
            self.late_rows = g.late_rows();
            return self.graph_out(out);
        }
        let pipeline = &spec.pipeline;
        let (rows, late) = match (&mut self.state, &self.plan.grouping) {
            (State::Windows(_), Grouping::Windows(w)) => match pipeline.ops.first() {
                // Rows late for every window they fall in, as read (the aggregation also
                // leaves out the copies of a row for its windows already closed).
                Some(Op::Window { time, .. }) => {
                    split_late(&w.window, batch, *time, self.state_watermark)?
                }
                _ => (Some(batch), Vec::new()),
            },
            (State::Sessions(state), _) => state.assign(&batch, behind.as_deref())?,
            (State::Updating(state), _) => {
                if state.spec().retracting {
                    // The changelog's `__op`, read last: rows -U and -D take rows back.
                    let (data, op) = crate::stream_plan::split_op(&batch)?;
                    if let Some((rows, kept)) =
                        run_ops_keeping(&pipeline.ops, &pipeline.stream, data)?
                    {
                        let retract: Vec<bool> = kept
                            .iter()
                            .map(|i| matches!(op[*i as usize], UPDATE_BEFORE | DELETE))
                            .collect();
                        state.update(&rows, Some(&retract))?;
                    }
                    (None, Vec::new())
                } else {
                    (Some(batch), Vec::new())
                }
            }
            (State::TopN(_), _) => (Some(batch), Vec::new()),
            (State::Windows(_) | State::Graph(_), _) => {
                return Err(Error::plan("a windowed run without windows", None));
            }
        };
        if let Some(rows) = rows
            && let Some(rows) = run_ops(&pipeline.ops, &pipeline.stream, rows)?
        {
            match &mut self.state {
                State::Windows(state) => {
                    state.update(&rows)?;
                }
                State::Sessions(state) => state.update(&rows)?,
                State::Updating(state) => state.update(&rows, None)?,
                State::TopN(state) => state.update(&rows)?,
                State::Graph(_) => {}
            }
        }
        self.late_rows += late.len() as u64;
        self.late = late;
        self.advance(true)
    }

    /// Input `input` ended (sealed and read): its watermark is `+inf` from now on; once every
    /// input ended, every window closes.
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn end_input(&mut self, input: usize) -> Result<Vec<(i64, RecordBatch)>> {
        self.input_changed(input, |i| i.ended = true)
    }

    /// Every input ended.
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn finish(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        for i in &mut self.inputs {
            i.ended = true;
        }
        if let State::Graph(g) = &mut self.state {
            let out = g.finish()?;
            return self.graph_out(out);
        }
        self.late.clear();
        self.advance(false)
    }

    /// Input `input` has had no data for its idle timeout: it no longer holds the watermark
    /// back (until its next batch).
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn set_idle(&mut self, input: usize) -> Result<Vec<(i64, RecordBatch)>> {
        self.input_changed(input, |i| i.idle = true)
    }

    fn input_changed(
        &mut self,
        input: usize,
        change: impl FnOnce(&mut InputState),
    ) -> Result<Vec<(i64, RecordBatch)>> {
        if let Some(i) = self.inputs.get_mut(input) {
            change(i);
        }
        self.late.clear();
        if let State::Graph(g) = &mut self.state {
            let (ended, idle) =
                self.inputs.get(input).map_or((false, false), |i| (i.ended, i.idle));
            let out = if ended {
                g.end_input(input)?
            } else if idle {
                g.set_idle(input)?
            } else {
                Vec::new()
            };
            return self.graph_out(out);
        }
        self.advance(false)
    }

    /// The current rows of an aggregation without windows: each group's row, through the
    /// filters and projections above the aggregation, in the plan's columns without `__op`
    /// (`None` for a windowed aggregation, whose rows are its windows as they close).
    ///
    /// # Errors
    /// When a value or an expression above the aggregation fails.
    pub fn current_rows(&self) -> Result<Option<RecordBatch>> {
        let current = match &self.state {
            State::Updating(state) => state.current()?,
            State::TopN(state) => state.current()?,
            State::Graph(g) => return g.current_rows(),
            State::Windows(_) | State::Sessions(_) => return Ok(None),
        };
        let schema = crate::window_agg::changes::rows_schema(&self.plan.schema);
        let stream = self.plan.inputs.first().map_or("", |i| i.pipeline.stream.as_str());
        let rows = match run_ops(&self.plan.after, stream, current)? {
            Some(rows) => rows.columns().to_vec(),
            None => return Ok(Some(RecordBatch::new_empty(schema))),
        };
        RecordBatch::try_new(schema, rows).map(Some).map_err(|e| Error::plan(e.to_string(), None))
    }

    /// `state_ttl`: forget the groups (of an aggregation without windows) or partitions (of a
    /// TopN) without a row for `ttl_ms`; their rows leave the output. The changes come back
    /// (for the caller to call now and then; windows have their own bound, the watermark).
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn expire(&mut self, now_ms: i64, ttl_ms: i64) -> Result<Vec<(i64, RecordBatch)>> {
        // (The changes kept so far go first: an aggregation drops the keys of expired groups
        // only with none pending.)
        if let State::Graph(g) = &mut self.state {
            let out = g.expire(now_ms, ttl_ms)?;
            return self.graph_out(out);
        }
        let mut changes = self.kept_changes()?;
        match &mut self.state {
            State::Updating(state) => {
                state.expire(now_ms, ttl_ms)?;
            }
            State::TopN(state) => {
                state.expire(now_ms, ttl_ms);
            }
            State::Windows(_) | State::Sessions(_) | State::Graph(_) => {}
        }
        changes.extend(self.kept_changes()?);
        self.emit(changes)
    }

    /// `EMIT CHANGES EVERY ...`: the changes of the open windows since their last emission
    /// (for the caller to call at that interval).
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn tick(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        let changes = match &mut self.state {
            _ if self.plan.emit == EmitMode::Final => Vec::new(),
            State::Windows(state) => state.changes()?,
            State::Sessions(state) => state.changes()?,
            State::Updating(_) | State::TopN(_) => self.kept_changes()?,
            State::Graph(_) => Vec::new(),
        };
        self.emit(changes)
    }

    /// Move the watermark and emit what it closes (and, with `EMIT CHANGES` after a batch,
    /// the open windows' changes).
    fn advance(&mut self, batch: bool) -> Result<Vec<(i64, RecordBatch)>> {
        self.watermark = self.combined();
        let mut closed = match &mut self.state {
            State::Windows(s) => s.advance(self.watermark)?,
            State::Sessions(s) => s.advance(self.watermark)?,
            // (Without windows, changes go out after every batch, and at the end; also the
            // first row of an aggregation without GROUP BY; unless kept for a flush.)
            State::Updating(_) | State::TopN(_) if self.deferred => Vec::new(),
            State::Updating(_) | State::TopN(_) => self.kept_changes()?,
            State::Graph(_) => Vec::new(),
        };
        self.state_watermark = self.watermark;
        if batch && self.plan.emit == (EmitMode::Changes { every_ms: None }) {
            closed.extend(match &mut self.state {
                State::Windows(state) => state.changes()?,
                State::Sessions(state) => state.changes()?,
                State::Updating(_) | State::TopN(_) | State::Graph(_) => Vec::new(),
            });
        }
        self.emit(closed)
    }

    /// A graph's output in the plan's schema (with `__op` for a changelog).
    fn graph_out(&self, out: Vec<crate::join::Delta>) -> Result<Vec<(i64, RecordBatch)>> {
        let fail = |e: datafusion::arrow::error::ArrowError| Error::plan(e.to_string(), None);
        let mut batches = Vec::with_capacity(out.len());
        for d in out {
            let mut columns = d.rows.columns().to_vec();
            if let Some(ops) = d.ops {
                columns.push(Arc::new(datafusion::arrow::array::Int8Array::from(ops)));
            } else if self.plan.schema.fields().len() > columns.len() {
                let n = d.rows.num_rows();
                columns.push(Arc::new(datafusion::arrow::array::Int8Array::from(vec![INSERT; n])));
            }
            let batch =
                RecordBatch::try_new(Arc::clone(&self.plan.schema), columns).map_err(fail)?;
            batches.push((i64::MAX, batch));
        }
        Ok(batches)
    }

    /// A virtual input (another operator's output) has watermark `watermark` now.
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub fn advance_input(
        &mut self,
        input: usize,
        watermark: i64,
    ) -> Result<Vec<(i64, RecordBatch)>> {
        self.input_changed(input, |i| {
            i.watermark = i.watermark.max(watermark);
            i.ended |= watermark == i64::MAX;
        })
    }

    fn emit(&self, closed: Vec<(i64, RecordBatch)>) -> Result<Vec<(i64, RecordBatch)>> {
        let fail = |e: datafusion::arrow::error::ArrowError| Error::plan(e.to_string(), None);
        let changes = self.plan.emit != EmitMode::Final;
        let stream = self.plan.inputs.first().map_or("", |i| i.pipeline.stream.as_str());
        let mut out = Vec::with_capacity(closed.len());
        for (end, window) in closed {
            if end <= self.skip_through && !changes {
                continue;
            }
            let rows = if changes {
                match self.changes_above(window, stream)? {
                    Some(rows) => rows,
                    None => continue,
                }
            } else {
                match run_ops(&self.plan.after, stream, window)? {
                    Some(rows) => rows,
                    None => continue,
                }
            };
            let rows = RecordBatch::try_new(Arc::clone(&self.plan.schema), rows.columns().to_vec())
                .map_err(fail)?;
            out.push((end, rows));
        }
        Ok(out)
    }

    /// A batch of changes (the aggregate's columns, then `__op`: `-U` rows, then as many `+U`
    /// rows of the same groups in the same order, then `-D` and `+I` rows) through the filters and
    /// projections above the aggregation. A filter (HAVING) turns an update whose old row
    /// passed and new one does not into `-D`, and the reverse into `+I`.
    fn changes_above(&self, window: RecordBatch, stream: &str) -> Result<Option<RecordBatch>> {
        use datafusion::arrow::array::{AsArray, Int8Array, UInt32Array};
        use datafusion::arrow::datatypes::Int8Type;
        let fail = |e: datafusion::arrow::error::ArrowError| Error::plan(e.to_string(), None);
        let mut columns = window.columns().to_vec();
        let Some(op) = columns.pop() else { return Ok(None) };
        let op = op.as_primitive::<Int8Type>().clone();
        let data = RecordBatch::try_new(Arc::clone(self.plan.aggregate_schema()), columns)
            .map_err(fail)?;
        let Some((rows, kept)) = run_ops_keeping(&self.plan.after, stream, data)? else {
            return Ok(None);
        };
        // Where each input row went (if it passed).
        let mut at = vec![None; op.len()];
        for (p, i) in kept.iter().enumerate() {
            at[*i as usize] = Some(p as u32);
        }
        let updates = op.values().iter().filter(|o| **o == UPDATE_BEFORE).count();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for i in 0..updates {
            match (at[i], at[updates + i]) {
                (Some(o), Some(n)) => {
                    before.push((o, UPDATE_BEFORE));
                    after.push((n, UPDATE_AFTER));
                }
                (Some(o), None) => before.push((o, DELETE)),
                (None, Some(n)) => after.push((n, INSERT)),
                (None, None) => {}
            }
        }
        // The rows after the pairs keep their kind (+I, or a session's -D).
        for (i, p) in at.iter().enumerate().skip(2 * updates) {
            if let Some(p) = p {
                match op.value(i) {
                    DELETE => before.push((*p, DELETE)),
                    _ => after.push((*p, INSERT)),
                }
            }
        }
        before.extend(after);
        if before.is_empty() {
            return Ok(None);
        }
        let idx = UInt32Array::from(before.iter().map(|(p, _)| *p).collect::<Vec<_>>());
        let mut columns = rows
            .columns()
            .iter()
            .map(|c| datafusion::arrow::compute::take(c, &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fail)?;
        columns.push(Arc::new(Int8Array::from(before.iter().map(|(_, o)| *o).collect::<Vec<_>>())));
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.plan.schema), columns).map_err(fail)?))
    }
}
