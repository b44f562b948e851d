//! Aggregate state kept as multisets of values per group, in arrow's row format: `MIN` and
//! `MAX` (over a retracting input), `COUNT(DISTINCT ...)`, and any other function
//! ([`Recompute`]: the group's argument rows, evaluated by DataFusion's accumulator when read).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::accumulators::{
    GroupAccumulator, arrow, damaged, empty_groups, exec, not_held, retracts, valid,
};
use crate::error::{Error, Result};

/// A multiset of values in row format, ordered (MIN and MAX read its ends).
type Bag = BTreeMap<Box<[u8]>, u32>;

/// A multiset of values in row format, hashed (COUNT(DISTINCT) counts its keys).
type Set = datafusion::common::HashMap<Box<[u8]>, u32>;

/// What [`save_bags`] and [`load_bags`] need of a multiset.
trait Multiset: Default + Clone {
    fn get_mut(&mut self, value: &[u8]) -> Option<&mut u32>;
    fn put(&mut self, value: Box<[u8]>, n: u32);
    fn drop_value(&mut self, value: &[u8]);
    fn entries(&self) -> Vec<(&[u8], u32)>;
}

impl Multiset for Bag {
    fn get_mut(&mut self, value: &[u8]) -> Option<&mut u32> {
        BTreeMap::get_mut(self, value)
    }
    fn put(&mut self, value: Box<[u8]>, n: u32) {
        self.insert(value, n);
    }
    fn drop_value(&mut self, value: &[u8]) {
        self.remove(value);
    }
    fn entries(&self) -> Vec<(&[u8], u32)> {
        self.iter().map(|(k, n)| (k.as_ref(), *n)).collect()
    }
}

impl Multiset for Set {
    fn get_mut(&mut self, value: &[u8]) -> Option<&mut u32> {
        datafusion::common::HashMap::get_mut(self, value)
    }
    fn put(&mut self, value: Box<[u8]>, n: u32) {
        self.insert(value, n);
    }
    fn drop_value(&mut self, value: &[u8]) {
        self.remove(value);
    }
    fn entries(&self) -> Vec<(&[u8], u32)> {
        self.iter().map(|(k, n)| (k.as_ref(), *n)).collect()
    }
}

fn bag_add<M: Multiset>(bag: &mut M, value: &[u8]) {
    match bag.get_mut(value) {
        Some(n) => *n += 1,
        None => bag.put(value.into(), 1),
    }
}

/// Add (or take back) row `i` of `rows` to the multiset of group `groups[i]`, for the rows
/// `counted` keeps; there are `total` groups now.
///
/// # Errors
/// A retraction of a value the group does not hold (`function` names the aggregate).
fn update_multisets<M: Multiset>(
    bags: &mut Vec<M>,
    rows: &datafusion::arrow::row::Rows,
    groups: &[u32],
    retract: Option<&[bool]>,
    counted: impl Fn(usize) -> bool,
    function: &str,
    total: usize,
) -> Result<()> {
    bags.resize(total, M::default());
    for (i, g) in groups.iter().enumerate() {
        if !counted(i) {
            continue;
        }
        let bag = &mut bags[*g as usize];
        let row = rows.row(i);
        if retracts(retract, i) {
            if !bag_remove(bag, row.as_ref()) {
                return Err(not_held(function));
            }
        } else {
            bag_add(bag, row.as_ref());
        }
    }
    Ok(())
}

/// Take one `value` out of `bag`: false when it holds none.
fn bag_remove<M: Multiset>(bag: &mut M, value: &[u8]) -> bool {
    match bag.get_mut(value) {
        Some(n) if *n > 1 => {
            *n -= 1;
            true
        }
        Some(_) => {
            bag.drop_value(value);
            true
        }
        None => false,
    }
}

/// Values of one or more columns in arrow's row format, and back.
#[derive(Debug)]
struct RowCodec {
    converter: RowConverter,
    fields: Vec<Field>,
}

impl RowCodec {
    fn new(types: &[DataType]) -> Result<Self> {
        let sort = types.iter().map(|t| SortField::new(t.clone())).collect();
        let fields = types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("v{i}"), t.clone(), true))
            .collect();
        Ok(RowCodec { converter: RowConverter::new(sort).map_err(arrow)?, fields })
    }

    fn encode(&self, columns: &[ArrayRef]) -> Result<datafusion::arrow::row::Rows> {
        self.converter.convert_columns(columns).map_err(arrow)
    }

    fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let rows: Vec<_> = rows.into_iter().map(|r| parser.parse(r)).collect();
        self.converter.convert_rows(rows).map_err(arrow)
    }
}

/// Save per-group multisets as rows `(group, values..., count)`.
fn save_bags<M: Multiset>(codec: &RowCodec, bags: &[M]) -> Result<RecordBatch> {
    let (mut groups, mut counts, mut rows): (Vec<u32>, Vec<u32>, Vec<&[u8]>) = Default::default();
    for (g, bag) in bags.iter().enumerate() {
        for (row, n) in bag.entries() {
            groups.push(g as u32);
            rows.push(row);
            counts.push(n);
        }
    }
    let mut fields = vec![Field::new("group", DataType::UInt32, false)];
    fields.extend(codec.fields.iter().cloned());
    fields.push(Field::new("count", DataType::UInt32, false));
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(groups))];
    if rows.is_empty() {
        columns.extend(
            codec.fields.iter().map(|f| datafusion::arrow::array::new_empty_array(f.data_type())),
        );
    } else {
        columns.extend(codec.decode(rows)?);
    }
    columns.push(Arc::new(UInt32Array::from(counts)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow)
}

/// Restore what [`save_bags`] gave into `total` multisets.
fn load_bags<M: Multiset>(codec: &RowCodec, batch: &RecordBatch, total: usize) -> Result<Vec<M>> {
    let n = batch.num_columns();
    if n != codec.fields.len() + 2 {
        return Err(damaged("a multiset's state has the wrong columns"));
    }
    let groups = batch
        .column(0)
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| damaged("groups are not UInt32"))?;
    let counts = batch
        .column(n - 1)
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| damaged("counts are not UInt32"))?;
    let rows = codec.encode(&batch.columns()[1..n - 1])?;
    let mut bags = vec![M::default(); total];
    for i in 0..batch.num_rows() {
        let bag = bags
            .get_mut(groups.value(i) as usize)
            .ok_or_else(|| damaged("a group out of range"))?;
        bag.put(rows.row(i).as_ref().into(), counts.value(i));
    }
    Ok(bags)
}

/// `MIN(x)` and `MAX(x)`: over an append-only input the extreme value so far; over a
/// retracting one the multiset of the group's values.
#[derive(Debug)]
pub(crate) struct MinMax {
    codec: RowCodec,
    max: bool,
    /// The result type.
    data_type: DataType,
    /// Append-only: the extreme value of each group.
    extreme: Vec<Option<Box<[u8]>>>,
    /// Retracting: each group's values.
    bags: Option<Vec<Bag>>,
    /// The row of a NULL value (a group without values).
    null: Box<[u8]>,
}

impl MinMax {
    pub(crate) fn new(data_type: DataType, max: bool, retracting: bool) -> Result<Self> {
        let codec = RowCodec::new(std::slice::from_ref(&data_type))?;
        let nulls = codec.encode(&[datafusion::arrow::array::new_null_array(&data_type, 1)])?;
        let null = nulls.row(0).as_ref().into();
        Ok(MinMax {
            codec,
            max,
            data_type,
            extreme: Vec::new(),
            bags: retracting.then(Vec::new),
            null,
        })
    }

    fn value(&self, g: u32) -> Option<&[u8]> {
        let g = g as usize;
        match &self.bags {
            Some(bags) => {
                let bag = bags.get(g)?;
                let key = if self.max { bag.keys().next_back() } else { bag.keys().next() };
                key.map(|k| k.as_ref())
            }
            None => self.extreme.get(g).and_then(|e| e.as_deref()),
        }
    }
}

impl GroupAccumulator for MinMax {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()> {
        let values = cast(&args[0], &self.data_type).map_err(arrow)?;
        let rows = self.codec.encode(&[Arc::clone(&values)])?;
        match &mut self.bags {
            Some(bags) => {
                let function = if self.max { "MAX" } else { "MIN" };
                let counted = |i: usize| values.is_valid(i);
                update_multisets(bags, &rows, groups, retract, counted, function, total)?;
            }
            None => {
                self.extreme.resize(total, None);
                for (i, g) in groups.iter().enumerate() {
                    if values.is_null(i) {
                        continue;
                    }
                    let row = rows.row(i);
                    let e = &mut self.extreme[*g as usize];
                    let better = match e {
                        None => true,
                        Some(cur) if self.max => row.as_ref() > cur.as_ref(),
                        Some(cur) => row.as_ref() < cur.as_ref(),
                    };
                    if better {
                        *e = Some(row.as_ref().into());
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let rows = groups.iter().map(|g| self.value(*g).unwrap_or(&self.null));
        let mut columns = self.codec.decode(rows)?;
        columns.pop().ok_or_else(|| Error::plan("MIN/MAX: no column", None))
    }

    fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            let g = *g as usize;
            match &mut self.bags {
                Some(bags) => {
                    if let Some(b) = bags.get_mut(g) {
                        *b = Bag::new();
                    }
                }
                None => {
                    if let Some(e) = self.extreme.get_mut(g) {
                        *e = None;
                    }
                }
            }
        }
    }

    fn save(&self) -> Result<RecordBatch> {
        match &self.bags {
            Some(bags) => save_bags(&self.codec, bags),
            None => {
                let all: Vec<u32> = (0..self.extreme.len() as u32).collect();
                let values = self.evaluate(&all)?;
                let schema = Schema::new(vec![Field::new("value", self.data_type.clone(), true)]);
                RecordBatch::try_new(Arc::new(schema), vec![values]).map_err(arrow)
            }
        }
    }

    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
        match &mut self.bags {
            Some(bags) => *bags = load_bags(&self.codec, batch, total)?,
            None => {
                let values = batch.columns().first().ok_or_else(|| damaged("no MIN/MAX values"))?;
                let rows = self.codec.encode(std::slice::from_ref(values))?;
                self.extreme = (0..values.len())
                    .map(|i| values.is_valid(i).then(|| rows.row(i).as_ref().into()))
                    .collect();
                self.extreme.resize(total, None);
            }
        }
        Ok(())
    }
}

/// `COUNT(DISTINCT x, ...)`: per group, how many rows hold each distinct value (rows with a
/// NULL argument do not count).
#[derive(Debug)]
pub(crate) struct CountDistinct {
    codec: RowCodec,
    bags: Vec<Set>,
}

impl CountDistinct {
    pub(crate) fn new(types: &[DataType]) -> Result<Self> {
        Ok(CountDistinct { codec: RowCodec::new(types)?, bags: Vec::new() })
    }
}

impl GroupAccumulator for CountDistinct {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()> {
        let rows = self.codec.encode(args)?;
        let counted = |i: usize| valid(args, i);
        let function = "COUNT(DISTINCT ...)";
        update_multisets(&mut self.bags, &rows, groups, retract, counted, function, total)
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let at = |g: &u32| self.bags.get(*g as usize).map_or(0, |s| s.len() as i64);
        Ok(Arc::new(Int64Array::from_iter_values(groups.iter().map(at))))
    }

    fn reset(&mut self, groups: &[u32]) {
        empty_groups(&mut self.bags, groups);
    }

    fn save(&self) -> Result<RecordBatch> {
        save_bags(&self.codec, &self.bags)
    }

    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
        self.bags = load_bags(&self.codec, batch, total)?;
        Ok(())
    }
}

/// Any other function: each group's argument rows as a multiset, evaluated by DataFusion's
/// accumulator over them whenever the group is read.
#[derive(Debug)]
pub(crate) struct Recompute {
    function: Arc<AggregateFunctionExpr>,
    codec: RowCodec,
    bags: Vec<Bag>,
}

impl Recompute {
    pub(crate) fn new(function: Arc<AggregateFunctionExpr>, types: &[DataType]) -> Result<Self> {
        Ok(Recompute { function, codec: RowCodec::new(types)?, bags: Vec::new() })
    }
}

impl GroupAccumulator for Recompute {
    fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[u32],
        retract: Option<&[bool]>,
        total: usize,
    ) -> Result<()> {
        let rows = self.codec.encode(args)?;
        let function = self.function.name();
        update_multisets(&mut self.bags, &rows, groups, retract, |_| true, function, total)
    }

    fn evaluate(&self, groups: &[u32]) -> Result<ArrayRef> {
        let mut values = Vec::with_capacity(groups.len());
        for g in groups {
            let mut acc = self.function.create_accumulator().map_err(exec)?;
            if let Some(bag) = self.bags.get(*g as usize)
                && !bag.is_empty()
            {
                let rows =
                    bag.iter().flat_map(|(r, n)| std::iter::repeat_n(r.as_ref(), *n as usize));
                let args = self.codec.decode(rows)?;
                acc.update_batch(&args).map_err(exec)?;
            }
            values.push(acc.evaluate().map_err(exec)?);
        }
        let data_type = self.function.field().data_type().clone();
        if values.is_empty() {
            return Ok(datafusion::arrow::array::new_empty_array(&data_type));
        }
        let array = ScalarValue::iter_to_array(values).map_err(exec)?;
        cast(&array, &data_type).map_err(arrow)
    }

    fn reset(&mut self, groups: &[u32]) {
        empty_groups(&mut self.bags, groups);
    }

    fn save(&self) -> Result<RecordBatch> {
        save_bags(&self.codec, &self.bags)
    }

    fn load(&mut self, batch: &RecordBatch, total: usize) -> Result<()> {
        self.bags = load_bags(&self.codec, batch, total)?;
        Ok(())
    }
}
