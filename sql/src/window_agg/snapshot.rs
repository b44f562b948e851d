//! Snapshots of a windowed aggregation's state, as Arrow batches (for checkpoints, issue 7).
//!
//! Each open window (or pane) becomes one batch: its end (`__end`), its group keys, and each
//! aggregate's partial state (DataFusion's `GroupsAccumulator::state`, the columns named
//! `__s<aggregate>_<field>`); each frozen pane's chunks likewise. Reading the state consumes
//! it, so the snapshot interns the keys again into a new table and merges the states back,
//! leaving the aggregation as it was. [`WindowAggregate::restore`] rebuilds an aggregation
//! from a snapshot: the same groups and states, so the windows it then closes hold the same
//! rows as if it had never stopped. With `EMIT CHANGES` each window's batch also says what
//! was emitted of each group (`__seen`, `__changed`, the values `__v<aggregate>`), so that the
//! restored windows emit the same changes.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Frozen, WindowAggregate, WindowAggregateSpec, exec};
use crate::error::{Error, Result};

/// A windowed aggregation's state.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The schema of every batch ([`WindowAggregate::snapshot_schema`]).
    pub schema: SchemaRef,
    /// One batch per open window (or pane), in [`WindowAggregate::snapshot_schema`].
    pub open: Vec<RecordBatch>,
    /// One batch per chunk of a frozen pane, in the same schema.
    pub frozen: Vec<RecordBatch>,
    /// The end of the last window emitted by panes.
    pub emitted: i64,
    /// The watermark the aggregation has seen.
    pub watermark: i64,
}

impl WindowAggregate {
    /// The schema of the batches of a [`Snapshot`].
    ///
    /// # Errors
    /// When an aggregate cannot tell its state's fields.
    pub fn snapshot_schema(&self) -> Result<SchemaRef> {
        let mut fields = vec![Field::new("__end", DataType::Int64, false)];
        fields.extend(self.group_schema.fields().iter().map(|f| f.as_ref().clone()));
        fields.extend(state_fields(&self.spec.aggregates)?);
        if self.spec.changes {
            fields.push(Field::new("__seen", DataType::Boolean, false));
            fields.push(Field::new("__changed", DataType::Boolean, false));
            for (a, t) in self.value_types().iter().enumerate() {
                fields.push(Field::new(format!("__v{a}"), t.clone(), true));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Each aggregate's result type.
    fn value_types(&self) -> Vec<DataType> {
        let keys = self.spec.group.len();
        self.spec.schema.fields().iter().skip(keys).map(|f| f.data_type().clone()).collect()
    }

    /// The state, as batches; the aggregation goes on as it was.
    ///
    /// # Errors
    /// When an accumulator cannot give its state.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let schema = self.snapshot_schema()?;
        let types = self.value_types();
        let mut open = Vec::with_capacity(self.open.len());
        for (end, window) in self.open.iter_mut() {
            let Frozen { keys, states } = window.peek(&self.group_schema)?;
            let n = window.groups.len();
            let emitted = match self.spec.changes {
                true => window.emitted.to_columns(n, &types)?,
                false => Vec::new(),
            };
            open.push(batch(&schema, *end, n, &keys, &states, emitted)?);
        }
        let mut frozen = Vec::new();
        for (end, chunks) in &self.frozen {
            for chunk in chunks {
                let n = chunk.keys.first().map_or(0, |k| k.len());
                frozen.push(batch(&schema, *end, n, &chunk.keys, &chunk.states, Vec::new())?);
            }
        }
        Ok(Snapshot { schema, open, frozen, emitted: self.emitted, watermark: self.watermark })
    }

    /// An aggregation of `spec` in the state of `snapshot`.
    ///
    /// # Errors
    /// When the snapshot does not fit the spec (another query's), or a state cannot be merged.
    pub fn restore(spec: WindowAggregateSpec, snapshot: &Snapshot) -> Result<WindowAggregate> {
        let mut agg = WindowAggregate::new(spec)?;
        let schema = agg.snapshot_schema()?;
        let keys = agg.group_schema.fields().len();
        let widths: Vec<usize> = agg
            .spec
            .aggregates
            .iter()
            .map(|a| a.function.state_fields().map(|f| f.len()).map_err(exec))
            .collect::<Result<_>>()?;
        type Split = (i64, Vec<ArrayRef>, Vec<Vec<ArrayRef>>, Vec<ArrayRef>);
        let split = |b: &RecordBatch| -> Result<Split> {
            if b.schema().fields() != schema.fields() {
                return Err(Error::plan("the snapshot is not of this aggregation", None));
            }
            let end = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .and_then(|e| (!e.is_empty()).then(|| e.value(0)))
                .unwrap_or(i64::MIN);
            let cols = b.columns();
            let mut at = 1 + keys;
            let mut states = Vec::with_capacity(widths.len());
            for w in &widths {
                states.push(cols[at..at + w].to_vec());
                at += w;
            }
            Ok((end, cols[1..1 + keys].to_vec(), states, cols[at..].to_vec()))
        };
        for b in &snapshot.open {
            let (end, keys, states, emitted) = split(b)?;
            if b.num_rows() == 0 {
                continue;
            }
            let mut window = agg.open_window()?;
            let mut indices = Vec::with_capacity(b.num_rows());
            window.groups.intern(&keys, &mut indices).map_err(exec)?;
            let total = window.groups.len();
            if total != b.num_rows() {
                return Err(Error::plan("the snapshot repeats a group of a window", None));
            }
            for (acc, state) in window.accumulators.iter_mut().zip(&states) {
                acc.merge_batch(state, &indices, total).map_err(exec)?;
            }
            if agg.spec.changes {
                window.emitted = super::changes::Emitted::from_columns(&emitted)?;
            }
            agg.open.insert(end, window);
            agg.count_groups(total)?;
        }
        for b in &snapshot.frozen {
            let (end, keys, states, _) = split(b)?;
            if b.num_rows() == 0 {
                continue;
            }
            agg.count_groups(b.num_rows())?;
            agg.frozen.entry(end).or_default().push(Frozen { keys, states });
        }
        agg.emitted = snapshot.emitted;
        agg.watermark = snapshot.watermark;
        Ok(agg)
    }
}

/// The fields of the aggregates' partial states in a snapshot: `__s<aggregate>_<field>`, all
/// nullable (a function may declare a state non-nullable and hold no null).
///
/// # Errors
/// When an aggregate cannot tell its state's fields.
pub(crate) fn state_fields(aggregates: &[super::Aggregate]) -> Result<Vec<Field>> {
    let mut fields = Vec::new();
    for (a, agg) in aggregates.iter().enumerate() {
        for f in agg.function.state_fields().map_err(exec)? {
            fields.push(Field::new(format!("__s{a}_{}", f.name()), f.data_type().clone(), true));
        }
    }
    Ok(fields)
}

/// One window's snapshot batch.
fn batch(
    schema: &SchemaRef,
    end: i64,
    n: usize,
    keys: &[ArrayRef],
    states: &[Vec<ArrayRef>],
    emitted: Vec<ArrayRef>,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![end; n]))];
    columns.extend(keys.iter().cloned());
    for s in states {
        columns.extend(s.iter().cloned());
    }
    columns.extend(emitted);
    // (State arrays may be declared non-nullable by the function and hold no null: the
    // snapshot's fields are all nullable.)
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(exec)
}
