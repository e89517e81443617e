//! The placement index: workers bucketed by (GPU class, region), and inside a bucket grouped by
//! free GPUs and kept sorted by rank, so a placement only walks the buckets an order can use and,
//! in each, only the front of a few sorted sets — never the whole fleet.
//!
//! Layout: `buckets[class · 64 + region]` holds
//! - `members`: every worker of that class and region, whatever its status (for explanations);
//! - `groups`: free-GPU count → the placeable workers (idle or busy, with free GPUs) that have
//!   exactly that many free, twice: sorted by spot rank and by reserved rank.
//!
//! `class_regions[class]` is a bitmask of regions whose bucket has a placeable worker, so an
//! order visits `popcount(order regions & class_regions)` buckets.
//!
//! Costs (n workers, g free-count groups per bucket, typically ≤ 8): a worker change is
//! O(log n); a placement of k machines is O(regions · k · g · log n) plus the entries it skips
//! for failing VRAM, bandwidth or (reserved orders) price.

use std::collections::{BTreeMap, BTreeSet};

use std::ops::Bound;

use super::score::{ClusterScore, Pick, Rank, SchedulerConfig, cluster_score, rank};
use super::types::{GPU_CLASSES, Order, OrderMode, REGIONS, Region, RegionSet, Worker, WorkerId};

/// A placeable worker's entry in a group. Ordered by rank then id; the rest rides along so the
/// walk checks the hard constraints without touching the worker table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    rank: Rank,
    id: WorkerId,
    slot: u32,
    price: u64,
    vram_mib: u32,
    bandwidth_gbps: u32,
    latency_band: u64,
    unreliability: u64,
}

#[derive(Clone, Default)]
struct Group {
    spot: BTreeSet<Entry>,
    reserved: BTreeSet<Entry>,
}

#[derive(Clone, Default)]
pub(crate) struct Bucket {
    pub members: Vec<Member>,
    groups: BTreeMap<u16, Group>,
}

/// What explanations check about a worker, kept contiguous per bucket so that explaining an
/// order is a sequential scan of small records rather than a walk over the worker table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub slot: u32,
    pub placeable_status: bool,
    pub free: u16,
    pub vram_mib: u32,
    pub bandwidth_gbps: u32,
    pub price: u64,
}

impl Member {
    fn of(w: &Worker, slot: u32) -> Self {
        Self {
            slot,
            placeable_status: w.spec.status.is_placeable(),
            free: w.gpus_free,
            vram_mib: w.spec.vram_mib,
            bandwidth_gbps: w.spec.bandwidth_gbps,
            price: w.spec.price,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Index {
    buckets: Vec<Bucket>,
    /// Position of each slot in its bucket's `members`.
    member_at: Vec<u32>,
    class_regions: [u64; GPU_CLASSES],
    pub class_workers: [u32; GPU_CLASSES],
    pub total_workers: u32,
}

/// A chosen cluster: its region and picks, in the order they were chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub region: Region,
    pub picks: Vec<Pick>,
    pub score: ClusterScore,
}

fn bucket_of(w: &Worker) -> usize {
    usize::from(w.spec.class.code()) * REGIONS + usize::from(w.spec.region.code())
}

fn entry(cfg: &SchedulerConfig, mode: OrderMode, w: &Worker, slot: u32) -> Entry {
    Entry {
        rank: rank(cfg, mode, &w.spec),
        id: w.spec.id,
        slot,
        price: w.spec.price,
        vram_mib: w.spec.vram_mib,
        bandwidth_gbps: w.spec.bandwidth_gbps,
        latency_band: cfg.latency_band(w.spec.latency_us),
        unreliability: cfg.unreliability(w.spec.reliability_bp),
    }
}

pub(crate) fn is_placeable(w: &Worker) -> bool {
    w.spec.status.is_placeable() && w.gpus_free > 0
}

/// Where a group's walk stands during one placement: everything at or before `At(entry)` is
/// already picked or fails the order, and `Exhausted` means nothing usable is left.
#[derive(Clone, Copy)]
enum Cursor {
    At(Entry),
    Exhausted,
}

impl Index {
    pub fn new() -> Self {
        Self {
            buckets: (0..GPU_CLASSES * REGIONS)
                .map(|_| Bucket::default())
                .collect(),
            member_at: Vec::new(),
            class_regions: [0; GPU_CLASSES],
            class_workers: [0; GPU_CLASSES],
            total_workers: 0,
        }
    }

    pub fn bucket(&self, class: usize, region: usize) -> &Bucket {
        &self.buckets[class * REGIONS + region]
    }

    pub fn add_member(&mut self, w: &Worker, slot: u32) {
        let members = &mut self.buckets[bucket_of(w)].members;
        let at = slot as usize;
        if self.member_at.len() <= at {
            self.member_at.resize(at + 1, u32::MAX);
        }
        self.member_at[at] = members.len() as u32;
        members.push(Member::of(w, slot));
        self.class_workers[usize::from(w.spec.class.code())] += 1;
        self.total_workers += 1;
    }

    pub fn remove_member(&mut self, w: &Worker, slot: u32) {
        let members = &mut self.buckets[bucket_of(w)].members;
        if let Some(&at) = self.member_at.get(slot as usize)
            && (at as usize) < members.len()
        {
            members.swap_remove(at as usize);
            if let Some(moved) = members.get(at as usize) {
                self.member_at[moved.slot as usize] = at;
            }
            self.member_at[slot as usize] = u32::MAX;
        }
        self.class_workers[usize::from(w.spec.class.code())] -= 1;
        self.total_workers -= 1;
    }

    /// Adds the worker to its group if it can take work; call after every change to it.
    pub fn insert(&mut self, cfg: &SchedulerConfig, w: &Worker, slot: u32) {
        let bucket = &mut self.buckets[bucket_of(w)];
        if let Some(&at) = self.member_at.get(slot as usize)
            && let Some(m) = bucket.members.get_mut(at as usize)
        {
            *m = Member::of(w, slot);
        }
        if !is_placeable(w) {
            return;
        }
        let bucket = &mut self.buckets[bucket_of(w)];
        let group = bucket.groups.entry(w.gpus_free).or_default();
        group.spot.insert(entry(cfg, OrderMode::Spot, w, slot));
        group
            .reserved
            .insert(entry(cfg, OrderMode::Reserved, w, slot));
        self.class_regions[usize::from(w.spec.class.code())] |= 1u64 << w.spec.region.code();
    }

    /// Takes the worker out of its group; call before every change to it, with its old state.
    pub fn remove(&mut self, cfg: &SchedulerConfig, w: &Worker, slot: u32) {
        if !is_placeable(w) {
            return;
        }
        let bucket = &mut self.buckets[bucket_of(w)];
        if let Some(group) = bucket.groups.get_mut(&w.gpus_free) {
            group.spot.remove(&entry(cfg, OrderMode::Spot, w, slot));
            group
                .reserved
                .remove(&entry(cfg, OrderMode::Reserved, w, slot));
            if group.spot.is_empty() {
                bucket.groups.remove(&w.gpus_free);
            }
        }
        if bucket.groups.is_empty() {
            self.class_regions[usize::from(w.spec.class.code())] &= !(1u64 << w.spec.region.code());
        }
    }

    /// The best cluster for `gpus` GPUs of `order` in any of `regions`, not using `exclude`.
    pub fn best_cluster(
        &self,
        order: &Order,
        gpus: u32,
        regions: RegionSet,
        exclude: &[u32],
    ) -> Option<Cluster> {
        let class = usize::from(order.class.code());
        let candidates = RegionSet(self.class_regions[class] & regions.0);
        let mut best: Option<Cluster> = None;
        for region in candidates.iter() {
            let bucket = self.bucket(class, usize::from(region.code()));
            let Some(picks) = cluster_in(bucket, order, gpus, exclude) else {
                continue;
            };
            let score = cluster_score(order.mode, region.code(), &picks);
            if best.as_ref().is_none_or(|b| score < b.score) {
                best = Some(Cluster {
                    region,
                    picks,
                    score,
                });
            }
        }
        best
    }
}

fn usable(e: &Entry, order: &Order, exclude: &[u32]) -> bool {
    e.vram_mib >= order.min_vram_mib
        && e.bandwidth_gbps >= order.min_bandwidth_gbps
        && e.price <= order.max_price
        && !exclude.contains(&e.slot)
}

/// First usable entry of a group after its cursor, in rank order.
fn first_usable(
    group: &Group,
    cursor: Option<Cursor>,
    order: &Order,
    exclude: &[u32],
) -> Option<Entry> {
    // The spot set starts with the group's cheapest ask: if even that is too dear, a reserved
    // order need not walk its reliability-sorted set at all.
    if group.spot.first().is_none_or(|e| e.price > order.max_price) {
        return None;
    }
    let set = match order.mode {
        OrderMode::Spot => &group.spot,
        OrderMode::Reserved => &group.reserved,
    };
    let walk = match cursor {
        None => set.range::<Entry, _>(..),
        Some(Cursor::At(e)) => set.range((Bound::Excluded(e), Bound::Unbounded)),
        Some(Cursor::Exhausted) => return None,
    };
    for e in walk {
        // Spot groups are sorted by price, so nothing further on is affordable.
        if order.mode == OrderMode::Spot && e.price > order.max_price {
            return None;
        }
        if usable(e, order, exclude) {
            return Some(*e);
        }
    }
    None
}

fn pick(e: &Entry, gpus: u16, free: u16) -> Pick {
    Pick {
        slot: e.slot,
        gpus,
        free,
        price: e.price,
        latency_band: e.latency_band,
        unreliability: e.unreliability,
    }
}

/// Builds the cluster for one region with the fewest machines: while no single machine can
/// hold the rest, take the best-ranked machine among those with the most free GPUs; then take,
/// for the rest, the best machine by (rank, GPUs it would leave stranded, id) — best fit.
fn cluster_in(bucket: &Bucket, order: &Order, gpus: u32, exclude: &[u32]) -> Option<Vec<Pick>> {
    let mut picks = Vec::new();
    let mut cursors: Vec<(u16, Cursor)> = Vec::new();
    let cursor_of =
        |cursors: &[(u16, Cursor)], f: u16| cursors.iter().find(|(g, _)| *g == f).map(|(_, c)| *c);
    let mut rest = gpus;
    loop {
        // One machine that holds the rest: best by (rank, stranded GPUs, id).
        if let Ok(need) = u16::try_from(rest) {
            let mut best: Option<((Rank, u16, WorkerId), Entry, u16)> = None;
            for (&free, group) in bucket.groups.range(need..) {
                if let Some(e) = first_usable(group, cursor_of(&cursors, free), order, exclude) {
                    let key = (e.rank, free - need, e.id);
                    if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                        best = Some((key, e, free));
                    }
                }
            }
            if let Some((_, e, free)) = best {
                picks.push(pick(&e, need, free));
                return Some(picks);
            }
        }
        // Otherwise the whole of the best machine among the largest that are left.
        let upper = u16::try_from(rest).map_or(Bound::Unbounded, Bound::Excluded);
        let mut took = false;
        for (&free, group) in bucket.groups.range((Bound::Unbounded, upper)).rev() {
            let found = first_usable(group, cursor_of(&cursors, free), order, exclude);
            let next = found.map_or(Cursor::Exhausted, Cursor::At);
            match cursors.iter_mut().find(|(g, _)| *g == free) {
                Some(c) => c.1 = next,
                None => cursors.push((free, next)),
            }
            if let Some(e) = found {
                picks.push(pick(&e, free, free));
                rest -= u32::from(free);
                took = true;
                break;
            }
        }
        if !took {
            return None;
        }
    }
}
