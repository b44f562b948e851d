#![allow(clippy::unwrap_used, clippy::expect_used)]

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::physical_expr::expressions::Column;

use super::*;

fn side(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, false),
        Field::new(name, DataType::Utf8, false),
    ]))
}

fn spec(kind: JoinKind, bounded: bool, changelog: bool) -> JoinSpec {
    let (l, r) = (side("a"), side("b"));
    let mut fields: Vec<Field> = l.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(r.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)));
    let pairs: SchemaRef = Arc::new(Schema::new(
        fields.iter().map(|f| f.clone().with_nullable(true)).collect::<Vec<_>>(),
    ));
    let schema = match kind.only() {
        Some(0) => Arc::clone(&l),
        Some(_) => Arc::clone(&r),
        None => Arc::clone(&pairs),
    };
    let col = |n: &str, i: usize| Arc::new(Column::new(n, i)) as Arc<dyn PhysicalExpr>;
    // Bounded: rows meet the other side's rows of the same time or earlier (`b.t <= a.t`,
    // `a.t <= b.t`): each side lets go of a row once the other's watermark passes its time.
    let bound = if bounded { [Some(col("t", 1)), Some(col("t", 1))] } else { [None, None] };
    JoinSpec {
        kind,
        keys: [vec![col("k", 0)], vec![col("k", 0)]],
        key_types: vec![DataType::Int64],
        filter: None,
        pairs,
        sides: [l, r],
        schema,
        bound,
        changelog: [changelog, false],
        lookup: None,
        temporal: None,
    }
}

fn rows(schema: &SchemaRef, values: &[(Option<i64>, i64, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(Int64Array::from(values.iter().map(|v| v.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(values.iter().map(|v| v.1).collect::<Vec<_>>())),
            Arc::new(StringArray::from(values.iter().map(|v| v.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

/// Each output row as text, with its change.
fn text(d: Option<Delta>) -> Vec<String> {
    let Some(d) = d else { return Vec::new() };
    (0..d.rows.num_rows())
        .map(|r| {
            let mut cells: Vec<String> =
                d.rows.columns().iter().map(|c| array_value_to_string(c, r).unwrap()).collect();
            if let Some(ops) = &d.ops {
                cells.push(["+I", "-U", "+U", "-D"][ops[r] as usize].to_string());
            }
            cells.join(",")
        })
        .collect()
}

#[test]
fn an_inner_join_pairs_each_row_with_those_of_its_key_held_on_the_other_side() {
    let s = spec(JoinKind::Inner, false, false);
    let mut j = Join::new(s.clone()).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 1, "x"), (Some(2), 2, "y"), (None, 3, "n")]);
    assert!(text(j.push(0, left, None).unwrap()).is_empty());
    let right = rows(&s.sides[1], &[(Some(1), 5, "p"), (Some(1), 6, "q"), (None, 7, "m")]);
    assert_eq!(text(j.push(1, right, None).unwrap()), ["1,1,x,1,5,p", "1,1,x,1,6,q"]);
    let left = rows(&s.sides[0], &[(Some(1), 8, "z")]);
    assert_eq!(text(j.push(0, left, None).unwrap()), ["1,8,z,1,5,p", "1,8,z,1,6,q"]);
    // (NULL keys are never held.)
    assert_eq!(j.held(), [3, 2]);
}

#[test]
fn an_outer_row_without_a_match_comes_padded_and_is_taken_back_at_its_first_match() {
    let s = spec(JoinKind::Full, false, false);
    assert!(s.changelog_output());
    let mut j = Join::new(s.clone()).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 1, "x"), (None, 2, "n")]);
    assert_eq!(text(j.push(0, left, None).unwrap()), ["1,1,x,,,,+I", ",2,n,,,,+I"]);
    let right = rows(&s.sides[1], &[(Some(1), 5, "p"), (Some(3), 6, "q")]);
    assert_eq!(
        text(j.push(1, right, None).unwrap()),
        ["1,1,x,,,,-D", "1,1,x,1,5,p,+I", ",,,3,6,q,+I"]
    );
}

#[test]
fn a_retraction_takes_back_its_pairs_and_brings_back_the_padded_rows() {
    let s = spec(JoinKind::Right, false, true);
    let mut j = Join::new(s.clone()).unwrap();
    let right = rows(&s.sides[1], &[(Some(1), 5, "p")]);
    assert_eq!(text(j.push(1, right, None).unwrap()), [",,,1,5,p,+I"]);
    let left = rows(&s.sides[0], &[(Some(1), 1, "x"), (Some(1), 1, "x")]);
    let got = text(j.push(0, left.clone(), Some(&[INSERT, INSERT])).unwrap());
    assert_eq!(got, [",,,1,5,p,-D", "1,1,x,1,5,p,+I", "1,1,x,1,5,p,+I"]);
    let one = rows(&s.sides[0], &[(Some(1), 1, "x")]);
    assert_eq!(text(j.push(0, one.clone(), Some(&[DELETE])).unwrap()), ["1,1,x,1,5,p,-D"]);
    assert_eq!(
        text(j.push(0, one.clone(), Some(&[UPDATE_BEFORE])).unwrap()),
        ["1,1,x,1,5,p,-D", ",,,1,5,p,+I"]
    );
    // A row never given cannot be taken back.
    assert!(j.push(0, one, Some(&[DELETE])).is_err());
}

#[test]
fn a_bounded_join_lets_rows_go_as_the_other_watermark_passes_and_pads_at_the_end() {
    let s = spec(JoinKind::Left, true, false);
    assert!(!s.changelog_output());
    let mut j = Join::new(s.clone()).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 10, "x"), (Some(2), 20, "y")]);
    assert!(text(j.push(0, left, None).unwrap()).is_empty());
    let right = rows(&s.sides[1], &[(Some(1), 10, "p")]);
    assert_eq!(text(j.push(1, right, None).unwrap()), ["1,10,x,1,10,p"]);
    // The right side's watermark passes 10: the left row of time 10 goes (it met a row).
    assert!(text(j.advance(1, 11).unwrap()).is_empty());
    assert_eq!(j.held(), [1, 1]);
    // Past 20: the row of time 20 goes, padded (it met none).
    assert_eq!(text(j.advance(1, 21).unwrap()), ["2,20,y,,,"]);
    assert_eq!(j.held(), [0, 1]);
    assert_eq!(text(j.advance(0, 30).unwrap()), Vec::<String>::new());
    assert_eq!(j.held(), [0, 0]);
}

#[test]
fn semi_and_anti_joins_give_one_side_s_rows() {
    let s = spec(JoinKind::Semi(0), false, false);
    let mut j = Join::new(s.clone()).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 1, "x"), (Some(2), 2, "y")]);
    assert!(text(j.push(0, left, None).unwrap()).is_empty());
    let right = rows(&s.sides[1], &[(Some(1), 5, "p"), (Some(1), 6, "q")]);
    assert_eq!(text(j.push(1, right, None).unwrap()), ["1,1,x"]);
    let s = spec(JoinKind::Anti(0), false, false);
    let mut j = Join::new(s.clone()).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 1, "x"), (Some(2), 2, "y")]);
    assert_eq!(text(j.push(0, left, None).unwrap()), ["1,1,x,+I", "2,2,y,+I"]);
    let right = rows(&s.sides[1], &[(Some(1), 5, "p"), (Some(1), 6, "q")]);
    assert_eq!(text(j.push(1, right, None).unwrap()), ["1,1,x,-D"]);
}

#[test]
fn a_restored_join_goes_on_as_the_original() {
    let s = spec(JoinKind::Left, true, false);
    let mut a = Join::new(s.clone()).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 10, "x"), (Some(2), 20, "y"), (Some(3), 30, "z")]);
    a.push(0, left, None).unwrap();
    a.push(1, rows(&s.sides[1], &[(Some(2), 15, "p")]), None).unwrap();
    a.advance(1, 11).unwrap();
    let mut b = Join::restore(s.clone(), &a.snapshot().unwrap()).unwrap();
    assert_eq!(a.held(), b.held());
    let more = rows(&s.sides[1], &[(Some(3), 25, "q"), (Some(2), 26, "r")]);
    let (x, y) = (a.push(1, more.clone(), None).unwrap(), b.push(1, more, None).unwrap());
    assert_eq!(text(x), text(y));
    assert_eq!(text(a.advance(1, 100).unwrap()), text(b.advance(1, 100).unwrap()));
}

#[test]
fn a_row_already_out_of_the_other_side_s_reach_goes_at_once() {
    let s = spec(JoinKind::Left, true, false);
    let mut j = Join::new(s.clone()).unwrap();
    // (The right side ended: its watermark is +inf.)
    assert!(text(j.advance(1, i64::MAX).unwrap()).is_empty());
    let left = rows(&s.sides[0], &[(Some(1), 10, "x")]);
    assert_eq!(text(j.push(0, left, None).unwrap()), ["1,10,x,,,"]);
    assert_eq!(j.held(), [0, 0]);
}

#[test]
fn state_ttl_lets_go_of_rows_held_that_long() {
    let s = spec(JoinKind::Inner, false, false);
    let mut j = Join::new(s.clone()).unwrap();
    j.push(0, rows(&s.sides[0], &[(Some(1), 1, "x")]), None).unwrap();
    j.expire(crate::updating_agg::now_ms() + 10_000, 60_000).unwrap();
    assert_eq!(j.held(), [1, 0]);
    j.expire(crate::updating_agg::now_ms() + 120_000, 60_000).unwrap();
    assert_eq!(j.held(), [0, 0]);
    let right = rows(&s.sides[1], &[(Some(1), 5, "p")]);
    assert!(text(j.push(1, right, None).unwrap()).is_empty());
}

#[test]
fn a_row_taken_back_in_the_batch_that_gave_it_leaves_the_batch_usable() {
    let s = spec(JoinKind::Inner, false, true);
    let mut j = Join::new(s.clone()).unwrap();
    j.push(1, rows(&s.sides[1], &[(Some(1), 5, "p")]), None).unwrap();
    let left = rows(&s.sides[0], &[(Some(1), 1, "x"), (Some(1), 1, "x"), (Some(1), 2, "y")]);
    let got = text(
        j.push(0, left, Some(&[INSERT, UPDATE_BEFORE, crate::window_agg::changes::UPDATE_AFTER]))
            .unwrap(),
    );
    assert_eq!(got, ["1,1,x,1,5,p,+I", "1,1,x,1,5,p,-D", "1,2,y,1,5,p,+I"]);
    assert_eq!(j.held(), [1, 1]);
}
