//! The placement index: workers bucketed by (GPU class, region), and inside a bucket grouped by
//! free GPUs and kept sorted by rank, so a placement only walks the buckets an order can use and,
//! in each, only the front of a few sorted lists — never the whole fleet.
//!
//! Layout: `buckets[class · 64 + region]` holds
//! - `members`: every worker of that class and region, whatever its status, as parallel columns
//!   (for explanations: a branch-free pass over contiguous memory);
//! - `groups`: free-GPU count → the placeable workers (idle or busy, with free GPUs) that have
//!   exactly that many free, twice: sorted by spot rank and by reserved rank, each list in
//!   blocks that summarize their cheapest ask and largest VRAM and bandwidth (`ranked`).
//!
//! `class_regions[class]` is a bitmask of regions whose bucket has a placeable worker, so an
//! order visits `popcount(order regions & class_regions)` buckets, cheapest lower bound first,
//! and skips a region whose lower bound already loses to the best cluster found.
//!
//! Costs (n workers, g free-count groups per bucket, typically ≤ 8, blocks of B = 128): a worker
//! change is O(log n + B); a placement of k machines is O(regions · k · g) list steps plus one
//! summary check per block skipped and the entries it reads that fail VRAM, bandwidth or
//! (reserved orders) price.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::ranked::{Entry, Pos, RankList};
use super::score::{ClusterScore, Pick, Rank, SchedulerConfig, cluster_score};
use super::types::{GPU_CLASSES, Order, OrderMode, REGIONS, Region, RegionSet, Worker, WorkerId};

#[derive(Clone)]
struct Group {
    spot: RankList,
    reserved: RankList,
}

impl Group {
    fn new() -> Self {
        Group {
            spot: RankList::new(OrderMode::Spot),
            reserved: RankList::new(OrderMode::Reserved),
        }
    }
}

#[derive(Clone, Default)]
pub(crate) struct Bucket {
    pub members: Members,
    groups: BTreeMap<u16, Group>,
}

/// Every worker of one class and region, whatever its status, as parallel columns: what an
/// explanation checks, so that explaining an order is a branch-free pass over contiguous
/// memory rather than a walk over the worker table.
#[derive(Clone, Default)]
pub(crate) struct Members {
    pub slot: Vec<u32>,
    pub price: Vec<u64>,
    pub vram_mib: Vec<u32>,
    pub bandwidth_gbps: Vec<u32>,
    pub free: Vec<u16>,
    /// 1 when the status takes work (idle or busy), 0 when draining, offline or jailed.
    pub takes_work: Vec<u8>,
    /// How many members take no work.
    pub blocked: u32,
}

/// What the member columns hold for one worker, taken before a change so that only the columns
/// that changed are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemberState {
    price: u64,
    vram_mib: u32,
    bandwidth_gbps: u32,
    free: u16,
    takes_work: bool,
}

impl MemberState {
    pub fn of(w: &Worker) -> Self {
        MemberState {
            price: w.spec.price,
            vram_mib: w.spec.vram_mib,
            bandwidth_gbps: w.spec.bandwidth_gbps,
            free: w.gpus_free,
            takes_work: w.spec.status.is_placeable(),
        }
    }
}

impl Members {
    pub fn len(&self) -> usize {
        self.slot.len()
    }

    fn push(&mut self, w: &Worker, slot: u32) {
        let takes_work = w.spec.status.is_placeable();
        self.slot.push(slot);
        self.price.push(w.spec.price);
        self.vram_mib.push(w.spec.vram_mib);
        self.bandwidth_gbps.push(w.spec.bandwidth_gbps);
        self.free.push(w.gpus_free);
        self.takes_work.push(u8::from(takes_work));
        self.blocked += u32::from(!takes_work);
    }

    /// Rewrites the columns of member `at` that differ between `before` and the worker's
    /// current state: a placement changes one column, and each column is its own cache line.
    fn update(&mut self, at: usize, before: &MemberState, w: &Worker) {
        let now = MemberState::of(w);
        if now.takes_work != before.takes_work {
            self.blocked =
                self.blocked - u32::from(!before.takes_work) + u32::from(!now.takes_work);
            self.takes_work[at] = u8::from(now.takes_work);
        }
        if now.free != before.free {
            self.free[at] = now.free;
        }
        if now.price != before.price {
            self.price[at] = now.price;
        }
        if now.vram_mib != before.vram_mib {
            self.vram_mib[at] = now.vram_mib;
        }
        if now.bandwidth_gbps != before.bandwidth_gbps {
            self.bandwidth_gbps[at] = now.bandwidth_gbps;
        }
    }

    /// Removes member `at` by moving the last one into its place; returns the moved slot.
    fn swap_remove(&mut self, at: usize) -> Option<u32> {
        self.blocked -= u32::from(self.takes_work[at] == 0);
        self.slot.swap_remove(at);
        self.price.swap_remove(at);
        self.vram_mib.swap_remove(at);
        self.bandwidth_gbps.swap_remove(at);
        self.free.swap_remove(at);
        self.takes_work.swap_remove(at);
        self.slot.get(at).copied()
    }
}

#[derive(Clone)]
pub(crate) struct Index {
    buckets: Vec<Bucket>,
    /// Position of each slot in its bucket's `members`.
    member_at: Vec<u32>,
    class_regions: [u64; GPU_CLASSES],
    /// Per class, a bitmask of regions whose bucket has any member.
    pub class_member_regions: [u64; GPU_CLASSES],
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

fn entry(cfg: &SchedulerConfig, w: &Worker, slot: u32) -> Entry {
    Entry {
        price: w.spec.price,
        id: w.spec.id,
        slot,
        vram_mib: w.spec.vram_mib,
        bandwidth_gbps: w.spec.bandwidth_gbps,
        // A band is a latency (u32) divided by at least one, and a tier is at most u16::MAX.
        latency_band: u32::try_from(cfg.latency_band(w.spec.latency_us)).unwrap_or(u32::MAX),
        unreliability: u16::try_from(cfg.unreliability(w.spec.reliability_bp)).unwrap_or(u16::MAX),
    }
}

pub(crate) fn is_placeable(w: &Worker) -> bool {
    w.spec.status.is_placeable() && w.gpus_free > 0
}

/// Where a group's walk stands during one placement: entries before `At(pos)` are already
/// picked or fail the order, and `Exhausted` means nothing usable is left.
#[derive(Clone, Copy)]
enum Cursor {
    At(Pos),
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
            class_member_regions: [0; GPU_CLASSES],
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
        members.push(w, slot);
        let class = usize::from(w.spec.class.code());
        self.class_member_regions[class] |= 1u64 << w.spec.region.code();
        self.class_workers[class] += 1;
        self.total_workers += 1;
    }

    pub fn remove_member(&mut self, w: &Worker, slot: u32) {
        let members = &mut self.buckets[bucket_of(w)].members;
        if let Some(&at) = self.member_at.get(slot as usize)
            && (at as usize) < members.len()
        {
            if let Some(moved) = members.swap_remove(at as usize) {
                self.member_at[moved as usize] = at;
            }
            self.member_at[slot as usize] = u32::MAX;
        }
        let class = usize::from(w.spec.class.code());
        if members.len() == 0 {
            self.class_member_regions[class] &= !(1u64 << w.spec.region.code());
        }
        self.class_workers[class] -= 1;
        self.total_workers -= 1;
    }

    /// Brings the worker's member record up to date after a change; `before` is its state
    /// taken before the change.
    pub fn update_member(&mut self, before: &MemberState, w: &Worker, slot: u32) {
        let members = &mut self.buckets[bucket_of(w)].members;
        if let Some(&at) = self.member_at.get(slot as usize)
            && (at as usize) < members.len()
        {
            members.update(at as usize, before, w);
        }
    }

    /// Adds the worker to its group if it can take work; call after every change to it.
    pub fn insert(&mut self, cfg: &SchedulerConfig, w: &Worker, slot: u32) {
        let bucket = &mut self.buckets[bucket_of(w)];
        if !is_placeable(w) {
            return;
        }
        let e = entry(cfg, w, slot);
        let group = bucket.groups.entry(w.gpus_free).or_insert_with(Group::new);
        group.spot.insert(e);
        group.reserved.insert(e);
        self.class_regions[usize::from(w.spec.class.code())] |= 1u64 << w.spec.region.code();
    }

    /// [`Index::insert`] for many workers at once: entries are grouped by list and each list
    /// is built by one sort when it is empty (else they are inserted one by one).
    pub fn insert_many<'a>(
        &mut self,
        cfg: &SchedulerConfig,
        workers: impl Iterator<Item = (&'a Worker, u32)>,
    ) {
        let mut joined: Vec<(usize, u16, Entry)> = workers
            .filter(|(w, _)| is_placeable(w))
            .map(|(w, slot)| (bucket_of(w), w.gpus_free, entry(cfg, w, slot)))
            .collect();
        joined.sort_unstable_by_key(|(bucket, free, e)| (*bucket, *free, e.id));
        let mut entries = Vec::new();
        for run in joined.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (b, free, _) = run[0];
            entries.clear();
            entries.extend(run.iter().map(|(_, _, e)| *e));
            let group = self.buckets[b]
                .groups
                .entry(free)
                .or_insert_with(Group::new);
            group.spot.extend(&entries);
            group.reserved.extend(&entries);
            self.class_regions[b / REGIONS] |= 1u64 << (b % REGIONS);
        }
    }

    /// Takes the worker out of its group; call before every change to it, with its old state.
    pub fn remove(&mut self, cfg: &SchedulerConfig, w: &Worker, slot: u32) {
        if !is_placeable(w) {
            return;
        }
        let bucket = &mut self.buckets[bucket_of(w)];
        if let Some(group) = bucket.groups.get_mut(&w.gpus_free) {
            let e = entry(cfg, w, slot);
            group.spot.remove(&e);
            group.reserved.remove(&e);
            if group.spot.is_empty() {
                bucket.groups.remove(&w.gpus_free);
            }
        }
        if bucket.groups.is_empty() {
            self.class_regions[usize::from(w.spec.class.code())] &= !(1u64 << w.spec.region.code());
        }
    }

    /// The best cluster for `gpus` GPUs of `order` in any of `regions`, not using `exclude`.
    ///
    /// Regions are tried cheapest lower bound first (spot: lowest ask × GPUs; reserved: best
    /// reliability tier), and a region whose bound is already worse than the best cluster's
    /// first score key is skipped: it cannot win, so the result is the same as trying all.
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
        let try_region = |region: Region, best: &mut Option<Cluster>| {
            let bucket = self.bucket(class, usize::from(region.code()));
            let Some(picks) = cluster_in(bucket, order, gpus, exclude) else {
                return;
            };
            let score = cluster_score(order.mode, region.code(), &picks);
            if best.as_ref().is_none_or(|b| score < b.score) {
                *best = Some(Cluster {
                    region,
                    picks,
                    score,
                });
            }
        };
        if candidates.0.count_ones() <= 1 {
            for region in candidates.iter() {
                try_region(region, &mut best);
            }
            return best;
        }
        let mut bounded: Vec<(u128, Region)> = candidates
            .iter()
            .map(|region| {
                let bucket = self.bucket(class, usize::from(region.code()));
                (lower_bound(bucket, order.mode, gpus), region)
            })
            .collect();
        bounded.sort_unstable();
        for (bound, region) in bounded {
            if best.as_ref().is_some_and(|b| bound > b.score.first()) {
                break;
            }
            try_region(region, &mut best);
        }
        best
    }

    /// Every bucket's lists in order with exact block summaries (tests).
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        for bucket in &self.buckets {
            for group in bucket.groups.values() {
                group.spot.check()?;
                group.reserved.check()?;
                if group.spot.len() != group.reserved.len() {
                    return Err("spot and reserved lists differ in length".into());
                }
            }
        }
        Ok(())
    }
}

/// A lower bound on the first key of the cluster score any cluster in `bucket` can reach: for
/// spot orders the total cost (no ask in the bucket is below the cheapest), for reserved orders
/// the worst reliability tier (none is better than the best).
fn lower_bound(bucket: &Bucket, mode: OrderMode, gpus: u32) -> u128 {
    let groups = bucket.groups.values();
    match mode {
        OrderMode::Spot => groups
            .filter_map(|g| g.spot.first())
            .map(|e| u128::from(e.price) * u128::from(gpus))
            .min(),
        OrderMode::Reserved => groups
            .filter_map(|g| g.reserved.first())
            .map(|e| u128::from(e.unreliability))
            .min(),
    }
    .unwrap_or(u128::MAX)
}

/// First entry of a group after its cursor, in rank order, that serves the order.
fn first_usable(
    group: &Group,
    cursor: Option<Cursor>,
    order: &Order,
    exclude: &[u32],
) -> Option<(Entry, Pos)> {
    // The spot list starts with the group's cheapest ask: if even that is too dear, a reserved
    // order need not walk its reliability-sorted list at all.
    if group.spot.first().is_none_or(|e| e.price > order.max_price) {
        return None;
    }
    let list = match order.mode {
        OrderMode::Spot => &group.spot,
        OrderMode::Reserved => &group.reserved,
    };
    let from = match cursor {
        None => Pos::default(),
        Some(Cursor::At(pos)) => pos,
        Some(Cursor::Exhausted) => return None,
    };
    list.first_serving(from, order, exclude)
}

fn pick(e: &Entry, gpus: u16, free: u16) -> Pick {
    Pick {
        slot: e.slot,
        gpus,
        free,
        price: e.price,
        latency_band: u64::from(e.latency_band),
        unreliability: u64::from(e.unreliability),
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
                if let Some((e, _)) = first_usable(group, cursor_of(&cursors, free), order, exclude)
                {
                    let key = (e.rank(order.mode), free - need, e.id);
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
            let next = found.map_or(Cursor::Exhausted, |(_, pos)| Cursor::At(pos));
            match cursors.iter_mut().find(|(g, _)| *g == free) {
                Some(c) => c.1 = next,
                None => cursors.push((free, next)),
            }
            if let Some((e, _)) = found {
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
