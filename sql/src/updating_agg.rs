//! Updating aggregation: `GROUP BY` without a window, every group updated as rows come, its
//! result a changelog (`__op`) of the groups' rows (the state of a materialized view).
//!
//! Group keys are interned in arrow's row format (one shared copy of each key for the hash
//! map and the list by group index); each aggregate keeps its state per group index
//! ([`accumulators`]), which can be read for any set of groups and, over a changelog input
//! (rows `-U` and `-D` take rows back), retract. A batch records, for each group it touches
//! first since the last emission, whether the group's row was in the output and its values
//! then; [`UpdatingAggregate::changes`] compares them with the values now: a group whose values
//! changed gives `-U` (old) and `+U` (new), a new group `+I`, a group whose every row was
//! taken back `-D` (an aggregation without `GROUP BY` has one row always). Groups whose values
//! did not change give nothing. State grows with the number of groups (at most
//! [`MAX_GROUPS`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Error, Result};
use crate::window_agg::Aggregate;
use crate::window_agg::changes::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};

mod accumulators;
mod bags;
mod distinct;
#[cfg(test)]
mod tests;

use accumulators::GroupAccumulator;

/// Milliseconds since the epoch, now (the clock of `state_ttl`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Groups an updating aggregation may hold (a clear error past it).
pub const MAX_GROUPS: usize = 10_000_000;

/// How to aggregate.
#[derive(Debug, Clone)]
pub struct UpdatingAggregateSpec {
    /// Group key expressions over the input batch (none: one group, always present).
    pub group: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Group keys then aggregate results, as the query names them.
    pub schema: SchemaRef,
    /// The schema of the input batches (the arguments' types come from it).
    pub input: SchemaRef,
    /// Whether the input is a changelog whose rows may retract.
    pub retracting: bool,
}

fn arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::plan(format!("aggregation: {e}"), None)
}

fn exec(e: datafusion::error::DataFusionError) -> Error {
    Error::plan(format!("aggregation: {}", e.message()), None)
}

/// Group keys by index, in arrow's row format.
#[derive(Debug)]
struct Keys {
    /// `None`: no group keys (one group).
    converter: Option<RowConverter>,
    index: datafusion::common::HashMap<Arc<[u8]>, u32>,
    list: Vec<Arc<[u8]>>,
}

impl Keys {
    fn new(types: &[DataType]) -> Result<Keys> {
        let converter = if types.is_empty() {
            None
        } else {
            let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
            Some(RowConverter::new(fields).map_err(arrow)?)
        };
        let mut keys =
            Keys { converter, index: datafusion::common::HashMap::default(), list: Vec::new() };
        if keys.converter.is_none() {
            keys.list.push(Arc::from(&[][..]));
        }
        Ok(keys)
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    /// The group of each of `n` rows with these key columns (new keys get new groups).
    fn intern(&mut self, columns: &[ArrayRef], n: usize) -> Result<Vec<u32>> {
        let Some(converter) = &self.converter else { return Ok(vec![0; n]) };
        let rows = converter.convert_columns(columns).map_err(arrow)?;
        let mut out = Vec::with_capacity(n);
        for row in rows.iter() {
            let g = match self.index.get(row.as_ref()) {
                Some(g) => *g,
                None => {
                    if self.list.len() >= MAX_GROUPS {
                        return Err(Error::plan(
                            format!(
                                "the aggregation holds {MAX_GROUPS} groups, its limit: group by fewer distinct keys"
                            ),
                            None,
                        ));
                    }
                    let g = self.list.len() as u32;
                    let key: Arc<[u8]> = Arc::from(row.as_ref());
                    self.index.insert(Arc::clone(&key), g);
                    self.list.push(key);
                    g
                }
            };
            out.push(g);
        }
        Ok(out)
    }

    /// The key columns of `groups`.
    fn columns(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let Some(converter) = &self.converter else { return Ok(Vec::new()) };
        let parser = converter.parser();
        let rows = groups.iter().map(|g| parser.parse(&self.list[*g as usize]));
        converter.convert_rows(rows).map_err(arrow)
    }
}

/// What the groups touched since the last emission were before.
#[derive(Debug, Default)]
struct Pending {
    groups: Vec<u32>,
    /// Whether each group's row was in the output.
    present: Vec<bool>,
    /// Per aggregate, chunks of the values then (one per batch).
    before: Vec<Vec<ArrayRef>>,
    /// Per group, whether it is pending.
    marked: Vec<bool>,
}

/// The state of an updating aggregation.
#[derive(Debug)]
pub struct UpdatingAggregate {
    spec: UpdatingAggregateSpec,
    keys: Keys,
    /// Net input rows per group.
    rows: Vec<i64>,
    /// Whether each group's row is in the output.
    present: Vec<bool>,
    /// When each group last had a row, in milliseconds since the epoch (for `state_ttl`).
    touched_at: Vec<i64>,
    accumulators: Vec<Box<dyn GroupAccumulator>>,
    pending: Pending,
}

impl UpdatingAggregate {
    /// An empty aggregation.
    ///
    /// # Errors
    /// When a key or value type cannot be kept in row format.
    pub fn new(spec: UpdatingAggregateSpec) -> Result<UpdatingAggregate> {
        let types: Vec<DataType> = spec
            .schema
            .fields()
            .iter()
            .take(spec.group.len())
            .map(|f| f.data_type().clone())
            .collect();
        let keys = Keys::new(&types)?;
        let mut accumulators = Vec::with_capacity(spec.aggregates.len());
        for a in &spec.aggregates {
            let types: Vec<DataType> = a
                .function
                .expressions()
                .iter()
                .map(|e| e.data_type(&spec.input))
                .collect::<datafusion::common::Result<_>>()
                .map_err(exec)?;
            accumulators.push(accumulators::for_function(&a.function, &types, spec.retracting)?);
        }
        let n = keys.len();
        let pending =
            Pending { before: vec![Vec::new(); spec.aggregates.len()], ..Default::default() };
        let mut agg = UpdatingAggregate {
            spec,
            keys,
            rows: vec![0; n],
            touched_at: vec![now_ms(); n],
            present: vec![false; n],
            accumulators,
            pending,
        };
        if n == 1 {
            // Without GROUP BY the one row exists before any input: emit it at first.
            agg.touch(&[0])?;
        }
        Ok(agg)
    }

    /// The spec.
    pub fn spec(&self) -> &UpdatingAggregateSpec {
        &self.spec
    }

    /// The number of groups held.
    pub fn groups(&self) -> usize {
        self.keys.len()
    }

    /// Remember the current values of the groups not pending yet among `groups` (in order,
    /// each once).
    fn touch(&mut self, groups: &[u32]) -> Result<()> {
        let p = &mut self.pending;
        p.marked.resize(self.keys.len(), false);
        let mut new = Vec::new();
        for g in groups {
            if !p.marked[*g as usize] {
                p.marked[*g as usize] = true;
                new.push(*g);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        for (acc, chunks) in self.accumulators.iter().zip(&mut p.before) {
            chunks.push(acc.evaluate(&new)?);
        }
        p.present
            .extend(new.iter().map(|g| self.present.get(*g as usize).copied().unwrap_or(false)));
        p.groups.extend(new);
        Ok(())
    }

    /// Add a batch of input rows (the rows `retract` marks are taken back).
    ///
    /// # Errors
    /// When an expression fails, the groups pass [`MAX_GROUPS`], or a row is taken back that
    /// its group never had.
    pub fn update(&mut self, batch: &RecordBatch, retract: Option<&[bool]>) -> Result<()> {
        let n = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch).and_then(|v| v.into_array(n));
        let keys = self
            .spec
            .group
            .iter()
            .map(eval)
            .collect::<datafusion::common::Result<Vec<_>>>()
            .map_err(exec)?;
        let groups = self.keys.intern(&keys, n)?;
        let total = self.keys.len();
        self.rows.resize(total, 0);
        self.present.resize(total, false);
        self.touched_at.resize(total, 0);
        self.touch(&groups)?;
        let now = now_ms();
        for g in &groups {
            self.touched_at[*g as usize] = now;
        }
        for (i, g) in groups.iter().enumerate() {
            let r = &mut self.rows[*g as usize];
            if retract.is_some_and(|r| r[i]) {
                *r -= 1;
                if *r < 0 {
                    return Err(Error::plan(
                        "the input retracts a row of a group that has none: it is not a changelog of inserts before their retractions",
                        None,
                    ));
                }
            } else {
                *r += 1;
            }
        }
        for (a, acc) in self.spec.aggregates.iter().zip(&mut self.accumulators) {
            let args = a
                .function
                .expressions()
                .iter()
                .map(eval)
                .collect::<datafusion::common::Result<Vec<_>>>()
                .map_err(exec)?;
            match &a.filter {
                None => acc.update(&args, &groups, retract, total)?,
                Some(f) => {
                    let mask = eval(f).map_err(exec)?;
                    let mask = mask.as_boolean_opt().ok_or_else(|| {
                        Error::plan("an aggregate's FILTER is not a boolean", None)
                    })?;
                    let (args, groups, retract) =
                        accumulators::select(&args, &groups, retract, mask)?;
                    acc.update(&args, &groups, retract.as_deref(), total)?;
                }
            }
        }
        Ok(())
    }

    /// The changes since the last call: the aggregate's columns then `__op`: `-U` rows, then
    /// as many `+U` rows of the same groups in the same order, then `-D` and `+I` rows.
    /// `None` when nothing changed.
    ///
    /// # Errors
    /// When a value cannot be computed.
    pub fn changes(&mut self) -> Result<Option<RecordBatch>> {
        let p = std::mem::take(&mut self.pending);
        self.pending = Pending {
            before: vec![Vec::new(); self.accumulators.len()],
            marked: p.marked,
            ..Default::default()
        };
        for g in &p.groups {
            self.pending.marked[*g as usize] = false;
        }
        if p.groups.is_empty() {
            return Ok(None);
        }
        let global = self.spec.group.is_empty();
        let mut before = Vec::with_capacity(self.accumulators.len());
        let mut after = Vec::with_capacity(self.accumulators.len());
        for (acc, chunks) in self.accumulators.iter().zip(&p.before) {
            let refs: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
            before.push(datafusion::arrow::compute::concat(&refs).map_err(arrow)?);
            after.push(acc.evaluate(&p.groups)?);
        }
        // Which groups changed values.
        let mut changed = vec![false; p.groups.len()];
        for (b, a) in before.iter().zip(&after) {
            match datafusion::arrow::compute::kernels::cmp::distinct(b, a) {
                Ok(d) => {
                    for (i, c) in changed.iter_mut().enumerate() {
                        *c |= d.value(i);
                    }
                }
                // (A type without comparison: taken as changed.)
                Err(_) => changed.iter_mut().for_each(|c| *c = true),
            }
        }
        // (source, row): 0 the values before, 1 after.
        let (mut updates, mut tail) = (Vec::new(), Vec::new());
        for (i, g) in p.groups.iter().enumerate() {
            let was = p.present[i];
            let is = global || self.rows[*g as usize] > 0;
            self.present[*g as usize] = is;
            match (was, is) {
                (true, true) if changed[i] => updates.push(i),
                (true, false) => tail.push((0, i, DELETE)),
                (false, true) => tail.push((1, i, INSERT)),
                _ => {}
            }
        }
        let mut picks: Vec<(usize, usize)> = updates.iter().map(|i| (0, *i)).collect();
        picks.extend(updates.iter().map(|i| (1, *i)));
        picks.extend(tail.iter().map(|(s, i, _)| (*s, *i)));
        if picks.is_empty() {
            return Ok(None);
        }
        let mut ops = vec![UPDATE_BEFORE; updates.len()];
        ops.extend(vec![UPDATE_AFTER; updates.len()]);
        ops.extend(tail.iter().map(|(_, _, o)| *o));
        let positions: Vec<u32> = picks.iter().map(|(_, i)| *i as u32).collect();
        let groups: Vec<u32> = positions.iter().map(|i| p.groups[*i as usize]).collect();
        let mut columns = self.keys.columns(&groups)?;
        for (b, a) in before.iter().zip(&after) {
            let picked = interleave(&[b.as_ref(), a.as_ref()], &picks).map_err(arrow)?;
            columns.push(picked);
        }
        columns.push(Arc::new(Int8Array::from(ops)));
        let mut fields: Vec<Field> =
            self.spec.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(crate::window_agg::changes::OP_COLUMN, DataType::Int8, false));
        // (The aggregate's declared nullability may differ from the values: e.g. a SUM.)
        let fields: Vec<Field> = fields
            .into_iter()
            .zip(&columns)
            .map(|(f, c)| {
                let nullable = f.is_nullable() || c.null_count() > 0;
                f.with_nullable(nullable)
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(picks.len()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
            .map(Some)
            .map_err(arrow)
    }

    /// The current row of every group in the output: group keys then aggregates.
    ///
    /// # Errors
    /// When a value cannot be computed.
    pub fn current(&self) -> Result<RecordBatch> {
        let groups: Vec<u32> = (0..self.keys.len() as u32)
            .filter(|g| self.present.get(*g as usize).copied().unwrap_or(false))
            .collect();
        let mut columns = self.keys.columns(&groups)?;
        for acc in &self.accumulators {
            columns.push(acc.evaluate(&groups)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(groups.len()));
        RecordBatch::try_new_with_options(Arc::clone(&self.spec.schema), columns, &options)
            .map_err(arrow)
    }

    /// `state_ttl`: forget the groups without a row for `ttl_ms` (at `now`, in milliseconds
    /// since the epoch): their rows leave the output (`-D` at the next
    /// [`UpdatingAggregate::changes`]), and a later row starts its group anew. The one group of
    /// an aggregation without `GROUP BY` stays. Returns how many groups expired.
    ///
    /// # Errors
    /// When a value cannot be computed, or the state cannot be compacted.
    pub fn expire(&mut self, now: i64, ttl_ms: i64) -> Result<usize> {
        if self.spec.group.is_empty() {
            return Ok(0);
        }
        let live = |a: &UpdatingAggregate, g: usize| a.rows[g] > 0 || a.present[g];
        // Expired groups free their values at once; their keys are dropped once they are the
        // many (the state is rebuilt without them).
        let n = self.keys.len();
        let dead = (0..n).filter(|g| !live(self, *g)).count();
        if self.pending.groups.is_empty() && dead > 1024 && dead > n - dead {
            self.compact()?;
        }
        let old: Vec<u32> = (0..self.keys.len())
            .filter(|g| live(self, *g) && self.touched_at[*g].saturating_add(ttl_ms) <= now)
            .map(|g| g as u32)
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        self.touch(&old)?;
        for acc in &mut self.accumulators {
            acc.reset(&old);
        }
        for g in &old {
            self.rows[*g as usize] = 0;
        }
        Ok(old.len())
    }

    /// Rebuild the state with only the groups that hold rows or are in the output.
    fn compact(&mut self) -> Result<()> {
        use datafusion::arrow::array::UInt32Array;
        use datafusion::arrow::compute::{filter, filter_record_batch};
        use datafusion::arrow::datatypes::UInt32Type;
        let n = self.keys.len();
        let live: Vec<bool> = (0..n).map(|g| self.rows[g] > 0 || self.present[g]).collect();
        let mut index = vec![u32::MAX; n];
        let mut next = 0u32;
        for g in 0..n {
            if live[g] {
                index[g] = next;
                next += 1;
            }
        }
        let mask = BooleanArray::from(live);
        let parts = self.snapshot()?;
        let mut kept = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let flattened =
                i > 0 && part.schema().fields().first().is_some_and(|f| f.name() == "group");
            if !flattened {
                kept.push(filter_record_batch(part, &mask).map_err(arrow)?);
                continue;
            }
            // Rows (group, values..., count): those of live groups, renumbered.
            let groups = part
                .column(0)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| Error::plan("aggregation: a state's groups are not UInt32", None))?;
            let rows = BooleanArray::from_iter(
                groups
                    .values()
                    .iter()
                    .map(|g| Some(index.get(*g as usize).is_some_and(|i| *i != u32::MAX))),
            );
            let mut columns = Vec::with_capacity(part.num_columns());
            let renumbered: UInt32Array = groups
                .values()
                .iter()
                .filter_map(|g| index.get(*g as usize).copied().filter(|i| *i != u32::MAX))
                .collect();
            columns.push(Arc::new(renumbered) as ArrayRef);
            for c in &part.columns()[1..] {
                columns.push(filter(c, &rows).map_err(arrow)?);
            }
            kept.push(RecordBatch::try_new(part.schema(), columns).map_err(arrow)?);
        }
        *self = UpdatingAggregate::restore(self.spec.clone(), &kept)?;
        Ok(())
    }

    /// The state for a checkpoint: one batch of the groups (key columns, net rows, whether
    /// in the output) and one per aggregate. Changes not emitted yet are not kept: take it
    /// right after [`UpdatingAggregate::changes`].
    ///
    /// # Errors
    /// When values cannot be converted back to Arrow.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let all: Vec<u32> = (0..self.keys.len() as u32).collect();
        let mut columns = self.keys.columns(&all)?;
        let mut fields: Vec<Field> = self
            .spec
            .schema
            .fields()
            .iter()
            .take(self.spec.group.len())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new("__rows", DataType::Int64, false));
        fields.push(Field::new("__present", DataType::Boolean, false));
        fields.push(Field::new("__touched", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(self.rows.clone())));
        columns.push(Arc::new(BooleanArray::from(self.present.clone())));
        columns.push(Arc::new(Int64Array::from(self.touched_at.clone())));
        let options = RecordBatchOptions::new().with_row_count(Some(all.len()));
        let groups =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
                .map_err(arrow)?;
        let mut out = vec![groups];
        for acc in &self.accumulators {
            out.push(acc.save()?);
        }
        Ok(out)
    }

    /// An aggregation restored from what [`UpdatingAggregate::snapshot`] gave.
    ///
    /// # Errors
    /// When the batches do not match the spec.
    pub fn restore(
        spec: UpdatingAggregateSpec,
        parts: &[RecordBatch],
    ) -> Result<UpdatingAggregate> {
        let damaged = |what: &str| {
            Error::plan(format!("the snapshot of an aggregation is damaged: {what}"), None)
        };
        let mut agg = UpdatingAggregate::new(spec)?;
        let (Some(groups), aggs) = (parts.first(), parts.get(1..).unwrap_or_default()) else {
            return Err(damaged("no groups"));
        };
        if aggs.len() != agg.accumulators.len() {
            return Err(damaged("not one state per aggregate"));
        }
        let k = agg.spec.group.len();
        // (`__touched` is missing from checkpoints of builds before `state_ttl`.)
        if groups.num_columns() != k + 2 && groups.num_columns() != k + 3 {
            return Err(damaged("the groups have the wrong columns"));
        }
        let n = groups.num_rows();
        let rows =
            groups.column(k).as_primitive_opt::<Int64Type>().ok_or_else(|| damaged("rows"))?;
        let present = groups.column(k + 1).as_boolean_opt().ok_or_else(|| damaged("present"))?;
        if k > 0 {
            let interned = agg.keys.intern(&groups.columns()[..k], n)?;
            if interned.iter().enumerate().any(|(i, g)| *g as usize != i) {
                return Err(damaged("a group key twice"));
            }
        } else if n != 1 {
            return Err(damaged("an aggregation without keys has one group"));
        }
        agg.rows = rows.values().to_vec();
        agg.present = (0..n).map(|i| present.value(i)).collect();
        agg.touched_at = match groups.columns().get(k + 2) {
            Some(t) => t
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| damaged("touched"))?
                .values()
                .to_vec(),
            None => vec![now_ms(); n],
        };
        for (acc, part) in agg.accumulators.iter_mut().zip(aggs) {
            acc.load(part, n)?;
        }
        agg.pending =
            Pending { before: vec![Vec::new(); agg.accumulators.len()], ..Default::default() };
        Ok(agg)
    }
}
