//! Windowed aggregation driven by the watermark: the state of every open window, updated with
//! each batch, emitted and freed when the watermark passes the window's end.
//!
//! Rows arrive with their window columns already assigned ([`crate::window::assign`]). The
//! state is one DataFusion hash table of group keys ([`GroupValues`]) and one vectorized
//! accumulator per aggregate ([`GroupsAccumulator`], or DataFusion's adapter for functions
//! without one) **per open window end**: a window's groups are emitted together and its
//! memory freed at once, and a batch touches only the windows its rows fall in (usually one
//! or two for tumbling windows). Aggregate `FILTER (WHERE ...)` clauses are applied by the
//! accumulators.
//!
//! A row whose window has already been emitted (its end at or below the watermark when it
//! arrives) is late: [`WindowAggregate::update`] does not add it to any window and returns
//! those rows, for the caller to count and keep.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::{Error, Result};

pub mod changes;
pub mod snapshot;

/// Groups one job may hold in all its open windows (a clear error past it).
pub const MAX_OPEN_GROUPS: usize = 10_000_000;

/// One aggregate: the function, and its `FILTER (WHERE ...)` clause.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The function with its argument expressions (over the input batch).
    pub function: Arc<AggregateFunctionExpr>,
    /// The filter clause, if any.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// How to aggregate: group keys (one of which gives the window's end), aggregates, output.
#[derive(Debug, Clone)]
pub struct WindowAggregateSpec {
    /// Group key expressions over the input batch.
    pub group: Vec<Arc<dyn PhysicalExpr>>,
    /// The group key that is the window's end (a `TIMESTAMP(3)`); with `end_offset`: the key
    /// plus this many milliseconds is the end (when the query groups by `window_start` only).
    pub end_key: usize,
    /// Added to `end_key`'s value to get the window end, in milliseconds.
    pub end_offset: i64,
    /// The aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Group keys then aggregate results, as the query names them.
    pub schema: SchemaRef,
    /// Hopping windows aggregated by panes (see [`Panes`]); `None`: each window on its own.
    pub panes: Option<Panes>,
    /// `EMIT CHANGES`: windows give changelog rows ([`changes`]) instead of one final batch.
    pub changes: bool,
}

/// Hopping windows by panes, as Flink's window operators slice them: the rows arrive with
/// the bounds of their pane (a tumbling window of the slide) in the window columns; each pane
/// keeps partial aggregates of the group keys other than the window's; when a window closes,
/// the states of its `size / slide` panes are merged (DataFusion's `state` and
/// `merge_batch`). A row then costs one update, not one per window. A pane is frozen (turned
/// into its state) when the watermark closes it; a row for a frozen pane whose last window is
/// still open is aggregated into a partial state of its own, kept beside the pane's (as Flink
/// does), so the windows not emitted yet count it.
#[derive(Debug, Clone)]
pub struct Panes {
    /// The window's slide (the pane's size), in milliseconds.
    pub slide: i64,
    /// The window's size (a multiple of the slide).
    pub size: i64,
    /// Where `window_start` is among the group keys, if grouped.
    pub start_key: Option<usize>,
    /// Where `window_end` is among the group keys, if grouped.
    pub end_key: Option<usize>,
    /// The other group keys.
    pub keys: Vec<usize>,
}

/// A closed pane: its group keys and each aggregate's state.
struct Frozen {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
}

/// The state of one open window.
struct Open {
    groups: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// What `EMIT CHANGES` emitted of it so far.
    emitted: changes::Emitted,
}

impl Open {
    /// Add rows (their keys, aggregate arguments and filters): the groups they fell in, and
    /// how many groups there are now.
    fn update(
        &mut self,
        keys: &[ArrayRef],
        values: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
    ) -> Result<(Vec<usize>, usize)> {
        let mut indices = Vec::with_capacity(keys.first().map_or(0, |k| k.len()));
        self.groups.intern(keys, &mut indices).map_err(exec)?;
        let total = self.groups.len();
        for ((acc, args), filter) in self.accumulators.iter_mut().zip(values).zip(filters) {
            acc.update_batch(args, &indices, filter.as_ref(), total).map_err(exec)?;
        }
        Ok((indices, total))
    }

    /// Its group keys and each aggregate's state, the window left as it was: DataFusion gives
    /// them only by consuming them, so the keys are interned again (same order) into a new
    /// table (DataFusion's tables are not reused after an emit) and the states merged back.
    fn peek(&mut self, group_schema: &SchemaRef) -> Result<Frozen> {
        let keys = self.groups.emit(EmitTo::All).map_err(exec)?;
        self.groups =
            new_group_values(Arc::clone(group_schema), &GroupOrdering::None).map_err(exec)?;
        let mut again = Vec::new();
        self.groups.intern(&keys, &mut again).map_err(exec)?;
        let n = self.groups.len();
        let all: Vec<usize> = (0..n).collect();
        let mut states = Vec::with_capacity(self.accumulators.len());
        for acc in &mut self.accumulators {
            let state = acc.state(EmitTo::All).map_err(exec)?;
            acc.merge_batch(&state, &all, n).map_err(exec)?;
            states.push(state);
        }
        Ok(Frozen { keys, states })
    }

    /// Its group keys and each aggregate's state.
    fn freeze(mut self) -> Result<Frozen> {
        let keys = self.groups.emit(EmitTo::All).map_err(exec)?;
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All).map_err(exec))
            .collect::<Result<Vec<_>>>()?;
        Ok(Frozen { keys, states })
    }
}

/// The running state of a windowed aggregation.
pub struct WindowAggregate {
    spec: WindowAggregateSpec,
    group_schema: SchemaRef,
    /// Open windows (or panes) by end.
    open: BTreeMap<i64, Open>,
    /// Closed panes by end, until their last window is emitted.
    frozen: BTreeMap<i64, Vec<Frozen>>,
    /// The end of the last window emitted by panes.
    emitted: i64,
    /// The watermark so far (windows ending at or before it are emitted).
    watermark: i64,
    groups: usize,
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate")
            .field("open_windows", &self.open.len())
            .field("groups", &self.groups)
            .field("watermark", &self.watermark)
            .finish()
    }
}

pub(crate) fn exec(e: impl std::fmt::Display) -> Error {
    Error::plan(e.to_string(), None)
}

impl WindowAggregate {
    /// A new, empty state.
    ///
    /// # Errors
    /// When the group key types cannot be hashed by DataFusion.
    pub fn new(spec: WindowAggregateSpec) -> Result<WindowAggregate> {
        let keys: Vec<usize> = match &spec.panes {
            Some(p) => p.keys.clone(),
            None => (0..spec.group.len()).collect(),
        };
        let fields: Vec<Field> = keys.iter().map(|k| spec.schema.field(*k).clone()).collect();
        let group_schema = Arc::new(Schema::new(fields));
        // Checked once here: every window's table is made the same way.
        new_group_values(Arc::clone(&group_schema), &GroupOrdering::None).map_err(exec)?;
        Ok(WindowAggregate {
            spec,
            group_schema,
            open: BTreeMap::new(),
            frozen: BTreeMap::new(),
            emitted: i64::MIN,
            watermark: i64::MIN,
            groups: 0,
        })
    }

    /// Whether the window ending at `end` is closed: the watermark has reached its last
    /// instant, `end - 1 ms` (Flink's rule).
    fn closed(&self, end: i64) -> bool {
        self.watermark != i64::MIN && end <= self.watermark.saturating_add(1)
    }

    /// The windows open now.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// The end of the next window to close (the earliest open one, or pane: a window ends
    /// at each pane's end).
    pub fn next_end(&self) -> Option<i64> {
        self.open.keys().next().copied()
    }

    fn open_window(&self) -> Result<Open> {
        let groups =
            new_group_values(Arc::clone(&self.group_schema), &GroupOrdering::None).map_err(exec)?;
        Ok(Open {
            groups,
            accumulators: accumulators(&self.spec.aggregates)?,
            emitted: changes::Emitted::default(),
        })
    }

    /// Add a batch. Returns its late rows (their window was emitted already), if any.
    ///
    /// # Errors
    /// When an expression fails on the data, or the open groups pass [`MAX_OPEN_GROUPS`].
    pub fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let keys: Vec<ArrayRef> = self
            .spec
            .group
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::common::Result<_>>()
            .map_err(exec)?;
        let ends = window_ends(&keys[self.spec.end_key], self.spec.end_offset)?;
        // Rows in order mostly fall in one window per batch: no split then.
        if let Some(Some(end)) = ends.first().copied()
            && !self.closed(end)
            && ends.iter().all(|e| *e == Some(end))
        {
            let (values, filters) =
                (arguments(&self.spec.aggregates, batch)?, filters(&self.spec.aggregates, batch)?);
            self.add(end, &keys, &values, &filters)?;
            return Ok(None);
        }
        // Rows by window end (for panes: of frozen panes whose last window is open, apart);
        // late ones (and rows without a window) aside.
        let mut by_end: BTreeMap<(bool, i64), Vec<u32>> = BTreeMap::new();
        let mut late = Vec::new();
        let last_window = self.spec.panes.as_ref().map_or(0, |p| p.size - p.slide);
        for (i, end) in ends.iter().enumerate() {
            match end {
                Some(e) if !self.closed(*e) => {
                    by_end.entry((false, *e)).or_default().push(i as u32)
                }
                Some(e) if last_window > 0 && !self.closed(e.saturating_add(last_window)) => {
                    by_end.entry((true, *e)).or_default().push(i as u32)
                }
                _ => late.push(i as u32),
            }
        }
        for ((frozen, end), rows) in by_end {
            let idx = UInt32Array::from(rows);
            let pick = |a: &ArrayRef| take(a, &idx, None).map_err(exec);
            let part = take_rows(batch, &idx)?;
            let keys = keys.iter().map(pick).collect::<Result<Vec<_>>>()?;
            let (values, filters) =
                (arguments(&self.spec.aggregates, &part)?, filters(&self.spec.aggregates, &part)?);
            if frozen {
                self.add_frozen(end, &keys, &values, &filters)?;
            } else {
                self.add(end, &keys, &values, &filters)?;
            }
        }
        if late.is_empty() {
            return Ok(None);
        }
        Ok(Some(take_rows(batch, &UInt32Array::from(late))?))
    }

    /// Add rows of a frozen pane ending at `end` as a partial state of their own.
    fn add_frozen(
        &mut self,
        end: i64,
        keys: &[ArrayRef],
        values: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
    ) -> Result<()> {
        let keys = self.keys_of(keys);
        let mut part = self.open_window()?;
        let (_, total) = part.update(&keys, values, filters)?;
        self.count_groups(total)?;
        self.frozen.entry(end).or_default().push(part.freeze()?);
        Ok(())
    }

    /// The group keys a window (or pane) is keyed by: all, or a pane's.
    fn keys_of(&self, keys: &[ArrayRef]) -> Vec<ArrayRef> {
        match &self.spec.panes {
            Some(p) => p.keys.iter().map(|k| Arc::clone(&keys[*k])).collect(),
            None => keys.to_vec(),
        }
    }

    fn count_groups(&mut self, added: usize) -> Result<()> {
        self.groups += added;
        if self.groups > MAX_OPEN_GROUPS {
            return Err(Error::plan(
                format!(
                    "the windowed aggregation holds more than {MAX_OPEN_GROUPS} groups in its open windows"
                ),
                None,
            ));
        }
        Ok(())
    }

    /// Add rows (their keys, aggregate arguments and filters) to the window ending at `end`.
    fn add(
        &mut self,
        end: i64,
        keys: &[ArrayRef],
        values: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
    ) -> Result<()> {
        if !self.open.contains_key(&end) {
            let w = self.open_window()?;
            self.open.insert(end, w);
        }
        let keys = self.keys_of(keys);
        let Some(window) = self.open.get_mut(&end) else { return Ok(()) };
        let before = window.groups.len();
        let (indices, total) = window.update(&keys, values, filters)?;
        if self.spec.changes {
            window.emitted.mark(&indices, total);
        }
        self.count_groups(total - before)
    }

    /// Move the watermark to `watermark` (it never goes back) and emit every window whose last
    /// instant (`end - 1 ms`) it has reached, in order of end: each window's end and its rows
    /// ([`WindowAggregateSpec::schema`]).
    ///
    /// # Errors
    /// When an accumulator cannot produce its result.
    pub fn advance(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        let before = self.watermark;
        self.watermark = self.watermark.max(watermark);
        if let Some(panes) = self.spec.panes.clone() {
            return self.advance_panes(&panes, before);
        }
        let mut out = Vec::new();
        while let Some(end) = self.open.keys().next().copied() {
            if !self.closed(end) {
                break;
            }
            let Some(mut window) = self.open.remove(&end) else { break };
            self.groups -= window.groups.len();
            if self.spec.changes {
                // The window's last changes are its final ones.
                if let Some(batch) =
                    changes::of_window(&self.spec, &self.group_schema, &mut window)?
                {
                    out.push((end, batch));
                }
                continue;
            }
            let mut columns = window.groups.emit(EmitTo::All).map_err(exec)?;
            for acc in &mut window.accumulators {
                columns.push(acc.evaluate(EmitTo::All).map_err(exec)?);
            }
            let batch =
                RecordBatch::try_new(Arc::clone(&self.spec.schema), columns).map_err(exec)?;
            if batch.num_rows() > 0 {
                out.push((end, batch));
            }
        }
        Ok(out)
    }
}

impl WindowAggregate {
    /// Freeze the closed panes, then emit every window closed since the watermark `before`
    /// from its panes' states (a window closed earlier had its turn: a late row added to a
    /// frozen pane since counts only in the windows still open when it came).
    fn advance_panes(&mut self, panes: &Panes, before: i64) -> Result<Vec<(i64, RecordBatch)>> {
        while let Some(end) = self.open.keys().next().copied() {
            if !self.closed(end) {
                break;
            }
            // (Its groups stay counted until the pane is dropped.)
            let Some(pane) = self.open.remove(&end) else { break };
            self.frozen.entry(end).or_default().push(pane.freeze()?);
        }
        // The windows that hold a frozen pane, closed and not emitted yet, in order of end.
        // (Only ends in (emitted, watermark + 1]: the work is the windows emitted.)
        let mut ends = std::collections::BTreeSet::new();
        let last = self.watermark.saturating_add(1);
        let done = if before == i64::MIN {
            self.emitted
        } else {
            self.emitted.max(before.saturating_add(1))
        };
        for p in self.frozen.keys() {
            if done.saturating_sub(*p) >= panes.size {
                // Every window of this pane is done.
                continue;
            }
            let mut e =
                if *p > done { *p } else { p + ((done - p) / panes.slide + 1) * panes.slide };
            while e < p + panes.size && e <= last {
                ends.insert(e);
                e += panes.slide;
            }
        }
        let mut out = Vec::new();
        for end in ends {
            let mut window = self.open_window()?;
            for pane in self.frozen.range(end - panes.size + 1..=end).flat_map(|(_, c)| c) {
                let mut indices = Vec::new();
                window.groups.intern(&pane.keys, &mut indices).map_err(exec)?;
                let total = window.groups.len();
                for (acc, state) in window.accumulators.iter_mut().zip(&pane.states) {
                    acc.merge_batch(state, &indices, total).map_err(exec)?;
                }
            }
            let n = window.groups.len();
            let mut keys = window.groups.emit(EmitTo::All).map_err(exec)?.into_iter();
            let bound =
                |v: i64| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![v; n])) };
            let mut columns = Vec::with_capacity(self.spec.schema.fields().len());
            for k in 0..self.spec.group.len() {
                if Some(k) == panes.start_key {
                    columns.push(bound(end - panes.size));
                } else if Some(k) == panes.end_key {
                    columns.push(bound(end));
                } else {
                    columns.push(keys.next().ok_or_else(|| exec("a group key is missing"))?);
                }
            }
            for acc in &mut window.accumulators {
                columns.push(acc.evaluate(EmitTo::All).map_err(exec)?);
            }
            let batch =
                RecordBatch::try_new(Arc::clone(&self.spec.schema), columns).map_err(exec)?;
            self.emitted = end;
            if batch.num_rows() > 0 {
                out.push((end, batch));
            }
        }
        // A pane is done once its last window (the one it starts) is closed.
        let emitted = self.emitted.max(last);
        let mut dropped = 0;
        self.frozen.retain(|p, chunks| {
            let keep = p + panes.size - panes.slide > emitted;
            if !keep {
                dropped +=
                    chunks.iter().map(|c| c.keys.first().map_or(0, |k| k.len())).sum::<usize>();
            }
            keep
        });
        self.groups -= dropped.min(self.groups);
        Ok(out)
    }
}

/// A fresh accumulator per aggregate (DataFusion's adapter for functions without a
/// vectorized one).
pub(crate) fn accumulators(aggregates: &[Aggregate]) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    aggregates
        .iter()
        .map(|a| -> Result<Box<dyn GroupsAccumulator>> {
            if a.function.groups_accumulator_supported() {
                a.function.create_groups_accumulator().map_err(exec)
            } else {
                let f = Arc::clone(&a.function);
                Ok(Box::new(GroupsAccumulatorAdapter::new(move || f.create_accumulator())))
            }
        })
        .collect()
}

/// Rows `idx` of `batch`.
pub(crate) fn take_rows(batch: &RecordBatch, idx: &UInt32Array) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c, idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(exec)?;
    RecordBatch::try_new(batch.schema(), columns).map_err(exec)
}

/// Each aggregate's arguments over `batch`.
pub(crate) fn arguments(
    aggregates: &[Aggregate],
    batch: &RecordBatch,
) -> Result<Vec<Vec<ArrayRef>>> {
    let n = batch.num_rows();
    aggregates
        .iter()
        .map(|a| {
            a.function
                .expressions()
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)).map_err(exec))
                .collect()
        })
        .collect()
}

/// Each aggregate's `FILTER` clause over `batch`.
pub(crate) fn filters(
    aggregates: &[Aggregate],
    batch: &RecordBatch,
) -> Result<Vec<Option<BooleanArray>>> {
    let n = batch.num_rows();
    aggregates
        .iter()
        .map(|a| match &a.filter {
            None => Ok(None),
            Some(f) => {
                let v = f.evaluate(batch).and_then(|v| v.into_array(n)).map_err(exec)?;
                let b = v
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| Error::plan("a FILTER clause is not a boolean", None))?;
                Ok(Some(b.clone()))
            }
        })
        .collect()
}

/// The window end of every row, from the end key (or the start key plus the size).
fn window_ends(key: &ArrayRef, offset: i64) -> Result<Vec<Option<i64>>> {
    let ms =
        datafusion::arrow::compute::cast(key, &DataType::Timestamp(TimeUnit::Millisecond, None))
            .map_err(exec)?;
    let ms = ms
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| Error::plan("the window key is not a timestamp", None))?;
    Ok(ms.iter().map(|v| v.map(|v| v.saturating_add(offset))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    fn input_schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new("window_end", ts, false),
        ]))
    }

    fn batch(rows: &[(i64, Option<i64>, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn state() -> WindowAggregate {
        state_with(None)
    }

    fn state_with(panes: Option<Panes>) -> WindowAggregate {
        let input = input_schema();
        let v = col("v", &input).unwrap();
        let agg = |f, name: &str| Aggregate {
            function: Arc::new(
                AggregateExprBuilder::new(f, vec![Arc::clone(&v)])
                    .schema(Arc::clone(&input))
                    .alias(name)
                    .build()
                    .unwrap(),
            ),
            filter: None,
        };
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("window_end", ts, false),
            Field::new("n", DataType::Int64, false),
            Field::new("top", DataType::Int64, true),
        ]));
        WindowAggregate::new(WindowAggregateSpec {
            group: vec![col("k", &input).unwrap(), col("window_end", &input).unwrap()],
            end_key: 1,
            end_offset: 0,
            aggregates: vec![agg(count_udaf(), "n"), agg(max_udaf(), "top")],
            schema,
            panes,
            changes: false,
        })
        .unwrap()
    }

    fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut out: Vec<String> = datafusion::arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains(" k "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn windows_are_emitted_when_the_watermark_passes_their_end_and_late_rows_come_back() {
        let mut s = state();
        assert!(
            s.update(&batch(&[(1, Some(5), 10), (2, Some(7), 10), (1, Some(9), 20)]))
                .unwrap()
                .is_none()
        );
        assert!(s.update(&batch(&[(1, None, 10), (2, Some(1), 20)])).unwrap().is_none());
        assert_eq!(s.open_windows(), 2);
        // Window [.., 10) closes when the watermark reaches 9, its last instant.
        assert!(s.advance(8).unwrap().is_empty());
        let first: Vec<RecordBatch> = s.advance(9).unwrap().into_iter().map(|w| w.1).collect();
        assert_eq!(
            rows(&first),
            vec![
                "| 1 | 1970-01-01T00:00:00.010 | 1 | 5 |",
                "| 2 | 1970-01-01T00:00:00.010 | 1 | 7 |"
            ]
        );
        assert_eq!(s.open_windows(), 1);
        // A row for the emitted window is late; one for the open window is not.
        let late = s.update(&batch(&[(3, Some(4), 10), (1, Some(2), 20)])).unwrap().unwrap();
        assert_eq!(late.num_rows(), 1);
        // The watermark never goes back.
        assert!(s.advance(5).unwrap().is_empty());
        let rest: Vec<RecordBatch> =
            s.advance(i64::MAX).unwrap().into_iter().map(|w| w.1).collect();
        assert_eq!(
            rows(&rest),
            vec![
                "| 1 | 1970-01-01T00:00:00.020 | 2 | 9 |",
                "| 2 | 1970-01-01T00:00:00.020 | 1 | 1 |"
            ]
        );
        assert_eq!(s.open_windows(), 0);
    }

    #[test]
    fn a_late_row_of_a_frozen_pane_counts_only_in_the_windows_still_open() {
        // HOP of slide 10, size 30, by panes: the rows carry their pane's end.
        let panes = Panes { slide: 10, size: 30, start_key: None, end_key: Some(1), keys: vec![0] };
        let mut s = state_with(Some(panes));
        assert!(s.update(&batch(&[(1, Some(5), 10)])).unwrap().is_none());
        let first = s.advance(100).unwrap();
        assert_eq!(first.iter().map(|w| w.0).collect::<Vec<_>>(), vec![10, 20, 30]);
        // Pane (80, 90] is closed, but window (80, 110] is open: the row counts there only,
        // not in the windows ending at 90 and 100, which closed before it came.
        assert!(s.update(&batch(&[(1, Some(7), 90)])).unwrap().is_none());
        // Pane (0, 10]'s windows are all closed: late.
        assert!(s.update(&batch(&[(1, Some(7), 10)])).unwrap().is_some());
        let rest = s.advance(200).unwrap();
        assert_eq!(rest.iter().map(|w| w.0).collect::<Vec<_>>(), vec![110]);
        assert_eq!(rows(&[rest[0].1.clone()]), vec!["| 1 | 1970-01-01T00:00:00.110 | 1 | 7 |"]);
    }

    /// Stopped after some batches and restored from a snapshot, an aggregation closes the same
    /// windows with the same rows as one that went on (windows, and HOP panes).
    #[test]
    fn a_restored_snapshot_goes_on_like_the_original() {
        let first = [(1, Some(5), 10), (2, Some(7), 10), (1, Some(9), 20), (3, None, 30)];
        let second = [(1, Some(1), 20), (2, Some(4), 30), (1, Some(8), 40)];
        let panes = Panes { slide: 10, size: 30, start_key: None, end_key: Some(1), keys: vec![0] };
        for panes in [None, Some(panes)] {
            let mut a = state_with(panes.clone());
            a.update(&batch(&first)).unwrap();
            let mut out_a: Vec<RecordBatch> =
                a.advance(19).unwrap().into_iter().map(|w| w.1).collect();
            let snap = a.snapshot().unwrap();
            let mut b = WindowAggregate::restore(a.spec.clone(), &snap).unwrap();
            let mut out_b = out_a.clone();
            for (agg, out) in [(&mut a, &mut out_a), (&mut b, &mut out_b)] {
                agg.update(&batch(&second)).unwrap();
                out.extend(agg.advance(i64::MAX).unwrap().into_iter().map(|w| w.1));
            }
            assert!(rows(&out_a).len() > 3, "{panes:?}");
            assert_eq!(rows(&out_a), rows(&out_b), "{panes:?}");
        }
        // Another aggregation's snapshot does not fit.
        let mut a = state();
        a.update(&batch(&first)).unwrap();
        let snap = a.snapshot().unwrap();
        let panes = Panes { slide: 10, size: 30, start_key: None, end_key: Some(1), keys: vec![0] };
        let other = state_with(Some(panes));
        assert!(WindowAggregate::restore(other.spec.clone(), &snap).is_err());
    }
}
