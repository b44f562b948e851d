//! One side of a join's state: its rows, indexed by join key.
//!
//! Rows are kept in the batches they came in (an arena: a row is `(batch, row)` packed in a
//! `u64`), with per row its key, how many rows of the other side it matched, when it may be
//! freed, and whether it is still held. A batch is dropped once none of its rows is held; the
//! side compacts (rebuilds its batches from the held rows) when most rows it keeps are no
//! longer held. A side whose input retracts also indexes each row by its whole value, to find
//! the row a retraction takes back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;

use crate::error::{Error, Result};

/// Rows one side of a join may hold (a clear error past it).
pub const MAX_JOIN_ROWS: usize = 50_000_000;

/// A row of the arena.
pub(crate) type RowId = u64;

pub(crate) fn row_id(batch: usize, row: usize) -> RowId {
    ((batch as u64) << 32) | row as u64
}

pub(crate) fn split_id(id: RowId) -> (usize, usize) {
    ((id >> 32) as usize, (id & 0xFFFF_FFFF) as usize)
}

/// What a side knows of one row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub key: u32,
    pub matches: u32,
    pub expire: i64,
    /// When it was held (processing time, ms; for `state_ttl`).
    pub born: i64,
    pub held: bool,
}

/// A key and the rows held under it (the first inline: most keys have one).
#[derive(Debug, Default)]
struct KeyEntry {
    hash: u64,
    bytes: Box<[u8]>,
    first: RowId,
    more: Vec<RowId>,
    held: u32,
}

/// One side's rows.
#[derive(Debug)]
pub(crate) struct Side {
    pub schema: SchemaRef,
    batches: Vec<Option<RecordBatch>>,
    metas: Vec<Vec<Meta>>,
    held_in: Vec<u32>,
    /// Key entries by the hash of their bytes.
    keys: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    entries: Vec<Option<KeyEntry>>,
    free_keys: Vec<u32>,
    /// By whole row (a side whose input retracts).
    whole: Option<HashMap<Box<[u8]>, Vec<RowId>>>,
    /// Held rows by the time they may be freed (a side bounded by the other's watermark).
    expiry: BinaryHeap<Reverse<(i64, RowId)>>,
    /// With `state_ttl`: the rows in the order they were held.
    arrivals: Option<std::collections::VecDeque<RowId>>,
    held: usize,
    kept: usize,
    /// The batch being filled (kept even while none of its rows is held, until settled).
    filling: Option<usize>,
}

impl Side {
    pub fn new(schema: SchemaRef, retracts: bool) -> Side {
        Side {
            schema,
            batches: Vec::new(),
            metas: Vec::new(),
            held_in: Vec::new(),
            keys: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            entries: Vec::new(),
            free_keys: Vec::new(),
            whole: retracts.then(HashMap::default),
            expiry: BinaryHeap::new(),
            arrivals: None,
            held: 0,
            kept: 0,
            filling: None,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Keep `batch` in the arena (its rows not held yet): its index.
    pub fn add_batch(&mut self, batch: RecordBatch) -> usize {
        let n = batch.num_rows();
        self.kept += n;
        self.batches.push(Some(batch));
        self.metas
            .push(vec![Meta { key: 0, matches: 0, expire: i64::MAX, born: 0, held: false }; n]);
        self.held_in.push(0);
        self.filling = Some(self.batches.len() - 1);
        self.batches.len() - 1
    }

    /// Hold row `id` (of a batch added) under `key`; `whole`: its whole value (a retracting
    /// side); `expire`: when it may be freed (`None`: never).
    pub fn hold(
        &mut self,
        id: RowId,
        key: &[u8],
        whole: Option<&[u8]>,
        matches: u32,
        expire: Option<i64>,
        born: i64,
    ) -> Result<()> {
        if self.held >= MAX_JOIN_ROWS {
            return Err(Error::plan(
                format!(
                    "a side of the join holds {MAX_JOIN_ROWS} rows, its limit: bound the join by time (an interval join), or set state_ttl"
                ),
                None,
            ));
        }
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        let found = self
            .keys
            .find(hash, |k| entries[*k as usize].as_ref().is_some_and(|e| &*e.bytes == key));
        match found.copied() {
            Some(k) => {
                if let Some(e) = self.entries[k as usize].as_mut() {
                    if e.held == 0 && e.more.is_empty() {
                        e.first = id;
                    } else {
                        e.more.push(id);
                    }
                    e.held += 1;
                }
                self.place(id, k, matches, expire, born);
            }
            None => {
                let entry =
                    KeyEntry { hash, bytes: key.into(), first: id, more: Vec::new(), held: 1 };
                let k = match self.free_keys.pop() {
                    Some(k) => {
                        self.entries[k as usize] = Some(entry);
                        k
                    }
                    None => {
                        self.entries.push(Some(entry));
                        (self.entries.len() - 1) as u32
                    }
                };
                let entries = &self.entries;
                self.keys.insert_unique(hash, k, |k| {
                    entries[*k as usize].as_ref().map_or(0, |e| e.hash)
                });
                self.place(id, k, matches, expire, born);
            }
        }
        if let (Some(map), Some(w)) = (self.whole.as_mut(), whole) {
            map.entry(w.into()).or_default().push(id);
        }
        Ok(())
    }

    /// Row `id` held under key entry `k`.
    fn place(&mut self, id: RowId, k: u32, matches: u32, expire: Option<i64>, born: i64) {
        let (b, r) = split_id(id);
        self.metas[b][r] =
            Meta { key: k, matches, expire: expire.unwrap_or(i64::MAX), born, held: true };
        if let Some(a) = self.arrivals.as_mut() {
            a.push_back(id);
        }
        self.held_in[b] += 1;
        self.held += 1;
        if let Some(t) = expire {
            self.expiry.push(Reverse((t, id)));
        }
    }

    /// Call `f` with each row held under `key`.
    pub fn each_of(&mut self, key: &[u8], mut f: impl FnMut(RowId)) {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        let Some(k) = self
            .keys
            .find(hash, |k| entries[*k as usize].as_ref().is_some_and(|e| &*e.bytes == key))
            .copied()
        else {
            return;
        };
        let Some(entry) = self.entries[k as usize].as_mut() else { return };
        let metas = &self.metas;
        let held = |id: &RowId| {
            let (b, r) = split_id(*id);
            metas.get(b).and_then(|m| m.get(r)).is_some_and(|m| m.held)
        };
        if held(&entry.first) {
            f(entry.first);
        }
        if entry.more.len() > 2 * entry.held as usize + 8 {
            entry.more.retain(held);
        }
        for id in &entry.more {
            if held(id) {
                f(*id);
            }
        }
    }

    /// A held row with this whole value (a retracting side).
    pub fn find_whole(&mut self, whole: &[u8]) -> Option<RowId> {
        let map = self.whole.as_mut()?;
        let ids = map.get_mut(whole)?;
        let id = ids.pop()?;
        if ids.is_empty() {
            map.remove(whole);
        }
        Some(id)
    }

    /// Whether row `id` is held (`false` also for a row of a batch dropped).
    pub fn is_held(&self, id: RowId) -> bool {
        let (b, r) = split_id(id);
        self.metas.get(b).and_then(|m| m.get(r)).is_some_and(|m| m.held)
    }

    pub fn meta(&self, id: RowId) -> Meta {
        let (b, r) = split_id(id);
        self.metas[b][r]
    }

    pub fn meta_mut(&mut self, id: RowId) -> &mut Meta {
        let (b, r) = split_id(id);
        &mut self.metas[b][r]
    }

    /// Let go of row `id` (its batch goes when none of its rows is held).
    pub fn release(&mut self, id: RowId) {
        let (b, r) = split_id(id);
        let meta = &mut self.metas[b][r];
        if !meta.held {
            return;
        }
        meta.held = false;
        let k = meta.key as usize;
        self.held -= 1;
        self.held_in[b] -= 1;
        if let Some(entry) = self.entries[k].as_mut() {
            entry.held -= 1;
            if entry.held == 0 {
                let hash = entry.hash;
                if let Ok(e) = self.keys.find_entry(hash, |x| *x as usize == k) {
                    e.remove();
                }
                self.entries[k] = None;
                self.free_keys.push(k as u32);
            }
        }
        if self.held_in[b] == 0 && self.filling != Some(b) {
            if let Some(batch) = self.batches[b].take() {
                self.kept -= batch.num_rows();
            }
            self.metas[b] = Vec::new();
        }
    }

    /// The held rows that may be freed once the other side's watermark is `watermark` (their
    /// time bound is below it), in order; they stay held until released.
    pub fn expired(&mut self, watermark: i64) -> Vec<RowId> {
        let mut out = Vec::new();
        while let Some(Reverse((t, id))) = self.expiry.peek().copied() {
            if t >= watermark {
                break;
            }
            self.expiry.pop();
            if self.is_held(id) {
                out.push(id);
            }
        }
        out
    }

    /// The earliest time a held row may be freed (the oldest waiting row of a temporal join).
    pub fn oldest(&mut self) -> Option<i64> {
        while let Some(Reverse((t, id))) = self.expiry.peek().copied() {
            if self.is_held(id) {
                return Some(t);
            }
            self.expiry.pop();
        }
        None
    }

    /// `state_ttl`: the held rows held before `before` (processing time), oldest first; they
    /// stay held until released.
    pub fn older_than(&mut self, before: i64) -> Vec<RowId> {
        if self.arrivals.is_none() {
            // (From the first call on, rows are kept in the order they came.)
            let mut all = self.held_rows();
            all.sort_by_key(|id| self.meta(*id).born);
            self.arrivals = Some(all.into());
        }
        let mut out = Vec::new();
        while let Some(id) = self.arrivals.as_ref().and_then(|a| a.front().copied()) {
            let held = self.is_held(id);
            if held && self.meta(id).born >= before {
                break;
            }
            if let Some(a) = self.arrivals.as_mut() {
                a.pop_front();
            }
            if held {
                out.push(id);
            }
        }
        out
    }

    /// The columns of rows `ids` (`None`: a row of NULLs).
    ///
    /// # Errors
    /// When arrow cannot gather the values.
    pub fn gather(&self, ids: &[Option<RowId>]) -> Result<Vec<ArrayRef>> {
        // The batches referred to, then one row of NULLs.
        let mut slot: HashMap<usize, usize> = HashMap::default();
        let mut used: Vec<&RecordBatch> = Vec::new();
        let mut at = Vec::with_capacity(ids.len());
        let null_row = null_batch(&self.schema)?;
        for id in ids {
            match id {
                Some(id) => {
                    let (b, r) = split_id(*id);
                    let Some(Some(batch)) = self.batches.get(b) else {
                        return Err(Error::plan("a join row is no longer held", None));
                    };
                    let s = *slot.entry(b).or_insert_with(|| {
                        used.push(batch);
                        used.len() - 1
                    });
                    at.push((s, r));
                }
                None => at.push((usize::MAX, 0)),
            }
        }
        let null_at = used.len();
        for a in &mut at {
            if a.0 == usize::MAX {
                a.0 = null_at;
            }
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for c in 0..self.schema.fields().len() {
            let mut arrays: Vec<&dyn Array> = used.iter().map(|b| b.column(c).as_ref()).collect();
            arrays.push(null_row.column(c).as_ref());
            columns.push(interleave(&arrays, &at).map_err(arrow)?);
        }
        Ok(columns)
    }

    /// Drop batch `b` if none of its rows is held.
    pub fn settle(&mut self, b: usize) {
        if self.filling == Some(b) {
            self.filling = None;
        }
        if self.held_in.get(b) == Some(&0) {
            if let Some(batch) = self.batches[b].take() {
                self.kept -= batch.num_rows();
            }
            self.metas[b] = Vec::new();
        }
    }

    /// Every held row, in arena order.
    pub fn held_rows(&self) -> Vec<RowId> {
        let mut out = Vec::with_capacity(self.held);
        for (b, metas) in self.metas.iter().enumerate() {
            for (r, m) in metas.iter().enumerate() {
                if m.held {
                    out.push(row_id(b, r));
                }
            }
        }
        out
    }

    /// Whether the side keeps many more rows than it holds (time to compact).
    pub fn wasteful(&self) -> bool {
        self.kept > 65_536 && self.kept > 3 * self.held
    }
}

/// A batch of one row of NULLs in `schema` (fields made nullable).
pub(crate) fn null_batch(schema: &SchemaRef) -> Result<RecordBatch> {
    let fields: Vec<_> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    let columns = schema
        .fields()
        .iter()
        .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1))
        .collect();
    RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), columns)
        .map_err(arrow)
}

pub(crate) fn arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::plan(format!("join: {e}"), None)
}
