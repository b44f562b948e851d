//! `COUNT(DISTINCT x)` of one integer argument: per group a hash map from the value (as an
//! `i64`) to the number of rows holding it, without a row-format copy of each value (the
//! common case: Nexmark's distinct bidders and auctions).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt32Type};

use super::accumulators::{GroupAccumulator, arrow, damaged, empty_groups, not_held, retracts};
use crate::error::Result;

type Counts = datafusion::common::HashMap<i64, u32>;

/// Whether values of `t` can be counted as `i64`s (losslessly, one to one).
pub(crate) fn integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// `COUNT(DISTINCT x)` of an integer `x`.
#[derive(Debug, Default)]
pub(crate) struct CountDistinctInt {
    sets: Vec<Counts>,
}

impl GroupAccumulator for CountDistinctInt {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()> {
        self.sets.resize_with(total, Counts::default);
        let values = cast(&args[0], &DataType::Int64).map_err(arrow)?;
        let values = values.as_primitive::<Int64Type>();
        for (i, g) in groups.iter().enumerate() {
            if values.is_null(i) {
                continue;
            }
            let set = &mut self.sets[*g as usize];
            let v = values.value(i);
            if retracts(retract, i) {
                match set.get_mut(&v) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        set.remove(&v);
                    }
                    None => return Err(not_held("COUNT(DISTINCT ...)")),
                }
            } else {
                *set.entry(v).or_insert(0) += 1;
            }
        }
        Ok(())
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let at = |g: &u32| self.sets.get(*g as usize).map_or(0, |s| s.len() as i64);
        Ok(Arc::new(Int64Array::from_iter_values(groups.iter().map(at))))
    }

    fn reset(&mut self, groups: &[u32]) {
        empty_groups(&mut self.sets, groups);
    }

    fn save(&self) -> Result<RecordBatch> {
        let (mut groups, mut values, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for (g, set) in self.sets.iter().enumerate() {
            for (v, n) in set {
                groups.push(g as u32);
                values.push(*v);
                counts.push(*n);
            }
        }
        let schema = Schema::new(vec![
            Field::new("group", DataType::UInt32, false),
            Field::new("value", DataType::Int64, false),
            Field::new("count", DataType::UInt32, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(groups)),
            Arc::new(Int64Array::from(values)),
            Arc::new(UInt32Array::from(counts)),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).map_err(arrow)
    }

    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
        if batch.num_columns() != 3 {
            return Err(damaged("a distinct count's state has three columns"));
        }
        let groups =
            batch.column(0).as_primitive_opt::<UInt32Type>().ok_or_else(|| damaged("groups"))?;
        let values = cast(batch.column(1), &DataType::Int64).map_err(arrow)?;
        let values = values.as_primitive_opt::<Int64Type>().ok_or_else(|| damaged("values"))?;
        let counts =
            batch.column(2).as_primitive_opt::<UInt32Type>().ok_or_else(|| damaged("counts"))?;
        self.sets = vec![Counts::default(); total];
        for i in 0..batch.num_rows() {
            let set = self
                .sets
                .get_mut(groups.value(i) as usize)
                .ok_or_else(|| damaged("a group out of range"))?;
            set.insert(values.value(i), counts.value(i));
        }
        Ok(())
    }
}
