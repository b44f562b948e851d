//! Property test of late rows: random events, some later than the watermark allows and some
//! without a time, appended one frame at a time to the input of a windowed derived stream (each
//! window kind). The test computes on its own which rows are late (a NULL time; for TUMBLE,
//! HOP and CUMULATE, the last window holding the row had closed at the watermark of the rows
//! before it, whatever the frames; for SESSION, the row is at or behind that watermark), and
//! checks that the job's late-data
//! stream holds exactly those rows, whole, and that the job's output equals DataFusion batch
//! over the other rows, each in the windows that were still open when it came (a HOP or
//! CUMULATE row can be late for some of its windows and not others; Flink's rule).
//! `PROPTEST_CASES` sets the number of cases (default 16).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kappa::Engine;
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

/// One event: key, value, time step after the previous event's base time, lateness (`None`:
/// no time).
type Event = (i64, i64, i64, Option<i64>);

fn event() -> impl Strategy<Value = Event> {
    (0i64..3, -50i64..100, 1i64..400, prop::option::weighted(0.97, 0i64..3500))
}

/// A window kind: the window function's text and when a row at `t` is late at watermark `w`.
#[derive(Debug, Clone)]
enum Kind {
    Tumble(i64),
    Hop(i64, i64),
    Cumulate(i64, i64),
    Session(i64),
}

impl Kind {
    fn function(&self) -> String {
        let s = |ms: i64| format!("INTERVAL '{ms}' MILLISECOND");
        match self {
            Kind::Tumble(size) => format!("TUMBLE(ev, ts, {})", s(*size)),
            Kind::Hop(slide, size) => format!("HOP(ev, ts, {}, {})", s(*slide), s(*size)),
            Kind::Cumulate(step, max) => format!("CUMULATE(ev, ts, {}, {})", s(*step), s(*max)),
            Kind::Session(gap) => format!("SESSION(ev, ts, {}, k)", s(*gap)),
        }
    }

    fn late(&self, t: i64, w: Option<i64>) -> bool {
        let Some(w) = w else { return false };
        let last_end = match *self {
            Kind::Tumble(size) => t.div_euclid(size) * size + size,
            Kind::Hop(slide, size) => t.div_euclid(slide) * slide + size,
            Kind::Cumulate(_, max) => t.div_euclid(max) * max + max,
            Kind::Session(_) => return t <= w,
        };
        last_end - 1 <= w
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..5).prop_map(|s| Kind::Tumble(s * 500)),
        (1i64..3, 2i64..4).prop_map(|(s, m)| Kind::Hop(s * 500, s * m * 500)),
        (1i64..3, 2i64..4).prop_map(|(s, m)| Kind::Cumulate(s * 500, s * m * 500)),
        (1i64..4).prop_map(|g| Kind::Session(g * 300)),
    ]
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

fn batch(rows: &[(i64, i64, Option<i64>)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

async fn check(events: Vec<Event>, cut: usize, kind: Kind) {
    const DELAY: i64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(&format!(
            "CREATE STREAM ev (k BIGINT, v BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '{DELAY}' MILLISECOND) WITH (durability = 'relaxed')"
        ))
        .await
        .unwrap();
    // The rows on time, with the watermark when they came: windows closed by then leave them out.
    engine
        .execute("CREATE STREAM ontime (k BIGINT, v BIGINT, ts TIMESTAMP(3), wm TIMESTAMP(3))")
        .await
        .unwrap();
    let query = format!(
        "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
         FROM {} GROUP BY k, window_start, window_end",
        kind.function()
    );
    engine.execute(&format!("CREATE STREAM out AS {query}")).await.unwrap();
    let mut base = 1_700_000_000_000i64;
    let rows: Vec<(i64, i64, Option<i64>)> = events
        .iter()
        .map(|(k, v, step, late)| {
            base += step;
            (*k, *v, late.map(|l| base - l))
        })
        .collect();
    // The watermark of the rows before a row decides whether it is late, whatever the frames.
    let advance = |w: Option<i64>, t: Option<i64>| match t {
        Some(t) => Some(w.map_or(t - DELAY, |w| w.max(t - DELAY))),
        None => w,
    };
    let (mut watermark, mut late, mut kept) = (None::<i64>, Vec::new(), Vec::new());
    for frame in rows.chunks(cut.max(1)) {
        for r in frame {
            match r.2 {
                Some(t) if !kind.late(t, watermark) => kept.push((*r, watermark)),
                _ => late.push(*r),
            }
            watermark = advance(watermark, r.2);
        }
        engine.append("ev", batch(frame)).await.unwrap();
    }
    if !kept.is_empty() {
        let rows: Vec<_> = kept.iter().map(|(r, _)| *r).collect();
        let mut columns = batch(&rows).columns().to_vec();
        columns.push(Arc::new(TimestampMillisecondArray::from(
            kept.iter().map(|(_, w)| *w).collect::<Vec<_>>(),
        )));
        let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("wm", DataType::Timestamp(TimeUnit::Millisecond, None), true));
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        engine.append("ontime", b).await.unwrap();
    }
    // (The query waits until the job has read every frame, before the seal compacts them.)
    let mut got = format_rows(&engine.query("SELECT * FROM out__late").await.unwrap()).unwrap();
    let mut want = if late.is_empty() { Vec::new() } else { format_rows(&[batch(&late)]).unwrap() };
    got.sort();
    want.sort();
    let what = format!("{kind:?}, {} events in frames of {cut}", events.len());
    assert_eq!(got, want, "the late rows, {what}");
    engine.execute("SEAL STREAM ev").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    let mut got = format_rows(&engine.query("SELECT * FROM out").await.unwrap()).unwrap();
    let batch_query = query.replace("(ev,", "(ontime,").replace(
        " GROUP BY",
        " WHERE wm IS NULL OR window_end > wm + INTERVAL '1' MILLISECOND GROUP BY",
    );
    let mut want = format_rows(&engine.query(&batch_query).await.unwrap()).unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the windows of the rows on time, {what}");
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_late_stream_holds_exactly_the_late_rows(
        events in prop::collection::vec(event(), 0..200),
        cut in 1usize..30,
        kind in kind(),
    ) {
        kappa_tests::block_on(check(events, cut, kind));
    }
}
