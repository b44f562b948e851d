//! Snapshots of a session aggregation's state, as Arrow batches (for checkpoints).
//!
//! Two batches: the open sessions ([`crate::session::Sessions`]: id, first and last time,
//! partition keys) and their partial aggregates, merged per session and group key
//! (`__session`, the other group keys, each aggregate's state as `__s<aggregate>_<field>`).
//! Taking it reads the partial states without consuming them; restoring puts the partial rows
//! back as one chunk. The sessions then close with the same rows as if the run had never
//! stopped. With `EMIT CHANGES`, also the rows last emitted per open session (`__session`,
//! then the output columns), the sessions touched since, and the rows to retract.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::{SessionAggregate, SessionPlan};
use crate::error::{Error, Result};
use crate::window_agg::{WindowAggregateSpec, accumulators, exec, take_rows};

/// A session aggregation's state.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// One row per open session.
    pub sessions: RecordBatch,
    /// The next session id.
    pub next: u64,
    /// The watermark the sessions have seen.
    pub watermark: i64,
    /// The partial aggregates per session and group key.
    pub partials: RecordBatch,
    /// `EMIT CHANGES`: the rows last emitted per open session (`__session` first).
    pub emitted: RecordBatch,
    /// `EMIT CHANGES`: the sessions updated since their last emission (`__session`).
    pub touched: RecordBatch,
    /// `EMIT CHANGES`: rows emitted for sessions merged away since, to retract.
    pub retract: RecordBatch,
}

/// A batch of one `__session` column.
fn ids(values: Vec<u64>) -> Result<RecordBatch> {
    use datafusion::arrow::array::UInt64Array;
    let schema = Arc::new(Schema::new(vec![Field::new("__session", DataType::UInt64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(values))]).map_err(exec)
}

impl SessionAggregate {
    /// The schema of [`SessionSnapshot::partials`].
    ///
    /// # Errors
    /// When an aggregate cannot tell its state's fields.
    pub fn partial_schema(&self) -> Result<SchemaRef> {
        let mut fields: Vec<Field> =
            self.key_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(crate::window_agg::snapshot::state_fields(&self.spec.aggregates)?);
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The state, as batches; the aggregation goes on as it was.
    ///
    /// # Errors
    /// When an accumulator cannot give its state.
    pub fn snapshot(&mut self) -> Result<SessionSnapshot> {
        let (sessions, next, watermark) = self.sessions.snapshot()?;
        let spec_schema = &self.spec.schema;
        let mut emitted: Vec<(&u64, &RecordBatch)> = self.emitted.iter().collect();
        emitted.sort_by_key(|(id, _)| **id);
        let rows: Vec<RecordBatch> = emitted.iter().map(|(_, b)| (*b).clone()).collect();
        let of: Vec<u64> =
            emitted.iter().flat_map(|(id, b)| std::iter::repeat_n(**id, b.num_rows())).collect();
        let rows = concat_batches(spec_schema, &rows).map_err(exec)?;
        let mut columns: Vec<ArrayRef> = ids(of)?.columns().to_vec();
        columns.extend(rows.columns().iter().cloned());
        let emitted = RecordBatch::try_new(self.emitted_schema(), columns).map_err(exec)?;
        let touched = ids(self.touched.iter().copied().collect())?;
        let retract = concat_batches(spec_schema, &self.retract).map_err(exec)?;
        let mut all: Vec<(u64, Vec<(u64, u32)>)> =
            self.refs.iter().map(|(id, refs)| (*id, refs.clone())).collect();
        all.sort_by_key(|(id, _)| *id);
        let (mut groups, mut accs) = self.gather(&all, None)?;
        let schema = self.partial_schema()?;
        let partials = if groups.is_empty() {
            RecordBatch::new_empty(schema)
        } else {
            let mut columns: Vec<ArrayRef> = groups.emit(EmitTo::All).map_err(exec)?;
            for acc in &mut accs {
                columns.extend(acc.state(EmitTo::All).map_err(exec)?);
            }
            RecordBatch::try_new(schema, columns).map_err(exec)?
        };
        Ok(SessionSnapshot { sessions, next, watermark, partials, emitted, touched, retract })
    }

    /// The schema of [`SessionSnapshot::emitted`].
    fn emitted_schema(&self) -> SchemaRef {
        let mut fields = vec![Field::new("__session", DataType::UInt64, false)];
        fields.extend(self.spec.schema.fields().iter().map(|f| f.as_ref().clone()));
        Arc::new(Schema::new(fields))
    }

    /// Put back what `EMIT CHANGES` had emitted.
    fn restore_changes(&mut self, snapshot: &SessionSnapshot) -> Result<()> {
        use datafusion::arrow::array::{AsArray, UInt32Array};
        use datafusion::arrow::datatypes::UInt64Type;
        let bad = || Error::plan("the snapshot of EMIT CHANGES sessions is damaged", None);
        let e = &snapshot.emitted;
        if e.schema().fields() != self.emitted_schema().fields()
            || snapshot.touched.num_columns() != 1
            || snapshot.retract.schema().fields() != self.spec.schema.fields()
        {
            return Err(bad());
        }
        let of = e.column(0).as_primitive_opt::<UInt64Type>().ok_or_else(bad)?;
        let rows = RecordBatch::try_new(Arc::clone(&self.spec.schema), e.columns()[1..].to_vec())
            .map_err(exec)?;
        let mut at = 0;
        while at < of.len() {
            let id = of.value(at);
            let n = (at..of.len()).take_while(|i| of.value(*i) == id).count();
            let idx = UInt32Array::from_iter_values((at..at + n).map(|i| i as u32));
            self.emitted.insert(id, take_rows(&rows, &idx)?);
            at += n;
        }
        let touched =
            snapshot.touched.column(0).as_primitive_opt::<UInt64Type>().ok_or_else(bad)?;
        self.touched.extend(touched.values().iter().copied());
        if snapshot.retract.num_rows() > 0 {
            self.retract.push(snapshot.retract.clone());
        }
        Ok(())
    }

    /// An aggregation of `spec` and `plan` in the state of `snapshot`.
    ///
    /// # Errors
    /// When the snapshot does not fit (another query's), or a state cannot be merged.
    pub fn restore(
        spec: WindowAggregateSpec,
        plan: SessionPlan,
        snapshot: &SessionSnapshot,
    ) -> Result<SessionAggregate> {
        let mut agg = SessionAggregate::new(spec, plan)?;
        agg.sessions.restore(&snapshot.sessions, snapshot.next, snapshot.watermark)?;
        if agg.spec.changes {
            agg.restore_changes(snapshot)?;
        }
        let partials = &snapshot.partials;
        if partials.schema().fields() != agg.partial_schema()?.fields() {
            return Err(Error::plan("the snapshot is not of this session aggregation", None));
        }
        if partials.num_rows() == 0 {
            return Ok(agg);
        }
        let keys = agg.key_schema.fields().len();
        let columns = partials.columns();
        let mut groups =
            new_group_values(Arc::clone(&agg.key_schema), &GroupOrdering::None).map_err(exec)?;
        let mut indices = Vec::with_capacity(partials.num_rows());
        groups.intern(&columns[..keys], &mut indices).map_err(exec)?;
        let total = groups.len();
        let mut accs = accumulators(&agg.spec.aggregates)?;
        let mut at = keys;
        for (acc, a) in accs.iter_mut().zip(&agg.spec.aggregates) {
            let width = a.function.state_fields().map_err(exec)?.len();
            acc.merge_batch(&columns[at..at + width], &indices, total).map_err(exec)?;
            at += width;
        }
        agg.add_chunk(groups, accs)?;
        Ok(agg)
    }
}
