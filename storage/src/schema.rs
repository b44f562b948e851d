//! Schema checks of appended batches and event-time extraction.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use crate::error::{Error, Result};

/// Check `batch` against the stream's `schema` and return it re-labelled with exactly that schema.
///
/// Columns are matched by position and must have the same names and types. A column declared
/// `NOT NULL` must hold no nulls; a batch field that is merely *marked* nullable is accepted when
/// it holds none. Field and schema metadata of the batch are ignored.
///
/// # Errors
/// [`Error::SchemaMismatch`] naming every column that differs.
pub(crate) fn conform<'a>(
    stream: &str,
    schema: &SchemaRef,
    batch: &'a RecordBatch,
) -> Result<Cow<'a, RecordBatch>> {
    let got = batch.schema();
    if Arc::ptr_eq(&got, schema) || got == *schema {
        // Exactly the stream's schema: Arrow already checked lengths and types when the batch
        // was built, and no NOT NULL column holds a null (RecordBatch::try_new refuses that).
        return Ok(Cow::Borrowed(batch));
    }
    let mut problems = Vec::new();
    for (i, want) in schema.fields().iter().enumerate() {
        match got.fields().get(i) {
            None => {
                problems.push(format!("missing column '{}' ({})", want.name(), want.data_type()))
            }
            Some(have) => {
                if have.name() != want.name() {
                    problems.push(format!(
                        "column {} is named '{}', expected '{}'",
                        i + 1,
                        have.name(),
                        want.name()
                    ));
                } else if have.data_type() != want.data_type() {
                    problems.push(format!(
                        "column '{}' has type {}, expected {}",
                        want.name(),
                        have.data_type(),
                        want.data_type()
                    ));
                } else if !want.is_nullable() && batch.column(i).null_count() > 0 {
                    problems.push(format!(
                        "column '{}' is NOT NULL but holds {} null(s)",
                        want.name(),
                        batch.column(i).null_count()
                    ));
                }
            }
        }
    }
    for extra in got.fields().iter().skip(schema.fields().len()) {
        problems.push(format!("unexpected column '{}' ({})", extra.name(), extra.data_type()));
    }
    if !problems.is_empty() {
        return Err(Error::SchemaMismatch {
            stream: stream.to_string(),
            detail: problems.join("; "),
        });
    }
    let columns: Vec<ArrayRef> = batch.columns().to_vec();
    Ok(Cow::Owned(RecordBatch::try_new(Arc::clone(schema), columns)?))
}

/// Whether `data_type` can be a stream's event-time column.
pub(crate) fn is_event_time_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(_, _))
}

/// Minimum and maximum of a timestamp column, ignoring nulls; `None` when every value is null.
pub(crate) fn time_range(column: &dyn Array) -> Option<(i64, i64)> {
    fn range<T: arrow::datatypes::ArrowPrimitiveType<Native = i64>>(
        column: &dyn Array,
    ) -> Option<(i64, i64)> {
        let a = column.as_primitive::<T>();
        Some((arrow::compute::min(a)?, arrow::compute::max(a)?))
    }
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => range::<TimestampSecondType>(column),
        DataType::Timestamp(TimeUnit::Millisecond, _) => range::<TimestampMillisecondType>(column),
        DataType::Timestamp(TimeUnit::Microsecond, _) => range::<TimestampMicrosecondType>(column),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => range::<TimestampNanosecondType>(column),
        _ => None,
    }
}

/// Index of the first row whose event time is at least `t` (nulls never qualify).
pub(crate) fn first_row_at_or_after(column: &dyn Array, t: i64) -> Option<usize> {
    fn find<T: arrow::datatypes::ArrowPrimitiveType<Native = i64>>(
        column: &dyn Array,
        t: i64,
    ) -> Option<usize> {
        let a = column.as_primitive::<T>();
        (0..a.len()).find(|&i| a.is_valid(i) && a.value(i) >= t)
    }
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => find::<TimestampSecondType>(column, t),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            find::<TimestampMillisecondType>(column, t)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            find::<TimestampMicrosecondType>(column, t)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => find::<TimestampNanosecondType>(column, t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn mismatch_names_every_column() {
        let other = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("nom", DataType::Utf8, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            other,
            vec![
                Arc::new(StringArray::from(vec!["1"])),
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        let msg = conform("s", &schema(), &b).unwrap_err().to_string();
        assert!(msg.contains("column 'id' has type Utf8, expected Int64"), "{msg}");
        assert!(msg.contains("column 2 is named 'nom', expected 'name'"), "{msg}");
        assert!(msg.contains("unexpected column 'x'"), "{msg}");
    }

    #[test]
    fn nullable_marking_is_accepted_without_nulls_and_refused_with() {
        let loose = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ok = RecordBatch::try_new(
            loose.clone(),
            vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec!["a"]))],
        )
        .unwrap();
        assert_eq!(conform("s", &schema(), &ok).unwrap().schema(), schema());
        let own = RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec!["a"]))],
        )
        .unwrap();
        assert!(matches!(conform("s", &own.schema(), &own).unwrap(), Cow::Borrowed(_)));
        let bad = RecordBatch::try_new(
            loose,
            vec![Arc::new(Int64Array::from(vec![None])), Arc::new(StringArray::from(vec!["a"]))],
        )
        .unwrap();
        let msg = conform("s", &schema(), &bad).unwrap_err().to_string();
        assert!(msg.contains("'id' is NOT NULL but holds 1 null"), "{msg}");
    }

    #[test]
    fn time_range_and_search() {
        let a = TimestampMillisecondArray::from(vec![Some(5), None, Some(2), Some(9)]);
        assert_eq!(time_range(&a), Some((2, 9)));
        assert_eq!(first_row_at_or_after(&a, 6), Some(3));
        assert_eq!(first_row_at_or_after(&a, 10), None);
        let n = TimestampMillisecondArray::from(vec![None::<i64>]);
        assert_eq!(time_range(&n), None);
    }
}
