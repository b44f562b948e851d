//! Table state: the current rows a changelog describes (groundwork for materialized views,
//! issue 8; not yet used by the engine).
//!
//! A changelog batch carries an `__op` column last, with Flink's row kinds: `0` `+I`, `1` `-U`,
//! `2` `+U`, `3` `-D`. [`ChangelogTable::apply`] applies batches in order to the table:
//!
//! - **keyed** (a primary key, as a view grouped by its keys has): `+I` / `+U` put the row
//!   under its key (replacing the row there), `-U` / `-D` remove the row under its key, which
//!   must be there;
//! - **without key**: the table is a multiset of whole rows, `+I` / `+U` add one copy, `-U` /
//!   `-D` remove one copy, which must be there.
//!
//! Keys and rows are kept in arrow's row format (compact, hashable bytes); a snapshot converts
//! them back to one batch. The number of rows has a limit, with an error at it. Snapshots are
//! also what a checkpoint writes ([`ChangelogTable::restore`] reads one back).

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int8Type, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};

use crate::error::{Error, Result};

/// `+I`.
pub const INSERT: i8 = 0;
/// `-U`.
pub const UPDATE_BEFORE: i8 = 1;
/// `+U`.
pub const UPDATE_AFTER: i8 = 2;
/// `-D`.
pub const DELETE: i8 = 3;

/// Rows one table holds at most by default.
pub const DEFAULT_MAX_ROWS: usize = 10_000_000;

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::InvalidArgument(format!("table: {e}"))
}

/// The current rows of a changelog.
pub struct ChangelogTable {
    schema: SchemaRef,
    key: Vec<usize>,
    keys: Option<RowConverter>,
    rows: RowConverter,
    /// Keyed: key -> row. Without key: row -> (the row, copies).
    entries: HashMap<Box<[u8]>, (OwnedRow, u64)>,
    len: usize,
    max_rows: usize,
}

impl std::fmt::Debug for ChangelogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangelogTable").field("key", &self.key).field("len", &self.len).finish()
    }
}

impl ChangelogTable {
    /// An empty table of rows of `schema` (without `__op`), keyed by columns `key` (none: a
    /// multiset of whole rows), holding at most `max_rows` rows.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a key column out of range or a type arrow's row format
    /// cannot hold.
    pub fn new(schema: SchemaRef, key: Vec<usize>, max_rows: usize) -> Result<ChangelogTable> {
        let field = |i: usize| {
            schema.fields().get(i).map(|f| SortField::new(f.data_type().clone())).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "key column {i} of {} columns",
                    schema.fields().len()
                ))
            })
        };
        let keys = if key.is_empty() {
            None
        } else {
            let fields = key.iter().map(|i| field(*i)).collect::<Result<Vec<_>>>()?;
            Some(RowConverter::new(fields).map_err(arrow_error)?)
        };
        let all = (0..schema.fields().len()).map(field).collect::<Result<Vec<_>>>()?;
        let rows = RowConverter::new(all).map_err(arrow_error)?;
        Ok(ChangelogTable { schema, key, keys, rows, entries: HashMap::new(), len: 0, max_rows })
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Apply a changelog batch: the table's columns, then `__op` (`Int8`).
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`]-like [`Error::InvalidArgument`] for other columns; a `-U` /
    /// `-D` of a row (or key) not in the table, or an unknown `__op`, naming the row;
    /// [`Error::LimitExceeded`] past the row limit. Rows before the failing one stay applied.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = self.schema.fields().len();
        let columns = batch.columns();
        let fields = batch.schema();
        let same = columns.len() == n + 1
            && fields
                .fields()
                .iter()
                .zip(self.schema.fields())
                .all(|(a, b)| a.data_type() == b.data_type())
            && fields.field(n).data_type() == &DataType::Int8;
        if !same {
            return Err(Error::InvalidArgument(format!(
                "a changelog of the table has its {n} columns then __op (Int8); this batch has {}",
                fields
                    .fields()
                    .iter()
                    .map(|f| f.data_type().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let ops = columns[n].as_primitive::<Int8Type>();
        let rows = self.rows.convert_columns(&columns[..n]).map_err(arrow_error)?;
        let keys = match &self.keys {
            Some(k) => {
                let cols: Vec<ArrayRef> = self.key.iter().map(|i| columns[*i].clone()).collect();
                Some(k.convert_columns(&cols).map_err(arrow_error)?)
            }
            None => None,
        };
        for i in 0..batch.num_rows() {
            let row = rows.row(i);
            let key: &[u8] = match &keys {
                Some(k) => k.row(i).data(),
                None => row.data(),
            };
            let op = if ops.is_null(i) { -1 } else { ops.value(i) };
            match op {
                INSERT | UPDATE_AFTER => {
                    let keyed = keys.is_some();
                    let held = self.entries.contains_key(key);
                    if !(keyed && held) {
                        self.check_room()?;
                        self.len += 1;
                    }
                    match self.entries.get_mut(key) {
                        Some(entry) if keyed => entry.0 = row.owned(),
                        Some(entry) => entry.1 += 1,
                        None => {
                            self.entries.insert(key.into(), (row.owned(), 1));
                        }
                    }
                }
                UPDATE_BEFORE | DELETE => {
                    let Some(entry) = self.entries.get_mut(key) else {
                        return Err(Error::InvalidArgument(format!(
                            "row {i} of the changelog retracts a row the table does not hold"
                        )));
                    };
                    entry.1 -= 1;
                    if keys.is_some() || entry.1 == 0 {
                        self.entries.remove(key);
                    }
                    self.len -= 1;
                }
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "row {i} of the changelog has __op {other} (0 +I, 1 -U, 2 +U, 3 -D)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_room(&self) -> Result<()> {
        if self.len >= self.max_rows {
            return Err(Error::LimitExceeded(format!(
                "the table holds {} rows, its limit",
                self.max_rows
            )));
        }
        Ok(())
    }

    /// The rows, as one batch of the table's schema (in no particular order).
    ///
    /// # Errors
    /// When the rows cannot be converted back (never for rows [`ChangelogTable::apply`] took).
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let rows = self
            .entries
            .values()
            .flat_map(|(row, copies)| std::iter::repeat_n(row.row(), *copies as usize));
        let columns = self.rows.convert_rows(rows).map_err(arrow_error)?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_error)
    }

    /// A table holding the rows of `snapshot` (as [`ChangelogTable::snapshot`] gave them).
    ///
    /// # Errors
    /// As [`ChangelogTable::new`] and [`ChangelogTable::apply`].
    pub fn restore(
        schema: SchemaRef,
        key: Vec<usize>,
        max_rows: usize,
        snapshot: &RecordBatch,
    ) -> Result<ChangelogTable> {
        let mut table = ChangelogTable::new(schema, key, max_rows)?;
        let mut columns = snapshot.columns().to_vec();
        columns.push(std::sync::Arc::new(arrow::array::Int8Array::from(vec![
            INSERT;
            snapshot.num_rows()
        ])));
        let mut fields: Vec<arrow::datatypes::Field> =
            snapshot.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(arrow::datatypes::Field::new("__op", DataType::Int8, false));
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        table.apply(&RecordBatch::try_new(schema, columns).map_err(arrow_error)?)?;
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int8Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn changes(rows: &[(&str, Option<i64>, i8)]) -> RecordBatch {
        let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__op", DataType::Int8, false));
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(Int8Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn sorted(t: &ChangelogTable) -> Vec<(String, Option<i64>)> {
        let b = t.snapshot().unwrap();
        let k = b.column(0).as_string::<i32>();
        let n = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        let mut v: Vec<_> = (0..b.num_rows())
            .map(|i| (k.value(i).to_string(), (!n.is_null(i)).then(|| n.value(i))))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_keyed_table_holds_the_last_row_per_key() {
        let mut t = ChangelogTable::new(schema(), vec![0], 10).unwrap();
        t.apply(&changes(&[("a", Some(1), INSERT), ("b", None, INSERT)])).unwrap();
        t.apply(&changes(&[("a", Some(1), UPDATE_BEFORE), ("a", Some(2), UPDATE_AFTER)])).unwrap();
        t.apply(&changes(&[("b", None, DELETE), ("c", Some(7), INSERT)])).unwrap();
        assert_eq!(sorted(&t), [("a".into(), Some(2)), ("c".into(), Some(7))]);
        assert_eq!(t.len(), 2);
        let err = t.apply(&changes(&[("zz", Some(1), DELETE)])).unwrap_err().to_string();
        assert!(err.contains("row 0 of the changelog retracts a row"), "{err}");
        let back = ChangelogTable::restore(schema(), vec![0], 10, &t.snapshot().unwrap()).unwrap();
        assert_eq!(sorted(&back), sorted(&t));
    }

    #[test]
    fn a_table_without_key_is_a_multiset_with_a_limit() {
        let mut t = ChangelogTable::new(schema(), vec![], 3).unwrap();
        t.apply(&changes(&[
            ("a", Some(1), INSERT),
            ("a", Some(1), INSERT),
            ("b", Some(2), INSERT),
        ]))
        .unwrap();
        t.apply(&changes(&[("a", Some(1), DELETE)])).unwrap();
        assert_eq!(sorted(&t), [("a".into(), Some(1)), ("b".into(), Some(2))]);
        t.apply(&changes(&[("c", Some(3), INSERT)])).unwrap();
        let err = t.apply(&changes(&[("d", Some(4), INSERT)])).unwrap_err().to_string();
        assert!(err.contains("limit"), "{err}");
        assert!(
            t.apply(&changes(&[("a", Some(9), 7)])).unwrap_err().to_string().contains("__op 7")
        );
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        assert!(t.apply(&wrong).is_err());
    }
}
