//! Why an order was not placed and why a worker sits idle: per-reason counts that the console and
//! the API show to buyers and suppliers. Computed on demand from the index (one order: a pass
//! over the member columns of the buckets it may use), or for many orders at once with the work
//! shared between orders of the same requirements (rounds). Placement never scans.
//!
//! Each worker (for an order) or order (for a worker) is counted once, under the first check it
//! fails, in this order: class, region, status, VRAM, bandwidth, price, capacity. A worker that
//! passes all of them is `eligible`; an order can still stay unplaced when the eligible workers of
//! every allowed region together hold fewer free GPUs than it asks for (`best_region_gpus`).

use std::collections::HashMap;

use super::index::{Index, Members};
use super::types::{GPU_CLASSES, Order, REGIONS, RegionSet, Worker, WorkerId, WorkerStatus};

/// Counts of workers turned away for one order, by the first reason each failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rejections {
    pub class: u32,
    pub region: u32,
    /// Draining, offline or jailed.
    pub status: u32,
    pub vram: u32,
    pub bandwidth: u32,
    pub price: u32,
    /// Passes everything but has no free GPU.
    pub capacity: u32,
    /// Passes everything and has free GPUs.
    pub eligible: u32,
    /// Most free GPUs the eligible workers of a single allowed region hold together; the order
    /// fits only if this reaches its GPU count (clusters stay inside one region).
    pub best_region_gpus: u32,
}

/// Counts of open orders a worker cannot serve, by the first reason each failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerExplanation {
    pub worker: WorkerId,
    pub worker_status: WorkerStatus,
    pub gpus_free: u16,
    /// Every order, when the worker is draining, offline or jailed.
    pub status: u32,
    /// Every order, when the worker has no free GPU.
    pub capacity: u32,
    pub class: u32,
    pub region: u32,
    pub vram: u32,
    pub bandwidth: u32,
    pub price: u32,
    /// Open orders the worker could serve (alone or as part of a cluster).
    pub fits: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WorkerVerdict {
    Status,
    Vram,
    Bandwidth,
    Price,
    Capacity,
    Eligible,
}

/// The checks after class and region, for a worker already known to match both.
fn verdict(w: &Worker, order: &Order) -> WorkerVerdict {
    let s = &w.spec;
    if !s.status.is_placeable() {
        WorkerVerdict::Status
    } else if s.vram_mib < order.min_vram_mib {
        WorkerVerdict::Vram
    } else if s.bandwidth_gbps < order.min_bandwidth_gbps {
        WorkerVerdict::Bandwidth
    } else if s.price > order.max_price {
        WorkerVerdict::Price
    } else if w.gpus_free == 0 {
        WorkerVerdict::Capacity
    } else {
        WorkerVerdict::Eligible
    }
}

#[cfg(any(test, feature = "baseline"))]
fn tally_worker(r: &mut Rejections, w: &Worker, order: &Order, region_gpus: &mut [u32; REGIONS]) {
    match verdict(w, order) {
        WorkerVerdict::Status => r.status += 1,
        WorkerVerdict::Vram => r.vram += 1,
        WorkerVerdict::Bandwidth => r.bandwidth += 1,
        WorkerVerdict::Price => r.price += 1,
        WorkerVerdict::Capacity => r.capacity += 1,
        WorkerVerdict::Eligible => {
            r.eligible += 1;
            region_gpus[usize::from(w.spec.region.code())] += u32::from(w.gpus_free);
        }
    }
}

/// Explains an order by scanning every worker.
#[cfg(any(test, feature = "baseline"))]
pub(crate) fn order_by_scan(workers: &[Option<Worker>], order: &Order) -> Rejections {
    let mut r = Rejections::default();
    let mut region_gpus = [0u32; REGIONS];
    for w in workers.iter().flatten() {
        if w.spec.class != order.class {
            r.class += 1;
        } else if !order.regions.contains(w.spec.region) {
            r.region += 1;
        } else {
            tally_worker(&mut r, w, order, &mut region_gpus);
        }
    }
    r.best_region_gpus = region_gpus.into_iter().max().unwrap_or(0);
    r
}

/// What one bucket holds for an order with given VRAM, bandwidth and price thresholds: members
/// by the first of those checks they fail (status is the bucket's `blocked` count), and the
/// free GPUs of the eligible ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    vram: u32,
    bandwidth: u32,
    price: u32,
    capacity: u32,
    eligible: u32,
    gpus: u64,
}

impl Tally {
    fn add_to(&self, r: &mut Rejections, blocked: u32) {
        r.status += blocked;
        r.vram += self.vram;
        r.bandwidth += self.bandwidth;
        r.price += self.price;
        r.capacity += self.capacity;
        r.eligible += self.eligible;
        let gpus = u32::try_from(self.gpus).unwrap_or(u32::MAX);
        r.best_region_gpus = r.best_region_gpus.max(gpus);
    }
}

/// One bucket against one set of thresholds: a branch-free pass the compiler vectorizes, in
/// chunks short enough that 32-bit lane sums cannot wrap (2^16 members × 2^16 GPUs).
#[inline(always)]
fn tally_body(m: &Members, min_vram: u32, min_bandwidth: u32, max_price: u64) -> Tally {
    const CHUNK: usize = 1 << 15;
    let n = m.len();
    let mut t = [0u32; 5];
    let mut gpus = 0u64;
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let (takes_work, vram, bw, price, free) = (
            &m.takes_work[start..end],
            &m.vram_mib[start..end],
            &m.bandwidth_gbps[start..end],
            &m.price[start..end],
            &m.free[start..end],
        );
        let mut c = [0u32; 6];
        for i in 0..takes_work.len() {
            let ok = u32::from(takes_work[i]);
            let pass_vram = ok & u32::from(vram[i] >= min_vram);
            let pass_bw = pass_vram & u32::from(bw[i] >= min_bandwidth);
            let pass_price = pass_bw & u32::from(price[i] <= max_price);
            let eligible = pass_price & u32::from(free[i] > 0);
            c[0] = c[0].wrapping_add(ok ^ pass_vram);
            c[1] = c[1].wrapping_add(pass_vram ^ pass_bw);
            c[2] = c[2].wrapping_add(pass_bw ^ pass_price);
            c[3] = c[3].wrapping_add(pass_price ^ eligible);
            c[4] = c[4].wrapping_add(eligible);
            c[5] = c[5].wrapping_add(u32::from(free[i]) & eligible.wrapping_neg());
        }
        for (total, part) in t.iter_mut().zip(&c[..5]) {
            *total = total.wrapping_add(*part);
        }
        gpus += u64::from(c[5]);
        start = end;
    }
    Tally {
        vram: t[0],
        bandwidth: t[1],
        price: t[2],
        capacity: t[3],
        eligible: t[4],
        gpus,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
fn tally_avx512(m: &Members, min_vram: u32, min_bandwidth: u32, max_price: u64) -> Tally {
    tally_body(m, min_vram, min_bandwidth, max_price)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tally_avx2(m: &Members, min_vram: u32, min_bandwidth: u32, max_price: u64) -> Tally {
    tally_body(m, min_vram, min_bandwidth, max_price)
}

fn tally(m: &Members, min_vram: u32, min_bandwidth: u32, max_price: u64) -> Tally {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features this copy was compiled for.
            return unsafe { tally_avx512(m, min_vram, min_bandwidth, max_price) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { tally_avx2(m, min_vram, min_bandwidth, max_price) };
        }
    }
    tally_body(m, min_vram, min_bandwidth, max_price)
}

/// One bucket against one VRAM and bandwidth threshold and several prices (`prices` ascending,
/// distinct): one pass sorts the members that pass VRAM and bandwidth into price bins, and the
/// running sums over the bins answer every price. Returns one tally per price.
fn tally_prices(m: &Members, min_vram: u32, min_bandwidth: u32, prices: &[u64]) -> Vec<Tally> {
    if let [price] = prices {
        return vec![tally(m, min_vram, min_bandwidth, *price)];
    }
    let (mut fail_vram, mut fail_bw, mut pass) = (0u32, 0u32, 0u32);
    // Bin j holds members whose ask is above prices[j - 1] and at most prices[j].
    let mut bins = vec![(0u32, 0u32, 0u64); prices.len() + 1];
    for i in 0..m.len() {
        if m.takes_work[i] == 0 {
            continue;
        }
        if m.vram_mib[i] < min_vram {
            fail_vram += 1;
        } else if m.bandwidth_gbps[i] < min_bandwidth {
            fail_bw += 1;
        } else {
            pass += 1;
            let bin = &mut bins[prices.partition_point(|&p| p < m.price[i])];
            let free = m.free[i];
            bin.0 += 1;
            bin.1 += u32::from(free > 0);
            bin.2 += u64::from(free);
        }
    }
    let mut out = Vec::with_capacity(prices.len());
    let (mut affordable, mut with_free, mut gpus) = (0u32, 0u32, 0u64);
    for bin in &bins[..prices.len()] {
        affordable += bin.0;
        with_free += bin.1;
        gpus += bin.2;
        out.push(Tally {
            vram: fail_vram,
            bandwidth: fail_bw,
            price: pass - affordable,
            capacity: affordable - with_free,
            eligible: with_free,
            gpus,
        });
    }
    out
}

/// Class and region counts from the index's counters: every worker of another class, and every
/// worker of the order's class in a region the order does not allow.
fn class_and_region(index: &Index, class: usize, regions: RegionSet, r: &mut Rejections) {
    let in_class = index.class_workers[class];
    r.class = index.total_workers - in_class;
    let in_regions: u32 = RegionSet(regions.0 & index.class_member_regions[class])
        .iter()
        .map(|region| {
            index
                .bucket(class, usize::from(region.code()))
                .members
                .len() as u32
        })
        .sum();
    r.region = in_class - in_regions;
}

/// Explains one order from the index: class and region rejections from counters, the rest by
/// one vectorized pass over each allowed bucket's member columns. Same result as
/// [`order_by_scan`].
pub(crate) fn order_by_index(index: &Index, order: &Order) -> Rejections {
    let class = usize::from(order.class.code()).min(GPU_CLASSES - 1);
    let mut r = Rejections::default();
    class_and_region(index, class, order.regions, &mut r);
    for region in RegionSet(order.regions.0 & index.class_member_regions[class]).iter() {
        let members = &index.bucket(class, usize::from(region.code())).members;
        tally(
            members,
            order.min_vram_mib,
            order.min_bandwidth_gbps,
            order.max_price,
        )
        .add_to(&mut r, members.blocked);
    }
    r
}

/// What the counts of an explanation depend on: orders that agree on all of it share one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Requirements {
    class: u8,
    regions: u64,
    min_vram_mib: u32,
    min_bandwidth_gbps: u32,
    max_price: u64,
}

/// Explains many orders at once, in the order given, with the work shared: orders with the same
/// requirements share one explanation, and each bucket is read once per distinct (VRAM,
/// bandwidth) threshold for all the prices asked of it. Same result as [`order_by_index`] for
/// each order.
///
/// Cost: O(Σ over buckets touched of members × distinct (VRAM, bandwidth) thresholds × log of
/// distinct prices) plus O(q log q) for q (requirement set, region) pairs.
pub(crate) fn orders_by_index(index: &Index, orders: &[&Order]) -> Vec<Rejections> {
    let mut shared: HashMap<Requirements, u32> = HashMap::new();
    let mut sets: Vec<Requirements> = Vec::new();
    let which: Vec<u32> = orders
        .iter()
        .map(|o| {
            let req = Requirements {
                class: o.class.code().min(GPU_CLASSES as u8 - 1),
                regions: o.regions.0,
                min_vram_mib: o.min_vram_mib,
                min_bandwidth_gbps: o.min_bandwidth_gbps,
                max_price: o.max_price,
            };
            *shared.entry(req).or_insert_with(|| {
                sets.push(req);
                (sets.len() - 1) as u32
            })
        })
        .collect();

    let mut out = vec![Rejections::default(); sets.len()];
    // (bucket, VRAM, bandwidth, price, set) for every allowed bucket with members.
    let mut asks: Vec<(u16, u32, u32, u64, u32)> = Vec::new();
    for (i, req) in sets.iter().enumerate() {
        let class = usize::from(req.class);
        class_and_region(index, class, RegionSet(req.regions), &mut out[i]);
        for region in RegionSet(req.regions & index.class_member_regions[class]).iter() {
            let bucket = (class * REGIONS + usize::from(region.code())) as u16;
            asks.push((
                bucket,
                req.min_vram_mib,
                req.min_bandwidth_gbps,
                req.max_price,
                i as u32,
            ));
        }
    }
    asks.sort_unstable();

    let mut prices = Vec::new();
    for run in asks.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
        let (bucket, min_vram, min_bw, _, _) = run[0];
        let class = usize::from(bucket) / REGIONS;
        let region = usize::from(bucket) % REGIONS;
        let members = &index.bucket(class, region).members;
        prices.clear();
        prices.extend(run.iter().map(|a| a.3));
        prices.dedup();
        let tallies = tally_prices(members, min_vram, min_bw, &prices);
        for &(_, _, _, price, set) in run {
            let at = prices.partition_point(|&p| p < price);
            tallies[at].add_to(&mut out[set as usize], members.blocked);
        }
    }
    which.into_iter().map(|i| out[i as usize]).collect()
}
/// Explains a worker by scanning the open orders.
pub(crate) fn worker_by_scan<'a>(
    w: &Worker,
    orders: impl Iterator<Item = &'a Order>,
) -> WorkerExplanation {
    let mut e = WorkerExplanation {
        worker: w.spec.id,
        worker_status: w.spec.status,
        gpus_free: w.gpus_free,
        status: 0,
        capacity: 0,
        class: 0,
        region: 0,
        vram: 0,
        bandwidth: 0,
        price: 0,
        fits: 0,
    };
    for order in orders {
        if !w.spec.status.is_placeable() {
            e.status += 1;
        } else if w.gpus_free == 0 {
            e.capacity += 1;
        } else if w.spec.class != order.class {
            e.class += 1;
        } else if !order.regions.contains(w.spec.region) {
            e.region += 1;
        } else {
            match verdict(w, order) {
                WorkerVerdict::Vram => e.vram += 1,
                WorkerVerdict::Bandwidth => e.bandwidth += 1,
                WorkerVerdict::Price => e.price += 1,
                _ => e.fits += 1,
            }
        }
    }
    e
}
