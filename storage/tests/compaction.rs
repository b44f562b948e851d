//! Compaction of closed segments: small frames merged, offsets, rows and times unchanged,
//! readers undisturbed, truncation inside merged frames, faults harmless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kappa_storage::{
    Durability, Fault, FaultyIo, ReadFrom, Store, StoreOptions, Stream, StreamOptions,
};

const WAIT: Duration = Duration::from_secs(60);

/// Batches and rows read from the start.
fn batches_and_ids(s: &Stream) -> (usize, Vec<i64>) {
    let mut r = s.reader(ReadFrom::Earliest).unwrap();
    let (mut n, mut ids) = (0, Vec::new());
    while let Some(b) = r.next_batch().unwrap() {
        check_rows(&b.batch);
        assert_eq!(b.offset, ids.len() as u64, "batches are contiguous");
        ids.extend(common::ids(&b.batch));
        n += 1;
    }
    (n, ids)
}

fn small_frames(dir: &std::path::Path, rows: i64) -> (Store, Arc<Stream>) {
    let store = open(dir);
    let opts = StreamOptions { segment_bytes: 64 << 10, ..options() };
    let s = store.create_stream("s", schema(), opts).unwrap();
    for i in 0..rows {
        s.append(&batch(i, 1)).unwrap();
    }
    assert!(store.wait_for_compaction(WAIT));
    (store, s)
}

#[test]
fn small_frames_are_merged_when_segments_close_and_reads_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let opts = StreamOptions { segment_bytes: 64 << 10, ..options() };
        let s = store.create_stream("s", schema(), opts).unwrap();
        for i in 0..3000 {
            s.append(&batch(i, 1)).unwrap();
        }
        assert!(store.wait_for_compaction(WAIT));
        let info = s.info();
        assert!(info.segments > 3, "{info:?}");
        // Every closed segment was compacted; the active one was not.
        assert_eq!(info.compactions as usize, info.segments - 1, "{info:?}");
        let (batches, ids) = batches_and_ids(&s);
        assert_eq!(ids, (0..3000).collect::<Vec<_>>());
        assert!(batches < 3000 / 10, "{batches} batches for 3000 one-row appends");
        // Offsets inside merged frames, and event-time reads, still find their row.
        let mut r = s.reader(ReadFrom::Offset(777)).unwrap();
        let b = r.next_batch().unwrap().unwrap();
        assert_eq!((b.offset, common::ids(&b.batch)[0]), (777, 777));
        let r = s.reader(ReadFrom::EventTime(12_345)).unwrap();
        assert_eq!(r.position(), 1235); // ts = id * 10
        // Sealing closes and compacts the last segment too.
        s.seal().unwrap();
        assert!(store.wait_for_compaction(WAIT));
        assert_eq!(s.info().compactions as usize, s.info().segments);
        assert_eq!(batches_and_ids(&s).1, (0..3000).collect::<Vec<_>>());
        store.close().unwrap();
    }
    // After a reopen: the same rows, still merged, index files valid.
    let store = open(dir.path());
    let s = store.stream("s").unwrap();
    let (batches, ids) = batches_and_ids(&s);
    assert_eq!(ids, (0..3000).collect::<Vec<_>>());
    assert!(batches < 300, "{batches}");
    let leftovers: Vec<_> = std::fs::read_dir(s.dir().join("p0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn truncation_inside_a_merged_frame_keeps_its_first_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, s) = small_frames(dir.path(), 2000);
    assert!(s.info().compactions > 0);
    // Offset 500 lies inside a merged frame of a closed segment.
    s.truncate(500).unwrap();
    assert_eq!(batches_and_ids(&s).1, (0..500).collect::<Vec<_>>());
    assert_eq!(s.append(&batch(500, 3)).unwrap().base_offset, 500);
    // Inside a frame of the active segment too.
    s.truncate(502).unwrap();
    assert_eq!(batches_and_ids(&s).1, (0..502).collect::<Vec<_>>());
    drop(s);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    let s = store.stream("s").unwrap();
    assert_eq!(batches_and_ids(&s).1, (0..502).collect::<Vec<_>>());
}

#[test]
fn readers_and_a_writer_run_through_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts =
        StreamOptions { segment_bytes: 16 << 10, durability: Durability::Relaxed, ..options() };
    let s = store.create_stream("s", schema(), opts).unwrap();
    const ROWS: i64 = 6000;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut r = s.reader(ReadFrom::Earliest).unwrap();
                let mut ids = Vec::new();
                while (ids.len() as i64) < ROWS {
                    match r.next_blocking(Some(Duration::from_secs(30))).unwrap() {
                        Some(b) => {
                            check_rows(&b.batch);
                            assert_eq!(b.offset, ids.len() as u64);
                            ids.extend(common::ids(&b.batch));
                        }
                        None => panic!("no data for 30 s at {}", ids.len()),
                    }
                }
                ids
            })
        })
        .collect();
    for i in 0..ROWS {
        s.append(&batch(i, 1)).unwrap();
    }
    for r in readers {
        assert_eq!(r.join().unwrap(), (0..ROWS).collect::<Vec<_>>());
    }
    assert!(store.wait_for_compaction(WAIT));
    assert!(s.info().compactions > 5, "{:?}", s.info());
    assert_eq!(batches_and_ids(&s).1, (0..ROWS).collect::<Vec<_>>());
}

/// Fail or tear each write of a compaction, or fail its sync: the segment stays as it was, the
/// stream stays usable, and a reopen finds every row.
#[test]
fn a_failed_compaction_leaves_the_segment_as_it_was() {
    let mut cases = 0;
    let mut n = 1;
    loop {
        let mut done = true;
        for fault in [Fault::FailWrite(n), Fault::TearWrite(n), Fault::FailSync(n)] {
            let dir = tempfile::tempdir().unwrap();
            let io = Arc::new(FaultyIo::new(Fault::None, false));
            let store = Store::open(dir.path(), StoreOptions { io: io.clone() }).unwrap();
            let opts = StreamOptions { durability: Durability::Relaxed, ..options() };
            let s = store.create_stream("s", schema(), opts).unwrap();
            // Small compaction target regions: 300 frames of one row, one segment.
            for i in 0..300 {
                s.append(&batch(i, 1)).unwrap();
            }
            // Arm the fault relative to the writes and syncs made so far: only the seal and
            // the compaction it starts come after.
            let fault = match fault {
                Fault::FailWrite(k) => Fault::FailWrite(io.writes() + k),
                Fault::TearWrite(k) => Fault::TearWrite(io.writes() + k),
                Fault::FailSync(k) => Fault::FailSync(io.syncs() + k),
                f => f,
            };
            io.arm(fault);
            let sealed = s.seal();
            assert!(store.wait_for_compaction(WAIT));
            if io.tripped() {
                done = false;
                cases += 1;
            }
            if sealed.is_ok() {
                // The fault hit the compaction (or nothing): reads are whole either way.
                assert_eq!(batches_and_ids(&s).1, (0..300).collect::<Vec<_>>(), "{fault:?}");
            }
            drop(s);
            let _ = store.close();
            drop(store);
            let store = open(dir.path());
            let s = store.stream("s").unwrap();
            assert_eq!(batches_and_ids(&s).1, (0..300).collect::<Vec<_>>(), "{fault:?}");
        }
        if done {
            break;
        }
        n += 1;
    }
    eprintln!("compaction faults: {cases} cases");
    assert!(cases >= 4, "{cases}");
}
