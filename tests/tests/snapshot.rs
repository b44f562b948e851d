//! Snapshots of windowed runs (the state checkpoints will write): a run stopped at some batch,
//! snapshot, restored into a new run and fed the rest gives exactly the windows of a run that
//! never stopped (TUMBLE, HOP by panes, SESSION per auction; EMIT FINAL, and EMIT CHANGES with
//! what it emitted so far), and the same late-row count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use arrow::array::RecordBatch;
use kappa::sql::window::WindowSpec;
use kappa::sql::windowed_plan::{EmitMode, WindowedRun};
use kappa_tests::bids::{batch, windowed_plan_partitioned};
use kappa_tests::slt::format_rows;

const BATCH: usize = 4096;
const EVENTS: i64 = 200_000;

fn feed(run: &mut WindowedRun, read: &[usize], from: i64, to: i64, out: &mut Vec<RecordBatch>) {
    let mut at = from;
    while at < to {
        let n = BATCH.min((to - at) as usize);
        // Every 7th batch a little late, so that late rows are counted on both sides.
        let b = if (at / BATCH as i64) % 7 == 3 { batch(at - 300_000, n) } else { batch(at, n) };
        out.extend(run.push(0, b.project(read).unwrap()).unwrap().into_iter().map(|w| w.1));
        at += n as i64;
    }
}

#[tokio::test]
async fn a_restored_run_emits_what_the_original_would() {
    let select = "SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi,
                  count(DISTINCT price % 10) AS d FROM w GROUP BY auction, window_start, window_end";
    let changes = EmitMode::Changes { every_ms: None };
    for (spec, partition, emit) in [
        (WindowSpec::Tumble { size: 10_000, offset: 0 }, vec![], EmitMode::Final),
        (WindowSpec::Hop { slide: 2_000, size: 10_000, offset: 0 }, vec![], EmitMode::Final),
        (WindowSpec::Session { gap: 2_000 }, vec![0], EmitMode::Final),
        (WindowSpec::Tumble { size: 10_000, offset: 0 }, vec![], changes),
        (WindowSpec::Session { gap: 2_000 }, vec![0], changes),
    ] {
        let plan = windowed_plan_partitioned(spec, partition, select, emit).await.unwrap();
        let read = plan.inputs[0].pipeline.projection.clone().unwrap();
        // (EMIT CHANGES re-reads every group of a window per batch: one cut is enough.)
        let cuts = match emit {
            EmitMode::Final => vec![1, EVENTS / 3, EVENTS / 2 + 123],
            _ => vec![EVENTS / 2 + 123],
        };
        for cut in cuts {
            let cut = cut / BATCH as i64 * BATCH as i64;
            let (mut whole, mut resumed) = (Vec::new(), Vec::new());
            let mut a = WindowedRun::new(plan.clone()).unwrap();
            feed(&mut a, &read, 0, cut, &mut whole);
            let snapshot = a.snapshot().unwrap();
            let mut b = WindowedRun::restore(plan.clone(), &snapshot).unwrap();
            resumed.clone_from(&whole);
            feed(&mut a, &read, cut, EVENTS, &mut whole);
            feed(&mut b, &read, cut, EVENTS, &mut resumed);
            whole.extend(a.finish().unwrap().into_iter().map(|w| w.1));
            resumed.extend(b.finish().unwrap().into_iter().map(|w| w.1));
            let (mut whole, mut resumed) =
                (format_rows(&whole).unwrap(), format_rows(&resumed).unwrap());
            whole.sort();
            resumed.sort();
            assert!(whole.len() > 1000, "{spec:?} at {cut}: {} rows", whole.len());
            assert_eq!(whole, resumed, "{spec:?} {emit:?} cut at {cut}");
            assert!(
                a.late_rows() > 0,
                "{spec:?} at {cut}: late {} {}",
                a.late_rows(),
                b.late_rows()
            );
            assert_eq!(a.late_rows(), b.late_rows(), "{spec:?} at {cut}");
        }
    }
}
