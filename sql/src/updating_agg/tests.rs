//! Unit tests of the updating aggregation: retraction, the changelog's order, snapshots, TTL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, SchemaRef};
use datafusion::functions_aggregate::{count::count_udaf, min_max, sum::sum_udaf};
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;

use super::{UpdatingAggregate, UpdatingAggregateSpec};
use crate::window_agg::Aggregate;

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

/// `SELECT k, count(v), sum(v), min(v), max(v), count(DISTINCT v) ... GROUP BY k`.
fn spec(retracting: bool) -> UpdatingAggregateSpec {
    let schema = input();
    let v = || vec![Arc::new(Column::new("v", 1)) as _];
    let build = |b: AggregateExprBuilder, name: &str| Aggregate {
        function: Arc::new(b.schema(input()).alias(name).build().unwrap()),
        filter: None,
    };
    let aggregates = vec![
        build(AggregateExprBuilder::new(count_udaf(), v()), "n"),
        build(AggregateExprBuilder::new(sum_udaf(), v()), "s"),
        build(AggregateExprBuilder::new(min_max::min_udaf(), v()), "lo"),
        build(AggregateExprBuilder::new(min_max::max_udaf(), v()), "hi"),
        build(AggregateExprBuilder::new(count_udaf(), v()).distinct(), "d"),
    ];
    let out = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Int64, true),
        Field::new("lo", DataType::Int64, true),
        Field::new("hi", DataType::Int64, true),
        Field::new("d", DataType::Int64, false),
    ]));
    UpdatingAggregateSpec {
        group: vec![Arc::new(Column::new("k", 0))],
        aggregates,
        schema: out,
        input: schema,
        retracting,
    }
}

fn batch(rows: &[(i64, Option<i64>)]) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

/// The changes as `op k n s lo hi d` lines (NULL as `_`).
fn lines(b: Option<RecordBatch>) -> Vec<String> {
    let Some(b) = b else { return Vec::new() };
    let op = b.column(6).as_primitive::<Int8Type>();
    (0..b.num_rows())
        .map(|i| {
            let mut l = op.value(i).to_string();
            for c in 0..6 {
                let a = b.column(c).as_primitive::<Int64Type>();
                l.push(' ');
                l.push_str(&if a.is_null(i) { "_".to_string() } else { a.value(i).to_string() });
            }
            l
        })
        .collect()
}

#[test]
fn updates_give_before_and_after_rows_then_inserts() {
    let mut a = UpdatingAggregate::new(spec(false)).unwrap();
    a.update(&batch(&[(1, Some(5)), (2, None), (1, Some(5))]), None).unwrap();
    assert_eq!(lines(a.changes().unwrap()), ["0 1 2 10 5 5 1", "0 2 0 _ _ _ 0"]);
    // Unchanged groups give nothing; a changed one -U then +U; a new one +I, last.
    a.update(&batch(&[(3, Some(1)), (1, Some(9))]), None).unwrap();
    assert_eq!(lines(a.changes().unwrap()), ["1 1 2 10 5 5 1", "2 1 3 19 5 9 2", "0 3 1 1 1 1 1"]);
    assert!(a.changes().unwrap().is_none());
}

#[test]
fn retractions_take_rows_back_and_empty_groups_leave() {
    let mut a = UpdatingAggregate::new(spec(true)).unwrap();
    a.update(&batch(&[(1, Some(5)), (1, Some(7)), (1, Some(7)), (2, Some(3))]), None).unwrap();
    let _ = a.changes().unwrap();
    // Taking back one 7 keeps the max at 7 and the distinct count at 2; the 5 moves the min.
    a.update(&batch(&[(1, Some(7)), (1, Some(5))]), Some(&[true, true])).unwrap();
    assert_eq!(lines(a.changes().unwrap()), ["1 1 3 19 5 7 2", "2 1 1 7 7 7 1"]);
    // Group 2 loses its only row: -D.
    a.update(&batch(&[(2, Some(3))]), Some(&[true])).unwrap();
    assert_eq!(lines(a.changes().unwrap()), ["3 2 1 3 3 3 1"]);
    // A retraction of a value never added is an error.
    let e = a.update(&batch(&[(1, Some(99))]), Some(&[true])).unwrap_err();
    assert!(e.to_string().contains("never saw"), "{e}");
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let mut a = UpdatingAggregate::new(spec(true)).unwrap();
    a.update(&batch(&[(1, Some(5)), (1, Some(7)), (2, None), (3, Some(1))]), None).unwrap();
    a.update(&batch(&[(3, Some(1))]), Some(&[true])).unwrap();
    let _ = a.changes().unwrap();
    let mut b = UpdatingAggregate::restore(spec(true), &a.snapshot().unwrap()).unwrap();
    assert_eq!(a.current().unwrap(), b.current().unwrap());
    for x in [&mut a, &mut b] {
        x.update(&batch(&[(1, Some(7))]), Some(&[true])).unwrap();
        x.update(&batch(&[(3, Some(4))]), None).unwrap();
    }
    assert_eq!(lines(a.changes().unwrap()), lines(b.changes().unwrap()));
}

#[test]
fn expired_groups_leave_and_their_keys_are_dropped_once_many() {
    let mut a = UpdatingAggregate::new(spec(false)).unwrap();
    let rows: Vec<(i64, Option<i64>)> = (0..3000).map(|k| (k, Some(k))).collect();
    a.update(&batch(&rows), None).unwrap();
    let _ = a.changes().unwrap();
    let now = super::now_ms();
    assert_eq!(a.expire(now, 60_000).unwrap(), 0);
    assert_eq!(a.expire(now + 61_000, 60_000).unwrap(), 3000);
    let gone = lines(a.changes().unwrap());
    assert_eq!(gone.len(), 3000);
    assert!(gone.iter().all(|l| l.starts_with("3 ")));
    // The next look drops the 3000 empty groups; a key that comes back starts anew.
    assert_eq!(a.expire(now + 61_000, 60_000).unwrap(), 0);
    assert_eq!(a.groups(), 0);
    a.update(&batch(&[(7, Some(1))]), None).unwrap();
    assert_eq!(lines(a.changes().unwrap()), ["0 7 1 1 1 1 1"]);
}
