//! TopN and deduplication: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) AS rn` filtered by
//! `rn <= N` (or `rn < N`, `rn = 1`), kept up to date as rows come, a changelog out.
//!
//! Each partition keeps its best `N` rows in order: the `ORDER BY` keys in arrow's row format
//! (whose bytes order as the keys do, directions and NULL placement included), then the
//! order of arrival, so rows with equal keys rank first come, first served (deduplication
//! with `ORDER BY time ASC` keeps the first row of a key, `DESC` the last). A row that ranks
//! past `N` is dropped at once (the input is append-only, so it can never rank again), and a
//! row pushed past `N` by a better one leaves the state. A batch records each partition it
//! touches as it was; [`TopN::changes`] compares it with the partition now: a row that left
//! gives `-D`, a new one `+I`, and (when the rank is read above) a row whose rank moved `-U`
//! and `+U`. State: at most `N` rows per partition (and [`MAX_TOPN_ROWS`] in all).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Error, Result};
use crate::window_agg::changes::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};

/// Rows a TopN may hold in all its partitions (a clear error past it).
pub const MAX_TOPN_ROWS: usize = 10_000_000;

/// What a TopN keeps and gives.
#[derive(Debug, Clone)]
pub struct TopNSpec {
    /// `PARTITION BY` expressions over the input batch.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` expressions over the input batch, with their direction and NULL placement.
    pub order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    /// The rows kept per partition.
    pub limit: usize,
    /// Whether the rank is read above (a row whose rank moves then gives `-U` and `+U`).
    pub rank_used: bool,
    /// The input's schema.
    pub input: SchemaRef,
    /// The input's columns then the rank (`UInt64`).
    pub schema: SchemaRef,
}

fn arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::plan(format!("TopN: {e}"), None)
}

/// A row kept: its sort key, its arrival number, the row itself (all input columns).
#[derive(Debug, Clone)]
struct Entry {
    key: Box<[u8]>,
    seq: u64,
    row: Arc<[u8]>,
}

/// Where each row of a partition is, by arrival number (few rows: a scan; many: a map).
enum Ranks<'a> {
    Scan(&'a [Entry]),
    Map(HashMap<u64, usize>),
}

impl Ranks<'_> {
    fn of(rows: &[Entry]) -> Ranks<'_> {
        if rows.len() <= 16 {
            Ranks::Scan(rows)
        } else {
            Ranks::Map(rows.iter().enumerate().map(|(r, e)| (e.seq, r + 1)).collect())
        }
    }

    /// The rank (from 1) of the row that arrived `seq`-th, if held.
    fn get(&self, seq: u64) -> Option<usize> {
        match self {
            Ranks::Scan(rows) => rows.iter().position(|e| e.seq == seq).map(|r| r + 1),
            Ranks::Map(m) => m.get(&seq).copied(),
        }
    }
}

/// The state of a TopN.
#[derive(Debug)]
pub struct TopN {
    spec: TopNSpec,
    partition_rows: Option<RowConverter>,
    sort_rows: RowConverter,
    input_rows: RowConverter,
    partitions: datafusion::common::HashMap<Box<[u8]>, Partition>,
    /// The next arrival number.
    seq: u64,
    /// Rows held.
    held: usize,
    /// The partitions touched since the last [`TopN::changes`], in order, as they were.
    touched: Vec<(Box<[u8]>, Vec<Entry>)>,
}

/// One partition: its best rows, in rank order.
#[derive(Debug, Default)]
struct Partition {
    rows: Vec<Entry>,
    /// When it last had a row, in milliseconds since the epoch (`state_ttl`).
    touched_at: i64,
    /// Whether it is among the touched since the last [`TopN::changes`].
    marked: bool,
}

fn converter(fields: Vec<SortField>) -> Result<RowConverter> {
    RowConverter::new(fields).map_err(arrow)
}

impl TopN {
    /// An empty TopN.
    ///
    /// # Errors
    /// When a type cannot be kept in row format.
    pub fn new(spec: TopNSpec) -> Result<TopN> {
        let types = |exprs: &mut dyn Iterator<Item = &Arc<dyn PhysicalExpr>>| {
            exprs
                .map(|e| e.data_type(&spec.input))
                .collect::<datafusion::common::Result<Vec<DataType>>>()
                .map_err(|e| Error::plan(e.message().to_string(), None))
        };
        let partition_types = types(&mut spec.partition.iter())?;
        let order_types = types(&mut spec.order.iter().map(|(e, _)| e))?;
        let partition_rows = if partition_types.is_empty() {
            None
        } else {
            Some(converter(partition_types.into_iter().map(SortField::new).collect())?)
        };
        let sort_rows = converter(
            order_types
                .into_iter()
                .zip(&spec.order)
                .map(|(t, (_, o))| SortField::new_with_options(t, *o))
                .collect(),
        )?;
        let input_rows = converter(
            spec.input.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect(),
        )?;
        Ok(TopN {
            spec,
            partition_rows,
            sort_rows,
            input_rows,
            partitions: datafusion::common::HashMap::default(),
            seq: 0,
            held: 0,
            touched: Vec::new(),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &TopNSpec {
        &self.spec
    }

    fn eval(&self, exprs: &[&Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
            .collect::<datafusion::common::Result<Vec<_>>>()
            .map_err(|e| Error::plan(format!("TopN: {}", e.message()), None))
    }

    /// Add a batch of input rows.
    ///
    /// # Errors
    /// When an expression fails, or the rows held pass [`MAX_TOPN_ROWS`].
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        let partition = self.spec.partition.iter().collect::<Vec<_>>();
        let order = self.spec.order.iter().map(|(e, _)| e).collect::<Vec<_>>();
        let keys = match &self.partition_rows {
            Some(c) => Some(c.convert_columns(&self.eval(&partition, batch)?).map_err(arrow)?),
            None => None,
        };
        let sort = self.sort_rows.convert_columns(&self.eval(&order, batch)?).map_err(arrow)?;
        let rows = self.input_rows.convert_columns(batch.columns()).map_err(arrow)?;
        let limit = self.spec.limit;
        let now = crate::updating_agg::now_ms();
        for i in 0..n {
            let seq = self.seq;
            self.seq += 1;
            let pkey: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
            let part = match self.partitions.get_mut(pkey) {
                Some(p) => p,
                None => self.partitions.entry(pkey.into()).or_default(),
            };
            part.touched_at = now;
            let key = sort.row(i);
            // After every row with a key not greater: equal keys rank by arrival.
            let pos = part.rows.partition_point(|e| e.key.as_ref() <= key.as_ref());
            if pos >= limit {
                continue;
            }
            if !part.marked {
                part.marked = true;
                self.touched.push((pkey.into(), part.rows.clone()));
            }
            let entry =
                Entry { key: key.as_ref().into(), seq, row: Arc::from(rows.row(i).as_ref()) };
            part.rows.insert(pos, entry);
            self.held += 1;
            if part.rows.len() > limit {
                part.rows.truncate(limit);
                self.held -= 1;
            }
            if self.held > MAX_TOPN_ROWS {
                return Err(Error::plan(
                    format!(
                        "the TopN holds {MAX_TOPN_ROWS} rows, its limit: fewer partitions or a smaller N"
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    /// `state_ttl`: forget the partitions without a row for `ttl_ms` (at `now`, in
    /// milliseconds since the epoch): their rows leave the output (`-D` at the next
    /// [`TopN::changes`]), and a later row starts the partition anew. Returns how many
    /// partitions expired.
    pub fn expire(&mut self, now: i64, ttl_ms: i64) -> usize {
        let old: Vec<Box<[u8]>> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.touched_at.saturating_add(ttl_ms) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &old {
            let Some(part) = self.partitions.remove(key) else { continue };
            self.held -= part.rows.len();
            if !part.marked {
                self.touched.push((key.clone(), part.rows));
            }
        }
        old.len()
    }

    /// The changes since the last call, in the spec's schema then `__op`: `-U` rows (a row at
    /// its old rank), then `+U` rows of the same rows in the same order (at their new rank),
    /// then `-D` and `+I` rows. `None` when nothing changed.
    ///
    /// # Errors
    /// When rows cannot be converted back to Arrow.
    pub fn changes(&mut self) -> Result<Option<RecordBatch>> {
        let touched = std::mem::take(&mut self.touched);
        let (mut before, mut after, mut tail) = (Vec::new(), Vec::new(), Vec::new());
        for (pkey, was) in touched {
            let now = match self.partitions.get_mut(&pkey) {
                Some(p) => {
                    p.marked = false;
                    p.rows.as_slice()
                }
                None => &[][..],
            };
            let (rank_now, rank_was) = (Ranks::of(now), Ranks::of(&was));
            for (r, e) in was.iter().enumerate() {
                match rank_now.get(e.seq) {
                    None => tail.push((Arc::clone(&e.row), r + 1, DELETE)),
                    Some(n) if n != r + 1 && self.spec.rank_used => {
                        before.push((Arc::clone(&e.row), r + 1));
                        after.push((Arc::clone(&e.row), n));
                    }
                    Some(_) => {}
                }
            }
            for (r, e) in now.iter().enumerate() {
                if rank_was.get(e.seq).is_none() {
                    tail.push((Arc::clone(&e.row), r + 1, INSERT));
                }
            }
        }
        let mut rows: Vec<(Arc<[u8]>, usize, i8)> =
            before.into_iter().map(|(row, r)| (row, r, UPDATE_BEFORE)).collect();
        rows.extend(after.into_iter().map(|(row, r)| (row, r, UPDATE_AFTER)));
        rows.extend(tail);
        if rows.is_empty() {
            return Ok(None);
        }
        let ops: Vec<i8> = rows.iter().map(|(_, _, o)| *o).collect();
        let mut batch = self.batch(rows.iter().map(|(row, r, _)| (row.as_ref(), *r)))?;
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(Int8Array::from(ops)));
        let mut fields: Vec<Field> =
            self.spec.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(crate::window_agg::changes::OP_COLUMN, DataType::Int8, false));
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
            .map_err(arrow)?;
        Ok(Some(batch))
    }

    /// Rows with their ranks, in the spec's schema.
    fn batch<'a>(&self, rows: impl Iterator<Item = (&'a [u8], usize)>) -> Result<RecordBatch> {
        let parser = self.input_rows.parser();
        let (data, ranks): (Vec<_>, Vec<u64>) =
            rows.map(|(row, r)| (parser.parse(row), r as u64)).unzip();
        let n = ranks.len();
        let mut columns = if n == 0 {
            self.spec
                .input
                .fields()
                .iter()
                .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                .collect()
        } else {
            self.input_rows.convert_rows(data).map_err(arrow)?
        };
        columns.push(Arc::new(UInt64Array::from(ranks)));
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(Arc::clone(&self.spec.schema), columns, &options)
            .map_err(arrow)
    }

    /// Every row held, with its rank, in the spec's schema.
    ///
    /// # Errors
    /// When rows cannot be converted back to Arrow.
    pub fn current(&self) -> Result<RecordBatch> {
        self.batch(
            self.partitions
                .values()
                .flat_map(|p| p.rows.iter().enumerate().map(|(r, e)| (e.row.as_ref(), r + 1))),
        )
    }

    /// The state for a checkpoint: every row held (the input's columns) and its arrival
    /// number, in arrival order.
    ///
    /// # Errors
    /// When rows cannot be converted back to Arrow.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let mut entries: Vec<(&Entry, i64)> = self
            .partitions
            .values()
            .flat_map(|p| p.rows.iter().map(move |e| (e, p.touched_at)))
            .collect();
        entries.sort_by_key(|(e, _)| e.seq);
        let held = self.batch(entries.iter().map(|(e, _)| (e.row.as_ref(), 0)))?;
        let mut columns = held.columns().to_vec();
        columns.pop();
        columns.push(Arc::new(UInt64Array::from_iter_values(entries.iter().map(|(e, _)| e.seq))));
        columns.push(Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
            entries.iter().map(|(_, t)| *t),
        )));
        let mut fields: Vec<Field> =
            self.spec.input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__seq", DataType::UInt64, false));
        fields.push(Field::new("__touched", DataType::Int64, false));
        let options = RecordBatchOptions::new().with_row_count(Some(entries.len()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
            .map_err(arrow)
    }

    /// A TopN restored from what [`TopN::snapshot`] gave.
    ///
    /// # Errors
    /// When the batch does not match the spec.
    pub fn restore(spec: TopNSpec, state: &RecordBatch) -> Result<TopN> {
        let damaged =
            |what: &str| Error::plan(format!("the snapshot of a TopN is damaged: {what}"), None);
        let width = spec.input.fields().len();
        if state.num_columns() != width + 2 {
            return Err(damaged("the rows have the wrong columns"));
        }
        let seqs = state
            .column(width)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| damaged("arrival numbers"))?
            .clone();
        let rows = RecordBatch::try_new(Arc::clone(&spec.input), state.columns()[..width].to_vec())
            .map_err(|e| damaged(&e.to_string()))?;
        let mut topn = TopN::new(spec)?;
        // The rows again, in arrival order: each lands where it was.
        topn.update(&rows)?;
        let _ = topn.changes()?;
        // Their arrival numbers as they were.
        let by_seq: Vec<u64> = seqs.values().to_vec();
        let touched = state
            .column(width + 1)
            .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
            .ok_or_else(|| damaged("times"))?
            .values()
            .to_vec();
        for part in topn.partitions.values_mut() {
            let mut last = 0;
            for e in part.rows.iter_mut() {
                last = last.max(touched.get(e.seq as usize).copied().unwrap_or(0));
                e.seq = by_seq.get(e.seq as usize).copied().ok_or_else(|| damaged("arrival"))?;
            }
            part.touched_at = last;
        }
        topn.seq = by_seq.iter().max().map_or(0, |m| m + 1);
        if seqs.null_count() > 0 {
            return Err(damaged("a NULL arrival number"));
        }
        Ok(topn)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Int8Type;
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    /// Rows `(k, v, id)`; the best 2 of each k by v descending.
    fn spec(rank_used: bool) -> TopNSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            Field::new("id", DataType::Int64, false),
        ]));
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("rn", DataType::UInt64, false));
        TopNSpec {
            partition: vec![Arc::new(Column::new("k", 0))],
            order: vec![(
                Arc::new(Column::new("v", 1)),
                SortOptions { descending: true, nulls_first: true },
            )],
            limit: 2,
            rank_used,
            input,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn batch(t: &TopN, rows: &[(i64, i64, i64)]) -> RecordBatch {
        let col = |f: fn(&(i64, i64, i64)) -> i64| {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f))) as ArrayRef
        };
        RecordBatch::try_new(
            Arc::clone(&t.spec.input),
            vec![col(|r| r.0), col(|r| r.1), col(|r| r.2)],
        )
        .unwrap()
    }

    /// Changes as `op id rank`, in order.
    fn lines(b: Option<RecordBatch>) -> Vec<String> {
        let Some(b) = b else { return Vec::new() };
        let (id, rank, op) = (
            b.column(2).as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
            b.column(3).as_primitive::<UInt64Type>(),
            b.column(4).as_primitive::<Int8Type>(),
        );
        (0..b.num_rows())
            .map(|i| format!("{} {} {}", op.value(i), id.value(i), rank.value(i)))
            .collect()
    }

    #[test]
    fn ranks_move_ties_come_first_and_the_third_leaves() {
        let mut t = TopN::new(spec(true)).unwrap();
        let b = batch(&t, &[(1, 10, 100), (1, 30, 101), (2, 5, 200)]);
        t.update(&b).unwrap();
        let mut first = lines(t.changes().unwrap());
        first.sort();
        assert_eq!(first, ["0 100 2", "0 101 1", "0 200 1"]);
        // An equal value ranks after the row that came first; it pushes 100 out.
        let b = batch(&t, &[(1, 30, 102)]);
        t.update(&b).unwrap();
        assert_eq!(lines(t.changes().unwrap()), ["3 100 2", "0 102 2"]);
        // A better one moves 101 down (-U/+U) and pushes 102 out.
        let b = batch(&t, &[(1, 50, 103)]);
        t.update(&b).unwrap();
        assert_eq!(lines(t.changes().unwrap()), ["1 101 1", "2 101 2", "3 102 2", "0 103 1"]);
        // Worse than the second: nothing.
        let b = batch(&t, &[(1, 1, 104)]);
        t.update(&b).unwrap();
        assert!(t.changes().unwrap().is_none());
        // A snapshot restores the same rows and ties.
        let mut r = TopN::restore(spec(true), &t.snapshot().unwrap()).unwrap();
        assert_eq!(t.snapshot().unwrap(), r.snapshot().unwrap());
        for x in [&mut t, &mut r] {
            let b = batch(x, &[(1, 30, 105), (2, 5, 201)]);
            x.update(&b).unwrap();
        }
        assert_eq!(lines(t.changes().unwrap()), lines(r.changes().unwrap()));
        // Expired partitions leave.
        let gone = t.expire(crate::updating_agg::now_ms() + 10_000, 1000);
        assert_eq!(gone, 2);
        assert_eq!(lines(t.changes().unwrap()).iter().filter(|l| l.starts_with("3 ")).count(), 4);
        assert_eq!(t.current().unwrap().num_rows(), 0);
    }

    #[test]
    fn without_the_rank_moves_give_nothing() {
        let mut t = TopN::new(spec(false)).unwrap();
        let b = batch(&t, &[(1, 10, 100), (1, 30, 101)]);
        t.update(&b).unwrap();
        let _ = t.changes().unwrap();
        let b = batch(&t, &[(1, 50, 102)]);
        t.update(&b).unwrap();
        assert_eq!(lines(t.changes().unwrap()), ["3 100 2", "0 102 1"]);
    }
}
