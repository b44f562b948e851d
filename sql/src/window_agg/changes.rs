//! `EMIT CHANGES`: a windowed aggregation as a changelog.
//!
//! Each open window remembers the aggregate values it last emitted for each of its groups and
//! which groups were updated since. Emitting a window's changes ([`WindowAggregate::changes`],
//! and once more when the watermark closes it) gives, for every updated group, `-U` with the
//! value emitted before and `+U` with the current one, or `+I` for a group seen for the first
//! time: first all the `-U` rows, then the others, in one batch whose last column is `__op`
//! (Flink's row kinds as `Int8`: 0 `+I`, 1 `-U`, 2 `+U`, 3 `-D`). Applying the rows in order
//! to a table keyed by the group keys yields, once the window has closed, its `EMIT FINAL`
//! row.
//!
//! DataFusion's accumulators only give their values by consuming their state, so reading the
//! current values goes round: the group keys are emitted and interned again (same order),
//! each accumulator's state is taken and merged back, and a copy merged into fresh
//! accumulators is evaluated. This costs time in proportion to the window's groups, at each
//! emission; `EMIT CHANGES EVERY` bounds how often that happens.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int8Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::EmitTo;

use super::{Frozen, Open, WindowAggregate, WindowAggregateSpec, accumulators, exec};
use crate::error::Result;

/// `+I`: a row inserted.
pub const INSERT: i8 = 0;
/// `-U`: the row before an update.
pub const UPDATE_BEFORE: i8 = 1;
/// `+U`: the row after an update.
pub const UPDATE_AFTER: i8 = 2;
/// `-D`: a row deleted.
pub const DELETE: i8 = 3;

/// The name of the changelog's row kind column.
pub const OP_COLUMN: &str = "__op";

/// `schema` with the `__op` column last.
pub fn changelog_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A changelog's schema without its `__op` (the last column): the rows' columns.
pub fn rows_schema(changelog: &Schema) -> SchemaRef {
    let fields = changelog.fields();
    Arc::new(Schema::new(
        fields.iter().take(fields.len().saturating_sub(1)).cloned().collect::<Vec<_>>(),
    ))
}

/// What `EMIT CHANGES` has emitted of an open window.
#[derive(Default)]
pub(super) struct Emitted {
    /// Each aggregate's value per group at the last emission (empty before the first).
    last: Vec<ArrayRef>,
    /// The groups emitted so far (the first `seen` of the window's groups).
    seen: usize,
    /// The groups updated since.
    changed: Vec<bool>,
    any: bool,
}

impl Emitted {
    /// Its snapshot as columns over a window's `n` groups (in their order): `__seen` (emitted
    /// before), `__changed` (updated since), then each aggregate's value last emitted (null
    /// for the groups not emitted yet), of `types`.
    ///
    /// # Errors
    /// When the values cannot be padded.
    pub(super) fn to_columns(&self, n: usize, types: &[DataType]) -> Result<Vec<ArrayRef>> {
        use datafusion::arrow::array::{BooleanArray, new_null_array};
        let mut out: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i < self.seen)))),
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| Some(self.changed.get(i).copied().unwrap_or(false))),
            )),
        ];
        for (a, t) in types.iter().enumerate() {
            let pad = new_null_array(t, n.saturating_sub(self.seen));
            out.push(match self.last.get(a) {
                Some(last) if self.seen > 0 => {
                    concat(&[last.slice(0, self.seen.min(last.len())).as_ref(), pad.as_ref()])
                        .map_err(exec)?
                }
                _ => new_null_array(t, n),
            });
        }
        Ok(out)
    }

    /// From the columns [`Emitted::to_columns`] made.
    ///
    /// # Errors
    /// When they are not as made.
    pub(super) fn from_columns(columns: &[ArrayRef]) -> Result<Emitted> {
        use datafusion::arrow::array::AsArray;
        let bad = || exec("the snapshot of EMIT CHANGES is damaged");
        let [seen, changed, values @ ..] = columns else { return Err(bad()) };
        let (seen, changed) =
            (seen.as_boolean_opt().ok_or_else(bad)?, changed.as_boolean_opt().ok_or_else(bad)?);
        let seen = (0..seen.len()).take_while(|i| seen.value(*i)).count();
        let changed: Vec<bool> = (0..changed.len()).map(|i| changed.value(i)).collect();
        Ok(Emitted {
            last: if seen == 0 {
                Vec::new()
            } else {
                values.iter().map(|v| v.slice(0, seen)).collect()
            },
            seen,
            any: changed.iter().any(|c| *c),
            changed,
        })
    }

    /// Groups `indices` were updated (of `total` groups now).
    pub(super) fn mark(&mut self, indices: &[usize], total: usize) {
        self.changed.resize(total, false);
        for i in indices {
            self.changed[*i] = true;
        }
        self.any |= !indices.is_empty();
    }
}

impl WindowAggregate {
    /// The changes of every open window since its last emission, in order of window end: each
    /// window's end and its changelog rows ([`changelog_schema`] of
    /// [`WindowAggregateSpec::schema`]).
    ///
    /// # Errors
    /// When an accumulator cannot give its state or value.
    pub fn changes(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        let mut out = Vec::new();
        for (end, window) in self.open.iter_mut() {
            if let Some(batch) = of_window(&self.spec, &self.group_schema, window)? {
                out.push((*end, batch));
            }
        }
        Ok(out)
    }
}

/// The changelog rows of `window` since its last emission (`None`: no change).
pub(super) fn of_window(
    spec: &WindowAggregateSpec,
    group_schema: &SchemaRef,
    window: &mut Open,
) -> Result<Option<RecordBatch>> {
    if !window.emitted.any {
        return Ok(None);
    }
    // The current keys and values (from copies of the states), the window left as it was.
    let Frozen { keys, states } = window.peek(group_schema)?;
    let n = window.groups.len();
    let all: Vec<usize> = (0..n).collect();
    let mut copies = accumulators(&spec.aggregates)?;
    let mut values = Vec::with_capacity(copies.len());
    for (copy, state) in copies.iter_mut().zip(&states) {
        copy.merge_batch(state, &all, n).map_err(exec)?;
        values.push(copy.evaluate(EmitTo::All).map_err(exec)?);
    }
    let emitted = &mut window.emitted;
    let before = emitted.seen;
    let (mut updated, mut inserted) = (Vec::new(), Vec::new());
    for (i, changed) in emitted.changed.iter().enumerate() {
        if *changed {
            if i < before { updated.push(i as u32) } else { inserted.push(i as u32) }
        }
    }
    let pick = |arrays: &[ArrayRef], idx: &UInt32Array| -> Result<Vec<ArrayRef>> {
        arrays.iter().map(|a| take(a, idx, None).map_err(exec)).collect()
    };
    if spec.aggregates.is_empty() {
        // Without aggregates a group's row never changes once emitted.
        updated.clear();
    }
    if updated.is_empty() && inserted.is_empty() {
        emitted.last = values;
        emitted.seen = n;
        emitted.changed = vec![false; n];
        emitted.any = false;
        return Ok(None);
    }
    let (updated, inserted) = (UInt32Array::from(updated), UInt32Array::from(inserted));
    let now = updated.len() + inserted.len();
    // -U rows (the values emitted before), then +U rows, then +I rows.
    let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
    let mut ops: Vec<i8> = Vec::with_capacity(updated.len() + now);
    if !updated.is_empty() {
        let mut before_rows = pick(&keys, &updated)?;
        before_rows.extend(pick(&emitted.last, &updated)?);
        parts.push(before_rows);
        ops.extend(std::iter::repeat_n(UPDATE_BEFORE, updated.len()));
    }
    for (idx, op) in [(&updated, UPDATE_AFTER), (&inserted, INSERT)] {
        if !idx.is_empty() {
            let mut rows = pick(&keys, idx)?;
            rows.extend(pick(&values, idx)?);
            parts.push(rows);
            ops.extend(std::iter::repeat_n(op, idx.len()));
        }
    }
    emitted.last = values;
    emitted.seen = n;
    emitted.changed = vec![false; n];
    emitted.any = false;
    let mut columns = Vec::with_capacity(spec.schema.fields().len() + 1);
    for c in 0..spec.schema.fields().len() {
        let arrays: Vec<&dyn Array> = parts.iter().map(|p| p[c].as_ref()).collect();
        columns.push(concat(&arrays).map_err(exec)?);
    }
    columns.push(Arc::new(Int8Array::from(ops)) as ArrayRef);
    let batch = RecordBatch::try_new(changelog_schema(&spec.schema), columns).map_err(exec)?;
    Ok((batch.num_rows() > 0).then_some(batch))
}
