//! Snapshots of a session aggregation's state, as Arrow batches (for checkpoints).
//!
//! Two batches: the open sessions ([`crate::session::Sessions`]: id, first and last time,
//! partition keys) and their partial aggregates, merged per session and group key
//! (`__session`, the other group keys, each aggregate's state as `__s<aggregate>_<field>`).
//! Taking it reads the partial states without consuming them; restoring puts the partial rows
//! back as one chunk. The sessions then close with the same rows as if the run had never
//! stopped.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::{SessionAggregate, SessionPlan};
use crate::error::{Error, Result};
use crate::window_agg::{WindowAggregateSpec, accumulators, exec};

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
}

impl SessionAggregate {
    /// The schema of [`SessionSnapshot::partials`].
    ///
    /// # Errors
    /// When an aggregate cannot tell its state's fields.
    pub fn partial_schema(&self) -> Result<SchemaRef> {
        let mut fields: Vec<Field> =
            self.key_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (a, agg) in self.spec.aggregates.iter().enumerate() {
            for f in agg.function.state_fields().map_err(exec)? {
                fields.push(Field::new(
                    format!("__s{a}_{}", f.name()),
                    f.data_type().clone(),
                    true,
                ));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The state, as batches; the aggregation goes on as it was.
    ///
    /// # Errors
    /// [`Error::NotSupported`] with `EMIT CHANGES` (what was emitted is not kept yet); when an
    /// accumulator cannot give its state.
    pub fn snapshot(&mut self) -> Result<SessionSnapshot> {
        if self.spec.changes {
            return Err(Error::not_supported("a snapshot of EMIT CHANGES sessions", None));
        }
        let (sessions, next, watermark) = self.sessions.snapshot()?;
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
        Ok(SessionSnapshot { sessions, next, watermark, partials })
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
