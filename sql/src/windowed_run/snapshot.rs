//! A windowed run's state for checkpoints: [`WindowedRun::snapshot`] takes it between two
//! batches, [`RunSnapshot::to_parts`] turns it into named Arrow batches (the checkpoint's
//! state files), [`RunSnapshot::from_parts`] and [`WindowedRun::restore`] bring it back.
//! Windows ([`crate::window_agg::snapshot`]) and sessions ([`crate::session_agg`]), with
//! what `EMIT CHANGES` emitted of them.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};

use super::{InputState, State, WindowedRun};
use crate::error::{Error, Result};
use crate::session_agg::{SessionAggregate, SessionSnapshot};
use crate::updating_agg::UpdatingAggregate;
use crate::window_agg::WindowAggregate;
use crate::window_agg::snapshot::Snapshot;
use crate::windowed_plan::{Grouping, WindowedPlan};

/// The aggregation's part of a [`RunSnapshot`].
#[derive(Debug, Clone)]
pub enum AggregationSnapshot {
    /// Windows and panes.
    Windows(Snapshot),
    /// Sessions.
    Sessions(SessionSnapshot),
    /// An updating aggregation's groups, then one batch per aggregate
    /// ([`UpdatingAggregate::snapshot`]).
    Updating(Vec<RecordBatch>),
    /// A TopN's rows ([`crate::topn::TopN::snapshot`]).
    TopN(RecordBatch),
    /// A graph's parts ([`crate::graph::GraphRun::snapshot`]).
    Graph(Vec<StatePart>),
}

/// A run's state for a checkpoint: the aggregation's, and where each input stood.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The aggregation's windows, panes or sessions.
    pub aggregation: AggregationSnapshot,
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
        let part = |name: &str, batch: RecordBatch| StatePart {
            name: name.into(),
            schema: batch.schema(),
            batches: vec![batch],
        };
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
        let run = one_row(&[
            ("watermark", Arc::new(Int64Array::from(vec![self.watermark]))),
            ("late_rows", Arc::new(UInt64Array::from(vec![self.late_rows]))),
        ])?;
        let mut parts = vec![
            part("inputs", RecordBatch::try_new(inputs, columns).map_err(arrow)?),
            part("run", run),
        ];
        match &self.aggregation {
            AggregationSnapshot::Windows(w) => {
                parts.push(StatePart {
                    name: "open".into(),
                    schema: Arc::clone(&w.schema),
                    batches: w.open.clone(),
                });
                parts.push(StatePart {
                    name: "frozen".into(),
                    schema: Arc::clone(&w.schema),
                    batches: w.frozen.clone(),
                });
                let meta = one_row(&[
                    ("emitted", Arc::new(Int64Array::from(vec![w.emitted]))),
                    ("watermark", Arc::new(Int64Array::from(vec![w.watermark]))),
                ])?;
                parts.push(part("windows", meta));
            }
            AggregationSnapshot::Sessions(s) => {
                parts.push(part("sessions", s.sessions.clone()));
                parts.push(part("partials", s.partials.clone()));
                parts.push(part("emitted", s.emitted.clone()));
                parts.push(part("touched", s.touched.clone()));
                parts.push(part("retract", s.retract.clone()));
                let meta = one_row(&[
                    ("next", Arc::new(UInt64Array::from(vec![s.next]))),
                    ("watermark", Arc::new(Int64Array::from(vec![s.watermark]))),
                ])?;
                parts.push(part("session_ids", meta));
            }
            AggregationSnapshot::TopN(rows) => parts.push(part("topn", rows.clone())),
            AggregationSnapshot::Graph(own) => parts.extend(own.iter().cloned()),
            AggregationSnapshot::Updating(batches) => {
                for (i, b) in batches.iter().enumerate() {
                    let name = if i == 0 { "groups".to_string() } else { format!("agg{}", i - 1) };
                    parts.push(part(&name, b.clone()));
                }
            }
        }
        Ok(parts)
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
        let optional = |name: &str| match parts.iter().find(|p| p.name == name) {
            Some(p) => rows(p),
            None => Ok(RecordBatch::new_empty(Arc::new(Schema::empty()))),
        };
        let inputs = rows(part("inputs")?)?;
        let (w, idle, ended) = (i64s(&inputs, 0)?, bools(&inputs, 1)?, bools(&inputs, 2)?);
        let run = rows(part("run")?)?;
        if run.num_rows() != 1 {
            return Err(bad("the run part has no single row"));
        }
        let late = run
            .columns()
            .get(1)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| bad("late_rows is not UInt64"))?
            .value(0);
        let aggregation = if parts.iter().any(|p| p.name == "graph") {
            AggregationSnapshot::Graph(
                parts
                    .iter()
                    .filter(|p| !matches!(p.name.as_str(), "inputs" | "run"))
                    .cloned()
                    .collect(),
            )
        } else if parts.iter().any(|p| p.name == "topn") {
            AggregationSnapshot::TopN(rows(part("topn")?)?)
        } else if parts.iter().any(|p| p.name == "groups") {
            let mut batches = vec![rows(part("groups")?)?];
            for i in 0.. {
                match parts.iter().find(|p| p.name == format!("agg{i}")) {
                    Some(p) => batches.push(rows(p)?),
                    None => break,
                }
            }
            AggregationSnapshot::Updating(batches)
        } else if parts.iter().any(|p| p.name == "sessions") {
            let meta = rows(part("session_ids")?)?;
            let next = meta
                .columns()
                .first()
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad("no next session id"))?
                .value(0);
            AggregationSnapshot::Sessions(SessionSnapshot {
                sessions: rows(part("sessions")?)?,
                next,
                watermark: first(&i64s(&meta, 1)?)?,
                partials: rows(part("partials")?)?,
                // (Missing from checkpoints of a build before they were kept: empty.)
                emitted: optional("emitted")?,
                touched: optional("touched")?,
                retract: optional("retract")?,
            })
        } else {
            let (open, frozen) = (part("open")?, part("frozen")?);
            let meta = rows(part("windows")?)?;
            AggregationSnapshot::Windows(Snapshot {
                schema: Arc::clone(&open.schema),
                open: open.batches.clone(),
                frozen: frozen.batches.clone(),
                emitted: first(&i64s(&meta, 0)?)?,
                watermark: first(&i64s(&meta, 1)?)?,
            })
        };
        Ok(RunSnapshot {
            aggregation,
            inputs: (0..w.len()).map(|i| (w[i], idle[i], ended[i])).collect(),
            watermark: first(&i64s(&run, 0)?)?,
            late_rows: late,
        })
    }
}

/// A batch of one row of these columns.
fn one_row(columns: &[(&str, ArrayRef)]) -> Result<RecordBatch> {
    let fields: Vec<Field> =
        columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), false)).collect();
    let arrays = columns.iter().map(|(_, a)| Arc::clone(a)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(arrow)
}

/// The first value.
fn first(values: &[i64]) -> Result<i64> {
    values.first().copied().ok_or_else(|| bad("a value is missing"))
}

impl WindowedRun {
    /// The run's state, taken between two batches; the run goes on as it was.
    ///
    /// # Errors
    /// When an accumulator cannot give its state.
    pub fn snapshot(&mut self) -> Result<RunSnapshot> {
        let aggregation = match &mut self.state {
            State::Windows(w) => AggregationSnapshot::Windows(w.snapshot()?),
            State::Sessions(s) => AggregationSnapshot::Sessions(s.snapshot()?),
            State::Updating(u) => AggregationSnapshot::Updating(u.snapshot()?),
            State::TopN(t) => AggregationSnapshot::TopN(t.snapshot()?),
            State::Graph(g) => AggregationSnapshot::Graph(g.snapshot()?),
        };
        Ok(RunSnapshot {
            aggregation,
            inputs: self.inputs.iter().map(|i| (i.watermark, i.idle, i.ended)).collect(),
            watermark: self.watermark,
            late_rows: self.late_rows,
        })
    }

    /// Where each input stands (a graph's: each source).
    pub fn input_states(&self) -> Vec<super::InputStatus> {
        if let State::Graph(g) = &self.state {
            return g.input_states();
        }
        self.inputs
            .iter()
            .map(|i| super::InputStatus { watermark: i.watermark, idle: i.idle, ended: i.ended })
            .collect()
    }

    /// The windows it keeps open: the end of the next to close (`None` for sessions, which
    /// close at their gap), and how many. `None` without windows.
    pub fn window_status(&self) -> Option<(Option<i64>, usize)> {
        match &self.state {
            State::Windows(a) => Some((a.next_end(), a.open_windows())),
            State::Sessions(s) => Some((None, s.open_sessions())),
            State::Graph(g) => g.window_status(),
            State::Updating(_) | State::TopN(_) => None,
        }
    }

    /// Each input's watermark (`i64::MIN` before its first).
    pub fn input_watermarks(&self) -> Vec<i64> {
        if let State::Graph(g) = &self.state {
            return g.input_watermarks();
        }
        self.inputs.iter().map(|i| i.watermark).collect()
    }

    /// A run of `plan` going on from `snapshot`.
    ///
    /// # Errors
    /// When the snapshot is not of this plan (another number of inputs, other windows).
    pub fn restore(plan: WindowedPlan, snapshot: &RunSnapshot) -> Result<WindowedRun> {
        let state = match (&plan.grouping, &snapshot.aggregation) {
            _ if snapshot.inputs.len() != plan.inputs.len() => None,
            (Grouping::Windows(w), AggregationSnapshot::Windows(s)) if w.session.is_none() => {
                Some(State::Windows(Box::new(WindowAggregate::restore(w.aggregate.clone(), s)?)))
            }
            (Grouping::Windows(w), AggregationSnapshot::Sessions(s)) => match &w.session {
                Some(session) => Some(State::Sessions(Box::new(SessionAggregate::restore(
                    w.aggregate.clone(),
                    session.clone(),
                    s,
                )?))),
                None => None,
            },
            (Grouping::Updating(spec), AggregationSnapshot::Updating(batches)) => {
                Some(State::Updating(Box::new(UpdatingAggregate::restore(spec.clone(), batches)?)))
            }
            (Grouping::TopN(spec), AggregationSnapshot::TopN(rows)) => {
                Some(State::TopN(Box::new(crate::topn::TopN::restore(spec.clone(), rows)?)))
            }
            (Grouping::Graph(g), AggregationSnapshot::Graph(parts)) => Some(State::Graph(
                Box::new(crate::graph::GraphRun::restore(g.as_ref().clone(), parts)?),
            )),
            _ => None,
        };
        let Some(state) = state else {
            return Err(Error::plan("the snapshot is not of this windowed plan", None));
        };
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
            state,
            inputs,
            watermark: snapshot.watermark,
            state_watermark: snapshot.watermark,
            late_rows: snapshot.late_rows,
            skip_through: i64::MIN,
            late: Vec::new(),
            deferred: false,
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
            aggregation: AggregationSnapshot::Windows(Snapshot {
                schema,
                open: vec![open.clone()],
                frozen: vec![],
                emitted: 7,
                watermark: 5,
            }),
            inputs: vec![(5, false, false), (i64::MAX, true, true)],
            watermark: 5,
            late_rows: 3,
        };
        let back = RunSnapshot::from_parts(&snap.to_parts().unwrap()).unwrap();
        assert_eq!(back.inputs, snap.inputs);
        assert_eq!((back.watermark, back.late_rows), (5, 3));
        let AggregationSnapshot::Windows(w) = back.aggregation else { panic!("not windows") };
        assert_eq!((w.emitted, w.watermark), (7, 5));
        assert_eq!(w.open, vec![open.clone()]);
        assert!(w.frozen.is_empty());
        assert!(RunSnapshot::from_parts(&snap.to_parts().unwrap()[1..]).is_err());
        // Sessions.
        let snap = RunSnapshot {
            aggregation: AggregationSnapshot::Sessions(SessionSnapshot {
                sessions: open.clone(),
                next: 9,
                watermark: 4,
                partials: open.clone(),
                emitted: open.clone(),
                touched: open.clone(),
                retract: open.clone(),
            }),
            ..snap
        };
        let back = RunSnapshot::from_parts(&snap.to_parts().unwrap()).unwrap();
        let AggregationSnapshot::Sessions(s) = back.aggregation else { panic!("not sessions") };
        assert_eq!((s.next, s.watermark), (9, 4));
        assert_eq!((s.sessions, s.partials), (open.clone(), open));
    }
}
