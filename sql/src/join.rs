//! Stream joins: every row of one side meets the rows of the other side held so far.
//!
//! Each side holds its rows indexed by the join key ([`side`]): a row that comes probes the
//! other side's rows with its key, the join's other conditions are evaluated over the
//! candidate pairs at once, and it is held for the rows of the other side still to come. The
//! output is the pairs that pass (and, for an outer join, the rows of the kept side without a
//! match, padded with NULLs), as inserts; a row an input takes back (`-U`, `-D` of a
//! changelog) takes back its pairs.
//!
//! **Bounds.** When the join's condition bounds the time of the other side's rows a row can
//! meet (`b.t BETWEEN a.t - INTERVAL ... AND a.t`, `b.t <= a.expires`: [`JoinSpec::bound`]),
//! the row is let go once the other side's watermark passes that bound; an interval join over
//! append-only inputs so holds only the rows still in reach. The output of a bounded outer
//! join stays append-only: a row of the kept side without a match comes out padded when it is
//! let go. Without a bound (a regular join) rows are held until taken back; an outer side's
//! row without a match comes out at once and is taken back (`-D`) at its first match, so the
//! output is a changelog.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, UInt32Array, UInt32Builder,
};
use datafusion::arrow::compute::{cast, interleave, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Error, Result};
use crate::window_agg::changes::{DELETE, INSERT, UPDATE_BEFORE};

mod side;
mod temporal;

pub use side::MAX_JOIN_ROWS;
pub use temporal::Temporal;

use side::{RowId, Side, arrow, null_batch, row_id};

/// Which rows an outer join keeps without a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `JOIN`: none.
    Inner,
    /// `LEFT JOIN`: the left side's.
    Left,
    /// `RIGHT JOIN`: the right side's.
    Right,
    /// `FULL JOIN`: both sides'.
    Full,
    /// Semi join (`IN`, `EXISTS`, or an inner join with a side only deduplicated): the rows
    /// of side 0 (left) or 1 (right) that meet a row of the other, once, without its columns.
    Semi(usize),
    /// Anti join (`NOT IN`, `NOT EXISTS`): the rows of side 0 or 1 that meet none.
    Anti(usize),
}

impl JoinKind {
    /// Whether side `s` (0 left, 1 right) keeps its rows without a match.
    pub fn keeps(self, s: usize) -> bool {
        match self {
            JoinKind::Left => s == 0,
            JoinKind::Right => s == 1,
            JoinKind::Full => true,
            JoinKind::Anti(k) => s == k,
            JoinKind::Inner | JoinKind::Semi(_) => false,
        }
    }

    /// Whether pairs of rows come out (not for a semi or anti join).
    pub fn pairs(self) -> bool {
        !matches!(self, JoinKind::Semi(_) | JoinKind::Anti(_))
    }

    /// The side whose rows alone come out (a semi or anti join).
    pub fn only(self) -> Option<usize> {
        match self {
            JoinKind::Semi(k) | JoinKind::Anti(k) => Some(k),
            _ => None,
        }
    }

    /// The SQL of the kind.
    pub fn sql(self) -> &'static str {
        match self {
            JoinKind::Inner => "JOIN",
            JoinKind::Left => "LEFT JOIN",
            JoinKind::Right => "RIGHT JOIN",
            JoinKind::Full => "FULL JOIN",
            JoinKind::Semi(0) => "LEFT SEMI JOIN",
            JoinKind::Semi(_) => "RIGHT SEMI JOIN",
            JoinKind::Anti(0) => "LEFT ANTI JOIN",
            JoinKind::Anti(_) => "RIGHT ANTI JOIN",
        }
    }
}

/// A batch of rows between two operators: inserts, or with `ops` a changelog (`__op` per row).
#[derive(Debug, Clone)]
pub struct Delta {
    /// The rows (without `__op`).
    pub rows: RecordBatch,
    /// Per row its change (`None`: all inserts).
    pub ops: Option<Vec<i8>>,
}

/// How to join.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// Inner or outer.
    pub kind: JoinKind,
    /// Per side, the key expressions over its rows (equal keys meet; NULL keys never do).
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// The type both sides' keys are cast to, per key.
    pub key_types: Vec<DataType>,
    /// The other conditions, over the left columns then the right ones (`pairs`).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The left columns then the right ones.
    pub pairs: SchemaRef,
    /// Per side, the schema of its rows.
    pub sides: [SchemaRef; 2],
    /// The output: the left columns then the right ones (nullable on a side that may be
    /// padded); a semi or anti join's kept side's.
    pub schema: SchemaRef,
    /// Per side, an expression over its rows: the latest time of the other side's rows a row
    /// can meet (the other side's time is the column its watermark is for). A row is let go
    /// once the other side's watermark passes it.
    pub bound: [Option<Arc<dyn PhysicalExpr>>; 2],
    /// Per side, whether its input is a changelog (rows may be taken back; no bounds then).
    pub changelog: [bool; 2],
    /// A lookup join (`FOR SYSTEM_TIME AS OF PROCTIME()`): one side is a table the other's
    /// rows look up as it is when they come.
    pub lookup: Option<Lookup>,
    /// A temporal join as of the event time (`FOR SYSTEM_TIME AS OF o.ts`); `bound` holds each
    /// side's time then.
    pub temporal: Option<Temporal>,
}

/// A lookup join: side `table` is the table, the other side's rows probe it and are not
/// held (a row of the table meets no row that came before it).
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The table's side.
    pub table: usize,
    /// The table was sealed when the job was planned (a file-backed table): rows probing it
    /// wait until it is read whole, so that they see all of it whatever the order of reads.
    pub whole: bool,
}

impl JoinSpec {
    /// Whether side `s` lets go of rows by the other side's watermark.
    pub fn bounded(&self, s: usize) -> bool {
        self.bound[s].is_some()
            && !self.changelog[0]
            && !self.changelog[1]
            && self.lookup.is_none()
            && self.temporal.is_none()
    }

    /// Whether an unmatched row of side `s` comes out at once (and is taken back at its first
    /// match).
    fn eager(&self, s: usize) -> bool {
        self.kind.keeps(s) && !self.bounded(s)
    }

    /// Whether the output is a changelog (else inserts only).
    pub fn changelog_output(&self) -> bool {
        if let Some(l) = self.lookup {
            return self.changelog[1 - l.table];
        }
        if self.temporal.is_some() {
            return false;
        }
        self.changelog[0] || self.changelog[1] || self.eager(0) || self.eager(1)
    }
}

/// A row of output: this side's row of the batch, the other side's held row, the change.
type Out = (Option<u32>, Option<RowId>, i8);

/// A join's state.
#[derive(Debug)]
pub struct Join {
    spec: JoinSpec,
    keys: RowConverter,
    whole: [Option<RowConverter>; 2],
    sides: [Side; 2],
    watermarks: [i64; 2],
}

impl Join {
    /// A join holding nothing yet.
    ///
    /// # Errors
    /// When the key types have no row format.
    pub fn new(spec: JoinSpec) -> Result<Join> {
        let keys =
            RowConverter::new(spec.key_types.iter().map(|t| SortField::new(t.clone())).collect())
                .map_err(arrow)?;
        let whole = |s: usize| -> Result<Option<RowConverter>> {
            if !spec.changelog[s] {
                return Ok(None);
            }
            let fields =
                spec.sides[s].fields().iter().map(|f| SortField::new(f.data_type().clone()));
            Ok(Some(RowConverter::new(fields.collect()).map_err(arrow)?))
        };
        let whole = [whole(0)?, whole(1)?];
        let sides = [
            Side::new(Arc::clone(&spec.sides[0]), spec.changelog[0]),
            Side::new(Arc::clone(&spec.sides[1]), spec.changelog[1]),
        ];
        Ok(Join { spec, keys, whole, sides, watermarks: [i64::MIN; 2] })
    }

    /// The spec.
    pub fn spec(&self) -> &JoinSpec {
        &self.spec
    }

    /// Rows held per side.
    pub fn held(&self) -> [usize; 2] {
        [self.sides[0].len(), self.sides[1].len()]
    }

    /// The key of every row, in row format, and which rows have a NULL in their key.
    fn keys_of(&self, s: usize, rows: &RecordBatch) -> Result<(Rows, Vec<bool>)> {
        let mut columns = Vec::with_capacity(self.spec.key_types.len());
        for (e, t) in self.spec.keys[s].iter().zip(&self.spec.key_types) {
            let v = e.evaluate(rows).and_then(|v| v.into_array(rows.num_rows())).map_err(exec)?;
            let v = if v.data_type() == t { v } else { cast(&v, t).map_err(arrow)? };
            columns.push(v);
        }
        let mut null = vec![false; rows.num_rows()];
        for c in &columns {
            if c.null_count() > 0 {
                for (i, n) in null.iter_mut().enumerate() {
                    *n |= c.is_null(i);
                }
            }
        }
        Ok((self.keys.convert_columns(&columns).map_err(arrow)?, null))
    }

    /// A batch of side `s`'s input (with `ops`, a changelog's): the rows it meets come out.
    ///
    /// # Errors
    /// When an expression fails on the rows, a side passes its limit, or a row taken back was
    /// never held.
    pub fn push(
        &mut self,
        s: usize,
        rows: RecordBatch,
        ops: Option<&[i8]>,
    ) -> Result<Option<Delta>> {
        let n = rows.num_rows();
        if n == 0 {
            return Ok(None);
        }
        if self.spec.temporal.is_some() {
            return self.temporal_push(s, rows);
        }
        let o = 1 - s;
        // A lookup join: the table's rows probe nothing; the other side's probe and are not
        // held (unless they wait for a sealed table to be read whole).
        let (probe, hold) = match self.spec.lookup {
            None => (true, true),
            Some(l) if l.table == s => (false, true),
            Some(l) => {
                let wait = l.whole && self.watermarks[l.table] != i64::MAX;
                (!wait, wait)
            }
        };
        let (keys, null_key) = self.keys_of(s, &rows)?;
        // The candidate pairs: each row with the other side's rows of its key.
        let (mut pr, mut pq) = (Vec::new(), Vec::new());
        for (r, null) in null_key.iter().enumerate() {
            if !null && probe {
                self.sides[o].each_of(keys.row(r).as_ref(), |q| {
                    pr.push(r as u32);
                    pq.push(q);
                });
            }
        }
        let pass = self.filter(s, &rows, &pr, &pq)?;
        let expire = match &self.spec.bound[s] {
            Some(e) if self.spec.bounded(s) => Some(times(e.as_ref(), &rows)?),
            _ => None,
        };
        let whole = match &self.whole[s] {
            Some(c) => Some(c.convert_columns(rows.columns()).map_err(arrow)?),
            None => None,
        };
        let b = self.sides[s].add_batch(rows.clone());
        let now = crate::updating_agg::now_ms();
        let (eager_s, eager_o) = (self.spec.eager(s), self.spec.eager(o));
        let kind = self.spec.kind;
        let (pairs, semi) =
            (kind.pairs(), kind.only().filter(|_| matches!(kind, JoinKind::Semi(_))));
        let mut out: Vec<Out> = Vec::with_capacity(pr.len());
        let mut matched: Vec<RowId> = Vec::new();
        let mut i = 0;
        for r in 0..n {
            let start = i;
            while i < pr.len() && pr[i] as usize == r {
                i += 1;
            }
            matched.clear();
            matched.extend((start..i).filter(|j| pass[*j]).map(|j| pq[j]));
            let retract = ops.is_some_and(|o| matches!(o[r], UPDATE_BEFORE | DELETE));
            let this = Some(r as u32);
            if null_key[r] {
                // (Never meets a row: out at once on a kept side.)
                if self.spec.kind.keeps(s) {
                    out.push((this, None, if retract { DELETE } else { INSERT }));
                }
                continue;
            }
            if !retract {
                for q in &matched {
                    let m = self.sides[o].meta_mut(*q);
                    m.matches += 1;
                    if m.matches == 1 && eager_o {
                        out.push((None, Some(*q), DELETE));
                    }
                    if m.matches == 1 && semi == Some(o) {
                        out.push((None, Some(*q), INSERT));
                    }
                    if pairs {
                        out.push((this, Some(*q), INSERT));
                    }
                }
                if matched.is_empty() && eager_s && probe {
                    out.push((this, None, INSERT));
                }
                if !matched.is_empty() && semi == Some(s) {
                    out.push((this, None, INSERT));
                }
                if !hold {
                    continue;
                }
                let whole = whole.as_ref().map(|w| w.row(r));
                self.sides[s].hold(
                    row_id(b, r),
                    keys.row(r).as_ref(),
                    whole.as_ref().map(|w| w.as_ref()),
                    matched.len() as u32,
                    expire.as_ref().map(|e| e[r]),
                    now,
                )?;
            } else {
                let found =
                    whole.as_ref().and_then(|w| self.sides[s].find_whole(w.row(r).as_ref()));
                let Some(id) = found else {
                    return Err(Error::plan(
                        "the join's input takes back a row it never gave (a damaged changelog)",
                        None,
                    ));
                };
                for q in &matched {
                    let m = self.sides[o].meta_mut(*q);
                    m.matches = m.matches.saturating_sub(1);
                    if pairs {
                        out.push((this, Some(*q), DELETE));
                    }
                    if m.matches == 0 && eager_o {
                        out.push((None, Some(*q), INSERT));
                    }
                    if m.matches == 0 && semi == Some(o) {
                        out.push((None, Some(*q), DELETE));
                    }
                }
                if matched.is_empty() && eager_s {
                    out.push((this, None, DELETE));
                }
                if !matched.is_empty() && semi == Some(s) {
                    out.push((this, None, DELETE));
                }
                self.sides[s].release(id);
            }
        }
        let delta = self.output(s, Some(&rows), &out)?;
        // Rows already out of the other side's reach (its watermark is ahead) go at once.
        let gone = if self.spec.bounded(s) {
            let gone = self.sides[s].expired(self.watermarks[o]);
            self.let_go(s, gone)?
        } else {
            None
        };
        self.sides[s].settle(b);
        concat(delta, gone)
    }

    /// Which candidate pairs (row `pr[j]` of `rows`, held row `pq[j]` of the other side) pass
    /// the join's other conditions.
    fn filter(&self, s: usize, rows: &RecordBatch, pr: &[u32], pq: &[RowId]) -> Result<Vec<bool>> {
        let Some(f) = &self.spec.filter else { return Ok(vec![true; pr.len()]) };
        if pr.is_empty() {
            return Ok(Vec::new());
        }
        let idx = UInt32Array::from(pr.to_vec());
        let this = take_record_batch(rows, &idx).map_err(arrow)?.columns().to_vec();
        let ids: Vec<Option<RowId>> = pq.iter().map(|q| Some(*q)).collect();
        let other = self.sides[1 - s].gather(&ids)?;
        let columns = if s == 0 { [this, other].concat() } else { [other, this].concat() };
        let pairs = RecordBatch::try_new(Arc::clone(&self.spec.pairs), columns).map_err(arrow)?;
        let v = f.evaluate(&pairs).and_then(|v| v.into_array(pairs.num_rows())).map_err(exec)?;
        let Some(mask) = v.as_boolean_opt() else {
            return Err(Error::plan("the join's condition is not a boolean", None));
        };
        Ok((0..mask.len()).map(|i| mask.is_valid(i) && mask.value(i)).collect())
    }

    /// The output rows `out` of a batch of side `s` (`rows`; `None`: rows of the other side
    /// only).
    fn output(&self, s: usize, rows: Option<&RecordBatch>, out: &[Out]) -> Result<Option<Delta>> {
        if out.is_empty() {
            return Ok(None);
        }
        let schema = &self.spec.sides[s];
        let nulls = null_batch(schema)?;
        let mut this = Vec::with_capacity(schema.fields().len());
        let at: Vec<(usize, usize)> =
            out.iter().map(|(r, _, _)| r.map_or((1, 0), |r| (0, r as usize))).collect();
        for c in 0..schema.fields().len() {
            let values = match rows {
                Some(rows) => rows.column(c).as_ref(),
                None => nulls.column(c).as_ref(),
            };
            this.push(interleave(&[values, nulls.column(c).as_ref()], &at).map_err(arrow)?);
        }
        let ids: Vec<Option<RowId>> = out.iter().map(|(_, q, _)| *q).collect();
        let other = self.sides[1 - s].gather(&ids)?;
        let columns = match self.spec.kind.only() {
            Some(k) if k == s => this,
            Some(_) => other,
            None if s == 0 => [this, other].concat(),
            None => [other, this].concat(),
        };
        let rows = RecordBatch::try_new(Arc::clone(&self.spec.schema), columns).map_err(arrow)?;
        let ops = self.spec.changelog_output().then(|| out.iter().map(|o| o.2).collect());
        Ok(Some(Delta { rows, ops }))
    }

    /// Side `s`'s watermark is now `watermark`: the other side's rows out of its reach are
    /// let go (those of a kept side that met no row come out padded).
    ///
    /// # Errors
    /// When the rows cannot be gathered.
    pub fn advance(&mut self, s: usize, watermark: i64) -> Result<Option<Delta>> {
        if watermark <= self.watermarks[s] {
            return Ok(None);
        }
        self.watermarks[s] = watermark;
        let o = 1 - s;
        if let Some(t) = &self.spec.temporal {
            return if t.table == s { self.temporal_ready() } else { Ok(None) };
        }
        if let Some(l) = self.spec.lookup {
            // A sealed table read whole: the rows that waited for it look it up now.
            if l.whole && l.table == s && watermark == i64::MAX {
                let waiting = self.sides[o].held_rows();
                if waiting.is_empty() {
                    return Ok(None);
                }
                let ids: Vec<Option<RowId>> = waiting.iter().map(|q| Some(*q)).collect();
                let columns = self.sides[o].gather(&ids)?;
                let rows = RecordBatch::try_new(Arc::clone(&self.spec.sides[o]), columns)
                    .map_err(arrow)?;
                for q in waiting {
                    self.sides[o].release(q);
                }
                self.sides[o] = Side::new(Arc::clone(&self.spec.sides[o]), self.spec.changelog[o]);
                return self.push(o, rows, None);
            }
            return Ok(None);
        }
        if !self.spec.bounded(o) {
            return Ok(None);
        }
        let gone = self.sides[o].expired(watermark);
        let delta = self.let_go(o, gone)?;
        if self.sides[o].wasteful() {
            self.compact(o)?;
        }
        Ok(delta)
    }

    /// Let go of side `o`'s rows `gone` (out of the other side's reach): those of a kept side
    /// that met no row come out padded.
    fn let_go(&mut self, o: usize, gone: Vec<RowId>) -> Result<Option<Delta>> {
        let out: Vec<Out> = if self.spec.kind.keeps(o) {
            gone.iter()
                .filter(|q| self.sides[o].meta(**q).matches == 0)
                .map(|q| (None, Some(*q), INSERT))
                .collect()
        } else {
            Vec::new()
        };
        let delta = self.output(1 - o, None, &out)?;
        for q in gone {
            self.sides[o].release(q);
        }
        Ok(delta)
    }

    /// `state_ttl`: let go of the rows held for `ttl_ms` or more (their pairs stay in the
    /// output; a row of the other side that would have met them later meets nothing).
    ///
    /// # Errors
    /// When a side cannot be compacted.
    pub fn expire(&mut self, now_ms: i64, ttl_ms: i64) -> Result<()> {
        for s in 0..2 {
            for id in self.sides[s].older_than(now_ms.saturating_sub(ttl_ms)) {
                self.sides[s].release(id);
            }
            if self.sides[s].wasteful() {
                self.compact(s)?;
            }
        }
        Ok(())
    }

    /// Side `s`'s held rows as one batch: its columns, then `__matches`, `__expire` and
    /// `__born`.
    fn side_rows(&self, s: usize) -> Result<RecordBatch> {
        let ids = self.sides[s].held_rows();
        let wrapped: Vec<Option<RowId>> = ids.iter().map(|q| Some(*q)).collect();
        let mut columns = self.sides[s].gather(&wrapped)?;
        let mut matches = UInt32Builder::with_capacity(ids.len());
        let mut expire = Vec::with_capacity(ids.len());
        let mut born = Vec::with_capacity(ids.len());
        for q in &ids {
            let m = self.sides[s].meta(*q);
            matches.append_value(m.matches);
            expire.push(m.expire);
            born.push(m.born);
        }
        columns.push(Arc::new(matches.finish()));
        columns.push(Arc::new(Int64Array::from(expire)));
        columns.push(Arc::new(Int64Array::from(born)));
        let mut fields: Vec<Field> =
            self.spec.sides[s].fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__matches", DataType::UInt32, false));
        fields.push(Field::new("__expire", DataType::Int64, false));
        fields.push(Field::new("__born", DataType::Int64, false));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow)
    }

    /// Hold side `s`'s rows of a batch [`Join::side_rows`] made.
    fn load(&mut self, s: usize, batch: &RecordBatch) -> Result<()> {
        let k = self.spec.sides[s].fields().len();
        if batch.num_columns() != k + 3 {
            return Err(Error::plan("the join's snapshot is not of this join", None));
        }
        let rows =
            RecordBatch::try_new(Arc::clone(&self.spec.sides[s]), batch.columns()[..k].to_vec())
                .map_err(arrow)?;
        let bad = || Error::plan("the join's snapshot is damaged", None);
        let matches = batch
            .column(k)
            .as_primitive_opt::<datafusion::arrow::datatypes::UInt32Type>()
            .ok_or_else(bad)?
            .clone();
        let expire = batch.column(k + 1).as_primitive_opt::<Int64Type>().ok_or_else(bad)?.clone();
        let born = batch.column(k + 2).as_primitive_opt::<Int64Type>().ok_or_else(bad)?.clone();
        let (keys, _) = self.keys_of(s, &rows)?;
        let whole = match &self.whole[s] {
            Some(c) => Some(c.convert_columns(rows.columns()).map_err(arrow)?),
            None => None,
        };
        let b = self.sides[s].add_batch(rows);
        for r in 0..batch.num_rows() {
            let e = expire.value(r);
            let whole = whole.as_ref().map(|w| w.row(r));
            self.sides[s].hold(
                row_id(b, r),
                keys.row(r).as_ref(),
                whole.as_ref().map(|w| w.as_ref()),
                matches.value(r),
                (e != i64::MAX).then_some(e),
                born.value(r),
            )?;
        }
        self.sides[s].settle(b);
        Ok(())
    }

    /// Rebuild side `s` from its held rows (most rows it kept were let go).
    fn compact(&mut self, s: usize) -> Result<()> {
        let rows = self.side_rows(s)?;
        self.sides[s] = Side::new(Arc::clone(&self.spec.sides[s]), self.spec.changelog[s]);
        self.load(s, &rows)
    }

    /// The state for a checkpoint: each side's held rows, then the two watermarks.
    ///
    /// # Errors
    /// When the rows cannot be gathered.
    pub fn snapshot(&self) -> Result<[RecordBatch; 3]> {
        let schema = Arc::new(Schema::new(vec![Field::new("watermark", DataType::Int64, false)]));
        let w = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(self.watermarks.to_vec()))],
        )
        .map_err(arrow)?;
        Ok([self.side_rows(0)?, self.side_rows(1)?, w])
    }

    /// A join going on from a [`Join::snapshot`].
    ///
    /// # Errors
    /// When the snapshot is not of this join.
    pub fn restore(spec: JoinSpec, parts: &[RecordBatch; 3]) -> Result<Join> {
        let mut join = Join::new(spec)?;
        join.load(0, &parts[0])?;
        join.load(1, &parts[1])?;
        let w = parts[2]
            .column(0)
            .as_primitive_opt::<Int64Type>()
            .filter(|w| w.len() == 2)
            .ok_or_else(|| Error::plan("the join's snapshot has no watermarks", None))?;
        join.watermarks = [w.value(0), w.value(1)];
        Ok(join)
    }
}

/// Two deltas of the same schema as one.
fn concat(a: Option<Delta>, b: Option<Delta>) -> Result<Option<Delta>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let rows =
                datafusion::arrow::compute::concat_batches(&a.rows.schema(), [&a.rows, &b.rows])
                    .map_err(arrow)?;
            let ops = match (a.ops, b.ops) {
                (Some(mut x), Some(y)) => {
                    x.extend(y);
                    Some(x)
                }
                (None, None) => None,
                _ => return Err(Error::plan("join: a changelog and inserts mixed", None)),
            };
            Ok(Some(Delta { rows, ops }))
        }
        (a, b) => Ok(a.or(b)),
    }
}

/// `column + constant` (or minus), the constant an interval of days and time: the column's
/// index and the constant in milliseconds (arrow adds intervals row by row through calendar
/// arithmetic; a fixed offset is a plain addition).
fn fixed_offset(e: &dyn PhysicalExpr) -> Option<(usize, i64)> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    if let Some(c) = e.downcast_ref::<Column>() {
        return Some((c.index(), 0));
    }
    let b = e.downcast_ref::<BinaryExpr>()?;
    let c = b.left().downcast_ref::<Column>()?;
    let ScalarValue::IntervalMonthDayNano(Some(v)) = b.right().downcast_ref::<Literal>()?.value()
    else {
        return None;
    };
    if v.months != 0 || v.nanoseconds % 1_000_000 != 0 {
        return None;
    }
    let ms = i64::from(v.days).checked_mul(86_400_000)?.checked_add(v.nanoseconds / 1_000_000)?;
    match b.op() {
        Operator::Plus => Some((c.index(), ms)),
        Operator::Minus => Some((c.index(), -ms)),
        _ => None,
    }
}

/// An expression's values over `rows` as milliseconds (NULL: `i64::MIN`, out of reach at once).
fn times(e: &dyn PhysicalExpr, rows: &RecordBatch) -> Result<Vec<i64>> {
    if let Some((c, offset)) = fixed_offset(e)
        && matches!(rows.column(c).data_type(), DataType::Timestamp(TimeUnit::Millisecond, _))
    {
        let ms =
            rows.column(c).as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        return Ok((0..ms.len())
            .map(|i| if ms.is_valid(i) { ms.value(i).saturating_add(offset) } else { i64::MIN })
            .collect());
    }
    let v = e.evaluate(rows).and_then(|v| v.into_array(rows.num_rows())).map_err(exec)?;
    let ms = cast(&v, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(arrow)?;
    let ms = cast(&ms, &DataType::Int64).map_err(arrow)?;
    let ms = ms.as_primitive::<Int64Type>();
    Ok((0..ms.len()).map(|i| if ms.is_valid(i) { ms.value(i) } else { i64::MIN }).collect())
}

fn exec(e: datafusion::error::DataFusionError) -> Error {
    Error::plan(format!("join: {}", e.message()), None)
}

#[cfg(test)]
mod tests;
