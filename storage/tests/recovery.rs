//! Recovery: torn tails at every byte, bit flips, index rebuild, and a fault-injection sweep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use kappa_storage::{Error, Fault, FaultyIo, ReadFrom, Store, StoreOptions, StreamOptions};

/// Cut the last frame at every byte position: reopen shows every whole frame and nothing partial.
#[test]
fn torn_tail_at_every_byte_keeps_whole_frames_only() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, last_start, full_len) = {
        let store = open(dir.path());
        let s = store.create_stream("t", schema(), options()).unwrap();
        for i in 0..4 {
            s.append(&batch(i * 3, 3)).unwrap();
        }
        let seg = segment_files(s.dir())[0].clone();
        let last_start = std::fs::metadata(&seg).unwrap().len();
        s.append(&batch(12, 3)).unwrap();
        let full_len = std::fs::metadata(&seg).unwrap().len();
        (seg, last_start, full_len)
    };
    let original = std::fs::read(&seg).unwrap();
    let stream_dir = seg.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(full_len - last_start >= 64);
    for cut in last_start..full_len {
        std::fs::write(&seg, &original[..cut as usize]).unwrap();
        // A crash while the last frame was being written: the recovery point is below it.
        set_recovery_point(&stream_dir, 12);
        let store = open(dir.path());
        let s = store.stream("t").unwrap();
        assert_eq!(all_ids(&s), (0..12).collect::<Vec<_>>(), "cut at byte {cut}");
        assert_eq!(s.end_offset(), 12);
        drop(s);
        drop(store);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), last_start, "torn bytes removed");
    }
    // And a log cut mid-frame keeps accepting appends after recovery.
    std::fs::write(&seg, &original[..(last_start + 100) as usize]).unwrap();
    set_recovery_point(&stream_dir, 12);
    let store = open(dir.path());
    let s = store.stream("t").unwrap();
    assert_eq!(s.append(&batch(12, 3)).unwrap().base_offset, 12);
    assert_eq!(all_ids(&s), (0..15).collect::<Vec<_>>());
}

/// Flip one bit anywhere in synced data: it is detected and reported, never returned.
#[test]
fn bit_flips_in_synced_data_are_detected_never_returned() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let segs = {
        let store = open(dir.path());
        let opts = StreamOptions { segment_bytes: 8192, ..options() };
        let s = store.create_stream("b", schema(), opts).unwrap();
        for i in 0..40 {
            s.append(&batch(i * 5, 5)).unwrap();
        }
        segment_files(s.dir())
    };
    assert!(segs.len() > 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let flips: usize =
        std::env::var("KAPPA_BITFLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    for round in 0..flips {
        let seg = &segs[rng.random_range(0..segs.len())];
        let mut bytes = std::fs::read(seg).unwrap();
        let at = rng.random_range(0..bytes.len());
        let bit = rng.random_range(0..8);
        bytes[at] ^= 1 << bit;
        std::fs::write(seg, &bytes).unwrap();
        let detected = match Store::open(dir.path(), StoreOptions::default()) {
            Err(e) => {
                assert!(matches!(e, Error::Corruption { .. }), "round {round}: {e}");
                true
            }
            Ok(store) => {
                let s = store.stream("b").unwrap();
                let mut r = s.reader(ReadFrom::Earliest).unwrap();
                let mut next = 0i64;
                loop {
                    match r.next_batch() {
                        Ok(Some(b)) => {
                            check_rows(&b.batch);
                            let got = ids(&b.batch);
                            assert_eq!(got, (next..next + got.len() as i64).collect::<Vec<_>>());
                            next += got.len() as i64;
                        }
                        Ok(None) => break false,
                        Err(e) => {
                            let msg = e.to_string();
                            assert!(matches!(e, Error::Corruption { .. }), "round {round}: {msg}");
                            assert!(msg.contains(".log"), "names the segment: {msg}");
                            break true;
                        }
                    }
                }
            }
        };
        assert!(
            detected,
            "round {round}: flip of bit {bit} at byte {at} of {} went unnoticed",
            seg.display()
        );
        bytes[at] ^= 1 << bit;
        std::fs::write(seg, &bytes).unwrap();
        // Nothing was truncated.
        assert_eq!(std::fs::read(seg).unwrap(), bytes);
    }
}

/// Damage below the recovery point, found while rebuilding an index at open, is reported and the
/// file is left alone.
#[test]
fn corruption_below_recovery_point_is_reported_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let segs = {
        let store = open(dir.path());
        // Frames as appended (no compaction): the test damages a chosen frame.
        let opts = StreamOptions { segment_bytes: 4096, compact_frames_below: 0, ..options() };
        let s = store.create_stream("c", schema(), opts).unwrap();
        for i in 0..30 {
            s.append(&batch(i * 5, 5)).unwrap();
        }
        segment_files(s.dir())
    };
    // Damage the header of the second frame of the first segment, and remove its index so the
    // header scan meets it.
    let seg = &segs[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let second = frame_positions(&bytes)[1];
    bytes[second] ^= 0xFF;
    std::fs::write(seg, &bytes).unwrap();
    std::fs::remove_file(seg.with_extension("index")).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corruption { .. }), "{msg}");
    assert!(msg.contains(&seg.file_name().unwrap().to_string_lossy().to_string()), "{msg}");
    assert!(msg.contains(&format!("at byte {second}")), "{msg}");
    assert_eq!(std::fs::read(seg).unwrap(), bytes, "never truncated");

    // Damage to the last frame of the tail segment, which lies below the recovery point (the
    // store was closed cleanly): no valid frame follows it, yet it is reported, not cut.
    bytes[second] ^= 0xFF;
    std::fs::write(seg, &bytes).unwrap();
    let last = segs.last().unwrap();
    let mut tail = std::fs::read(last).unwrap();
    let last_frame = *frame_positions(&tail).last().unwrap();
    tail[last_frame + 100] ^= 0x01;
    std::fs::write(last, &tail).unwrap();
    std::fs::remove_file(last.with_extension("index")).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    assert!(err.to_string().contains(&format!("at byte {last_frame}")), "{err}");
    assert_eq!(std::fs::read(last).unwrap(), tail);
}

/// Byte positions of the frames of a segment file.
fn frame_positions(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 64 <= bytes.len() {
        out.push(pos);
        let body_len = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        pos += 64 + body_len.div_ceil(64) * 64;
    }
    out
}

/// Damage to unsynced frames (a relaxed log), even with whole frames after it, is a torn tail:
/// writeback may reorder unsynced pages, so recovery cuts it.
#[test]
fn damage_to_unsynced_frames_is_cut_even_with_frames_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let seg = {
        let store = open(dir.path());
        let opts = StreamOptions { durability: kappa_storage::Durability::Relaxed, ..options() };
        let s = store.create_stream("u", schema(), opts).unwrap();
        for i in 0..6 {
            s.append(&batch(i * 2, 2)).unwrap();
        }
        segment_files(s.dir())[0].clone()
    };
    let stream_dir = seg.parent().unwrap().parent().unwrap().to_path_buf();
    let mut bytes = std::fs::read(&seg).unwrap();
    let third = frame_positions(&bytes)[2];
    bytes[third + 70] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    set_recovery_point(&stream_dir, 0);
    let store = open(dir.path());
    assert_eq!(all_ids(&store.stream("u").unwrap()), (0..4).collect::<Vec<_>>());
}

/// A truncation interrupted by a crash is finished by recovery.
#[test]
fn interrupted_truncation_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let stream_dir = {
        let store = open(dir.path());
        // Frames as appended (no compaction): the test damages a chosen frame.
        let opts = StreamOptions { segment_bytes: 4096, compact_frames_below: 0, ..options() };
        let s = store.create_stream("t", schema(), opts).unwrap();
        for i in 0..40 {
            s.append(&batch(i * 5, 5)).unwrap();
        }
        s.dir().to_path_buf()
    };
    let p = stream_dir.join("p0/partition.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["truncating_to"] = 35.into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    {
        let store = open(dir.path());
        assert_eq!(all_ids(&store.stream("t").unwrap()), (0..35).collect::<Vec<_>>());
    }
    // A damaged frame below the target stops the truncation: reported, nothing cut. (The first
    // segment holds offsets 0..35 in frames of 5; the target 30 lies inside it.)
    let seg = segment_files(&stream_dir)[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let original = bytes.clone();
    let frames = frame_positions(&bytes);
    assert_eq!(frames.len(), 7);
    let at = frames[5] + 80; // the frame at offsets 25..30
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["truncating_to"] = 30.into();
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing cut");
    std::fs::write(&seg, &original).unwrap();
    let store = open(dir.path());
    let s = store.stream("t").unwrap();
    assert_eq!(all_ids(&s), (0..30).collect::<Vec<_>>());
    assert_eq!(s.append(&batch(30, 5)).unwrap().base_offset, 30);
}

/// A crash during a truncation to an offset inside a frame (frames merged by compaction):
/// recovery keeps the frame's first rows, in a closed segment and in the active one.
#[test]
fn interrupted_truncation_inside_a_frame_is_finished_on_open() {
    for (target, rows) in [(33u64, 40i64), (197, 200)] {
        let dir = tempfile::tempdir().unwrap();
        let stream_dir = {
            let store = open(dir.path());
            let opts = StreamOptions { segment_bytes: 4096, compact_frames_below: 0, ..options() };
            let s = store.create_stream("t", schema(), opts).unwrap();
            for i in 0..rows / 5 {
                s.append(&batch(i * 5, 5)).unwrap();
            }
            s.dir().to_path_buf()
        };
        let p = stream_dir.join("p0/partition.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["truncating_to"] = target.into();
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        for _ in 0..2 {
            let store = open(dir.path());
            let s = store.stream("t").unwrap();
            assert_eq!(all_ids(&s), (0..target as i64).collect::<Vec<_>>(), "{target}");
        }
        let store = open(dir.path());
        let s = store.stream("t").unwrap();
        assert_eq!(s.append(&batch(target as i64, 2)).unwrap().base_offset, target);
    }
}

/// Damage in the middle of the unsynced tail, followed by valid frames, is not a torn tail.
#[test]
fn damage_followed_by_valid_frames_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = {
        let store = open(dir.path());
        let s = store.create_stream("m", schema(), options()).unwrap();
        for i in 0..6 {
            s.append(&batch(i * 2, 2)).unwrap();
        }
        segment_files(s.dir())[0].clone()
    };
    let stream_dir = seg.parent().unwrap().parent().unwrap().to_path_buf();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[70] ^= 0x04; // inside the body of the first frame
    std::fs::write(&seg, &bytes).unwrap();
    set_recovery_point(&stream_dir, 0);
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a torn tail"), "{err}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}

#[test]
fn missing_torn_and_stale_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StreamOptions { segment_bytes: 4096, index_interval_bytes: 256, ..options() };
    let segs = {
        let store = open(dir.path());
        let s = store.create_stream("i", schema(), opts).unwrap();
        for i in 0..60 {
            s.append(&batch(i * 5, 5)).unwrap();
        }
        segment_files(s.dir())
    };
    assert!(segs.len() >= 4);
    std::fs::remove_file(segs[0].with_extension("index")).unwrap();
    std::fs::remove_file(segs[1].with_extension("timeindex")).unwrap();
    let idx = segs[2].with_extension("index");
    let b = std::fs::read(&idx).unwrap();
    std::fs::write(&idx, &b[..b.len() - 3]).unwrap();
    // Stale: an index of the tail segment that covers fewer bytes than the file holds.
    let last = segs.last().unwrap();
    let tail_index = last.with_extension("index");
    let stale = std::fs::read(&tail_index).unwrap();
    {
        let store = open(dir.path());
        let s = store.stream("i").unwrap();
        s.append(&batch(300, 5)).unwrap();
    }
    std::fs::write(&tail_index, &stale).unwrap();
    let store = open(dir.path());
    let s = store.stream("i").unwrap();
    assert_eq!(all_ids(&s), (0..305).collect::<Vec<_>>());
    for off in [0u64, 7, 77, 123, 250, 299, 301] {
        let mut r = s.reader(ReadFrom::Offset(off)).unwrap();
        assert_eq!(r.next_batch().unwrap().unwrap().offset, off);
    }
    let r = s.reader(ReadFrom::EventTime(1500)).unwrap();
    assert_eq!(r.position(), 150);
    for seg in &segs[..3] {
        assert!(seg.with_extension("index").exists() && seg.with_extension("timeindex").exists());
    }
}

const BATCHES: i64 = 10;
const ROWS: i64 = 5;
const TRUNCATE_TO: i64 = 6;

/// What a reopen must show after the fault workload.
struct Outcome {
    /// Rows that must be present (acknowledged).
    min_rows: i64,
    /// Rows that may be present (acknowledged, plus the one append whose outcome is unknown).
    max_rows: i64,
    created: bool,
    failed: bool,
}

/// Appends, a truncation, more appends, a seal. Stops at the first error.
fn workload(dir: &std::path::Path, io: Arc<FaultyIo>) -> Outcome {
    let mut out = Outcome { min_rows: 0, max_rows: ROWS, created: false, failed: true };
    let Ok(store) = Store::open(dir, StoreOptions { io }) else { return out };
    // No background compaction: the sweep counts this workload's writes and syncs exactly.
    let opts = StreamOptions { segment_bytes: 4096, compact_frames_below: 0, ..options() };
    let Ok(s) = store.create_stream("f", schema(), opts) else { return out };
    out.created = true;
    let append = |i: i64, out: &mut Outcome| -> bool {
        match s.append(&batch(i * ROWS, ROWS as usize)) {
            Ok(ack) => {
                assert_eq!(ack.base_offset as i64, i * ROWS);
                out.min_rows = (i + 1) * ROWS;
                out.max_rows = (i + 2) * ROWS;
                true
            }
            Err(_) => {
                // After a failure the stream refuses appends with a clear error.
                let e = s.append(&batch(i * ROWS, ROWS as usize)).unwrap_err();
                assert!(matches!(e, Error::Failed { .. } | Error::Io { .. }), "{e}");
                false
            }
        }
    };
    for i in 0..BATCHES {
        if !append(i, &mut out) {
            return out;
        }
    }
    if s.truncate((TRUNCATE_TO * ROWS) as u64).is_err() {
        // Done or not done: either is consistent.
        (out.min_rows, out.max_rows) = (TRUNCATE_TO * ROWS, BATCHES * ROWS);
        return out;
    }
    (out.min_rows, out.max_rows) = (TRUNCATE_TO * ROWS, (TRUNCATE_TO + 1) * ROWS);
    for i in TRUNCATE_TO..TRUNCATE_TO + 3 {
        if !append(i, &mut out) {
            return out;
        }
    }
    out.max_rows = out.min_rows;
    out.failed = s.seal().is_err() || store.close().is_err();
    out
}

/// Fail or tear the Nth write, or fail the Nth sync, for every N of a short workload: the error
/// reaches the caller, and a reopen recovers a consistent log holding every acknowledged batch.
#[test]
fn fault_injection_sweep_recovers_consistent_log() {
    let (writes, syncs) = {
        let dir = tempfile::tempdir().unwrap();
        let io = Arc::new(FaultyIo::new(Fault::None, false));
        let o = workload(dir.path(), Arc::clone(&io));
        assert!(o.created && !o.failed);
        assert_eq!(o.min_rows, (TRUNCATE_TO + 3) * ROWS);
        (io.writes(), io.syncs())
    };
    assert!(writes >= BATCHES as u64 && syncs >= BATCHES as u64, "{writes} writes, {syncs} syncs");
    let mut faults = Vec::new();
    for n in 1..=writes {
        faults.push(Fault::FailWrite(n));
        faults.push(Fault::TearWrite(n));
    }
    for n in 1..=syncs {
        faults.push(Fault::FailSync(n));
    }
    let mut cases = 0;
    for fault in faults {
        for sticky in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let io = Arc::new(FaultyIo::new(fault, sticky));
            let o = workload(dir.path(), Arc::clone(&io));
            assert!(io.tripped(), "{fault:?} was never reached");
            assert!(o.failed, "{fault:?} (sticky {sticky}) was not reported to the caller");
            let store = Store::open(dir.path(), StoreOptions::default())
                .unwrap_or_else(|e| panic!("{fault:?} sticky {sticky}: reopen failed: {e}"));
            match store.stream("f") {
                Ok(s) => {
                    let ids = all_ids(&s);
                    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>(), "{fault:?}");
                    assert_eq!(ids.len() as i64 % ROWS, 0, "{fault:?}: a partial batch is visible");
                    let n = ids.len() as i64;
                    assert!(n >= o.min_rows, "{fault:?}: acknowledged rows lost ({n})");
                    assert!(n <= o.max_rows, "{fault:?}: rows from nowhere ({n})");
                    // The recovered log takes appends again (unless it was sealed).
                    if s.info().sealed.is_none() {
                        let next = ids.len() as i64;
                        assert_eq!(s.append(&batch(next, 1)).unwrap().base_offset as i64, next);
                    }
                }
                Err(Error::StreamNotFound(_)) => assert!(!o.created, "{fault:?}: stream lost"),
                Err(e) => panic!("{fault:?}: {e}"),
            }
            cases += 1;
        }
    }
    eprintln!("fault sweep: {writes} writes and {syncs} syncs in the workload, {cases} cases");
    assert!(cases > 50);
}

/// Damaged stream metadata is refused with an error naming the file, never a panic.
#[test]
fn bad_stream_metadata_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let stream_dir = {
        let store = open(dir.path());
        let s = store.create_stream("m", schema(), options()).unwrap();
        s.append(&batch(0, 3)).unwrap();
        s.dir().to_path_buf()
    };
    let file = stream_dir.join("stream.json");
    let original = std::fs::read(&file).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    v["options"]["partitions"] = 0.into();
    std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::BadMetadata { .. }), "{err}");
    assert!(err.to_string().contains("stream.json"), "{err}");
    std::fs::write(&file, b"{ not json").unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("stream.json"), "{err}");
    std::fs::write(&file, &original).unwrap();
    // A committed offset beyond the end of the log is corruption, not a silent gap.
    let p = stream_dir.join("p0/partition.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["committed"] = 99.into();
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("offsets up to 99 were committed"), "{err}");
    m["committed"] = serde_json::Value::Null;
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    let store = open(dir.path());
    assert_eq!(all_ids(&store.stream("m").unwrap()), vec![0, 1, 2]);
}

/// A missing first segment is reported, not hidden behind a later start offset.
#[test]
fn missing_first_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let segs = {
        let store = open(dir.path());
        let opts = StreamOptions { segment_bytes: 4096, ..options() };
        let s = store.create_stream("g", schema(), opts).unwrap();
        for i in 0..30 {
            s.append(&batch(i * 5, 5)).unwrap();
        }
        segment_files(s.dir())
    };
    std::fs::remove_file(&segs[0]).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("a segment is missing"), "{err}");
}
