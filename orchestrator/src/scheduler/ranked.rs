//! A sorted list of placeable workers for one order mode, cut into blocks of at most
//! [`BLOCK_CAP`] entries. Each block knows the cheapest ask it holds and bounds the largest VRAM
//! and bandwidth, so a walk for an order skips whole blocks that cannot serve it: a reserved order that
//! bids below most asks, or an order asking for more VRAM than most machines have, no longer
//! steps through every worker ranked ahead of the first one that fits.
//!
//! Costs for n entries: insert and remove O(log n + BLOCK_CAP) (a binary search over blocks, one
//! inside the block, a short shift); a walk costs one summary check per block it skips plus the
//! entries it reads. Positions ([`Pos`]) stay valid while the list is not changed, which is the
//! case during one placement search.

use super::score::Rank;
use super::types::{Order, OrderMode, WorkerId};

/// Most entries a block holds; a full block splits in two halves.
pub(crate) const BLOCK_CAP: usize = 64;
/// A block this small merges into a neighbour when the two fit in three quarters of a block.
const MERGE_BELOW: usize = BLOCK_CAP / 4;

/// A placeable worker as the walk needs it: 32 bytes, so a full block is 2 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub price: u64,
    pub id: WorkerId,
    pub slot: u32,
    pub vram_mib: u32,
    pub bandwidth_gbps: u32,
    pub latency_band: u32,
    /// `u16::MAX - reliability tier`, so lower is better like every other rank field.
    pub unreliability: u16,
}

impl Entry {
    /// The worker's rank for `mode` (the same as [`super::score::rank`]).
    pub fn rank(&self, mode: OrderMode) -> Rank {
        let (price, band, unreliability) = (
            self.price,
            u64::from(self.latency_band),
            u64::from(self.unreliability),
        );
        match mode {
            OrderMode::Spot => Rank(price, band, unreliability),
            OrderMode::Reserved => Rank(unreliability, band, price),
        }
    }

    fn key(&self, mode: OrderMode) -> Key {
        (self.rank(mode), self.id)
    }

    /// The hard constraints the entry itself can check (class, region, status and free GPUs
    /// are settled by the list it is in).
    pub fn serves(&self, order: &Order) -> bool {
        self.vram_mib >= order.min_vram_mib
            && self.bandwidth_gbps >= order.min_bandwidth_gbps
            && self.price <= order.max_price
    }
}

#[derive(Clone, Debug)]
struct Block {
    entries: Vec<Entry>,
    min_price: u64,
    max_vram_mib: u32,
    max_bandwidth_gbps: u32,
}

impl Block {
    fn new(entries: Vec<Entry>) -> Self {
        let mut b = Block {
            entries,
            min_price: u64::MAX,
            max_vram_mib: 0,
            max_bandwidth_gbps: 0,
        };
        b.summarize();
        b
    }

    fn summarize(&mut self) {
        self.min_price = self
            .entries
            .iter()
            .map(|e| e.price)
            .min()
            .unwrap_or(u64::MAX);
        self.max_vram_mib = self.entries.iter().map(|e| e.vram_mib).max().unwrap_or(0);
        self.max_bandwidth_gbps = self
            .entries
            .iter()
            .map(|e| e.bandwidth_gbps)
            .max()
            .unwrap_or(0);
    }

    fn include(&mut self, e: &Entry) {
        self.min_price = self.min_price.min(e.price);
        self.max_vram_mib = self.max_vram_mib.max(e.vram_mib);
        self.max_bandwidth_gbps = self.max_bandwidth_gbps.max(e.bandwidth_gbps);
    }

    /// Whether some entry of the block might serve `order` (a necessary condition only).
    fn may_serve(&self, order: &Order) -> bool {
        self.min_price <= order.max_price
            && self.max_vram_mib >= order.min_vram_mib
            && self.max_bandwidth_gbps >= order.min_bandwidth_gbps
    }
}

/// Where a walk stands: block `block`, entry `entry` inside it (which may be one past its end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    block: u32,
    entry: u32,
}

type Key = (Rank, WorkerId);

/// Where `key` is in a sorted block, for removal: a forward scan rather than a binary search,
/// because at fleet scale the block of a worker being taken is usually not in cache, and
/// independent sequential loads overlap where a binary search waits for one miss after another.
/// (Inserting keeps the binary search: it runs far more often while the index is built, and
/// there the fewer instructions win.)
fn position_in(entries: &[Entry], mode: OrderMode, key: &Key) -> usize {
    entries
        .iter()
        .position(|x| x.key(mode) >= *key)
        .unwrap_or(entries.len())
}

/// Entries sorted by (rank for `mode`, worker id), ascending.
#[derive(Clone, Debug)]
pub(crate) struct RankList {
    mode: OrderMode,
    blocks: Vec<Block>,
    /// The key of each block's last entry, kept apart so finding a block is a binary search
    /// over one small contiguous array rather than a pointer chase into every block.
    bounds: Vec<Key>,
    len: usize,
}

impl RankList {
    pub fn new(mode: OrderMode) -> Self {
        RankList {
            mode,
            blocks: Vec::new(),
            bounds: Vec::new(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first(&self) -> Option<&Entry> {
        self.blocks.first().and_then(|b| b.entries.first())
    }

    /// The cheapest ask in the list.
    #[cfg(test)]
    pub fn min_price(&self) -> Option<u64> {
        self.blocks.iter().map(|b| b.min_price).min()
    }

    /// The block that holds `key` or would hold it.
    fn block_for(&self, key: &Key) -> usize {
        let after = self.bounds.partition_point(|last| last < key);
        after.min(self.blocks.len().saturating_sub(1))
    }

    fn bound(&self, b: usize) -> Option<Key> {
        self.blocks[b].entries.last().map(|e| e.key(self.mode))
    }

    pub fn insert(&mut self, e: Entry) {
        let key = e.key(self.mode);
        if self.blocks.is_empty() {
            self.blocks.push(Block::new(vec![e]));
            self.bounds.push(key);
            self.len = 1;
            return;
        }
        let b = self.block_for(&key);
        let mode = self.mode;
        let block = &mut self.blocks[b];
        let at = block.entries.partition_point(|x| x.key(mode) < key);
        if block.entries.get(at).is_some_and(|x| x.key(mode) == key) {
            // Already present (same worker, same rank): nothing to add.
            return;
        }
        block.entries.insert(at, e);
        block.include(&e);
        self.len += 1;
        if block.entries.len() > BLOCK_CAP {
            let upper = block.entries.split_off(block.entries.len() / 2);
            block.summarize();
            self.blocks.insert(b + 1, Block::new(upper));
            self.bounds.insert(b + 1, key);
            self.refresh_bound(b + 1);
        }
        self.refresh_bound(b);
    }

    fn refresh_bound(&mut self, b: usize) {
        if let Some(key) = self.bound(b) {
            self.bounds[b] = key;
        }
    }

    /// Adds `entries`: an empty list is built in one sort, cut into blocks three quarters full
    /// (room to grow before the first split); otherwise they are inserted one by one.
    pub fn extend(&mut self, entries: &[Entry]) {
        if !self.blocks.is_empty() {
            for e in entries {
                self.insert(*e);
            }
            return;
        }
        let mode = self.mode;
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|e| e.key(mode));
        sorted.dedup_by_key(|e| e.key(mode));
        for chunk in sorted.chunks(BLOCK_CAP * 3 / 4) {
            let block = Block::new(chunk.to_vec());
            if let Some(last) = chunk.last() {
                self.bounds.push(last.key(mode));
            }
            self.blocks.push(block);
        }
        self.len = sorted.len();
    }

    /// Removes the entry equal to `e` (same rank and id); `false` if it was not there.
    pub fn remove(&mut self, e: &Entry) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let key = e.key(self.mode);
        let b = self.block_for(&key);
        let mode = self.mode;
        let block = &mut self.blocks[b];
        let at = position_in(&block.entries, mode, &key);
        if block.entries.get(at).is_none_or(|x| x.key(mode) != key) {
            return false;
        }
        let gone = block.entries.remove(at);
        self.len -= 1;
        if block.entries.is_empty() {
            self.blocks.remove(b);
            self.bounds.remove(b);
            return true;
        }
        // The cheapest ask is kept exact (reserved orders skip blocks by it); the largest VRAM
        // and bandwidth may stay above what is left until the block is next rebuilt, which
        // only makes a walk look inside a block it could have skipped.
        if gone.price == block.min_price {
            block.min_price = match mode {
                OrderMode::Spot => block.entries.first().map_or(u64::MAX, |e| e.price),
                OrderMode::Reserved => block
                    .entries
                    .iter()
                    .map(|e| e.price)
                    .min()
                    .unwrap_or(u64::MAX),
            };
        }
        self.refresh_bound(b);
        if self.blocks[b].entries.len() < MERGE_BELOW {
            self.merge_small(b);
        }
        true
    }

    /// Merges block `b` into a neighbour when the two fit in three quarters of a block, so a
    /// list that shrank does not stay cut into many tiny blocks.
    fn merge_small(&mut self, b: usize) {
        let fits =
            |other: &Block| other.entries.len() + self.blocks[b].entries.len() <= BLOCK_CAP * 3 / 4;
        let (left, right) = if b + 1 < self.blocks.len() && fits(&self.blocks[b + 1]) {
            (b, b + 1)
        } else if b > 0 && fits(&self.blocks[b - 1]) {
            (b - 1, b)
        } else {
            return;
        };
        let moved = self.blocks.remove(right);
        self.bounds.remove(right);
        let keep = &mut self.blocks[left];
        keep.entries.extend(moved.entries);
        keep.summarize();
        self.refresh_bound(left);
    }

    /// The first entry at or after `from` that serves `order` and whose slot is not in
    /// `exclude`, with the position just after it. Blocks that cannot serve the order are
    /// skipped whole; a spot list (sorted by ask) stops at the first ask above the order's max.
    pub fn first_serving(&self, from: Pos, order: &Order, exclude: &[u32]) -> Option<(Entry, Pos)> {
        let spot = self.mode == OrderMode::Spot;
        let mut start = from.entry as usize;
        for (b, block) in self.blocks.iter().enumerate().skip(from.block as usize) {
            let skip_from = std::mem::replace(&mut start, 0);
            if spot
                && block
                    .entries
                    .first()
                    .is_some_and(|e| e.price > order.max_price)
            {
                return None;
            }
            if !block.may_serve(order) {
                continue;
            }
            for (i, e) in block.entries.iter().enumerate().skip(skip_from) {
                if spot && e.price > order.max_price {
                    return None;
                }
                if e.serves(order) && !exclude.contains(&e.slot) {
                    let next = Pos {
                        block: b as u32,
                        entry: (i + 1) as u32,
                    };
                    return Some((*e, next));
                }
            }
        }
        None
    }

    /// Entries in order (tests and checks).
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.blocks.iter().flat_map(|b| b.entries.iter())
    }

    /// Every block within its size bounds, its cheapest ask exact and its VRAM and bandwidth
    /// maxima at least those of its entries, entries strictly ascending.
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        let mut prev: Option<Key> = None;
        let mut count = 0;
        if self.bounds.len() != self.blocks.len() {
            return Err("one bound per block".into());
        }
        for (block, bound) in self.blocks.iter().zip(&self.bounds) {
            if block.entries.last().map(|e| e.key(self.mode)) != Some(*bound) {
                return Err("stale block bound".into());
            }
            if block.entries.is_empty() || block.entries.len() > BLOCK_CAP {
                return Err(format!("block of {} entries", block.entries.len()));
            }
            let mut exact = block.clone();
            exact.summarize();
            if exact.min_price != block.min_price
                || exact.max_vram_mib > block.max_vram_mib
                || exact.max_bandwidth_gbps > block.max_bandwidth_gbps
            {
                return Err("block summary does not bound its entries".into());
            }
            for e in &block.entries {
                let key = e.key(self.mode);
                if prev.is_some_and(|p| p >= key) {
                    return Err("entries out of order".into());
                }
                prev = Some(key);
                count += 1;
            }
        }
        if count != self.len {
            return Err(format!("len {} but {count} entries", self.len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::{GpuClass, OrderId, RegionSet};
    use proptest::prelude::*;

    fn entry(id: u32, price: u64, vram: u32, band: u32, unreliability: u16) -> Entry {
        Entry {
            price,
            id: WorkerId(id),
            slot: id,
            vram_mib: vram,
            bandwidth_gbps: 1_000,
            latency_band: band,
            unreliability,
        }
    }

    fn order(mode: OrderMode, max_price: u64, min_vram: u32) -> Order {
        Order {
            id: OrderId(1),
            class: GpuClass::from_code(0).expect("class 0"),
            gpus: 1,
            min_vram_mib: min_vram,
            min_bandwidth_gbps: 0,
            regions: RegionSet::ALL,
            max_price,
            mode,
            arrived_at: 0,
        }
    }

    proptest! {
        /// Random inserts and removes keep the list sorted with exact summaries, and a walk
        /// finds exactly what a walk over a sorted copy finds.
        #[test]
        fn matches_a_sorted_vector(
            ops in prop::collection::vec((any::<bool>(), 0u32..600, 1u64..50, 0u8..3, 0u32..4, 0u16..4), 0..1500),
            spot in any::<bool>(),
            max_price in 1u64..50,
            min_vram in 0u32..3,
        ) {
            let mode = if spot { OrderMode::Spot } else { OrderMode::Reserved };
            let mut list = RankList::new(mode);
            let mut reference: Vec<Entry> = Vec::new();
            let mut current: std::collections::BTreeMap<u32, Entry> = Default::default();
            for (add, id, price, vram, band, unrel) in ops {
                if add && !current.contains_key(&id) {
                    let e = entry(id, price, u32::from(vram), band, unrel);
                    list.insert(e);
                    current.insert(id, e);
                } else if let Some(e) = current.remove(&id) {
                    prop_assert!(list.remove(&e));
                }
            }
            reference.extend(current.values().copied());
            reference.sort_by_key(|e| e.key(mode));
            prop_assert_eq!(list.check(), Ok(()));
            prop_assert_eq!(list.iter().copied().collect::<Vec<_>>(), reference.clone());
            // Built in one go, and extended when not empty, the list holds the same.
            let all: Vec<Entry> = current.values().copied().collect();
            let mut bulk = RankList::new(mode);
            bulk.extend(&all);
            prop_assert_eq!(bulk.check(), Ok(()));
            prop_assert_eq!(bulk.iter().copied().collect::<Vec<_>>(), reference.clone());
            let (first, rest) = all.split_at(all.len() / 2);
            let mut halves = RankList::new(mode);
            halves.extend(first);
            halves.extend(rest);
            prop_assert_eq!(halves.check(), Ok(()));
            prop_assert_eq!(halves.iter().copied().collect::<Vec<_>>(), reference.clone());
            prop_assert_eq!(list.min_price(), reference.iter().map(|e| e.price).min());

            // Walk everything that serves the order, resuming after each find.
            let o = order(mode, max_price, min_vram);
            let mut found = Vec::new();
            let mut pos = Pos::default();
            while let Some((e, next)) = list.first_serving(pos, &o, &[]) {
                found.push(e);
                pos = next;
            }
            let mut want: Vec<Entry> = Vec::new();
            for e in &reference {
                if mode == OrderMode::Spot && e.price > o.max_price {
                    break;
                }
                if e.serves(&o) {
                    want.push(*e);
                }
            }
            prop_assert_eq!(found, want);
        }
    }

    #[test]
    fn removing_an_absent_entry_changes_nothing() {
        let mut list = RankList::new(OrderMode::Spot);
        assert!(!list.remove(&entry(1, 5, 0, 0, 0)));
        list.insert(entry(1, 5, 0, 0, 0));
        list.insert(entry(1, 5, 0, 0, 0));
        assert_eq!(list.len(), 1);
        assert!(!list.remove(&entry(1, 6, 0, 0, 0)));
        assert!(list.remove(&entry(1, 5, 0, 0, 0)));
        assert!(list.is_empty());
    }
}
