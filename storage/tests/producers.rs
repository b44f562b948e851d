//! Producer tags, time-range reads and metadata files: what the engine builds on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use kappa_storage::{ReadFrom, StreamOptions, Tag};

#[test]
fn producer_positions_survive_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let opts = StreamOptions { segment_bytes: 16 << 10, ..options() };
        let s = store.create_stream("out", schema(), opts).unwrap();
        // Two producers interleaved, and untagged appends between them.
        for i in 0..600i64 {
            let b = batch(i, 1);
            match i % 3 {
                0 => s.append_tagged(&b, Tag { producer: 7, seq: i as u64 * 10 }).map(|_| ()),
                1 => s.append_tagged(&b, Tag { producer: 9, seq: i as u64 }).map(|_| ()),
                _ => s.append(&b).map(|_| ()),
            }
            .unwrap();
        }
        assert!(store.wait_for_compaction(Duration::from_secs(60)));
        assert!(s.info().compactions > 0, "{:?}", s.info());
        let all = s.producer_positions(0).unwrap();
        assert_eq!(all.get(&7), Some(&5970));
        assert_eq!(all.get(&9), Some(&598));
        assert_eq!(all.len(), 2);
        // Only frames ending after the offset are read.
        let late = s.producer_positions(599).unwrap();
        assert_eq!(late.len(), 0, "{late:?}");
        let p = s.submit_tagged(&batch(600, 2), Tag { producer: 9, seq: 1000 }).unwrap();
        p.wait().unwrap();
        store.close().unwrap();
    }
    let store = open(dir.path());
    let s = store.stream("out").unwrap();
    assert_eq!(all_ids(&s), (0..602).collect::<Vec<_>>());
    let all = s.producer_positions(0).unwrap();
    assert_eq!((all.get(&7), all.get(&9)), (Some(&5970), Some(&1000)));
    assert_eq!(s.producer_positions(600).unwrap().get(&9), Some(&1000));
}

#[test]
fn time_range_reads_skip_frames_outside_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = StreamOptions { compact_frames_below: 0, ..options() };
    let s = store.create_stream("t", schema(), opts).unwrap();
    // ts = id * 10; batches of 10 rows.
    for i in 0..50 {
        s.append(&batch(i * 10, 10)).unwrap();
    }
    // Rows with ts in 1000..=1500 are ids 100..=150, in the frames 100..110 .. 150..160.
    let mut r = s.reader(ReadFrom::Earliest).unwrap().with_time_range(1000, 1500);
    let got = read_all(&mut r);
    assert_eq!(got.first().map(|b| b.0), Some(100));
    assert_eq!(got.len(), 6);
    assert!(got.iter().flat_map(|b| b.1.iter()).all(|id| (100..160).contains(id)));
    // Nothing in range: nothing read.
    let mut r = s.reader(ReadFrom::Earliest).unwrap().with_time_range(100_000, 200_000);
    assert!(read_all(&mut r).is_empty());
    assert_eq!(r.position(), 500);
}

#[test]
fn metadata_files_are_replaced_atomically_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.read_meta("catalog.json").unwrap(), None);
    store.write_meta("catalog.json", b"one").unwrap();
    store.write_meta("catalog.json", b"two").unwrap();
    assert_eq!(store.read_meta("catalog.json").unwrap().as_deref(), Some(&b"two"[..]));
    store.remove_meta("catalog.json").unwrap();
    store.remove_meta("catalog.json").unwrap();
    assert_eq!(store.read_meta("catalog.json").unwrap(), None);
    for bad in ["", "../x", "a/b", ".hidden", "x.tmp"] {
        assert!(store.write_meta(bad, b"x").is_err(), "{bad}");
    }
}
