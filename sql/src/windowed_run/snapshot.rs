//! A windowed run's state for checkpoints: [`WindowedRun::snapshot`] takes it between two
//! batches, [`RunSnapshot::to_parts`] turns it into named Arrow batches (the checkpoint's
//! state files), [`RunSnapshot::from_parts`] and [`WindowedRun::restore`] bring it back.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};

use super::{InputState, State, WindowedRun};
use crate::error::{Error, Result};
use crate::window_agg::WindowAggregate;
use crate::window_agg::snapshot::Snapshot;
use crate::windowed_plan::WindowedPlan;

/// A run's state for a checkpoint: the aggregation's, and where each input stood.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The aggregation's windows and panes.
    pub aggregation: Snapshot,
    /// Per input: its watermark, whether it is idle, whether it ended.
    pub inputs: Vec<(i64, bool, bool)>,
    /// The plan's watermark.
    pub watermark: i64,
    /// The rows left out as late so far.
    pub late_rows: u64,
}

/// One named piece of a snapshot as Arrow batches (one checkpoint state file).
#[derive(Debug, Clone)]
pub struct StatePart {
    /// The part's name (letters, digits and `_`).
    pub name: String,
    /// The schema of its batches (also when there are none).
    pub schema: SchemaRef,
    /// Its batches.
    pub batches: Vec<RecordBatch>,
}

fn arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::plan(format!("snapshot: {e}"), None)
}

fn bad(what: &str) -> Error {
    Error::plan(format!("the snapshot is damaged: {what}"), None)
}

impl RunSnapshot {
    /// The snapshot as named parts: `open` (a batch per open window or pane), `frozen` (a batch
    /// per chunk of a frozen pane), `inputs` (a row per input) and `run` (one row of counters).
    ///
    /// # Errors
    /// When a batch cannot be built (never for a snapshot taken by [`WindowedRun::snapshot`]).
    pub fn to_parts(&self) -> Result<Vec<StatePart>> {
        let inputs = Arc::new(Schema::new(vec![
            Field::new("watermark", DataType::Int64, false),
            Field::new("idle", DataType::Boolean, false),
            Field::new("ended", DataType::Boolean, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(self.inputs.iter().map(|i| i.0))),
            Arc::new(BooleanArray::from_iter(self.inputs.iter().map(|i| Some(i.1)))),
            Arc::new(BooleanArray::from_iter(self.inputs.iter().map(|i| Some(i.2)))),
        ];
        let input_rows = RecordBatch::try_new(Arc::clone(&inputs), columns).map_err(arrow)?;
        let run = Arc::new(Schema::new(vec![
            Field::new("watermark", DataType::Int64, false),
            Field::new("late_rows", DataType::UInt64, false),
            Field::new("emitted", DataType::Int64, false),
            Field::new("aggregation_watermark", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![self.watermark])),
            Arc::new(UInt64Array::from(vec![self.late_rows])),
            Arc::new(Int64Array::from(vec![self.aggregation.emitted])),
            Arc::new(Int64Array::from(vec![self.aggregation.watermark])),
        ];
        let run_row = RecordBatch::try_new(Arc::clone(&run), columns).map_err(arrow)?;
        let schema = &self.aggregation.schema;
        Ok(vec![
            StatePart {
                name: "open".into(),
                schema: Arc::clone(schema),
                batches: self.aggregation.open.clone(),
            },
            StatePart {
                name: "frozen".into(),
                schema: Arc::clone(schema),
                batches: self.aggregation.frozen.clone(),
            },
            StatePart { name: "inputs".into(), schema: inputs, batches: vec![input_rows] },
            StatePart { name: "run".into(), schema: run, batches: vec![run_row] },
        ])
    }

    /// A snapshot from the parts [`RunSnapshot::to_parts`] made.
    ///
    /// # Errors
    /// When a part is missing or not as written.
    pub fn from_parts(parts: &[StatePart]) -> Result<RunSnapshot> {
        let part = |name: &str| -> Result<&StatePart> {
            parts.iter().find(|p| p.name == name).ok_or_else(|| bad(&format!("no part {name}")))
        };
        let rows = |p: &StatePart| -> Result<RecordBatch> {
            datafusion::arrow::compute::concat_batches(&p.schema, &p.batches).map_err(arrow)
        };
        let i64s = |b: &RecordBatch, c: usize| -> Result<Vec<i64>> {
            let col = b.columns().get(c).ok_or_else(|| bad("a column is missing"))?;
            let a = col.as_primitive_opt::<Int64Type>().ok_or_else(|| bad("not Int64"))?;
            Ok(a.values().to_vec())
        };
        let bools = |b: &RecordBatch, c: usize| -> Result<Vec<bool>> {
            let col = b.columns().get(c).ok_or_else(|| bad("a column is missing"))?;
            let a = col.as_boolean_opt().ok_or_else(|| bad("not Boolean"))?;
            Ok((0..a.len()).map(|i| a.value(i)).collect())
        };
        let inputs = rows(part("inputs")?)?;
        let (w, idle, ended) = (i64s(&inputs, 0)?, bools(&inputs, 1)?, bools(&inputs, 2)?);
        let run = rows(part("run")?)?;
        if run.num_rows() != 1 {
            return Err(bad("the run part has no single row"));
        }
        let late = run
            .column(1)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad("late_rows is not UInt64"))?
            .value(0);
        let (open, frozen) = (part("open")?, part("frozen")?);
        Ok(RunSnapshot {
            aggregation: Snapshot {
                schema: Arc::clone(&open.schema),
                open: open.batches.clone(),
                frozen: frozen.batches.clone(),
                emitted: i64s(&run, 2)?[0],
                watermark: i64s(&run, 3)?[0],
            },
            inputs: (0..w.len()).map(|i| (w[i], idle[i], ended[i])).collect(),
            watermark: i64s(&run, 0)?[0],
            late_rows: late,
        })
    }
}

impl WindowedRun {
    /// The run's state, taken between two batches; the run goes on as it was.
    ///
    /// # Errors
    /// [`Error::NotSupported`] for session windows and `EMIT CHANGES` (not yet); when an
    /// accumulator cannot give its state.
    pub fn snapshot(&mut self) -> Result<RunSnapshot> {
        let State::Windows(state) = &mut self.state else {
            return Err(Error::not_supported("a snapshot of session windows", None));
        };
        Ok(RunSnapshot {
            aggregation: state.snapshot()?,
            inputs: self.inputs.iter().map(|i| (i.watermark, i.idle, i.ended)).collect(),
            watermark: self.watermark,
            late_rows: self.late_rows,
        })
    }

    /// Each input's watermark (`i64::MIN` before its first).
    pub fn input_watermarks(&self) -> Vec<i64> {
        self.inputs.iter().map(|i| i.watermark).collect()
    }

    /// Whether [`WindowedRun::snapshot`] can take this run's state.
    pub fn can_snapshot(&self) -> bool {
        matches!(self.state, State::Windows(_))
            && self.plan.emit == crate::windowed_plan::EmitMode::Final
    }

    /// A run of `plan` going on from `snapshot`.
    ///
    /// # Errors
    /// When the snapshot is not of this plan (another number of inputs, other windows).
    pub fn restore(plan: WindowedPlan, snapshot: &RunSnapshot) -> Result<WindowedRun> {
        if plan.session.is_some() || snapshot.inputs.len() != plan.inputs.len() {
            return Err(Error::plan("the snapshot is not of this windowed plan", None));
        }
        let aggregation = WindowAggregate::restore(plan.aggregate.clone(), &snapshot.aggregation)?;
        let inputs = snapshot
            .inputs
            .iter()
            .map(|(watermark, idle, ended)| InputState {
                watermark: *watermark,
                idle: *idle,
                ended: *ended,
            })
            .collect();
        Ok(WindowedRun {
            plan,
            state: State::Windows(Box::new(aggregation)),
            inputs,
            watermark: snapshot.watermark,
            state_watermark: snapshot.watermark,
            late_rows: snapshot.late_rows,
            skip_through: i64::MIN,
            late: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("__end", DataType::Int64, false)]));
        let open = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![10, 10])) as ArrayRef],
        )
        .unwrap();
        let snap = RunSnapshot {
            aggregation: Snapshot {
                schema,
                open: vec![open],
                frozen: vec![],
                emitted: 7,
                watermark: 5,
            },
            inputs: vec![(5, false, false), (i64::MAX, true, true)],
            watermark: 5,
            late_rows: 3,
        };
        let back = RunSnapshot::from_parts(&snap.to_parts().unwrap()).unwrap();
        assert_eq!(back.inputs, snap.inputs);
        assert_eq!((back.watermark, back.late_rows), (5, 3));
        assert_eq!((back.aggregation.emitted, back.aggregation.watermark), (7, 5));
        assert_eq!(back.aggregation.open, snap.aggregation.open);
        assert!(back.aggregation.frozen.is_empty());
        assert!(RunSnapshot::from_parts(&snap.to_parts().unwrap()[1..]).is_err());
    }
}
