//! Random operations against a model: appends, truncations, reopens and reads from random
//! offsets and times must always agree with a plain vector of rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kappa_storage::{ReadFrom, StreamOptions};
use rand::{Rng, SeedableRng};

#[test]
fn random_operations_agree_with_a_model() {
    let seeds: u64 =
        std::env::var("KAPPA_MODEL_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    for seed in 0..seeds {
        run(seed);
    }
}

fn run(seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let opts = StreamOptions { segment_bytes: 4096, index_interval_bytes: 300, ..options() };
    let mut store = open(dir.path());
    let mut s = store.create_stream("m", schema(), opts).unwrap();
    // The model: row ids in offset order (id == offset), and the batch boundaries.
    let mut rows: Vec<i64> = Vec::new();
    let mut boundaries: Vec<u64> = vec![0];
    for step in 0..300 {
        match rng.random_range(0..100) {
            0..=59 => {
                let n = rng.random_range(1..12);
                let base = rows.len() as i64;
                let ack = s.append(&batch(base, n)).unwrap();
                assert_eq!(ack.base_offset as i64, base, "seed {seed} step {step}");
                rows.extend(base..base + n as i64);
                boundaries.push(rows.len() as u64);
            }
            60..=64 => {
                let b = boundaries[rng.random_range(0..boundaries.len())];
                s.truncate(b).unwrap();
                rows.truncate(b as usize);
                boundaries.retain(|x| *x <= b);
            }
            65..=69 => {
                drop(s);
                store.close().unwrap();
                drop(store);
                store = open(dir.path());
                s = store.stream("m").unwrap();
            }
            70..=89 => {
                let from = rng.random_range(0..=rows.len());
                let mut r = s.reader(ReadFrom::Offset(from as u64)).unwrap();
                let got: Vec<i64> = read_all(&mut r).into_iter().flat_map(|(_, v)| v).collect();
                assert_eq!(got, rows[from..], "seed {seed} step {step}: read from {from}");
            }
            _ => {
                // Event time is id * 10: the first row at or after t is id ceil(t / 10).
                let t = rng.random_range(-20..(rows.len() as i64 * 10 + 20));
                let r = s.reader(ReadFrom::EventTime(t)).unwrap();
                let expected = rows.iter().position(|id| id * 10 >= t).unwrap_or(rows.len());
                assert_eq!(r.position(), expected as u64, "seed {seed} step {step}: time {t}");
            }
        }
        assert_eq!(s.end_offset(), rows.len() as u64, "seed {seed} step {step}");
    }
    assert_eq!(all_ids(&s), rows);
}
