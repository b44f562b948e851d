//! Per-group aggregate state that can be read for any subset of groups and take rows back.
//!
//! DataFusion's vectorized accumulators give values only by consuming their state, for all
//! groups at once, and cannot retract; its row accumulators are one object per group. An
//! updating aggregation reads the groups a batch touched, before and after it, and over a
//! changelog input takes rows back. So the common functions have their own state here,
//! vectorized over group indexes: `COUNT` (counts), `SUM` and `AVG` (sums and counts: a
//! retraction subtracts), `MIN` and `MAX` (the extreme value, or over a retracting input the
//! multiset of values), `COUNT(DISTINCT ...)` (the multiset of distinct values). Any other
//! function ([`Recompute`]) keeps each group's argument rows as a multiset and evaluates
//! DataFusion's accumulator over them when the group is read: correct for every function, at
//! the cost of keeping the rows.
//!
//! Values are compared and kept in arrow's row format (their bytes order as the values do);
//! checkpoints save them as Arrow columns, not row bytes, whose encoding may change.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array, PrimitiveArray,
    RecordBatch,
};
use datafusion::arrow::compute::{cast, filter};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema, UInt64Type,
};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::bags::{CountDistinct, MinMax, Recompute};
use crate::error::{Error, Result};

pub(super) fn arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::plan(format!("aggregation: {e}"), None)
}

pub(super) fn exec(e: datafusion::error::DataFusionError) -> Error {
    Error::plan(format!("aggregation: {}", e.message()), None)
}

pub(super) fn damaged(what: &str) -> Error {
    Error::plan(format!("the snapshot of an aggregation is damaged: {what}"), None)
}

/// A retraction of a value the group does not hold (the input is not a valid changelog).
pub(super) fn not_held(function: &str) -> Error {
    Error::plan(
        format!(
            "the input retracts a row that {function} never saw: it is not a changelog of inserts before their retractions"
        ),
        None,
    )
}

/// The state of one aggregate function over every group.
pub(crate) trait GroupAccumulator: Send + Sync + Debug {
    /// Apply rows: row `i` of `args` goes to group `groups[i]`, added, or taken back when
    /// `retract` says so. There are `total` groups now (new ones start empty).
    ///
    /// # Errors
    /// On a value that cannot be converted, or a retraction of a value never added.
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()>;

    /// The current value of each of `groups`.
    ///
    /// # Errors
    /// When the value cannot be computed (an overflow, a function's error).
    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef>;

    /// Empty `groups` (their state expired).
    fn reset(&mut self, groups: &[u32]);

    /// The state of every group, as one batch (for a checkpoint).
    ///
    /// # Errors
    /// When the values cannot be converted back to Arrow.
    fn save(&self) -> Result<RecordBatch>;

    /// Restore what [`GroupAccumulator::save`] gave, for `total` groups.
    ///
    /// # Errors
    /// When the batch is not what `save` gives.
    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()>;
}

/// Whether each row has a value in every argument (SQL aggregates skip NULL arguments).
pub(super) fn valid(args: &[ArrayRef], i: usize) -> bool {
    args.iter().all(|a| a.is_valid(i))
}

/// Make the items of `groups` empty again (their state expired).
pub(super) fn empty_groups<T: Default>(items: &mut [T], groups: &[u32]) {
    for g in groups {
        if let Some(item) = items.get_mut(*g as usize) {
            *item = T::default();
        }
    }
}

/// Whether row `i` takes a row back.
pub(super) fn retracts(retract: Option<&[bool]>, i: usize) -> bool {
    retract.is_some_and(|r| r[i])
}

/// `COUNT(*)` and `COUNT(x, ...)`: the rows with a value in every argument.
#[derive(Debug, Default)]
pub(crate) struct Count {
    counts: Vec<i64>,
}

impl GroupAccumulator for Count {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()> {
        self.counts.resize(total, 0);
        for (i, g) in groups.iter().enumerate() {
            if valid(args, i) {
                let c = &mut self.counts[*g as usize];
                *c += if retracts(retract, i) { -1 } else { 1 };
            }
        }
        Ok(())
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let at = |g: &u32| self.counts.get(*g as usize).copied().unwrap_or(0);
        Ok(Arc::new(Int64Array::from_iter_values(groups.iter().map(at))))
    }

    fn reset(&mut self, groups: &[u32]) {
        empty_groups(&mut self.counts, groups);
    }

    fn save(&self) -> Result<RecordBatch> {
        let schema = Schema::new(vec![Field::new("count", DataType::Int64, false)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(self.counts.clone()))],
        )
        .map_err(arrow)
    }

    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
        let c = batch
            .column(0)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| damaged("counts are not Int64"))?;
        self.counts = c.values().to_vec();
        self.counts.resize(total, 0);
        Ok(())
    }
}

/// A running sum and count of values per group, in the arrow type `T` (the function's
/// argument type after DataFusion's coercion: `Int64`, `UInt64`, `Float64` or a decimal).
struct Sums<T: ArrowPrimitiveType> {
    /// The type of the values (a decimal's precision and scale).
    data_type: DataType,
    sums: Vec<T::Native>,
    counts: Vec<i64>,
}

impl<T: ArrowPrimitiveType> Sums<T> {
    fn new(data_type: DataType) -> Self {
        Sums { data_type, sums: Vec::new(), counts: Vec::new() }
    }

    fn update(
        &mut self,
        arg: &ArrayRef,
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()> {
        use datafusion::arrow::datatypes::ArrowNativeTypeOp;
        self.sums.resize(total, T::Native::default());
        self.counts.resize(total, 0);
        let values = cast(arg, &self.data_type).map_err(arrow)?;
        let values = values.as_primitive::<T>();
        for (i, g) in groups.iter().enumerate() {
            if values.is_null(i) {
                continue;
            }
            let (s, c) = (&mut self.sums[*g as usize], &mut self.counts[*g as usize]);
            let v = values.value(i);
            if retracts(retract, i) {
                *s = s.sub_wrapping(v);
                *c -= 1;
                if *c == 0 {
                    // (No value left: no rounding residue of floats either.)
                    *s = T::Native::default();
                }
            } else {
                *s = s.add_wrapping(v);
                *c += 1;
            }
        }
        Ok(())
    }

    fn reset(&mut self, groups: &[u32]) {
        empty_groups(&mut self.sums, groups);
        empty_groups(&mut self.counts, groups);
    }

    /// `(sum, count)` of group `g`.
    fn at(&self, g: u32) -> (T::Native, i64) {
        let g = g as usize;
        (self.sums.get(g).copied().unwrap_or_default(), self.counts.get(g).copied().unwrap_or(0))
    }

    fn save(&self) -> Result<RecordBatch> {
        let schema = Schema::new(vec![
            Field::new("sum", self.data_type.clone(), false),
            Field::new("count", DataType::Int64, false),
        ]);
        let sums = PrimitiveArray::<T>::from_iter_values(self.sums.iter().copied())
            .with_data_type(self.data_type.clone());
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(sums), Arc::new(Int64Array::from(self.counts.clone()))],
        )
        .map_err(arrow)
    }

    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
        if batch.num_columns() != 2 {
            return Err(damaged("a sum's state has two columns"));
        }
        let sums = cast(batch.column(0), &self.data_type).map_err(arrow)?;
        self.sums = sums.as_primitive::<T>().values().to_vec();
        let counts = batch
            .column(1)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| damaged("counts are not Int64"))?;
        self.counts = counts.values().to_vec();
        self.sums.resize(total, T::Native::default());
        self.counts.resize(total, 0);
        Ok(())
    }
}

/// The methods of an aggregate whose state is a [`Sums`] in `self.sums` (all but `evaluate`).
macro_rules! delegate_to_sums {
    () => {
        fn update(
            &mut self,
            args: &[ArrayRef],
            groups: &[u32],
            retract: Option<&[bool]>,
            total: usize,
        ) -> Result<()> {
            self.sums.update(&args[0], groups, retract, total)
        }

        fn reset(&mut self, groups: &[u32]) {
            self.sums.reset(groups);
        }

        fn save(&self) -> Result<RecordBatch> {
            self.sums.save()
        }

        fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
            self.sums.load(batch, total)
        }
    };
}

/// `SUM(x)`: NULL for a group without values.
pub(crate) struct Sum<T: ArrowPrimitiveType> {
    sums: Sums<T>,
}

impl<T: ArrowPrimitiveType> Debug for Sums<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sums({}, {} groups)", self.data_type, self.sums.len())
    }
}

impl<T: ArrowPrimitiveType> Debug for Sum<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sum({:?})", self.sums)
    }
}

impl<T: ArrowPrimitiveType> GroupAccumulator for Sum<T> {
    delegate_to_sums!();

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let values = groups.iter().map(|g| {
            let (s, c) = self.sums.at(*g);
            (c > 0).then_some(s)
        });
        Ok(Arc::new(
            PrimitiveArray::<T>::from_iter(values).with_data_type(self.sums.data_type.clone()),
        ))
    }
}

/// `AVG(x)` of floats (DataFusion casts integers to `Float64` first).
#[derive(Debug)]
pub(crate) struct FloatAvg {
    sums: Sums<Float64Type>,
}

impl GroupAccumulator for FloatAvg {
    delegate_to_sums!();

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let values = groups.iter().map(|g| {
            let (s, c) = self.sums.at(*g);
            (c > 0).then(|| s / c as f64)
        });
        Ok(Arc::new(PrimitiveArray::<Float64Type>::from_iter(values)))
    }
}

/// `AVG(x)` of a decimal, as DataFusion computes it: the sum scaled to the result's scale,
/// divided by the count (truncated), checked against the result's precision.
#[derive(Debug)]
pub(crate) struct DecimalAvg {
    sums: Sums<Decimal128Type>,
    /// The result's precision and scale.
    precision: u8,
    scale: i8,
    /// `10^(result scale - argument scale)`.
    factor: i128,
}

impl GroupAccumulator for DecimalAvg {
    delegate_to_sums!();

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        use datafusion::arrow::datatypes::DecimalType;
        let overflow = || Error::plan("AVG: the average does not fit its decimal type", None);
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let (s, c) = self.sums.at(*g);
            if c <= 0 {
                out.push(None);
                continue;
            }
            let v = s.checked_mul(self.factor).ok_or_else(overflow)? / i128::from(c);
            Decimal128Type::validate_decimal_precision(v, self.precision, self.scale)
                .map_err(|_| overflow())?;
            out.push(Some(v));
        }
        Ok(Arc::new(
            PrimitiveArray::<Decimal128Type>::from(out)
                .with_data_type(DataType::Decimal128(self.precision, self.scale)),
        ))
    }
}

/// The state for `function` (its arguments of `types`), over an input that retracts rows or
/// not.
///
/// # Errors
/// When the types cannot be kept in row format.
pub(crate) fn for_function(
    function: &Arc<AggregateFunctionExpr>,
    types: &[DataType],
    retracting: bool,
) -> Result<Box<dyn GroupAccumulator>> {
    let name = function.fun().name().to_ascii_lowercase();
    let out = function.field().data_type().clone();
    let distinct = function.is_distinct();
    let one = types.len() == 1;
    Ok(match (name.as_str(), distinct) {
        ("count", false) => Box::new(Count::default()),
        ("count", true) if one && super::distinct::integer(&types[0]) => {
            Box::new(super::distinct::CountDistinctInt::default())
        }
        ("count", true) => Box::new(CountDistinct::new(types)?),
        ("sum", false) if one => match (&types[0], &out) {
            (DataType::Int64, DataType::Int64) => {
                Box::new(Sum::<Int64Type> { sums: Sums::new(out) })
            }
            (DataType::UInt64, DataType::UInt64) => {
                Box::new(Sum::<UInt64Type> { sums: Sums::new(out) })
            }
            (DataType::Float64, DataType::Float64) => {
                Box::new(Sum::<Float64Type> { sums: Sums::new(out) })
            }
            (DataType::Decimal128(..), DataType::Decimal128(..)) => {
                Box::new(Sum::<Decimal128Type> { sums: Sums::new(out) })
            }
            _ => Box::new(Recompute::new(Arc::clone(function), types)?),
        },
        ("avg", false) if one => match (&types[0], &out) {
            (DataType::Float64, DataType::Float64) => {
                Box::new(FloatAvg { sums: Sums::new(DataType::Float64) })
            }
            (DataType::Decimal128(_, arg_scale), DataType::Decimal128(p, s)) if s >= arg_scale => {
                // The sums keep the argument's scale, with room for many rows.
                let sum_type = DataType::Decimal128(38, *arg_scale);
                Box::new(DecimalAvg {
                    sums: Sums::new(sum_type),
                    precision: *p,
                    scale: *s,
                    factor: 10i128.pow((*s - *arg_scale) as u32),
                })
            }
            _ => Box::new(Recompute::new(Arc::clone(function), types)?),
        },
        ("min" | "max", false) if one && types[0] == out => {
            Box::new(MinMax::new(out, name == "max", retracting)?)
        }
        _ => Box::new(Recompute::new(Arc::clone(function), types)?),
    })
}

/// Rows kept by a `FILTER` clause: their arguments, groups and retraction flags.
pub(crate) type Selected = (Vec<ArrayRef>, Vec<u32>, Option<Vec<bool>>);

/// Keep the rows of `args` (and their groups and retraction flags) where `mask` is true.
pub(crate) fn select(
    args: &[ArrayRef],
    groups: &[u32],
    retract: Option<&[bool]>,
    mask: &BooleanArray,
) -> Result<Selected> {
    let args = args
        .iter()
        .map(|a| filter(a, mask))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow)?;
    let keep = |i: usize| mask.is_valid(i) && mask.value(i);
    let groups = groups.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, g)| *g).collect();
    let retract =
        retract.map(|r| r.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, r)| *r).collect());
    Ok((args, groups, retract))
}
