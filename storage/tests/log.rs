//! Functional tests of the log: append, read, seal, commit, truncate, retention, time lookup,
//! concurrent readers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use common::*;
use kappa_storage::{Durability, Error, ReadFrom, Retention, StreamOptions, Wait};

#[test]
fn append_returns_offsets_and_reads_back_from_any_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = store.create_stream("bids", schema(), options()).unwrap();
    let a = s.append(&batch(0, 5)).unwrap();
    let b = s.append(&batch(5, 3)).unwrap();
    let e = s.append(&batch(8, 0)).unwrap();
    assert_eq!((a.base_offset, a.rows), (0, 5));
    assert_eq!((b.base_offset, b.rows), (5, 3));
    assert_eq!((e.base_offset, e.rows), (8, 0));
    let mut r = s.reader(ReadFrom::Earliest).unwrap();
    assert_eq!(read_all(&mut r), vec![(0, vec![0, 1, 2, 3, 4]), (5, vec![5, 6, 7])]);
    // Mid-batch offsets slice the batch.
    let mut r = s.reader(ReadFrom::Offset(3)).unwrap();
    assert_eq!(read_all(&mut r), vec![(3, vec![3, 4]), (5, vec![5, 6, 7])]);
    let mut r = s.reader(ReadFrom::Offset(8)).unwrap();
    assert!(read_all(&mut r).is_empty());
    let err = s.reader(ReadFrom::Offset(9)).unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { requested: 9, .. }), "{err}");
    // Projection.
    let mut r = s.reader(ReadFrom::Offset(6)).unwrap().with_projection(vec![2]).unwrap();
    let b = r.next_batch().unwrap().unwrap();
    assert_eq!(b.batch.num_columns(), 1);
    assert_eq!(b.batch.num_rows(), 2);
}

#[test]
fn data_survives_reopen_and_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let opts = StreamOptions { segment_bytes: 4096, ..options() };
        let s = store.create_stream("s", schema(), opts).unwrap();
        for i in 0..100 {
            s.append(&batch(i * 10, 10)).unwrap();
        }
        assert!(s.info().segments > 10, "{:?}", s.info());
        store.close().unwrap();
    }
    let store = open(dir.path());
    let s = store.stream("s").unwrap();
    assert_eq!(all_ids(&s), (0..1000).collect::<Vec<_>>());
    assert_eq!(s.append(&batch(1000, 1)).unwrap().base_offset, 1000);
    // Read from the middle of a middle segment.
    let mut r = s.reader(ReadFrom::Offset(555)).unwrap();
    assert_eq!(r.next_batch().unwrap().unwrap().offset, 555);
    assert_eq!(store.stream_names(), vec!["s".to_string()]);
}

#[test]
fn schema_mismatch_is_refused_naming_columns_and_nothing_is_written() {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = store.create_stream("s", schema(), options()).unwrap();
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let msg = s.append(&wrong).unwrap_err().to_string();
    assert!(
        msg.contains("missing column 'ts'") && msg.contains("missing column 'payload'"),
        "{msg}"
    );
    assert_eq!(s.end_offset(), 0);
}

#[test]
fn create_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_stream("s", schema(), options()).unwrap();
    assert!(matches!(store.create_stream("s", schema(), options()), Err(Error::StreamExists(_))));
    let e = store.create_stream("bad name", schema(), options()).unwrap_err();
    assert!(e.to_string().contains("invalid stream name 'bad name'"), "{e}");
    let opts = StreamOptions { event_time_column: Some("payload".into()), ..options() };
    let e = store.create_stream("t", schema(), opts).unwrap_err();
    assert!(e.to_string().contains("expected a TIMESTAMP"), "{e}");
    assert!(matches!(store.stream("nope"), Err(Error::StreamNotFound(_))));
    let old = store.stream("s").unwrap();
    store.drop_stream("s").unwrap();
    assert!(matches!(store.stream("s"), Err(Error::StreamNotFound(_))));
    let new = store.create_stream("s", schema(), options()).unwrap();
    // A handle from before the drop cannot touch the new stream of the same name.
    let e = old.append(&batch(0, 1));
    assert!(matches!(e, Err(Error::Closed { .. })), "{e:?}");
    assert!(matches!(old.seal(), Err(Error::Closed { .. })));
    new.append(&batch(0, 2)).unwrap();
    assert_eq!(all_ids(&new), vec![0, 1]);
}

#[test]
fn second_store_on_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = kappa_storage::Store::open(dir.path(), Default::default()).unwrap_err();
    assert!(err.to_string().contains("in use by another kappa process"), "{err}");
}

#[test]
fn seal_refuses_appends_ends_readers_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let s = store.create_stream("s", schema(), options()).unwrap();
        s.append(&batch(0, 4)).unwrap();
        assert_eq!(s.seal().unwrap(), 4);
        assert_eq!(s.seal().unwrap(), 4);
        let e = s.append(&batch(4, 1)).unwrap_err();
        assert!(matches!(e, Error::Sealed { end: 4, .. }), "{e}");
        let mut r = s.reader(ReadFrom::Earliest).unwrap();
        assert_eq!(r.next_blocking(None).unwrap().unwrap().batch.num_rows(), 4);
        assert!(r.next_blocking(None).unwrap().is_none(), "sealed end reached");
        assert_eq!(r.wait(None), Wait::Ended);
    }
    let store = open(dir.path());
    let s = store.stream("s").unwrap();
    assert_eq!(s.info().sealed, Some(4));
    assert!(matches!(s.append(&batch(4, 1)), Err(Error::Sealed { .. })));
    assert!(matches!(s.truncate(2), Err(Error::Sealed { .. })));
}

#[test]
fn derived_log_readers_stop_at_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let opts = StreamOptions { derived: true, ..options() };
        let s = store.create_stream("d", schema(), opts).unwrap();
        s.append(&batch(0, 3)).unwrap();
        s.append(&batch(3, 3)).unwrap();
        let mut r = s.reader(ReadFrom::Earliest).unwrap();
        assert!(read_all(&mut r).is_empty(), "nothing committed yet");
        s.commit(4).unwrap();
        // The commit may fall inside a batch: the reader gets the committed part.
        assert_eq!(read_all(&mut r), vec![(0, vec![0, 1, 2]), (3, vec![3])]);
        s.commit(6).unwrap();
        assert_eq!(read_all(&mut r), vec![(4, vec![4, 5])]);
        assert!(s.commit(5).unwrap_err().to_string().contains("already committed"));
        assert!(matches!(s.commit(7), Err(Error::OffsetOutOfRange { .. })));
        s.append(&batch(6, 2)).unwrap();
        let e = s.truncate(3).unwrap_err();
        assert!(e.to_string().contains("committed"), "{e}");
        s.truncate(6).unwrap();
    }
    let store = open(dir.path());
    let s = store.stream("d").unwrap();
    assert_eq!(s.info().committed, Some(6));
    assert_eq!(s.end_offset(), 6);
}

#[test]
fn batches_read_from_the_active_segment_outlive_a_truncation() {
    // Reads of the active segment go through a mapping that reaches past the file's end: rows
    // appended after it was made show through it, and a truncation (which writes a new file)
    // leaves the batches already read intact. A file cut in place would kill the process here.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = store.create_stream("s", schema(), options()).unwrap();
    s.append(&batch(0, 100)).unwrap();
    let mut r = s.reader(ReadFrom::Earliest).unwrap();
    let held = r.next_batch().unwrap().unwrap();
    assert_eq!(s.info().segments, 1);
    for i in 1..20 {
        s.append(&batch(i * 100, 100)).unwrap();
    }
    let tail: Vec<RecordBatch> =
        std::iter::from_fn(|| r.next_batch().unwrap()).map(|b| b.batch).collect();
    assert_eq!(tail.iter().map(|b| b.num_rows()).sum::<usize>(), 1900);
    // At a frame boundary: the cut needs no re-encoded head frame.
    s.truncate(100).unwrap();
    check_rows(&held.batch);
    assert_eq!(ids(&held.batch), (0..100).collect::<Vec<_>>());
    for b in &tail {
        check_rows(b);
    }
    assert_eq!(all_ids(&s), (0..100).collect::<Vec<_>>());
    s.append(&batch(100, 10)).unwrap();
    assert_eq!(all_ids(&s), (0..110).collect::<Vec<_>>());
}

#[test]
fn batches_encoded_on_other_threads_are_written_in_submit_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = store.create_stream("s", schema(), options()).unwrap();
    let other = store.create_stream("t", schema(), options()).unwrap();
    let encoded: Vec<_> = std::thread::scope(|scope| {
        let s = &s;
        let handles: Vec<_> =
            (0..8).map(|i| scope.spawn(move || s.encode(&batch(i * 10, 10)).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Five one at a time, then three in one write.
    let mut encoded = encoded.into_iter().enumerate();
    let tag = |i: usize| Some(kappa_storage::Tag { producer: 7, seq: (i as u64 + 1) * 10 });
    let mut pending = Vec::new();
    for (i, e) in encoded.by_ref().take(5) {
        assert_eq!(e.num_rows(), 10);
        pending.push(s.submit_encoded(vec![(e, tag(i))]).unwrap());
    }
    let run: Vec<_> = encoded.map(|(i, e)| (e, tag(i))).collect();
    let last = s.submit_encoded(run).unwrap();
    assert_eq!((last.offsets().base_offset, last.offsets().rows), (50, 30));
    pending.push(last);
    for p in pending {
        p.wait().unwrap();
    }
    assert_eq!(all_ids(&s), (0..80).collect::<Vec<_>>());
    assert_eq!(s.producer_positions(0).unwrap().get(&7), Some(&80));
    assert_eq!(s.info().appended_batches, 8);
    // A batch encoded for one stream is refused by another, even with the same schema.
    let e = s.encode(&batch(80, 1)).unwrap();
    let err = other.submit_encoded(vec![(e, None)]).unwrap_err();
    assert!(err.to_string().contains("encoded for another stream"), "{err}");
    assert_eq!(other.end_offset(), 0);
    // An empty batch encodes to nothing and appends nothing.
    let empty = s.encode(&batch(0, 0)).unwrap();
    assert_eq!(empty.num_rows(), 0);
    s.submit_encoded(vec![(empty, None)]).unwrap().wait().unwrap();
    assert_eq!(s.end_offset(), 80);
}

#[test]
fn a_run_of_encoded_batches_rolls_segments_as_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = StreamOptions { segment_bytes: 4096, ..options() };
    let s = store.create_stream("s", schema(), opts).unwrap();
    let run: Vec<_> = (0..12).map(|i| (s.encode(&batch(i * 20, 20)).unwrap(), None)).collect();
    s.submit_encoded(run).unwrap().wait().unwrap();
    assert!(s.info().segments > 2, "{:?}", s.info());
    assert_eq!(all_ids(&s), (0..240).collect::<Vec<_>>());
    drop(s);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(all_ids(&store.stream("s").unwrap()), (0..240).collect::<Vec<_>>());
}

#[test]
fn truncate_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = StreamOptions { segment_bytes: 4096, ..options() };
    let s = store.create_stream("s", schema(), opts).unwrap();
    for i in 0..60 {
        s.append(&batch(i * 5, 5)).unwrap();
    }
    let segments_before = s.info().segments;
    let mut late_reader = s.reader(ReadFrom::Offset(290)).unwrap();
    let mut early_reader = s.reader(ReadFrom::Offset(10)).unwrap();
    let first = early_reader.next_batch().unwrap().unwrap();
    assert_eq!(first.offset, 10);
    s.truncate(100).unwrap();
    assert!(s.info().segments < segments_before);
    assert_eq!(s.end_offset(), 100);
    assert_eq!(all_ids(&s), (0..100).collect::<Vec<_>>());
    let e = late_reader.next_batch().unwrap_err();
    assert!(matches!(e, Error::ReaderTruncated { end: 100, position: 290, .. }), "{e}");
    let rest: Vec<i64> = read_all(&mut early_reader).into_iter().flat_map(|(_, v)| v).collect();
    let after_first = 10 + first.batch.num_rows() as i64;
    assert_eq!(rest, (after_first..100).collect::<Vec<_>>());
    // Appends continue at the new end, and everything survives a reopen.
    s.append(&batch(100, 5)).unwrap();
    drop(s);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    let s = store.stream("s").unwrap();
    assert_eq!(all_ids(&s), (0..105).collect::<Vec<_>>());
    // A reader past the truncation point errors even when new rows refill the log beyond it.
    let mut r = s.reader(ReadFrom::Offset(60)).unwrap();
    let b = r.next_batch().unwrap().unwrap();
    assert_eq!(b.offset, 60);
    let position = 60 + b.batch.num_rows() as u64;
    s.truncate(50).unwrap();
    for i in 10..20 {
        s.append(&batch(i * 5, 5)).unwrap();
    }
    let e = r.next_batch().unwrap_err();
    assert!(
        matches!(e, Error::ReaderTruncated { end: 50, position: p, .. } if p == position),
        "{e}"
    );
    s.truncate(0).unwrap();
    assert!(all_ids(&s).is_empty());
    assert_eq!(s.append(&batch(0, 2)).unwrap().base_offset, 0);
}

#[test]
fn retention_by_size_and_age_removes_whole_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let opts = StreamOptions {
            segment_bytes: 4096,
            retention: Retention { max_bytes: Some(20_000), max_age: None },
            ..options()
        };
        let s = store.create_stream("s", schema(), opts).unwrap();
        for i in 0..100 {
            s.append(&batch(i * 10, 10)).unwrap();
        }
        let info = s.info();
        assert!(info.bytes <= 20_000 + 4096, "{info:?}");
        assert!(info.start > 0);
        assert_eq!(info.end, 1000);
        let ids = all_ids(&s);
        assert_eq!(ids.first().copied(), Some(info.start as i64));
        assert_eq!(ids.last().copied(), Some(999));
        let e = s.reader(ReadFrom::Offset(0)).unwrap_err();
        assert!(matches!(e, Error::OffsetOutOfRange { requested: 0, .. }), "{e}");
    }
    let store = open(dir.path());
    let s = store.stream("s").unwrap();
    let start = s.info().start;
    assert!(start > 0);
    assert_eq!(all_ids(&s).len() as u64, 1000 - start);

    // Age: everything closed is older than a second from now; the active segment stays.
    let opts = StreamOptions {
        segment_bytes: 4096,
        retention: Retention { max_age: Some(Duration::from_secs(3600)), max_bytes: None },
        ..options()
    };
    let a = store.create_stream("aged", schema(), opts).unwrap();
    for i in 0..50 {
        a.append(&batch(i * 10, 10)).unwrap();
    }
    let before = a.info();
    assert_eq!(a.enforce_retention(SystemTime::now()).unwrap(), 0);
    let removed = a.enforce_retention(SystemTime::now() + Duration::from_secs(7200)).unwrap();
    assert_eq!(removed, before.segments - 1);
    let after = a.info();
    assert_eq!(after.segments, 1);
    assert_eq!(after.end, 500);
    assert_eq!(all_ids(&a).last().copied(), Some(499));
}

#[test]
fn reader_from_event_time_uses_the_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = StreamOptions { segment_bytes: 8192, index_interval_bytes: 512, ..options() };
    let s = store.create_stream("s", schema(), opts).unwrap();
    // Event time grows with the id, with some disorder: ts = id*10, minus 25 on every 4th row.
    let ts_of = |i: i64| if i % 4 == 0 { i * 10 - 25 } else { i * 10 };
    for i in 0..200 {
        s.append(&batch_with_ts(i * 8, 8, ts_of)).unwrap();
    }
    for t in [-100i64, 0, 5, 1234, 8000, 15_990, 15_995, 16_000, 99_999] {
        let expected = (0..1600i64).find(|i| ts_of(*i) >= t).map(|i| i as u64).unwrap_or(1600);
        let r = s.reader(ReadFrom::EventTime(t)).unwrap();
        assert_eq!(r.position(), expected, "time {t}");
    }
    let plain = store.create_stream("plain", schema(), StreamOptions::default()).unwrap();
    assert!(
        plain.reader(ReadFrom::EventTime(0)).unwrap_err().to_string().contains("no event-time")
    );
}

#[test]
fn relaxed_durability_appends_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let opts =
            StreamOptions { durability: Durability::Relaxed, segment_bytes: 4096, ..options() };
        let s = store.create_stream("r", schema(), opts).unwrap();
        for i in 0..50 {
            s.append(&batch(i * 3, 3)).unwrap();
        }
        assert_eq!(all_ids(&s).len(), 150);
    }
    let store = open(dir.path());
    assert_eq!(all_ids(&store.stream("r").unwrap()), (0..150).collect::<Vec<_>>());
}

#[test]
fn concurrent_readers_follow_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = StreamOptions { segment_bytes: 16 * 1024, ..options() };
    let s = store.create_stream("live", schema(), opts).unwrap();
    const BATCHES: i64 = 300;
    const ROWS: i64 = 7;
    let readers: Vec<_> = (0..4)
        .map(|k| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut r = s.reader(ReadFrom::Earliest).unwrap();
                let mut next = 0i64;
                while next < BATCHES * ROWS {
                    // Slow readers read at their own pace.
                    if k == 3 && next % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let b = r.next_blocking(Some(Duration::from_secs(30))).unwrap().expect("data");
                    assert_eq!(b.offset as i64, next);
                    check_rows(&b.batch);
                    let ids = ids(&b.batch);
                    assert_eq!(ids, (next..next + ids.len() as i64).collect::<Vec<_>>());
                    next += ids.len() as i64;
                }
                next
            })
        })
        .collect();
    let writer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            for i in 0..BATCHES {
                s.append(&batch(i * ROWS, ROWS as usize)).unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    writer.join().unwrap();
    for r in readers {
        assert_eq!(r.join().unwrap(), BATCHES * ROWS);
    }
}

#[test]
fn concurrent_appenders_get_disjoint_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let opts = StreamOptions { segment_bytes: 8192, ..options() };
    let s = store.create_stream("c", schema(), opts).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for i in 0..40 {
                    let tag = t * 1_000_000 + i * 10;
                    let ack = s.append(&batch(tag, 3)).unwrap();
                    acks.push((ack.base_offset, tag));
                }
                acks
            })
        })
        .collect();
    let mut acks: Vec<(u64, i64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    acks.sort();
    assert_eq!(acks.len(), 320);
    // Group commit: concurrent durable appenders shared syncs.
    let info = s.info();
    assert_eq!(info.appended_batches, 320);
    assert!(info.syncs < 320, "{info:?}");
    for (k, (off, _)) in acks.iter().enumerate() {
        assert_eq!(*off, 3 * k as u64);
    }
    // Every acknowledged batch is where its ack says (closed segments may have been compacted,
    // so batch boundaries are not compared).
    let ids = all_ids(&s);
    assert_eq!(ids.len(), 960);
    for (off, tag) in &acks {
        let at = *off as usize;
        assert_eq!(&ids[at..at + 3], &[*tag, tag + 1, tag + 2]);
    }
}

#[test]
fn pipelined_appends_share_syncs_and_are_readable_only_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let s = store.create_stream("p", schema(), options()).unwrap();
        // One appender with 16 appends in flight: they share syncs.
        let pending: Vec<_> = (0..16).map(|i| s.submit(&batch(i * 2, 2)).unwrap()).collect();
        let offsets: Vec<u64> = pending.iter().map(|p| p.offsets().base_offset).collect();
        assert_eq!(offsets, (0..16).map(|i| i * 2).collect::<Vec<_>>());
        let acks: Vec<_> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
        assert_eq!(acks[15].base_offset + acks[15].rows, 32);
        let info = s.info();
        assert!(info.syncs < 16, "{info:?}");
        assert_eq!(all_ids(&s), (0..32).collect::<Vec<_>>());
        // A pending append dropped without waiting does not hold up later group commits.
        let dropped = s.submit(&batch(32, 1)).unwrap();
        drop(dropped);
        assert_eq!(s.append(&batch(33, 1)).unwrap().base_offset, 33);
        store.close().unwrap();
    }
    let store = open(dir.path());
    let s = store.stream("p").unwrap();
    assert_eq!(all_ids(&s), (0..34).collect::<Vec<_>>());
    // A truncation may not keep part of a batch whose append is still waiting for its sync.
    let pending = s.submit(&batch(34, 4)).unwrap();
    let e = s.truncate(36).unwrap_err();
    assert!(e.to_string().contains("not acknowledged yet"), "{e}");
    assert_eq!(pending.wait().unwrap().base_offset, 34);
    s.truncate(36).unwrap();
    assert_eq!(all_ids(&s), (0..36).collect::<Vec<_>>());
    // Relaxed mode: acknowledged at once; sealed streams refuse submissions.
    let r = store
        .create_stream(
            "r",
            schema(),
            StreamOptions { durability: Durability::Relaxed, ..options() },
        )
        .unwrap();
    let p = r.submit(&batch(0, 3)).unwrap();
    assert_eq!(r.end_offset(), 3);
    assert_eq!(p.wait().unwrap().rows, 3);
    r.seal().unwrap();
    assert!(matches!(r.submit(&batch(3, 1)), Err(Error::Sealed { .. })));
}

#[tokio::test]
async fn async_reader_waits_without_polling_and_ends_on_seal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = store.create_stream("a", schema(), options()).unwrap();
    let mut r = s.reader(ReadFrom::Latest).unwrap();
    let s2 = Arc::clone(&s);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        s2.append(&batch(0, 2)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s2.seal().unwrap();
    });
    let b = tokio::time::timeout(Duration::from_secs(10), r.next_async()).await.unwrap().unwrap();
    assert_eq!(b.unwrap().batch.num_rows(), 2);
    let end = tokio::time::timeout(Duration::from_secs(10), r.next_async()).await.unwrap().unwrap();
    assert!(end.is_none());
    writer.join().unwrap();
}

#[test]
fn a_reader_waiting_at_the_end_learns_of_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = store.create_stream("w", schema(), options()).unwrap();
    for i in 0..20 {
        s.append(&batch(i * 5, 5)).unwrap();
    }
    let mut r = s.reader(ReadFrom::Earliest).unwrap();
    assert_eq!(read_all(&mut r).len(), 20);
    let waiter = std::thread::spawn(move || r.next_blocking(Some(Duration::from_secs(30))));
    std::thread::sleep(Duration::from_millis(50));
    s.truncate(50).unwrap();
    s.seal().unwrap();
    let e = waiter.join().unwrap().unwrap_err();
    assert!(matches!(e, Error::ReaderTruncated { end: 50, position: 100, .. }), "{e}");
}
