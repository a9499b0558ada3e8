//! [`BottomK`]: the `k` rows with the smallest sampling keys among all rows offered, with
//! their activations — a seeded uniform sample without replacement whose result depends only
//! on the set of rows offered, not on their order or on how they were split into files.

use std::collections::{BinaryHeap, HashSet};

/// A row's place in the sampling order: its hash key first, its identity breaking ties, so
/// the order is total and the same on every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SampleKey {
    /// `seed::derive(seed, [SAMPLE_TAG, image_id, y, x])`.
    pub key: u64,
    /// The image.
    pub image_id: u64,
    /// Feature-map row.
    pub y: u16,
    /// Feature-map column.
    pub x: u16,
}

impl SampleKey {
    /// The identity of the row, for duplicate detection.
    fn identity(&self) -> (u64, u16, u16) {
        (self.image_id, self.y, self.x)
    }
}

/// A pooled row: its key, its label and where its activation is in the slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    /// Ordering is by `key` alone (it already includes the identity).
    pub key: SampleKey,
    /// The image's label.
    pub label: u32,
    /// Row index in the slab.
    pub slot: u32,
}

/// The bottom-`k` rows of a stream by [`SampleKey`], activations included.
///
/// The slab only ever holds live rows: an evicted row's slot is reused at once by the row
/// that evicted it, so after `n` offers the slab has `min(k, distinct rows)` rows.
#[derive(Debug, Clone)]
pub(super) struct BottomK {
    k: usize,
    d: usize,
    heap: BinaryHeap<Entry>,
    members: HashSet<(u64, u16, u16)>,
    data: Vec<f32>,
    /// Rows offered, duplicates included.
    offered: u64,
}

impl BottomK {
    /// An empty pool keeping at most `k` rows of `d` activations.
    pub fn new(k: usize, d: usize) -> Self {
        BottomK {
            k,
            d,
            heap: BinaryHeap::new(),
            members: HashSet::new(),
            data: Vec::new(),
            offered: 0,
        }
    }

    /// Rows offered so far (the size of the population, duplicates included).
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Offers a row; `fill` writes its `d` activations and is called only if the row is
    /// kept, so rejected rows cost no conversion or copy.
    pub fn offer(&mut self, key: SampleKey, label: u32, fill: impl FnOnce(&mut [f32])) {
        self.offered += 1;
        if self.k == 0 {
            return;
        }
        let full = self.heap.len() >= self.k;
        if full && self.heap.peek().is_some_and(|max| key >= max.key) {
            return;
        }
        // A row offered twice (the same position of the same image in two files) counts
        // once, so duplicated input cannot tilt the sample. Checked after the cheap bound:
        // a duplicate of a row above the bound is rejected above anyway.
        if !self.members.insert(key.identity()) {
            self.offered -= 1;
            return;
        }
        let slot = if full {
            let evicted = self.heap.pop().expect("a full pool has a maximum");
            self.members.remove(&evicted.key.identity());
            evicted.slot
        } else {
            let slot = self.heap.len() as u32;
            self.data.resize(self.data.len() + self.d, 0.0);
            slot
        };
        let start = slot as usize * self.d;
        fill(&mut self.data[start..start + self.d]);
        self.heap.push(Entry { key, label, slot });
    }

    /// Offers every row of `other` (merging two samples of disjoint row sets gives the
    /// sample of their union).
    pub fn merge(&mut self, other: BottomK) {
        let before = self.offered;
        for entry in other.heap.iter() {
            let values = other.values(entry.slot);
            self.offer(entry.key, entry.label, |out| out.copy_from_slice(values));
        }
        // `offer` counted the kept rows of `other`; count its whole population instead.
        self.offered = before + other.offered;
    }

    /// The rows with their activations, sorted by key (a stored sample's order).
    pub fn sorted_rows(&self) -> impl Iterator<Item = (&Entry, &[f32])> {
        let mut entries: Vec<&Entry> = self.heap.iter().collect();
        entries.sort_unstable();
        entries.into_iter().map(move |e| (e, self.values(e.slot)))
    }

    /// The held rows' activations, in no particular order.
    pub fn activations(&self) -> impl Iterator<Item = &[f32]> {
        self.heap.iter().map(move |e| self.values(e.slot))
    }

    /// The activations in `slot` of the slab.
    fn values(&self, slot: u32) -> &[f32] {
        let start = slot as usize * self.d;
        &self.data[start..start + self.d]
    }

    /// Sets the population to what a stored sample recorded (its rows were offered again
    /// to rebuild the pool, which counted only them).
    pub fn restore_offered(&mut self, offered: u64) {
        self.offered = offered;
    }

    /// The rows, sorted by key, and the slab their `slot`s index.
    pub fn into_sorted(self) -> (Vec<Entry>, Vec<f32>) {
        (self.heap.into_sorted_vec(), self.data)
    }
}
